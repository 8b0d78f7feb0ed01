"""Synaptic operations and energy estimates (labelled as estimates everywhere).

Convention (the project's; Horowitz 2014, 45 nm, FP32)::

    SOPs  = sum over layers l and steps t of  (spikes of l's presynaptic layer at t) x (present fan-out)
    E_SNN = SOPs x E_AC             (+ MACs of an analogue first layer x E_MAC, if the input is analogue)
    E_ANN = MACs x E_MAC            (the equivalent ANN: one multiply-accumulate per present synapse, one pass)

with ``E_AC = 0.9 pJ`` per accumulate and ``E_MAC = 4.6 pJ`` per multiply-accumulate.  A removed
synapse has no fan-out, so it costs nothing.  Masks and weights are ``[post, pre]`` as in
:class:`~sdsnn_brian.trainer.Trainer`; spike arrays are ``[T, B, n]`` (steps, samples, neurons) as in
:class:`~sdsnn_brian.device.Recording`.

Convolutional and pooled layers: pass ``connections=net.connections`` (the
:class:`~sdsnn_brian.layers.Connection` of every trained layer).  A layer whose connection is not
plain fully connected then gets its present fan-out per presynaptic neuron from
:meth:`Connection.fanout <sdsnn_brian.layers.Connection.fanout>` (through the conv synapse map and
the pooling relay; masks are parameter-shaped, ``(C_out, C_in, kh, kw)`` for a conv layer), and the
equivalent ANN of a conv layer costs ``output positions x present kernel entries`` MACs.  Without
``connections`` (or for plain layers) the numbers are those of the ``[post, pre]`` masks.

>>> x, rec = trainer.forward(images, rng, batch_size)
>>> per_layer = sops_from_recording(x, rec, trainer.masks)       # [L, B]
>>> est = energy_estimate(x, rec, trainer.masks)
>>> est["E_snn_J"], est["E_ann_J"]

The per-sample mean of ``sops_from_recording(...).sum(axis=0)`` is what
:meth:`Trainer.evaluate` reports as ``sops_per_sample``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["E_AC_PJ", "E_MAC_PJ", "E_AC", "E_MAC", "PJ", "FORMULA", "fan_out", "sops", "sops_from_recording",
           "macs", "snn_energy", "ann_energy", "energy_estimate"]

#: energy of one accumulate (AC, FP32, 45 nm), picojoules
E_AC_PJ = 0.9
#: energy of one multiply-accumulate (MAC, FP32, 45 nm), picojoules
E_MAC_PJ = 4.6
#: one picojoule in joules
PJ = 1e-12
#: the same constants in joules
E_AC = E_AC_PJ * PJ
E_MAC = E_MAC_PJ * PJ
#: the formula as text, for figure captions
FORMULA = (f"E_SNN = SOPs x E_AC,  E_ANN = MACs x E_MAC;  E_AC = {E_AC_PJ} pJ, E_MAC = {E_MAC_PJ} pJ "
           "(45 nm, FP32, Horowitz 2014); SOPs = presynaptic spikes x present fan-out, summed over layers "
           "and steps. Estimates.")


def _mask_array(mask, shape=None, what="mask"):
    if mask is None:
        if shape is None:
            raise ValueError(f"{what}: a dense layer (mask None) needs its shape")
        return np.ones(tuple(shape), dtype=np.float64)
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"{what}: expected a [post, pre] array, got shape {m.shape}")
    return (m != 0).astype(np.float64)


def fan_out(mask) -> np.ndarray:
    """Present fan-out of every presynaptic neuron of a ``[post, pre]`` mask (column sums)."""
    return _mask_array(mask).sum(axis=0)


def _connections(connections, L):
    conns = [None] * L if connections is None else list(connections)
    if len(conns) != L:
        raise ValueError(f"{L} layers but {len(conns)} connections")
    return conns


def _structured(conn) -> bool:
    """A connection that is not plain fully connected (conv, or dense after a pooling)."""
    return conn is not None and not getattr(conn, "plain", True)


def _param_mask(mask, conn, what):
    """A parameter-shaped 0/1 float mask of a structured layer (all present when ``mask`` is None)."""
    shape = tuple(conn.param_shape)
    if mask is None:
        return np.ones(shape, dtype=np.float64)
    m = np.asarray(mask)
    if m.shape != shape:
        raise ValueError(f"{what}: expected a mask of the layer's parameter shape {shape}, got {m.shape}")
    return (m != 0).astype(np.float64)


def sops(pre_spikes, masks=None, shapes=None, connections=None) -> np.ndarray:
    """Synaptic operations per layer and sample, ``[L, B]``.

    ``pre_spikes[l]``: spikes ``[T, B, n_pre]`` of layer ``l``'s presynaptic population (the input
    spikes for ``l = 0``, the spikes of trained layer ``l - 1`` after that).  ``masks[l]``:
    ``[post, pre]`` 0/1 (``None`` or a ``None`` entry: all synapses present, which needs
    ``shapes[l] = (post, pre)``).  ``connections``: the layers' Connections (see the module
    docstring); a conv or pooled layer's mask is then parameter-shaped and needs no shape.
    """
    pre_spikes = list(pre_spikes)
    L = len(pre_spikes)
    masks = [None] * L if masks is None else list(masks)
    shapes = [None] * L if shapes is None else list(shapes)
    if len(masks) != L or len(shapes) != L:
        raise ValueError(f"{L} spike arrays but {len(masks)} masks / {len(shapes)} shapes")
    conns = _connections(connections, L)
    out = []
    for l, (s, m, shp, c) in enumerate(zip(pre_spikes, masks, shapes, conns)):
        s = np.asarray(s)
        if s.ndim != 3:
            raise ValueError(f"layer {l}: spikes must be [T, B, n], got shape {s.shape}")
        if _structured(c):
            f = np.asarray(c.fanout(_param_mask(m, c, f"layer {l}")), dtype=np.float64)
        else:
            if shp is None and c is not None:
                shp = tuple(c.param_shape)
            f = fan_out(_mask_array(m, shp, f"layer {l}"))
        if f.size != s.shape[2]:
            raise ValueError(f"layer {l}: {s.shape[2]} presynaptic neurons spike but the mask has "
                             f"{f.size} columns")
        out.append(s.sum(axis=0, dtype=np.float64) @ f)  # [B, n] @ [n] -> [B]
    return np.array(out, dtype=np.float64).reshape(L, -1)


def sops_from_recording(x, rec, masks=None, shapes=None, connections=None) -> np.ndarray:
    """:func:`sops` for one minibatch: input spikes ``x`` and a Recording (``rec.s``)."""
    spikes = rec.s if hasattr(rec, "s") else rec
    pre = [x] + list(spikes)[:-1]
    if masks is not None and shapes is None:
        shapes = [None if m is None else np.shape(m) for m in masks]
    return sops(pre, masks, shapes, connections)


def macs(masks=None, shapes=None, pruned=True, connections=None) -> np.ndarray:
    """MACs per sample of the equivalent ANN, per layer (one pass through every present synapse).

    ``pruned=False`` (or masks None): every synapse of ``shapes`` (or of the masks' shapes) counts.
    ``connections``: the layers' Connections; a conv layer then costs ``Ho*Wo`` (its output
    positions) times the present (``pruned=False``: all) kernel entries, a dense layer its present
    (all) matrix entries, and ``shapes`` is not needed.  Pooling adds no MACs.
    """
    if connections is not None:
        conns = list(connections)
        masks = [None] * len(conns) if masks is None else list(masks)
        if len(masks) != len(conns):
            raise ValueError(f"{len(masks)} masks but {len(conns)} connections")
        out = []
        for c, m in zip(conns, masks):
            entries = (float(np.prod(c.param_shape)) if m is None or not pruned
                       else float(np.count_nonzero(np.asarray(m))))
            positions = int(np.prod(c.out_shape[1:])) if getattr(c, "kind", "dense") == "conv" else 1
            out.append(positions * entries)
        return np.array(out, dtype=np.float64)
    if masks is None:
        if shapes is None:
            raise ValueError("macs: give masks or shapes")
        return np.array([float(np.prod(s)) for s in shapes])
    if not pruned:
        return np.array([float(np.size(m)) for m in masks])
    return np.array([float(_mask_array(m).sum()) for m in masks])


def snn_energy(n_sops, e_ac=E_AC, analog_macs=0.0, e_mac=E_MAC):
    """``SOPs x E_AC (+ analogue first-layer MACs x E_MAC)``, joules by default."""
    return np.asarray(n_sops, dtype=np.float64) * e_ac + np.asarray(analog_macs, dtype=np.float64) * e_mac


def ann_energy(n_macs, e_mac=E_MAC):
    """``MACs x E_MAC``, joules by default."""
    return np.asarray(n_macs, dtype=np.float64) * e_mac


def energy_estimate(x, rec, masks, analog_input=False, e_ac=E_AC, e_mac=E_MAC, connections=None) -> dict:
    """Per-sample SOPs, MACs and energy estimates for one minibatch, pruned and dense.

    ``analog_input=True``: the first layer receives analogue values every step, so its synapses
    are multiply-accumulates: ``T x present synapses`` MACs per sample instead of SOPs (``T x``
    the first layer's ANN MACs for a conv layer).  ``connections``: the layers' Connections, for
    conv and pooled layers (see the module docstring).
    Returns (means over the samples; ``*_J`` in joules):
    ``sops_per_layer``, ``sops`` (pruned), ``sops_dense`` (the same spikes through every synapse),
    ``analog_macs``, ``macs``/``macs_dense`` (equivalent ANN, pruned/dense), ``E_snn_J``,
    ``E_snn_dense_J``, ``E_ann_J``, ``E_ann_dense_J``, ``ratio_ann_dense_to_snn``.
    """
    masks = list(masks)
    shapes = [np.shape(m) for m in masks]
    per = sops_from_recording(x, rec, masks, shapes, connections)
    dense = sops_from_recording(x, rec, [None] * len(masks), shapes, connections)
    analog = analog_dense = 0.0
    T = np.shape(x)[0]
    if analog_input:
        if connections is None:
            analog = T * float(_mask_array(masks[0]).sum())
            analog_dense = T * float(np.prod(shapes[0]))
        else:  # T passes of the first layer's equivalent ANN (the same numbers for a plain layer)
            c0 = list(connections)[:1]
            analog = T * float(macs(masks[:1], connections=c0)[0])
            analog_dense = T * float(macs(masks[:1], pruned=False, connections=c0)[0])
        per = per.copy()
        per[0] = 0.0
        dense = dense.copy()
        dense[0] = 0.0
    s_pr = float(per.sum(axis=0).mean())
    s_de = float(dense.sum(axis=0).mean())
    m_pr = float(macs(masks, connections=connections).sum())
    m_de = float(macs(masks, pruned=False, connections=connections).sum())
    out = {"sops_per_layer": per.mean(axis=1).tolist(), "sops": s_pr, "sops_dense": s_de,
           "analog_macs": analog, "macs": m_pr, "macs_dense": m_de,
           "E_snn_J": float(snn_energy(s_pr, e_ac, analog, e_mac)),
           "E_snn_dense_J": float(snn_energy(s_de, e_ac, analog_dense, e_mac)),
           "E_ann_J": float(ann_energy(m_pr, e_mac)), "E_ann_dense_J": float(ann_energy(m_de, e_mac))}
    out["ratio_ann_dense_to_snn"] = out["E_ann_dense_J"] / out["E_snn_J"] if out["E_snn_J"] > 0 else float("inf")
    return out
