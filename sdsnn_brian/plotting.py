"""Figures of spiking networks and their structural development (old import path): the drawing
functions live in :mod:`sdsnn_brian.reporting.plots` now."""
from .reporting.plots import *  # noqa: F401,F403
from .reporting.plots import ENERGY_CAPTION, __all__  # noqa: F401
