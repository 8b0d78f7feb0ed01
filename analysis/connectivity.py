"""Connectivity at the final checkpoint: masks, in/out degree distributions, input fan-out.

    python analysis/connectivity.py RUN_DIR [--out DIR] [--cache-dir DIR] [--samples 0 1 2]

Writes connectivity.png into DIR (default RUN_DIR/report); thin wrapper over
:mod:`sdsnn_brian.reporting.figures` (the same figures as ``sdsnn plot RUN_DIR --figure NAME``).
"""
import sys

from _common import run_family

FIGURES = ["connectivity"]

if __name__ == "__main__":
    sys.exit(run_family(FIGURES, __doc__.splitlines()[0]))
