"""
SD-SNN on MNIST: structural development against a dense baseline
================================================================

Han et al. (2022) let a spiking network's structure develop while it learns:
each synapse keeps a dendritic-spine range that its weight is clipped into,
the hidden neurons with the narrowest ranges are pruned at a rate that grows
with how many neurons survive (the neurotrophic rule), and removed synapses
whose weight keeps rising above a climbing percentile grow back.  As the
percentile reaches 99 the structure stops changing.

This protocol trains the same 784-400-10 network of SD-SNN neurons (T = 20,
rate-coded input, rectangular surrogate, rate MSE, Adam 1e-3 with a cosine decay over
the run, batch 100) three
times with the same seed and budget: dense, SD-SNN in the reference gradient
mode (weights train densely between structural steps, the mask is applied at
each step: the published code) and SD-SNN in strict mode (removed synapses
transmit nothing and receive no update).  A structural step runs every
8 structural steps per epoch (``--structural-steps-per-epoch``; a step every 8 of the
64 minibatches of the shared data, and as many per epoch on data of any other size), with the
reference constants (T_s = 18, pruning and regeneration from step 37).  A run too short to prune
is refused before it starts.
Regeneration fades by step 76 (its percentile reaches 99); from step 90 the
masks are frozen (``--freeze-after``) -- the reference keeps pruning a unit every
few dozen steps at its late rate forever -- and the rest of the budget fine-tunes
a fixed structure.  The hidden layer starts pruning at rate 0.20 (``--rho0``):
the reference's 0.35 belongs to its FC300 layer, and the neurotrophic increment
(N - P)/N_out grows with the layer's size N, so with 400 units 0.35 ends with
about 70 % of them pruned where 0.20 ends near 63 %.

Data: 6,309 shared training images, all 10,000 test images.  The table lands
in ``RUN_DIR/comparison.md`` with the exact protocol under it; each run has its
own directory (metrics, checkpoints, structure log, synapse events); the report
with all figures is ``RUN_DIR/report/index.html``.

    python protocols/sdsnn_mnist.py [--epochs 25] [--run-dir runs/sdsnn_mnist]
"""
import argparse
import sys

from sdsnn_brian import MNIST
from sdsnn_brian.compare import add_run_dir_options, add_structure_options, compare_structures
from sdsnn_brian.models import mnist_fc
from sdsnn_brian.reporting import write_report
from sdsnn_brian.structure import SDSNNConfig

parser = argparse.ArgumentParser(description="SD-SNN against a dense baseline on MNIST")
parser.add_argument("--epochs", type=int, default=25)
parser.add_argument("--hidden", type=int, default=400)
parser.add_argument("--rho0", type=float, default=0.20,
                    help="initial pruning rate of the hidden layer (reference: 0.35 for its FC300 layer)")
parser.add_argument("--freeze-after", type=int, default=90,
                    help="structural step from which masks stop changing (-1: never, the reference)")
parser.add_argument("--modes", nargs="+", default=["reference", "strict"], choices=["reference", "strict"])
parser.add_argument("--eval-every", type=int, default=5, help="evaluate the test set every N epochs")
parser.add_argument("--mnist-dir", default=None)
parser.add_argument("--train-limit", type=int, default=None)
parser.add_argument("--test-limit", type=int, default=None)
parser.add_argument("--seed", type=int, default=0)
add_structure_options(parser)  # --structure-every, --structural-steps-per-epoch, --compress, --allow-short-structure
add_run_dir_options(parser, "runs/sdsnn_mnist")  # --run-dir, --resume, --overwrite
args = parser.parse_args()
protocol = "python protocols/sdsnn_mnist.py " + " ".join(sys.argv[1:])

train = MNIST(args.mnist_dir, train=True, limit=args.train_limit)
test = MNIST(args.mnist_dir, train=False, limit=args.test_limit)
print(f"{len(train)} training images, {len(test)} test images")


def config(mode, net):
    return SDSNNConfig(mode=mode, n_out=net.n_classes, rho0_fc=args.rho0,
                       freeze_after=None if args.freeze_after < 0 else args.freeze_after)


# The same network, seed and budget for every variant; only the structure differs.
compare_structures(lambda: mnist_fc(hidden=(args.hidden,), steps=20), config, train, test,
                   variants=["dense"] + [f"sdsnn-{mode}" for mode in args.modes], run_dir=args.run_dir,
                   protocol=protocol, epochs=args.epochs, batch_size=100, structure_every=args.structure_every,
                   compress=args.compress, steps_per_epoch=args.structural_steps_per_epoch,
                   allow_short_structure=args.allow_short_structure, seed=args.seed, eval_every=args.eval_every,
                   resume=args.resume, overwrite=args.overwrite)

# The table is written next to the runs with the protocol that produced it; then the report:
# every figure (rasters, structure over time, spine ranges, synapse lifetimes, connectivity,
# synaptic operations and energy) on one page, RUN_DIR/report/index.html.
print("report:", write_report(args.run_dir))
