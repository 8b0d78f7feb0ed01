"""How the simulation time of a minibatch falls as SD-SNN's pruning removes hidden neurons.

    python benchmarks/pruning_cost.py                         # 30 rounds, densities 1 0.5 0.25 0.1 0
    python benchmarks/pruning_cost.py --rounds 10 --weight-dtypes float32

Issue 10's third criterion, measured so that machine drift cannot bias it: every build
(784-400-10, T = 20, batch 100; the dense all-to-all build, and for each density d the build
the trainer uses when round(d * 400) hidden neurons live -- rows onto the living neurons --
plus the empty build, no synapse at all, whose time is the fixed per-step cost) is compiled
first, then the builds run **in turn, round after round**, on the same minibatch (rate-coded
MNIST images, the trainer's initial weights with the pruned neurons' rows of W1 and columns of
W2 zeroed).  The time reported is the binary's own simulation time (``Recording.timings``),
median over the rounds; ratios are of medians.  Results: ``benchmarks/pruning_cost.json``
(``--out``) and a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings

import numpy as np

from sdsnn_brian import MNIST, Rate
from sdsnn_brian.data import TruncatedDataWarning
from sdsnn_brian.device import Simulator
from sdsnn_brian.models import mnist_fc

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--rounds", type=int, default=30)
p.add_argument("--densities", type=float, nargs="+", default=[1.0, 0.5, 0.25, 0.1, 0.0])
p.add_argument("--weight-dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
p.add_argument("--seed", type=int, default=0)
p.add_argument("--cache-dir", default=None)
p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "pruning_cost.json"))
args = p.parse_args()

T, B, H = 20, 100, 400
net = mnist_fc(hidden=(H,), steps=T)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", TruncatedDataWarning)
    data = MNIST(train=True)
images = np.asarray(data.images[:B], dtype=np.float32).reshape(B, -1)
x = Rate()(images, T, np.random.default_rng([args.seed, 0, 1]))
W, b = net.init_params(np.random.default_rng([args.seed, 2**31]))
cache = args.cache_dir or tempfile.mkdtemp(prefix="pruning_cost_")


def masks_for(density):
    """SD-SNN's neuronal pruning: round(density * H) hidden neurons live, with every synapse
    onto them and from them; the others lose their incoming rows and outgoing columns."""
    if density >= 1:
        return None
    living = np.zeros(H, bool)
    living[np.random.default_rng([args.seed, 11, int(round(density * 1e6))]).permutation(H)[:int(round(density * H))]] = True
    return [np.repeat(living[:, None], W[0].shape[1], axis=1).astype(float),
            np.repeat(living[None, :], W[1].shape[0], axis=0).astype(float)]


builds = []
for dtype in args.weight_dtypes:
    for d in args.densities:
        m = masks_for(d)
        if d == 0:
            m = [np.zeros_like(W[0]), np.zeros_like(W[1])]
        sim = Simulator(net, B, "cpp_standalone", cache_dir=cache, masks=m, weight_dtype=dtype,
                        compact_below=1.01 if d == 0 else 0.2)
        t0 = time.perf_counter()
        sim.build()
        weights = W if m is None else [w * mk for w, mk in zip(W, m)]
        rec = sim.run(x, weights, b)  # warm-up: starts the serving process
        builds.append({"weight_dtype": dtype, "density": d, "sim": sim, "weights": weights,
                       "synapses_built": sim.synapses_built, "build_s": time.perf_counter() - t0,
                       "hidden_spikes": float(rec.s[0].sum()), "times": []})
        print(f"built {dtype} density {d}: {sim.synapses_built} synapses", flush=True)

load0 = os.getloadavg()[0]
for r in range(args.rounds):
    for bd in builds:
        rec = bd["sim"].run(x, bd["weights"], b)
        bd["times"].append(rec.timings["simulation"])
load1 = os.getloadavg()[0]

rows = []
for bd in builds:
    dense = next(o for o in builds if o["weight_dtype"] == bd["weight_dtype"] and o["density"] == 1.0)
    empty = next((o for o in builds if o["weight_dtype"] == bd["weight_dtype"] and o["density"] == 0.0), None)
    med = float(np.median(bd["times"]))
    dmed = float(np.median(dense["times"]))
    row = {"weight_dtype": bd["weight_dtype"], "density": bd["density"], "synapses_built": bd["synapses_built"],
           "simulation_ms_median": 1e3 * med, "simulation_ms_min": 1e3 * float(np.min(bd["times"])),
           "simulation_ms_max": 1e3 * float(np.max(bd["times"])), "over_dense": med / dmed,
           "hidden_spikes": bd["hidden_spikes"], "build_s": bd["build_s"]}
    if empty is not None:
        fixed = float(np.median(empty["times"]))
        row["synaptic_part_over_dense"] = (med - fixed) / (dmed - fixed)
    rows.append(row)

print("\n| weights | hidden neurons left | synapses built | simulation ms (median, min-max) | / dense | synaptic part / dense |")
print("| --- | ---: | ---: | --- | ---: | ---: |")
for r in rows:
    syn = r.get("synaptic_part_over_dense")
    print(f"| {r['weight_dtype']} | {r['density']:.0%} | {r['synapses_built']:,} | {r['simulation_ms_median']:.2f} "
          f"({r['simulation_ms_min']:.2f}-{r['simulation_ms_max']:.2f}) | {r['over_dense']:.3f} | "
          f"{'' if syn is None else f'{syn:.3f}'} |")
print(f"\nload average {load0:.2f} at the start of the rounds, {load1:.2f} at the end; {args.rounds} rounds")
report = {"protocol": {"network": "784-400-10 mnist_fc (SD-SNN neuron)", "steps": T, "batch": B,
                       "input": f"first {B} MNIST training images, Rate(), default_rng([{args.seed}, 0, 1])",
                       "weights": "Network.init_params(default_rng([seed, 2**31])), pruned neurons' rows/columns zeroed",
                       "masks": "round(density*400) living hidden neurons, default_rng([seed, 11, round(density*1e6)])",
                       "builds": "Simulator(masks=...) default compact_below=0.2 (rows onto the living neurons); "
                                 "density 0: every synapse removed (compact_below=1.01)",
                       "timing": "binary's own simulation time, builds run in turn each round; median over rounds",
                       "rounds": args.rounds, "seed": args.seed},
          "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                      "load_average_start": load0, "load_average_end": load1},
          "results": rows}
with open(args.out, "w") as fh:
    json.dump(report, fh, indent=1)
print("written:", args.out)
for bd in builds:
    bd["sim"].close()
