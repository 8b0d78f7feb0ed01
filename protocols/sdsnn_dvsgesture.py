"""
SD-SNN on DVS-Gesture: eleven hand and arm gestures seen by an event camera
==========================================================================

DVS-Gesture (Amir et al. 2017): 29 people performing 11 gestures under three
lighting conditions, recorded by a 128x128 DVS; 1,077 training and 264 test
recordings of about 6 s each.  Each recording is cut into T time bins with
tonic (by default T = 64, the SD-SNN setting, with events counted per bin and
clipped to one spike per pixel, polarity and step); the frames 2x128x128 are
fed directly (no encoding).

The network is the SD-SNN reference 15C3-AP2-40C3-AP2-FC300-FC11 of SD-SNN
neurons, compiled to C++ by Brian2 (tied conv weights written per minibatch,
average pooling as relay groups; see protocols/sdsnn_nmnist.py).  Training:
rectangular surrogate, rate MSE, Adam 1e-3 with a cosine decay; dense against
SD-SNN with the DVS-Gesture constants (initial FC pruning rate 60 %, FC
regeneration percentile p0 = 55).  At full resolution one epoch is long on a CPU
(see the note on epoch times); ``--spatial-factor 0.25`` (32x32) is the usual
shortcut, and is reported as such.

    python protocols/sdsnn_dvsgesture.py --data-dir DIR    # DIR/DVSGesture/ibmGestureTrain/user01_.../<label>.npy
    python protocols/sdsnn_dvsgesture.py --smoke           # synthetic data in the same layout, seconds
"""
import sys

from sdsnn_brian import Direct
from sdsnn_brian.compare import compare_structures, event_protocol_parser
from sdsnn_brian.data.events import DatasetNotFound, DVSGesture, FrameSettings, write_synthetic_dvsgesture
from sdsnn_brian.models import sdsnn_conv
from sdsnn_brian.structure import SDSNNConfig

parser = event_protocol_parser("DVS-Gesture", data_help="folder holding DVSGesture/ibmGestureTrain and ibmGestureTest", steps=64,
                               run_dir="runs/sdsnn_dvsgesture", steps_per_epoch=4)
args = parser.parse_args()
protocol = "python protocols/sdsnn_dvsgesture.py " + " ".join(sys.argv[1:])

# Real runs: the reference settings. Smoke runs: everything small.
smoke = args.smoke
epochs = args.epochs or (2 if smoke else 30)
batch = args.batch_size or (11 if smoke else 16)
steps = 8 if smoke and args.steps == 64 else args.steps
factor = args.spatial_factor or (0.125 if smoke else 1.0)
every = args.structure_every or (1 if smoke else None)  # None: 4 structural steps per epoch, any data size
compress = args.compress or (18.0 if smoke else None)  # None: 1 unless the run is too short
data_dir = args.data_dir
if smoke and data_dir is None:
    data_dir = f"{args.run_dir}/synthetic-data"  # the published layout, tiny
    write_synthetic_dvsgesture(data_dir, users_train=(1, 2), users_test=(24,))
    print(f"synthetic DVS-Gesture written to {data_dir}")

# Recordings -> binary frames [T, 2, H, W], computed once and cached on disk.
frames = FrameSettings(n_time_bins=steps, denoise=args.denoise, spatial_factor=factor)
try:
    train, test = DVSGesture.splits(data_dir, frames, args.train_limit, args.test_limit)
except DatasetNotFound as exc:  # says where to get the data and how to lay it out
    sys.exit(str(exc))


def make_network():
    if smoke:
        return sdsnn_conv(train.frame_shape, 11, channels=(4, 8), hidden=(16,), steps=steps,
                          encoding=Direct(time_first=False))
    return sdsnn_conv(train.frame_shape, 11, steps=steps, encoding=Direct(time_first=False))


def config(mode, net):
    return SDSNNConfig(mode=mode, n_out=11, rho0_fc=0.60, p0_fc=55.0,
                       rho0_conv=0.25 if smoke else 0.05)  # smoke: prune a filter


# The same network, seed and budget for every variant; only the structure differs.
compare_structures(make_network, config, train, test, variants=["dense"] + [f"sdsnn-{m}" for m in args.modes],
                   run_dir=args.run_dir, protocol=protocol, epochs=epochs, batch_size=batch,
                   structure_every=every, compress=compress, steps_per_epoch=args.structural_steps_per_epoch,
                   allow_short_structure=args.allow_short_structure, seed=args.seed, resume=args.resume,
                   overwrite=args.overwrite, log_every=0 if smoke else 20, backward_dtype=args.backward_dtype)
