"""Network declaration: what the network is, with no idea of how it runs.

>>> from sdsnn_brian import Network, Input, Dense, models
>>> net = Network(Input(784, encoding='rate'),
...               Dense(400, neuron=models.sdsnn_lif),
...               Dense(10, neuron=models.sdsnn_lif), steps=20)

A :class:`Network` is a chain: one :class:`Input` then trained :class:`Dense`
layers, the last of which is the readout.  The back end (``sdsnn_brian.device``)
turns the declaration into Brian2 objects; the trainer holds the parameters.

Convolutional networks: an :class:`Input` with a ``(C, H, W)`` shape, then
:class:`Conv2d` and :class:`AvgPool2d` layers, then :class:`Dense` layers (which
see the previous layer flattened channel-major), e.g. the SD-SNN reference net::

    Network(Input((1, 28, 28)), Conv2d(15), AvgPool2d(2), Conv2d(40), AvgPool2d(2),
            Dense(300), Dense(10), steps=20)

An :class:`AvgPool2d` is not a layer of neurons: it averages the spikes of the
layer before it and the result feeds the next trained layer (as ``F.avg_pool2d``
on spikes in the reference).  In Brian2 it is a relay group between the two
trained layers (:mod:`sdsnn_brian.builder`): each source spike adds ``1/(kh*kw)``
to its window's unit, a unit holding a value sends one event in the same step and
the next layer adds ``w * x_pre``.  ``net.trained`` holds only the :class:`Dense`
and :class:`Conv2d` layers; their parameters are the tied kernels
``(C_out, C_in, kh, kw)`` and dense matrices over the *pooled* inputs
``(N, C*Hp*Wp)``, and the numpy backward averages and spreads through the pools
(:class:`~sdsnn_brian.layers.Connection`).
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np


__all__ = ["Network", "Input", "Dense", "Conv2d", "AvgPool2d"]


@dataclass(frozen=True)
class Input:
    """The input layer: ``size`` spike sources fed by an encoder.

    ``encoding`` is an encoder name (``'rate'``, ``'latency'``, ``'direct'``) or
    an encoder object from :mod:`sdsnn_brian.encoding`.  ``size`` may be a shape
    ``(C, H, W)`` (needed before a :class:`Conv2d`); ``size`` is then the product
    and ``shape`` the tuple (inputs are numbered channel-major, ``c*H*W + y*W + x``).
    """

    size: int
    encoding: object = "rate"
    shape: tuple | None = None

    def __post_init__(self):
        if isinstance(self.size, (tuple, list)):
            shape = tuple(self.size)
            if len(shape) != 3:
                raise ValueError(f"an Input shape must be (C, H, W), got {shape!r}")
            for d in shape:
                _check_size(d, "Input shape entry")
            object.__setattr__(self, "shape", tuple(int(d) for d in shape))
            object.__setattr__(self, "size", int(np.prod(shape)))
        elif self.shape is not None:
            shape = tuple(int(d) for d in self.shape)
            if len(shape) != 3 or int(np.prod(shape)) != self.size:
                raise ValueError(f"Input shape {self.shape!r} does not hold size {self.size}")
            object.__setattr__(self, "shape", shape)
        _check_size(self.size, "Input")


@dataclass(frozen=True)
class Dense:
    """A fully connected layer of ``size`` spiking neurons.

    ``neuron``: a :class:`~sdsnn_brian.neuron.NeuronModel` or a model name.
    ``bias``: add a trained constant input per neuron and step.
    ``init_gain``: weights start uniform in ``±gain*|theta - u_init|/sqrt(fan_in)``
    (gain 2 gives PyTorch's ``Linear`` default for the SD-SNN neuron).
    ``stochastic``: a stochastic readout (time decoding, :mod:`sdsnn_brian.vdib`): neuron ``i``
    spikes at step ``t`` when ``noise[t, i] < sigmoid(u_t)``, ``noise`` uniform in (0, 1) drawn in
    numpy and passed to every run (``Simulator.run(..., noise=...)``), so every device gives the
    same spikes.  The membrane is never reset (the model's threshold and reset are not used); it
    must be dimensionless (e.g. ``models.stochastic_readout``).
    """

    size: int
    neuron: object = "sdsnn_lif"
    bias: bool = False
    init_gain: float = 2.0
    stochastic: bool = False

    def __post_init__(self):
        _check_size(self.size, "Dense")
        from .models import get_neuron

        object.__setattr__(self, "neuron", get_neuron(self.neuron))
        if self.stochastic:
            from brian2 import have_same_dimensions

            if not have_same_dimensions(self.neuron.unit, 1.0):
                raise ValueError(f"a stochastic Dense layer needs a dimensionless membrane (sigmoid(u)); "
                                 f"model {self.neuron.name!r} has unit {self.neuron.unit!r}")


def _pair(v, what):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{what} must be an integer or a pair, got {v!r}")
        a, b = v
    else:
        a = b = v
    for x in (a, b):
        if not isinstance(x, (int, np.integer)) or isinstance(x, bool):
            raise ValueError(f"{what} must be an integer or a pair of integers, got {v!r}")
    return int(a), int(b)


@dataclass(frozen=True)
class Conv2d:
    """A 2-D convolution layer of spiking neurons: ``channels`` maps of ``H_out x W_out``.

    ``kernel``, ``stride``: an integer or an (h, w) pair; ``padding``: zeros around the
    input (integer or pair).  Weights are one tied kernel ``(C_out, C_in, kh, kw)``
    (cross-correlation, as ``torch.nn.Conv2d``); ``bias`` is one value per channel.
    ``input_shape`` is filled in by the :class:`Network` (the shape it sees after
    any pooling); ``size`` is the neuron count ``C_out*H_out*W_out``.
    """

    channels: int
    kernel: object = 3
    stride: object = 1
    padding: object = 0
    neuron: object = "sdsnn_lif"
    bias: bool = False
    init_gain: float = 2.0
    input_shape: tuple | None = None

    def __post_init__(self):
        _check_size(self.channels, "Conv2d channels")
        k, s, p = _pair(self.kernel, "kernel"), _pair(self.stride, "stride"), _pair(self.padding, "padding")
        if min(k) < 1 or min(s) < 1 or min(p) < 0:
            raise ValueError(f"Conv2d: kernel and stride must be >= 1 and padding >= 0, got {k}, {s}, {p}")
        object.__setattr__(self, "kernel", k)
        object.__setattr__(self, "stride", s)
        object.__setattr__(self, "padding", p)
        from .models import get_neuron

        object.__setattr__(self, "neuron", get_neuron(self.neuron))

    @property
    def output_shape(self) -> tuple:
        if self.input_shape is None:
            raise ValueError("this Conv2d is not part of a Network yet: its output shape is unknown")
        C, H, W = self.input_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        return (self.channels, (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1)

    @property
    def size(self) -> int:
        return int(np.prod(self.output_shape))


@dataclass(frozen=True)
class AvgPool2d:
    """Average pooling of the previous layer's spikes over ``kernel`` windows (stride = kernel
    unless given; rows/columns that do not fill a window are dropped, as ``F.avg_pool2d``).

    Not a layer of neurons: the average feeds the next trained layer in the same step, through a
    relay group in Brian2 (each spike adds ``1/(kh*kw)`` to its window's unit; see
    :mod:`sdsnn_brian.builder`) and :meth:`~sdsnn_brian.layers.Connection.pooled` in the numpy backward.
    """

    kernel: object = 2
    stride: object = None

    def __post_init__(self):
        k = _pair(self.kernel, "kernel")
        s = k if self.stride is None else _pair(self.stride, "stride")
        if min(k) < 1 or min(s) < 1:
            raise ValueError(f"AvgPool2d: kernel and stride must be >= 1, got {k}, {s}")
        object.__setattr__(self, "kernel", k)
        object.__setattr__(self, "stride", s)

    def output_shape(self, shape) -> tuple:
        C, H, W = shape
        (kh, kw), (sh, sw) = self.kernel, self.stride
        if H < kh or W < kw:
            raise ValueError(f"AvgPool2d{self.kernel} does not fit its input of shape {shape}")
        return (C, (H - kh) // sh + 1, (W - kw) // sw + 1)


def _from_json(v):
    """A kernel/stride/padding entry as written by :meth:`Network.describe` (a list) back to a pair."""
    return tuple(v) if isinstance(v, list) else v


def _check_size(size, what):
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size <= 0:
        raise ValueError(f"{what} size must be a positive integer, got {size!r}")


@dataclass
class Network:
    """A declared network: an input and a chain of trained layers.

    Parameters
    ----------
    *layers : Input, Dense, Conv2d, AvgPool2d, ...
        ``Input`` first; ``Conv2d``/``AvgPool2d`` need a spatial ``(C, H, W)`` input and
        come before any ``Dense``; the last layer is a trained layer (the readout).
    steps : int
        Time steps per sample (T).
    dt : Quantity
        Simulation time step (default 1 ms).
    """

    layers: tuple
    steps: int = 20
    dt: object = None
    name: str = "net"

    def __init__(self, *layers, steps: int = 20, dt=None, name: str = "net"):
        from brian2 import ms

        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        if len(layers) < 2 or not isinstance(layers[0], Input):
            raise ValueError("a Network needs an Input followed by at least one trained layer")
        if not isinstance(steps, (int, np.integer)) or steps <= 0:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        resolved = [layers[0]]
        shape = layers[0].shape  # (C, H, W) of what the next layer sees, None once flat
        pool = None
        for layer in layers[1:]:
            if isinstance(layer, AvgPool2d):
                if shape is None:
                    raise ValueError(f"{layer!r} needs a spatial (C, H, W) input: give the Input a shape "
                                     "and put pooling before any Dense layer")
                if pool is not None:
                    raise ValueError("two AvgPool2d in a row are not supported: use one with a larger kernel")
                pool = layer
                shape = layer.output_shape(shape)
                resolved.append(layer)
            elif isinstance(layer, Conv2d):
                if shape is None:
                    raise ValueError(f"{layer!r} needs a spatial (C, H, W) input: give the Input a shape "
                                     "(Input((C, H, W))) and put Conv2d layers before any Dense layer")
                layer = dataclasses.replace(layer, input_shape=tuple(shape))
                out = layer.output_shape
                if min(out[1:]) < 1:
                    raise ValueError(f"Conv2d kernel {layer.kernel} does not fit its input of shape {shape}")
                shape = out
                pool = None
                resolved.append(layer)
            elif isinstance(layer, Dense):
                shape = None
                pool = None
                resolved.append(layer)
            else:
                raise ValueError(f"unsupported layer {layer!r}: after the Input use Dense, Conv2d or AvgPool2d")
        if not isinstance(resolved[-1], (Dense, Conv2d)):
            raise ValueError("the last layer must be a trained layer (Dense or Conv2d), not a pooling")
        self.layers = tuple(resolved)
        self.steps = int(steps)
        self.dt = 1 * ms if dt is None else dt
        self.name = name
        from .layers import connections_of

        self.connections = connections_of(self)

    # -- shapes -------------------------------------------------------------
    @property
    def input(self) -> Input:
        return self.layers[0]

    @property
    def trained(self) -> tuple:
        """The trained layers (Dense, Conv2d), input and pooling excluded."""
        return tuple(l for l in self.layers[1:] if isinstance(l, (Dense, Conv2d)))

    @property
    def is_dense(self) -> bool:
        """Only Dense layers after a flat input (the original fully connected path)."""
        return all(isinstance(l, Dense) for l in self.layers[1:])

    @property
    def sizes(self) -> list[int]:
        """Neuron counts: the input, then every trained layer."""
        return [self.input.size] + [layer.size for layer in self.trained]

    @property
    def weight_shapes(self) -> list[tuple]:
        """Shape of each trained layer's parameter: (post, pre) for Dense, (C_out, C_in, kh, kw) for Conv2d.

        A Dense layer after an AvgPool2d has ``pre`` = the pooled, flattened size.
        """
        return [c.param_shape for c in self.connections]

    @property
    def stochastic(self) -> list[bool]:
        """Per trained layer: is it a stochastic readout (needs noise at every run)?"""
        return [bool(getattr(l, "stochastic", False)) for l in self.trained]

    @property
    def n_classes(self) -> int:
        return self.trained[-1].size

    def dynamics(self):
        """The per-step map (:class:`~sdsnn_brian.neuron.Dynamics`) of every trained layer.

        The list carries ``.connections`` (how each layer's input current is formed), so
        :func:`sdsnn_brian.gradient.backward` handles conv and pooled layers from it alone.
        """
        from .layers import LayerDynamics

        dyns = []
        for layer in self.trained:
            d = layer.neuron.dynamics(self.dt)
            if getattr(layer, "stochastic", False):  # never reset: subtraction of 0
                d = dataclasses.replace(d, reset="subtract", reset_amount=0.0, v_reset=0.0)
            dyns.append(d)
        return LayerDynamics(dyns, self.connections)

    # -- parameters ---------------------------------------------------------
    def init_params(self, rng: np.random.Generator):
        """Fresh weights and biases (lists, one entry per trained layer; bias None if off).

        Uniform in ``±gain*|theta - u_init|/sqrt(fan_in)``; ``fan_in`` is ``C_in*kh*kw``
        for a Conv2d (PyTorch's default for gain 2 and the SD-SNN neuron).
        """
        weights, biases = [], []
        for layer, dyn, conn in zip(self.trained, self.dynamics(), self.connections):
            bound = layer.init_gain * abs(dyn.theta - dyn.u_init) / np.sqrt(conn.fan_in)
            weights.append(rng.uniform(-bound, bound, size=conn.param_shape))
            biases.append(rng.uniform(-bound, bound, size=conn.bias_shape) if layer.bias else None)
        return weights, biases

    # -- identity -------------------------------------------------------------
    def describe(self) -> dict:
        """A JSON-able description (written into run directories)."""
        from .encoding import get_encoder

        enc = get_encoder(self.input.encoding)
        inp = {"size": self.input.size, "encoding": enc.config()}
        if self.input.shape is not None:
            inp["shape"] = list(self.input.shape)
        layers = []
        for l in self.layers[1:]:
            if isinstance(l, Dense):
                layers.append({"type": "dense", "size": l.size, "neuron": l.neuron.name, "bias": l.bias,
                               "init_gain": l.init_gain})
                if l.stochastic:
                    layers[-1]["stochastic"] = True
            elif isinstance(l, Conv2d):
                layers.append({"type": "conv2d", "channels": l.channels, "kernel": list(l.kernel),
                               "stride": list(l.stride), "padding": list(l.padding), "size": l.size,
                               "output_shape": list(l.output_shape), "neuron": l.neuron.name, "bias": l.bias,
                               "init_gain": l.init_gain})
            else:
                layers.append({"type": "avgpool2d", "kernel": list(l.kernel), "stride": list(l.stride)})
        return {"name": self.name, "steps": self.steps, "dt_seconds": float(self.dt), "input": inp,
                "layers": layers}

    @classmethod
    def from_description(cls, desc: dict) -> "Network":
        """The network a :meth:`describe` dictionary (``config.json``'s ``"network"``) declares.

        The inverse of :meth:`describe` for the named neuron models: Dense (with ``bias``,
        ``init_gain`` and ``stochastic``), Conv2d (channels, kernel, stride, padding, neuron, bias,
        init_gain) and AvgPool2d (kernel, stride) layers after an Input with its size, shape and
        encoding, so ``Network.from_description(net.describe())`` has ``net``'s
        :meth:`structure_key`.  Derived entries (a conv layer's ``size`` and ``output_shape``)
        are checked against the rebuilt layer.  A description that cannot be rebuilt (a missing
        entry, an unknown layer type or neuron model) raises ``ValueError`` saying why.
        """
        from brian2 import second

        from .encoding import get_encoder

        def rebuild(l):
            kind = l.get("type", "dense")
            if kind == "dense":
                kw = {"stochastic": True} if l.get("stochastic") else {}
                return Dense(int(l["size"]), neuron=l["neuron"], bias=bool(l.get("bias", False)),
                             init_gain=float(l.get("init_gain", 2.0)), **kw)
            if kind == "conv2d":
                return Conv2d(int(l["channels"]), kernel=_from_json(l.get("kernel", 3)),
                              stride=_from_json(l.get("stride", 1)), padding=_from_json(l.get("padding", 0)),
                              neuron=l["neuron"], bias=bool(l.get("bias", False)),
                              init_gain=float(l.get("init_gain", 2.0)))
            if kind == "avgpool2d":
                return AvgPool2d(kernel=_from_json(l.get("kernel", 2)), stride=_from_json(l.get("stride")))
            raise ValueError(f"unknown layer type {kind!r} (known: dense, conv2d, avgpool2d)")

        try:
            inp = desc["input"]
            shape = inp.get("shape")
            layers = [Input(int(inp["size"]), encoding=get_encoder(inp.get("encoding", "rate")),
                            shape=tuple(int(d) for d in shape) if shape else None)]
            layers += [rebuild(l) for l in desc["layers"]]
            net = cls(*layers, steps=int(desc["steps"]), dt=float(desc.get("dt_seconds", 1e-3)) * second,
                      name=desc.get("name", "net"))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"cannot rebuild a network from this description: {exc!r}") from None
        for l, d in zip(net.layers[1:], desc["layers"]):
            if isinstance(l, Conv2d) and "output_shape" in d and list(l.output_shape) != list(d["output_shape"]):
                raise ValueError(f"cannot rebuild a network from this description: a conv2d layer is described "
                                 f"with output shape {d['output_shape']} but rebuilds with {list(l.output_shape)}")
        return net

    def structure_key(self) -> str:
        """A hash of everything that changes the compiled simulation (not the weights)."""
        parts = [str(self.steps), repr(float(self.dt)), str(self.input.size)]
        if self.input.shape is not None:
            parts.append("shape" + repr(self.input.shape))
        for l in self.layers[1:]:
            if isinstance(l, Dense):
                parts += [str(l.size), str(l.bias), l.neuron.key()]
                if l.stochastic:
                    parts.append("stochastic")
            elif isinstance(l, Conv2d):
                parts += ["conv2d", str(l.channels), repr((l.kernel, l.stride, l.padding)), str(l.bias),
                          l.neuron.key()]
            else:
                parts += ["avgpool2d", repr((l.kernel, l.stride))]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
