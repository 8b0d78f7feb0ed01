"""Neuron models (Brian2 equations) and named network architectures.

Installed as ``sdsnn_brian.models``; the source lives in the top-level ``models/`` folder.
"""
from .neurons import NEURONS, get_neuron, lif, lif_subtract, sdsnn_lif, stochastic_readout

__all__ = ["sdsnn_lif", "lif", "lif_subtract", "stochastic_readout", "get_neuron", "NEURONS"]
from .architectures import ARCHITECTURES, get_architecture, mnist_fc, sdsnn_conv

__all__ += ["mnist_fc", "sdsnn_conv", "ARCHITECTURES", "get_architecture"]
