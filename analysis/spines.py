"""Spine range evolution (r+/r- quantiles per layer) and the final weights against their ranges.

    python analysis/spines.py RUN_DIR [--out DIR] [--cache-dir DIR] [--samples 0 1 2]

Writes spines.png, weights-ranges.png into DIR (default RUN_DIR/report); thin wrapper over
:mod:`sdsnn_brian.reporting.figures` (the same figures as ``sdsnn plot RUN_DIR --figure NAME``).
"""
import sys

from _common import run_family

FIGURES = ["spines", "weights-ranges"]

if __name__ == "__main__":
    sys.exit(run_family(FIGURES, __doc__.splitlines()[0]))
