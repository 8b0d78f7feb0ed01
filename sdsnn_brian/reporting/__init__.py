"""Reporting: run directories loaded, their figures, the report page, comparison tables.

One idea per module:

- :mod:`~sdsnn_brian.reporting.run`: a run directory loaded (:class:`Run`, :func:`load_run`, comparison
  directories, checkpoint position, runs in progress);
- :mod:`~sdsnn_brian.reporting.simulation`: the final network simulated on test images (``Simulator`` +
  encoder + the run's weights; no ``Trainer``);
- :mod:`~sdsnn_brian.reporting.plots`: drawing functions on matplotlib Axes (rasters, membranes, structure,
  energy, ...);
- :mod:`~sdsnn_brian.reporting.figures`: the registry of named figures (:data:`FIGURES`),
  :func:`make_figure`, :func:`render_figure`;
- :mod:`~sdsnn_brian.reporting.page`: the Markdown/HTML report (:func:`write_report`, :func:`progress_note`);
- :mod:`~sdsnn_brian.reporting.comparison`: run summaries and comparison tables (:func:`summarize`,
  :func:`write_comparison`).

SOP and energy estimates stay in :mod:`sdsnn_brian.energy`, synapse lifetimes in
:mod:`sdsnn_brian.lifetimes`.  The old modules ``sdsnn_brian.runreport``, ``sdsnn_brian.report`` and
``sdsnn_brian.plotting`` re-export these names.
"""
from .comparison import comparison_markdown, structure_stable_since, summarize, write_comparison
from .figures import (COMPARISON_FIGURE, DPI, FIGURE_NAMES, FIGURES, RASTER_MAX_NEURONS, FigureSpec, applicable,
                      make_figure, render_figure)
from .page import Report, progress_note, write_report
from .run import Run, RunDirectoryError, comparison_runs, is_comparison_dir, load_any, load_run
from .simulation import Simulation, simulate

__all__ = ["summarize", "structure_stable_since", "write_comparison", "comparison_markdown",
           "FigureSpec", "FIGURES", "COMPARISON_FIGURE", "FIGURE_NAMES", "applicable", "make_figure", "render_figure",
           "DPI", "RASTER_MAX_NEURONS", "Report", "write_report", "progress_note", "RunDirectoryError", "Run",
           "load_run", "load_any", "is_comparison_dir", "comparison_runs", "Simulation", "simulate"]
