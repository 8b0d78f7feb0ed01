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
import math

from sdsnn_brian.neuron import NeuronModel

__all__ = ["sdsnn_lif", "lif", "lif_subtract", "get_neuron", "NEURONS"]

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

NEURONS = {m.name: m for m in (sdsnn_lif, lif, lif_subtract)}


def get_neuron(spec) -> NeuronModel:
    """A neuron model by name (``'sdsnn_lif'``, ``'lif'``, ``'lif_subtract'``) or the model itself."""
    if isinstance(spec, NeuronModel):
        return spec
    try:
        return NEURONS[spec]
    except (KeyError, TypeError):
        raise ValueError(f"unknown neuron model {spec!r}; known: {sorted(NEURONS)}") from None
