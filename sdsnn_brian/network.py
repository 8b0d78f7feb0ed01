"""Network declaration: what the network is, with no idea of how it runs.

>>> from sdsnn_brian import Network, Input, Dense, models
>>> net = Network(Input(784, encoding='rate'),
...               Dense(400, neuron=models.sdsnn_lif),
...               Dense(10, neuron=models.sdsnn_lif), steps=20)

A :class:`Network` is a chain: one :class:`Input` then trained :class:`Dense`
layers, the last of which is the readout.  The back end (``sdsnn_brian.device``)
turns the declaration into Brian2 objects; the trainer holds the parameters.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from .neuron import NeuronModel

__all__ = ["Network", "Input", "Dense"]


@dataclass(frozen=True)
class Input:
    """The input layer: ``size`` spike sources fed by an encoder.

    ``encoding`` is an encoder name (``'rate'``, ``'latency'``, ``'direct'``) or
    an encoder object from :mod:`sdsnn_brian.encoding`.
    """

    size: int
    encoding: object = "rate"

    def __post_init__(self):
        _check_size(self.size, "Input")


@dataclass(frozen=True)
class Dense:
    """A fully connected layer of ``size`` spiking neurons.

    ``neuron``: a :class:`~sdsnn_brian.neuron.NeuronModel` or a model name.
    ``bias``: add a trained constant input per neuron and step.
    ``init_gain``: weights start uniform in ``±gain*|theta - u_init|/sqrt(fan_in)``
    (gain 2 gives PyTorch's ``Linear`` default for the SD-SNN neuron).
    """

    size: int
    neuron: object = "sdsnn_lif"
    bias: bool = False
    init_gain: float = 2.0

    def __post_init__(self):
        _check_size(self.size, "Dense")
        from .models import get_neuron

        object.__setattr__(self, "neuron", get_neuron(self.neuron))


def _check_size(size, what):
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size <= 0:
        raise ValueError(f"{what} size must be a positive integer, got {size!r}")


@dataclass
class Network:
    """A declared network: an input and a chain of trained layers.

    Parameters
    ----------
    *layers : Input, Dense, ...
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
        for layer in layers[1:]:
            if not isinstance(layer, Dense):
                raise ValueError(f"unsupported layer {layer!r}: after the Input only Dense layers are supported")
        if not isinstance(steps, (int, np.integer)) or steps <= 0:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        self.layers = tuple(layers)
        self.steps = int(steps)
        self.dt = 1 * ms if dt is None else dt
        self.name = name

    # -- shapes -------------------------------------------------------------
    @property
    def input(self) -> Input:
        return self.layers[0]

    @property
    def trained(self) -> tuple:
        """The trained layers, input excluded."""
        return self.layers[1:]

    @property
    def sizes(self) -> list[int]:
        return [layer.size for layer in self.layers]

    @property
    def weight_shapes(self) -> list[tuple[int, int]]:
        """Shape (post, pre) of each trained layer's weight matrix."""
        s = self.sizes
        return [(s[k + 1], s[k]) for k in range(len(s) - 1)]

    @property
    def n_classes(self) -> int:
        return self.layers[-1].size

    def dynamics(self):
        """The per-step map (:class:`~sdsnn_brian.neuron.Dynamics`) of every trained layer."""
        return [layer.neuron.dynamics(self.dt) for layer in self.trained]

    # -- parameters ---------------------------------------------------------
    def init_params(self, rng: np.random.Generator):
        """Fresh weights and biases (lists, one entry per trained layer; bias None if off)."""
        weights, biases = [], []
        for layer, dyn, (n_post, n_pre) in zip(self.trained, self.dynamics(), self.weight_shapes):
            bound = layer.init_gain * abs(dyn.theta - dyn.u_init) / np.sqrt(n_pre)
            weights.append(rng.uniform(-bound, bound, size=(n_post, n_pre)))
            biases.append(rng.uniform(-bound, bound, size=n_post) if layer.bias else None)
        return weights, biases

    # -- identity -------------------------------------------------------------
    def describe(self) -> dict:
        """A JSON-able description (written into run directories)."""
        from .encoding import get_encoder

        enc = get_encoder(self.input.encoding)
        return {
            "name": self.name,
            "steps": self.steps,
            "dt_seconds": float(self.dt),
            "input": {"size": self.input.size, "encoding": enc.config()},
            "layers": [
                {"type": "dense", "size": l.size, "neuron": l.neuron.name, "bias": l.bias,
                 "init_gain": l.init_gain}
                for l in self.trained
            ],
        }

    def structure_key(self) -> str:
        """A hash of everything that changes the compiled simulation (not the weights)."""
        parts = [str(self.steps), repr(float(self.dt)), str(self.input.size)]
        for l in self.trained:
            parts += [str(l.size), str(l.bias), l.neuron.key()]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
