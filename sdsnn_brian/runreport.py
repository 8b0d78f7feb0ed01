"""Run reports (old import path): the code lives in :mod:`sdsnn_brian.reporting` now.

Loading a run directory: :mod:`sdsnn_brian.reporting.run`; simulating its final network:
:mod:`sdsnn_brian.reporting.simulation`; the figure registry: :mod:`sdsnn_brian.reporting.figures`;
the Markdown/HTML page: :mod:`sdsnn_brian.reporting.page`.
"""
from .reporting.figures import (COMPARISON_FIGURE, DPI, FIGURE_NAMES, FIGURES, RASTER_MAX_NEURONS,  # noqa: F401
                                FigureSpec, applicable, make_figure, render_figure)
from .reporting.page import Report, progress_note, write_report  # noqa: F401
from .reporting.run import Run, RunDirectoryError, comparison_runs, is_comparison_dir, load_run  # noqa: F401
from .reporting.simulation import Simulation  # noqa: F401

__all__ = ["RunDirectoryError", "Run", "Simulation", "FigureSpec", "FIGURES", "load_run", "is_comparison_dir",
           "comparison_runs", "applicable", "make_figure", "render_figure", "write_report", "Report", "DPI",
           "progress_note"]
