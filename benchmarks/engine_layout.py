"""How should a minibatch run through Brian2? Samples in sequence vs replicated groups.

Both layouts simulate the same 784-400-10 SD-SNN network on the same rate-coded
MNIST minibatch (T = 20) in one ``device.run`` of a C++ standalone build:

* sequence: one copy of the network, B*T steps, membranes reset every T steps
  (what ``sdsnn_brian`` uses);
* replicated: B copies side by side (block-diagonal synapses, weights repeated B
  times in ``run_args``), T steps.

Replicated needs B times the synapses, so it is measured at small B only (at
B = 100 it would hold 31 million synapses).  Prints a table and writes JSON.

    python benchmarks/engine_layout.py [--batches 10 50 100] [--repeats 5] [--out benchmarks/engine_layout.json]
"""
import argparse
import json
import time

import numpy as np

from sdsnn_brian import MNIST, Rate
from sdsnn_brian.device import Simulator
from sdsnn_brian.models import mnist_fc
from sdsnn_brian.network import Dense, Input, Network

parser = argparse.ArgumentParser()
parser.add_argument("--batches", type=int, nargs="+", default=[10, 100])
parser.add_argument("--replicated-max", type=int, default=10)
parser.add_argument("--repeats", type=int, default=5)
parser.add_argument("--out", default="benchmarks/engine_layout.json")
args = parser.parse_args()

T = 20
net = mnist_fc(hidden=(400,), steps=T)
W, _ = net.init_params(np.random.default_rng(0))
images = MNIST(train=False, limit=max(args.batches)).images


def timed(sim, x, weights):
    sim.run(x, weights)  # warm-up (and build)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        sim.run(x, weights)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


rows = []
for B in args.batches:
    x = Rate()(images[:B], T, np.random.default_rng(1))
    seq = timed(Simulator(net, B, "cpp_standalone"), x, W)
    row = {"batch": B, "sequence_s": seq, "sequence_ms_per_sample": 1e3 * seq / B}
    if B <= args.replicated_max:
        rep_net = Network(Input(784 * B), Dense(400 * B), Dense(10 * B), steps=T)
        masks, weights = [], []
        for w in W:
            n_post, n_pre = w.shape
            m = np.zeros((n_post * B, n_pre * B), np.uint8)
            big = np.zeros((n_post * B, n_pre * B))
            for b in range(B):
                m[b * n_post:(b + 1) * n_post, b * n_pre:(b + 1) * n_pre] = 1
                big[b * n_post:(b + 1) * n_post, b * n_pre:(b + 1) * n_pre] = w
            masks.append(m)
            weights.append(big)
        x_rep = np.swapaxes(x, 0, 1).reshape(1, B, T, 784).transpose(2, 0, 1, 3).reshape(T, 1, B * 784)
        rep = timed(Simulator(rep_net, 1, "cpp_standalone", masks=masks), x_rep, weights)
        row.update({"replicated_s": rep, "replicated_ms_per_sample": 1e3 * rep / B, "replicated_over_sequence": rep / seq})
    rows.append(row)
    print(json.dumps(row))

print("\n| B | sequence ms/sample | replicated ms/sample | replicated / sequence |\n| --- | --- | --- | --- |")
for r in rows:
    print(f"| {r['batch']} | {r['sequence_ms_per_sample']:.2f} | {r.get('replicated_ms_per_sample', float('nan')):.2f} "
          f"| {r.get('replicated_over_sequence', float('nan')):.2f} |")
with open(args.out, "w") as fh:
    json.dump({"T": T, "network": "784-400-10", "repeats": args.repeats, "rows": rows}, fh, indent=2)
