"""Network builder: turns a declared :class:`~sdsnn_brian.network.Network` into Brian2 objects.

This is the only module that creates Brian2 groups, synapses and monitors.

How a minibatch runs
--------------------
The ``B`` samples of a minibatch run *in sequence* in one simulation of
``B*T`` steps; every ``T`` steps a ``run_regularly`` operation (slot ``start``)
puts each layer's membrane back to its initial value, so samples do not
interact.  (The alternative, ``B`` replicated groups side by side, multiplies
the synapse count and the weight transfer by ``B``; ``benchmarks/engine_layout.py``
measures both.)

Input spikes are computed in Python by the encoder and handed to Brian2 as a
``TimedArray`` packed 32 inputs per value (bit ``k`` of ``stim[g, i // 32]``
is input ``i`` at global step ``g``); the input group's threshold decodes the
bit exactly (``floor(x) - 2 floor(x/2)`` for ``x = stim * 2**-k``: power-of-two scaling and ``floor``
are exact in floating point).  That cuts the input file 32-fold compared
with one float64 per input and step.

Order within one step (matches the SD-SNN neuron, which has no delay between
layers): the leak of every layer runs in ``groups``; the input group's threshold
in ``thresholds``; then in slot ``after_synapses`` for layer ``k`` (1-based):
its incoming pathway at order ``10k``, its bias at ``10k+1``, the membrane
monitor at ``10k+4`` (the pre-reset membrane the surrogate needs), its threshold
at ``10k+5``, its spike monitor at ``10k+6``; all resets last (order ``1000+k``).
So ``u_t = a*u+_{t-1} + c + W s_{t-1 layer}(t) + b`` exactly as in
:mod:`sdsnn_brian.neuron`.

Convolutions and pooling (:mod:`sdsnn_brian.layers`): on C++ standalone with the event code
(``conv_layout='kernel'``, the default there) a conv layer's ``syn{k}`` holds one synapse per
kernel entry (:class:`~sdsnn_brian.layers.KernelMap`; its ``w`` is the kernel, its constant
``kernel_entry`` the entry's flat index), and the generated code applies the kernel to each
spiking source's output window (:func:`sdsnn_brian.codegen.conv_codeobj_class`): memory
O(kernel + neurons), only the kernel uploaded per minibatch.  Elsewhere (brian2cuda, runtime,
``event_code='brian2'``, or ``conv_layout='synapses'``) ``syn{k}`` holds one synapse per (input
position, output position, kernel entry) triple in the order of its
:class:`~sdsnn_brian.layers.SynapseMap`, each with its own ``w`` (the simulator writes
``kernel.ravel()[kidx]`` before every run: tied weights).  An
``AvgPool2d`` before layer ``k`` becomes the relay group ``pool{k}`` (variable
``x``): ``poolsyn{k}`` (order ``10k-3``) adds ``1/(ph*pw)`` per source spike, the
relay's threshold ``x > 0`` (order ``10k-2``) sends one event per active window,
``syn{k}`` adds ``w * x_pre``, and the relay resets ``x = 0`` at order ``2000+k``.

Stochastic readouts (``Dense(stochastic=True)``, time decoding): layer ``k`` gets a second
``TimedArray`` ``readout_noise{k}`` of shape ``[B*T, N]`` (sample-major, like ``stim``) holding
``logit(U)`` for uniform noise ``U`` drawn in numpy; its threshold is ``u > readout_noise{k}(t, i)``,
i.e. ``U < sigmoid(u)``, at the same order ``10k+5``, and it has no reset (the membrane only leaks
and is put back at each sample boundary).  The values come in through ``run_args``
(``readout_noise{k}.values``), so every device draws no random number of its own.

Synapse ``q`` of a dense layer ``k`` connects pre ``q // N_post`` to post ``q % N_post``
(pre-major: the synapses a spike reaches lie next to each other in memory, and on
C++ standalone the event code of :mod:`sdsnn_brian.codegen` adds such a row as one
vectorised loop); :func:`synapse_order` maps a (post, pre) weight matrix to that order.
A layer whose pruned neurons are left out (:func:`target_rows`) keeps that layout over the
living targets, and its rows are vectorised the same way.
Every pathway gets that event code on C++ standalone (``event_code='sdsnn'``, the default):
no spike queue, the synapses of each spiking source walked in Brian2's order.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import numpy as np

__all__ = ["BrianObjects", "build_objects", "pack_input", "noise_table", "synapse_order", "present_synapses",
           "target_rows", "BITS", "CONV_LAYOUTS", "conv_layout_for", "conv_geometry"]

#: Inputs packed into one TimedArray value.
BITS = 32


def pack_input(spikes: np.ndarray) -> np.ndarray:
    """Pack a [T, B, n] 0/1 raster into the [B*T, ceil(n/32)] float64 table the input group decodes."""
    T, B, n = spikes.shape
    blocks = -(-n // BITS)
    seq = np.ascontiguousarray(np.swapaxes(spikes, 0, 1)).reshape(B * T, n).astype(np.uint8, copy=False)
    if n % BITS:
        seq = np.concatenate([seq, np.zeros((B * T, blocks * BITS - n), np.uint8)], axis=1)
    packed = np.packbits(seq.reshape(B * T, blocks, BITS), axis=-1, bitorder="little")
    return packed.view("<u4")[..., 0].astype(np.float64)


def synapse_order(weights, connectivity=None) -> np.ndarray:
    """A (post, pre) weight matrix as the float64 per-synapse array of the build.

    All-to-all builds are pre-major; a build with explicit ``connectivity``
    ``(pre, post)`` index arrays takes the weights of exactly those pairs.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if connectivity is None:
        return np.ascontiguousarray(weights.T).ravel()
    pre, post = connectivity
    return np.ascontiguousarray(weights[post, pre])


def target_rows(targets, n_pre) -> tuple:
    """``(pre, post)`` index arrays connecting every source to each of ``targets`` (ascending),
    pre-major: the rows layout of a layer whose other targets were pruned."""
    targets = np.asarray(targets, dtype=np.int64)
    return np.repeat(np.arange(n_pre, dtype=np.int64), len(targets)), np.tile(targets, n_pre)


def present_synapses(mask) -> tuple:
    """``(pre, post)`` index arrays of the present synapses of a (post, pre) mask, pre-major."""
    post, pre = np.nonzero(np.asarray(mask).T != 0)[::-1]
    return pre.astype(np.int64), post.astype(np.int64)


@dataclass
class BrianObjects:
    """The Brian2 objects of one built network (kept behind the builder)."""

    network: object  # brian2.Network
    stim: object  # TimedArray
    groups: list  # trained NeuronGroups, layer order
    synapses: list
    state_monitors: list
    spike_monitors: list
    membranes: list  # membrane variable names
    units: list  # float SI value of each layer's membrane unit
    duration: object
    extra: dict = field(default_factory=dict)


def noise_table(noise) -> np.ndarray:
    """Uniform noise ``[T, B, N]`` in (0, 1) as the ``[B*T, N]`` float64 table of logit thresholds.

    A stochastic readout spikes when ``u > logit(U)``, which is ``U < sigmoid(u)``.
    """
    U = np.asarray(noise, dtype=np.float64)
    T, B, N = U.shape
    with np.errstate(divide="ignore"):
        th = np.log(U) - np.log1p(-U)
    return np.ascontiguousarray(np.swapaxes(th, 0, 1)).reshape(B * T, N)


#: How a conv layer is built: ``'kernel'``, one synapse per kernel entry and a kernel loop in the
#: generated code (C++ standalone with the event code); ``'synapses'``, one Brian2 synapse per
#: (input position, output position, kernel entry).
CONV_LAYOUTS = ("kernel", "synapses")


def conv_layout_for(device: str, event_code: str = "sdsnn") -> str:
    """The conv layout a device builds by default: ``'kernel'`` on ``cpp_standalone`` with
    ``event_code='sdsnn'``, ``'synapses'`` elsewhere (brian2cuda, runtime, Brian2's own code)."""
    return "kernel" if device == "cpp_standalone" and event_code == "sdsnn" else "synapses"


def conv_geometry(cn) -> dict:
    """The geometry of conv connection ``cn`` for :func:`sdsnn_brian.codegen.conv_codeobj_class`."""
    (C_in, H, W), (C_out, Ho, Wo) = cn.op_shape, cn.out_shape
    (kh, kw), (sh, sw), (ph, pw) = cn.kernel, cn.stride, cn.padding
    return dict(C_in=C_in, H=H, W=W, C_out=C_out, Ho=Ho, Wo=Wo, kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw)


class _OwnGroupFilter(logging.Filter):
    """Drops Brian2's warnings about the group called ``name``."""

    def __init__(self, name):
        super().__init__()
        self.prefix = f"The NeuronGroup '{name}' "

    def filter(self, record):
        return not record.getMessage().startswith(self.prefix)


@contextlib.contextmanager
def _threshold_without_reset(name):
    """While the group ``name`` is created, no ``only_threshold`` warning for it (Brian2 asks
    whether a reset was forgotten).  Every other group, a user's included, still gets it."""
    logger = logging.getLogger("brian2.groups.neurongroup.only_threshold")
    flt = _OwnGroupFilter(name)
    logger.addFilter(flt)
    try:
        yield
    finally:
        logger.removeFilter(flt)


def build_objects(net, batch: int, *, stim_values=None, weights=None, biases=None,
                  connectivity=None, noise_values=None, event_code="sdsnn",
                  weight_dtype="float64", sizes=None, conv_layout=None) -> BrianObjects:
    """Create the Brian2 objects for ``net`` running ``batch`` samples per simulation.

    ``stim_values``/``weights``/``biases`` set initial values (the runtime device
    passes real data here; standalone builds pass nothing and supply data per run).
    ``connectivity``: per trained layer ``None`` (all-to-all) or ``(pre, post)`` index
    arrays of the synapses to create (see :func:`present_synapses`); removed synapses
    then do not exist in the generated code at all.  For a conv layer the entry is a
    :class:`~sdsnn_brian.layers.SynapseMap` (``Connection.synapse_map().select(mask)``),
    and ``weights`` holds its kernel.
    ``noise_values``: per trained layer ``None`` or, for a stochastic readout, its
    ``[batch*T, N]`` threshold table (:func:`noise_table`); zeros when not given.
    ``event_code``: ``'sdsnn'`` gives every pathway, on the C++ standalone device, the
    queue-free propagation of :mod:`sdsnn_brian.codegen` (all-to-all layers as vectorised
    rows); ``'brian2'`` keeps Brian2's code.
    ``weight_dtype``: how the synapses store ``w`` (``'float64'`` or ``'float32'``; the
    arithmetic stays float64).
    ``sizes``: per trained layer None or the number of neurons to build (a layer whose pruned
    neurons were left out; ``connectivity`` then numbers the built neurons).
    ``conv_layout``: how conv layers are built (:data:`CONV_LAYOUTS`): ``'kernel'`` (one synapse
    per kernel entry, the kernel loop of :func:`sdsnn_brian.codegen.conv_codeobj_class`; only
    with the event code, i.e. C++ standalone and ``event_code='sdsnn'``: elsewhere a
    ``ValueError``), ``'synapses'`` (one synapse per (input position, output position, kernel
    entry)), or None: :func:`conv_layout_for` the current device.  A conv layer's
    ``connectivity`` entry is then a :class:`~sdsnn_brian.layers.KernelMap`
    (``Connection.kernel_map().select(mask)``) or a :class:`~sdsnn_brian.layers.SynapseMap`.
    """
    import brian2 as b2

    from .codegen import (conv_codeobj_class, event_codeobj_class, group_codeobj_class, input_codeobj_class,
                          uses_event_code)
    from .layers import KernelMap

    own_code = uses_event_code(event_code)
    if conv_layout is None:
        conv_layout = "kernel" if own_code else "synapses"
    if conv_layout not in CONV_LAYOUTS:
        raise ValueError(f"unknown conv_layout {conv_layout!r}; known: {list(CONV_LAYOUTS)}")
    if conv_layout == "kernel" and not own_code:
        raise ValueError("conv_layout='kernel' needs sdsnn_brian's event code: the cpp_standalone device with "
                         "event_code='sdsnn' (brian2cuda, the runtime device and Brian2's own templates build "
                         "conv layers with conv_layout='synapses')")

    def codeobj_class(dense):
        return event_codeobj_class(dense) if own_code else None

    T, dt = net.steps, net.dt
    n_in = net.input.size
    blocks = -(-n_in // BITS)
    if stim_values is None:
        stim_values = np.zeros((batch * T, blocks))
    stim = b2.TimedArray(stim_values, dt=dt, name="stim")
    # bit k of x = stim * 2**-k is floor(x) - 2 floor(x / 2): exact, and without the floating-point
    # modulo (fmod) that `floor(x) % 2` costs every input at every step
    # no reset on purpose (reset="" would add a resetter code object that does nothing every step)
    with _threshold_without_reset("layer0"):
        inp = b2.NeuronGroup(
            n_in,
            "blk : integer (constant)\nbitscale : 1 (constant)\nbits = stim(t, blk) * bitscale : 1",
            threshold="floor(bits) - 2 * floor(0.5 * bits) > 0.5",
            namespace={"stim": stim},
            name="layer0",
            codeobj_class=input_codeobj_class("stim", BITS) if own_code else None,
        )
    idx = np.arange(n_in)
    inp.blk = idx // BITS
    inp.bitscale = 2.0 ** -(idx % BITS).astype(float)

    objects = [inp]
    groups, synapses, smons, spmons, membranes, units = [], [], [], [], [], []
    extra = {}
    prev = inp
    conns = net.connections
    for k, layer in enumerate(net.trained, start=1):
        cn = conns[k - 1]
        model = layer.neuron
        m = model.membrane
        unit = model.unit
        ns = dict(model.namespace)
        ns["w_unit"] = unit
        eqs = model.equations
        if layer.bias:
            eqs = eqs + "\nb : 1 (constant)"
        threshold, reset = model.threshold, model.reset
        stochastic = bool(getattr(layer, "stochastic", False))
        if stochastic:  # spike when logit(U) < u, i.e. U < sigmoid(u); no reset
            nv = None if noise_values is None else noise_values[k - 1]
            if nv is None:
                nv = np.zeros((batch * T, layer.size))
            noise = b2.TimedArray(nv, dt=dt, name=f"readout_noise{k}")
            ns[f"readout_noise{k}"] = noise
            threshold, reset = f"{m} > readout_noise{k}(t, i)", ""
            extra[f"readout_noise{k}"] = noise
        layer_class = group_codeobj_class() if own_code else None
        n_built = layer.size if sizes is None or sizes[k - 1] is None else int(sizes[k - 1])
        G = b2.NeuronGroup(n_built, eqs, threshold=threshold, reset=reset,
                           method=model.method, namespace=ns, name=f"layer{k}", codeobj_class=layer_class)
        G.thresholder["spike"].when = "after_synapses"
        G.thresholder["spike"].order = 10 * k + 5
        G.resetter["spike"].when = "after_synapses"
        G.resetter["spike"].order = 1000 + k
        G.run_regularly(f"{m} = {model.init}", dt=T * dt, when="start", order=k, name=f"layer{k}_sample_reset")
        if layer.bias:
            G.run_regularly(f"{m} += b * w_unit", when="after_synapses", order=10 * k + 1, name=f"layer{k}_bias")
            if biases is not None and biases[k - 1] is not None:
                G.b = cn.expand_bias(biases[k - 1])
        on_pre = f"{m}_post += w * w_unit"
        if cn.pool is not None:
            # the pooling relay (see sdsnn_brian.layers): sources add 1/(ph*pw) to their window's
            # unit, a unit with x > 0 sends one event carrying x, x returns to 0 after use
            P = b2.NeuronGroup(cn.n_op, "x : 1", threshold="x > 0", reset="x = 0", name=f"pool{k}")
            P.thresholder["spike"].when = "after_synapses"
            P.thresholder["spike"].order = 10 * k - 2
            P.resetter["spike"].when = "after_synapses"
            P.resetter["spike"].order = 2000 + k
            src, relay = cn.pool_members()
            Sp = b2.Synapses(prev, P, on_pre=f"x_post += {cn.pool_scale!r}", delay=0 * b2.second,
                             name=f"poolsyn{k}", codeobj_class=codeobj_class(False))
            Sp.connect(i=src, j=relay)
            Sp.pre.when = "after_synapses"
            Sp.pre.order = 10 * k - 3
            objects += [P, Sp]
            extra[f"pool{k}"] = (P, Sp)
            prev = P
            on_pre = f"{m}_post += w * x_pre * w_unit"
        n_pre, n_post = prev.N, G.N
        conn = None if connectivity is None else connectivity[k - 1]
        kernel = cn.kind == "conv" and conv_layout == "kernel"
        if kernel:  # one synapse per kernel entry; the kernel loop finds the targets
            cls = conv_codeobj_class(conv_geometry(cn))
        else:
            cls = codeobj_class(cn.kind != "conv")  # rows, where the layout has them
        S = b2.Synapses(prev, G, "w : 1" + ("\nkernel_entry : integer (constant)" if kernel else ""),
                        on_pre=on_pre, namespace={"w_unit": unit},
                        dtype={"w": np.dtype(weight_dtype).type},
                        delay=0 * b2.second, name=f"syn{k}",  # one shared delay, not one per synapse
                        codeobj_class=cls)
        if cn.kind == "conv":
            smap = (cn.kernel_map() if kernel else cn.synapse_map()) if conn is None else conn
            if isinstance(smap, KernelMap) != kernel:
                raise ValueError(f"layer {k}: the connectivity of a conv layer built with conv_layout="
                                 f"{conv_layout!r} must be a {'KernelMap' if kernel else 'SynapseMap'} "
                                 f"(Connection.{'kernel_map' if kernel else 'synapse_map'}().select(mask))")
            if len(smap):
                S.connect(i=smap.pre, j=smap.post)
                if kernel:
                    S.kernel_entry = smap.kidx
                if weights is not None:
                    S.w = smap.expand(weights[k - 1])
        else:
            if conn is None:
                q = np.arange(n_pre * n_post)
                S.connect(i=q // n_post, j=q % n_post)
            elif len(conn[0]):
                S.connect(i=np.asarray(conn[0]), j=np.asarray(conn[1]))
            if weights is not None and (conn is None or len(conn[0])):
                S.w = synapse_order(weights[k - 1], conn)
        S.pre.when = "after_synapses"
        S.pre.order = 10 * k
        sm = b2.StateMonitor(G, m, record=True, when="after_synapses", order=10 * k + 4, name=f"layer{k}_membrane",
                             codeobj_class=layer_class)
        spm = b2.SpikeMonitor(G, when="after_synapses", order=10 * k + 6, name=f"layer{k}_spikes")
        objects += [G, S, sm, spm]
        groups.append(G)
        synapses.append(S)
        smons.append(sm)
        spmons.append(spm)
        membranes.append(m)
        units.append(float(b2.Quantity(unit)))
        prev = G
    network = b2.Network(*objects, name="sdsnn_network")
    return BrianObjects(network, stim, groups, synapses, smons, spmons, membranes, units,
                        duration=batch * T * dt, extra=extra)
