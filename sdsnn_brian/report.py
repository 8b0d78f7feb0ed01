"""Run summaries and comparison tables (old import path): the code lives in
:mod:`sdsnn_brian.reporting.comparison` now."""
from .reporting.comparison import (__all__, comparison_markdown, structure_stable_since,  # noqa: F401
                                   summarize, write_comparison)
