"""Synaptic operations and the energy estimate per sample over training, dense against pruned.

    python analysis/energy.py RUN_DIR [--out DIR] [--cache-dir DIR] [--samples 0 1 2]

Writes energy.png into DIR (default RUN_DIR/report); thin wrapper over
:mod:`sdsnn_brian.reporting.figures` (the same figures as ``sdsnn plot RUN_DIR --figure NAME``).
"""
import sys

from _common import run_family

FIGURES = ["energy"]

if __name__ == "__main__":
    sys.exit(run_family(FIGURES, __doc__.splitlines()[0]))
