"""
SD-SNN on MNIST with the reference convolutional network
========================================================

The SD-SNN paper's MNIST network is convolutional: 15C3-AP2-40C3-AP2-FC300-FC10
of SD-SNN neurons (u_t = 0.2 u_{t-1} (1 - s_{t-1}) + W x_t + b, threshold 0.5,
hard reset), T = 20 steps of rate-coded pixels.  Brian2 runs it as C++: each
convolution is one Synapses object with one synapse per (input, output, kernel
entry) whose values the trainer writes from the tied 3x3 kernels before every
minibatch, and each 2x2 average pooling is a relay group that hands the window's
mean spike to the next layer within the same step.  The gradient (BPTT with the
rectangular surrogate, rate MSE) is computed in numpy from the recorded membranes
and spikes, per kernel entry for the convolutions.

Two runs with the same seed and budget (Adam 1e-3 with a cosine decay, batch
100): dense, and SD-SNN with the reference constants (conv2 filters and FC300
neurons pruned by their spine ranges, 3x3 kernels regrown by their signed sum,
the neurotrophic rates), a structural step every ``--structure-every``
minibatches.  The backward pass runs in float32 (``--backward-dtype``): half the
time of float64, gradients equal to about 1e-6 relative.  Data: the 6,309 shared training images, all 10,000 test images.

    python protocols/sdsnn_mnist_conv.py [--epochs 15] [--variants dense sdsnn-reference]
"""
import argparse
import sys

from sdsnn_brian import MNIST
from sdsnn_brian.compare import add_run_dir_options, add_structure_options, compare_structures
from sdsnn_brian.models import sdsnn_conv
from sdsnn_brian.structure import SDSNNConfig

parser = argparse.ArgumentParser(description="SD-SNN against a dense baseline, reference conv net, MNIST")
parser.add_argument("--epochs", type=int, default=15)
parser.add_argument("--variants", nargs="+", default=["dense", "sdsnn-reference"],
                    choices=["dense", "sdsnn-reference", "sdsnn-strict"])
add_structure_options(parser)  # --structure-every, --structural-steps-per-epoch, --compress, ...
parser.add_argument("--eval-every", type=int, default=3)
parser.add_argument("--train-limit", type=int, default=None)
parser.add_argument("--test-limit", type=int, default=None)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--backward-dtype", default="float32", choices=["float32", "float64"],
                    help="precision of the numpy backward pass (float32: half the time, ~1e-6 relative)")
add_run_dir_options(parser, "runs/sdsnn_mnist_conv")  # --run-dir, --resume, --overwrite
args = parser.parse_args()
protocol = "python protocols/sdsnn_mnist_conv.py " + " ".join(sys.argv[1:])

train = MNIST(train=True, limit=args.train_limit)
test = MNIST(train=False, limit=args.test_limit)
print(f"{len(train)} training images, {len(test)} test images")



def config(mode, net):
    return SDSNNConfig(mode=mode, n_out=10)


# The same network, seed and budget for every variant; only the structure differs.
compare_structures(lambda: sdsnn_conv((1, 28, 28), 10, steps=20), config, train, test, variants=args.variants,
                   run_dir=args.run_dir, protocol=protocol, epochs=args.epochs, batch_size=100,
                   structure_every=args.structure_every, compress=args.compress,
                   steps_per_epoch=args.structural_steps_per_epoch, allow_short_structure=args.allow_short_structure,
                   seed=args.seed, eval_every=args.eval_every, resume=args.resume, overwrite=args.overwrite, comparison_dir=f"{args.run_dir}/{'-'.join(args.variants)}",
                   backward_dtype=args.backward_dtype)
