"""
SD-SNN on N-MNIST: the reference convolutional network on event-camera digits
============================================================================

N-MNIST (Orchard et al. 2015) is MNIST seen by an event camera moved in three
saccades: each digit is about 300 ms of ON/OFF events on a 34x34 sensor.  Every
recording is cut into T = 20 time bins with tonic (optionally denoised and
downsampled first); a pixel that saw at least one event of a polarity in a bin
spikes in that step, so the input is 2x34x34 spike frames fed directly (no
encoding).

The network is the SD-SNN reference 15C3-AP2-40C3-AP2-FC300-FC10 of SD-SNN
neurons (u_t = 0.2 u_{t-1} (1 - s_{t-1}) + W x_t, threshold 0.5, hard reset),
compiled to C++ by Brian2: each convolution is one Synapses object with one
synapse per (input, output, kernel entry), its values written from the tied
kernel before every minibatch; each average pooling is a relay group passing the
window's mean spike to the next layer in the same step.  Training: rectangular
surrogate, rate MSE, Adam 1e-3 with a cosine decay, batch 100.  We train it twice
with the same seed: dense, and with SD-SNN structural development (conv2 filters
and FC300 neurons pruned by their spine ranges, 3x3 kernels regrown by their
signed sum, the neurotrophic rates; N-MNIST's initial FC rate 45 %).

    python protocols/sdsnn_nmnist.py --data-dir DIR      # DIR/NMNIST/Train/<digit>/*.bin ...
    python protocols/sdsnn_nmnist.py --smoke             # synthetic data in the same layout, seconds

``--smoke`` writes a tiny synthetic N-MNIST in the published layout, reads it back
through the same loader at half resolution, and runs a small network on a 18x
compressed structural timeline: it checks the whole path, not the method.
"""
import sys

from sdsnn_brian import Direct
from sdsnn_brian.compare import compare_structures, event_protocol_parser
from sdsnn_brian.data.events import DatasetNotFound, NMNIST, FrameSettings, write_synthetic_nmnist
from sdsnn_brian.models import sdsnn_conv
from sdsnn_brian.structure import SDSNNConfig

parser = event_protocol_parser("N-MNIST", data_help="folder holding NMNIST/Train and NMNIST/Test", steps=20,
                               run_dir="runs/sdsnn_nmnist", steps_per_epoch=10)
args = parser.parse_args()
protocol = "python protocols/sdsnn_nmnist.py " + " ".join(sys.argv[1:])

# Real runs: the reference settings. Smoke runs: everything small.
smoke = args.smoke
epochs = args.epochs or (2 if smoke else 30)
batch = args.batch_size or (10 if smoke else 100)
steps = 8 if smoke and args.steps == 20 else args.steps
factor = args.spatial_factor or (0.5 if smoke else 1.0)
every = args.structure_every or (1 if smoke else None)  # None: 10 structural steps per epoch, any data size
compress = args.compress or (18.0 if smoke else None)  # None: 1 unless the run is too short
data_dir = args.data_dir
if smoke and data_dir is None:
    data_dir = f"{args.run_dir}/synthetic-data"  # the published layout, tiny
    write_synthetic_nmnist(data_dir, n_train_per_class=3, n_test_per_class=1)
    print(f"synthetic N-MNIST written to {data_dir}")

# Recordings -> binary frames [T, 2, H, W], computed once and cached on disk.
frames = FrameSettings(n_time_bins=steps, denoise=args.denoise, spatial_factor=factor)
try:
    train, test = NMNIST.splits(data_dir, frames, args.train_limit, args.test_limit)
except DatasetNotFound as exc:  # says where to get the data and how to lay it out
    sys.exit(str(exc))


def make_network():
    if smoke:
        return sdsnn_conv(train.frame_shape, 10, channels=(4, 8), hidden=(16,), steps=steps,
                          encoding=Direct(time_first=False))
    return sdsnn_conv(train.frame_shape, 10, steps=steps, encoding=Direct(time_first=False))


def config(mode, net):
    return SDSNNConfig(mode=mode, n_out=10, rho0_fc=0.45,
                       rho0_conv=0.25 if smoke else 0.05)  # smoke: prune a filter


# The same network, seed and budget for every variant; only the structure differs.
compare_structures(make_network, config, train, test, variants=["dense"] + [f"sdsnn-{m}" for m in args.modes],
                   run_dir=args.run_dir, protocol=protocol, epochs=epochs, batch_size=batch,
                   structure_every=every, compress=compress, steps_per_epoch=args.structural_steps_per_epoch,
                   allow_short_structure=args.allow_short_structure, seed=args.seed, resume=args.resume,
                   overwrite=args.overwrite, log_every=0 if smoke else 20, backward_dtype=args.backward_dtype)
