"""Neuron models, each a Brian2 equation with its threshold and reset.

``sdsnn_lif``
    The SD-SNN reference neuron (Han et al.), dimensionless:
    ``u_t = 0.2 * u_{t-1} * (1 - s_{t-1}) + W x_t (+ b)``, spike when ``u_t > 0.5``, hard reset to 0.
    Written as a continuous leak ``du/dt = -u/tau_u`` integrated exactly over one step, with
    ``tau_u = -dt/ln(0.2)`` for the default ``dt = 1 ms`` so that one step multiplies ``u`` by 0.2.
``lif``
    A leaky integrate-and-fire neuron with physical units: ``dv/dt = (v_rest - v)/tau_m``,
    threshold ``v_th``, hard reset to ``v_reset``. Weights are in mV.
``lif_subtract``
    The same membrane with reset by subtraction (``v -= v_th - v_reset``).
"""
from brian2 import mV, ms
import dataclasses
import math

from sdsnn_brian.neuron import NeuronModel

__all__ = ["sdsnn_lif", "lif", "lif_subtract", "stochastic_readout", "get_neuron", "NEURONS"]

#: Decay per step of the SD-SNN neuron and the time constant giving it at dt = 1 ms.
SDSNN_DECAY = 0.2

sdsnn_lif = NeuronModel(
    name="sdsnn_lif",
    equations="du/dt = -u / tau_u : 1",
    membrane="u",
    threshold="u > u_th",
    reset="u = 0",
    namespace={"tau_u": -1 * ms / math.log(SDSNN_DECAY), "u_th": 0.5},
    unit=1.0,
    init="0",
)

lif = NeuronModel(
    name="lif",
    equations="dv/dt = (v_rest - v) / tau_m : volt",
    membrane="v",
    threshold="v > v_th",
    reset="v = v_reset",
    namespace={"tau_m": 10 * ms, "v_rest": -70 * mV, "v_th": -60 * mV, "v_reset": -70 * mV},
    unit=mV,
    init="v_rest",
)

lif_subtract = NeuronModel(
    name="lif_subtract",
    equations=lif.equations,
    membrane="v",
    threshold="v > v_th",
    reset="v -= v_th - v_reset",
    namespace=dict(lif.namespace),
    unit=mV,
    init="v_rest",
)

#: The stochastic readout of time decoding (:mod:`sdsnn_brian.vdib`), declared with
#: ``Dense(n, neuron=stochastic_readout, bias=True, stochastic=True)``: the SD-SNN neuron's leaky,
#: dimensionless membrane ``u_t = 0.2 u_{t-1} + W s_t + b``, never reset; the neuron spikes with
#: probability ``sigmoid(u_t)``, decided by seeded uniform noise (see ``Dense(stochastic=True)``).
#: Threshold and reset are placeholders that a stochastic layer does not use (``u_th`` sets the
#: weight scale of ``Network.init_params``); ``with_params(tau_u=...)`` changes the leak.
stochastic_readout = dataclasses.replace(sdsnn_lif.with_params(u_th=1.0), name="stochastic_readout", reset="u -= 0")

NEURONS = {m.name: m for m in (sdsnn_lif, lif, lif_subtract, stochastic_readout)}


def get_neuron(spec) -> NeuronModel:
    """A neuron model by name (``'sdsnn_lif'``, ``'lif'``, ``'lif_subtract'``) or the model itself."""
    if isinstance(spec, NeuronModel):
        return spec
    try:
        return NEURONS[spec]
    except (KeyError, TypeError):
        raise ValueError(f"unknown neuron model {spec!r}; known: {sorted(NEURONS)}") from None
