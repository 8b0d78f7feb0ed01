"""How long one training epoch of the reference conv network takes, from a few minibatches.

    python benchmarks/event_epoch.py nmnist      [--batches 3] [--batch-size 100]
    python benchmarks/event_epoch.py dvsgesture  [--batches 2] [--batch-size 8] [--spatial-factor 1]
    python benchmarks/event_epoch.py mnist

Synthetic data of the real size: recordings with realistic event counts are written in the
published formats (N-MNIST: 34x34, ~4,000 events over 300 ms; DVS-Gesture: 128x128,
~350,000 events over 6 s) and read back through the real loaders, so the framing time
is measured too; the network is the reference 15C3-AP2-40C3-AP2-FC300-FC<classes>
(T = 20 for N-MNIST and MNIST, 64 for DVS-Gesture), trained for a few minibatches
(after the build, which is reported separately).  Epoch time = mean minibatch time x
minibatches per epoch (N-MNIST 60,000, DVS-Gesture 1,077, MNIST 6,309 samples),
plus the one-off framing of the whole training set.  Results go to
``benchmarks/event_epoch_<dataset>.json``.
"""
import argparse
import json
import os
import tempfile
import time

import numpy as np

from sdsnn_brian import MNIST, Adam, Direct, Trainer
from sdsnn_brian.data.events import (DVSGesture, FrameSettings, NMNIST, _blob_events, write_dvsgesture_npy,
                                     write_nmnist_bin)
from sdsnn_brian.models import sdsnn_conv

p = argparse.ArgumentParser()
p.add_argument("dataset", choices=["nmnist", "dvsgesture", "mnist"])
p.add_argument("--batches", type=int, default=3)
p.add_argument("--batch-size", type=int, default=None)
p.add_argument("--steps", type=int, default=None)
p.add_argument("--spatial-factor", type=float, default=1.0)
p.add_argument("--threads", type=int, default=0)
p.add_argument("--backward-dtype", default="float32", choices=["float32", "float64"])
args = p.parse_args()

rng = np.random.default_rng(0)
tmp = tempfile.mkdtemp(prefix="event_epoch_")
B = args.batch_size or {"nmnist": 100, "dvsgesture": 8, "mnist": 100}[args.dataset]
n_needed = B * args.batches
if args.dataset == "nmnist":
    T, n_epoch, classes = args.steps or 20, 60000, 10
    for i in range(n_needed):
        c = i % 10
        ang = 2 * np.pi * c / 10
        x, y, t, pol = _blob_events(rng, (17 + 8 * np.cos(ang), 17 + 8 * np.sin(ang)), (34, 34), 4000, 300e3, (3, 3))
        write_nmnist_bin(f"{tmp}/NMNIST/Train/{c}/{i:05d}.bin", x, y, np.rint(t).astype(np.int64), pol)
    ds = NMNIST(tmp, frames=FrameSettings(n_time_bins=T, spatial_factor=args.spatial_factor), cache_dir=tmp)
elif args.dataset == "dvsgesture":
    T, n_epoch, classes = args.steps or 64, 1077, 11
    for i in range(n_needed):
        c = i % 11
        ang = 2 * np.pi * c / 11
        x, y, t, pol = _blob_events(rng, (64 + 32 * np.cos(ang), 64 + 32 * np.sin(ang)), (128, 128), 350000,
                                    6000.0, (30, 30))
        write_dvsgesture_npy(f"{tmp}/DVSGesture/ibmGestureTrain/user{1 + i // 11:02d}_led/{c}.npy", x, y, pol,
                             np.rint(t).astype(np.int64))
    ds = DVSGesture(tmp, frames=FrameSettings(n_time_bins=T, spatial_factor=args.spatial_factor), cache_dir=tmp)
else:
    T, n_epoch, classes = args.steps or 20, 6309, 10
    ds = None

if ds is not None:
    t0 = time.perf_counter()
    images, labels = np.asarray(ds.images), ds.labels
    frame_s = (time.perf_counter() - t0) / len(ds)
    shape = ds.frame_shape
    net = sdsnn_conv(shape, classes, steps=T, encoding=Direct(time_first=False))
    density = float(images.mean())
else:
    m = MNIST(train=True, limit=n_needed)
    images, labels, frame_s, shape = m.images, m.labels, 0.0, (1, 28, 28)
    net = sdsnn_conv(shape, classes, steps=T)
    density = float(images.mean())

tr = Trainer(net, optimizer=Adam(1e-3), seed=0, threads=args.threads, backward_dtype=args.backward_dtype)
t0 = time.perf_counter()
tr.simulator(B).build()
build_s = time.perf_counter() - t0
times, splits = [], []
for k in range(args.batches):
    sl = slice(k * B, (k + 1) * B)
    t0 = time.perf_counter()
    m = tr.train_step(images[sl], labels[sl], np.random.default_rng([0, k]), B)
    times.append(time.perf_counter() - t0)
    splits.append({key: v for key, v in m.items() if key.startswith("t_")})
batch_s = float(np.mean(times[1:] if len(times) > 1 else times))
n_batches = -(-n_epoch // B)
out = {
    "dataset": args.dataset, "network": net.name, "input_shape": list(shape), "steps": T, "batch_size": B,
    "backward_dtype": args.backward_dtype,
    "neurons": int(sum(net.sizes[1:])), "brian2_synapses": [c.n_synapses() for c in net.connections],
    "input_density": density, "build_seconds": build_s, "minibatch_seconds": times,
    "minibatch_split": splits, "framing_seconds_per_recording": frame_s,
    "epoch_samples": n_epoch, "epoch_training_seconds": batch_s * n_batches,
    "framing_seconds_whole_train_set": frame_s * n_epoch,
    "cpu": f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end",
}
print(json.dumps(out, indent=1))
with open(os.path.join(os.path.dirname(__file__), f"event_epoch_{args.dataset}.json"), "w") as fh:
    json.dump(out, fh, indent=1)
