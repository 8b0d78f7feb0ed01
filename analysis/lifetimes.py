"""Synapse lifetimes: Kaplan-Meier survival (censored lives kept), lifetime histogram, regrowth.

    python analysis/lifetimes.py RUN_DIR [--out DIR] [--cache-dir DIR] [--samples 0 1 2]

Writes lifetimes.png into DIR (default RUN_DIR/report); thin wrapper over
:mod:`sdsnn_brian.reporting.figures` (the same figures as ``sdsnn plot RUN_DIR --figure NAME``).
"""
import sys

from _common import run_family

FIGURES = ["lifetimes"]

if __name__ == "__main__":
    sys.exit(run_family(FIGURES, __doc__.splitlines()[0]))
