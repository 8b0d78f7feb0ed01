"""Structure over time (synapses, pruned neurons, rho, regeneration percentile) next to accuracy.

    python analysis/structure.py RUN_DIR [--out DIR] [--cache-dir DIR] [--samples 0 1 2]

Writes structure.png, training.png into DIR (default RUN_DIR/report); thin wrapper over
:mod:`sdsnn_brian.reporting.figures` (the same figures as ``sdsnn plot RUN_DIR --figure NAME``).
"""
import sys

from _common import run_family

FIGURES = ["structure", "training"]

if __name__ == "__main__":
    sys.exit(run_family(FIGURES, __doc__.splitlines()[0]))
