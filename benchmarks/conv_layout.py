"""Conv layers as their kernel (``conv_layout='kernel'``) against one synapse per position pair and kernel
entry (``conv_layout='synapses'``), C++ standalone (issue 19).

    python benchmarks/conv_layout.py                  # MNIST 20 rounds, then the DVS-Gesture-sized build
    python benchmarks/conv_layout.py --rounds 5 --skip-dvs

1. Simulation time per minibatch of the SD-SNN reference conv network
   15C3-AP2-40C3-AP2-FC300-FC10 on MNIST (1x28x28, padding 1, T = 20, batch 100): both builds
   are compiled first, then run **in turn, round after round** on the same minibatch
   (rate-coded MNIST images, the trainer's initial weights), so machine drift cannot bias the
   ratio.  Reported per layout, median over the rounds: the binary's own simulation time
   (``Recording.timings['simulation']``) and the wall time of ``Simulator.run`` (inputs written,
   the kernel or the per-synapse weights uploaded, results read).
2. The DVS-Gesture-sized reference network (2x128x128 -> 15C3-AP2-40C3-AP2-FC300-FC11, batch 1,
   T = ``--dvs-steps``) built as kernels: build time, synapses in the build, the serving
   binary's peak resident memory (``VmHWM``) after one minibatch, and this Python process's
   peak while it declared, built and ran it (``VmHWM``, reset before each build).  ``--dvs-old`` also builds it per synapse (about 38 M synapses; slow
   and several GiB).

Results: ``benchmarks/conv_layout.json`` (``--out``; the committed file holds the MNIST part,
``benchmarks/conv_layout_dvs.json`` the DVS-Gesture part run with ``--skip-mnist --dvs-old``) and a
markdown summary.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
import warnings

import numpy as np

from sdsnn_brian import MNIST, Rate
from sdsnn_brian.data import TruncatedDataWarning
from sdsnn_brian.device import Simulator, memory_estimate
from sdsnn_brian.models import sdsnn_conv

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--rounds", type=int, default=20)
p.add_argument("--batch", type=int, default=100)
p.add_argument("--steps", type=int, default=20)
p.add_argument("--dvs-steps", type=int, default=4)
p.add_argument("--gains", type=float, nargs=4, default=[3.0, 4.0, 4.0, 4.0],
               help="per-layer factors on the initial weights for the 'active' weight set (about 10-25 %% of "
                    "the neurons spike per step, as in training; the initial weights alone leave FC300 silent)")
p.add_argument("--skip-mnist", action="store_true")
p.add_argument("--skip-dvs", action="store_true")
p.add_argument("--dvs-old", action="store_true", help="also build the DVS-Gesture-sized network per synapse")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--cache-dir", default=None)
p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "conv_layout.json"))
args = p.parse_args()

cache = args.cache_dir or tempfile.mkdtemp(prefix="conv_layout_")
LAYOUTS = ("synapses", "kernel")


def peak_rss(pid) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return -1


def reset_own_peak() -> bool:
    """Reset this process's peak resident memory (VmHWM; Linux >= 4.0), so that the next build's peak
    is its own."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def load():
    return os.getloadavg()[0]


result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
          "command": "python benchmarks/conv_layout.py " + " ".join(
              f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
              if k not in ("out", "cache_dir") and v not in (False, None, True)) +
          "".join(f" --{k.replace('_', '-')}" for k, v in vars(args).items() if v is True)}

if not args.skip_mnist:
    T, B = args.steps, args.batch
    net = sdsnn_conv((1, 28, 28), 10, steps=T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncatedDataWarning)
        data = MNIST(train=True)
    images = np.asarray(data.images[:B], dtype=np.float32).reshape(B, -1)
    x = Rate()(images, T, np.random.default_rng([args.seed, 0, 1]))
    W, b = net.init_params(np.random.default_rng([args.seed, 2 ** 31]))
    sims, build = {}, {}
    for layout in LAYOUTS:
        t0 = time.perf_counter()
        sims[layout] = Simulator(net, B, "cpp_standalone", cache_dir=cache, conv_layout=layout).build()
        build[layout] = time.perf_counter() - t0
        print(f"MNIST conv, {layout}: built in {build[layout]:.0f} s, {sims[layout].synapses_built:,} synapses",
              flush=True)
    result["mnist"] = {"network": net.name, "T": T, "batch": B, "rounds": args.rounds,
                       "synapses_built": {layout: sims[layout].synapses_built for layout in LAYOUTS},
                       "build_seconds": build, "weights": {}}
    for name, gains in (("init", [1.0] * 4), ("active", list(args.gains))):
        Wg = [g * w for g, w in zip(gains, W)]
        recs = {layout: sims[layout].run(x, Wg, b) for layout in LAYOUTS}  # warm-up, and the equality check
        for l in range(len(recs["kernel"].u)):
            assert np.array_equal(recs["kernel"].u[l], recs["synapses"].u[l])
            assert np.array_equal(recs["kernel"].s[l], recs["synapses"].s[l])
        rates = [float(s.mean()) for s in recs["kernel"].s]
        times = {layout: {"simulation": [], "run": []} for layout in LAYOUTS}
        loads = [load()]
        for r in range(args.rounds):
            for layout in (LAYOUTS if r % 2 == 0 else LAYOUTS[::-1]):
                t0 = time.perf_counter()
                rec = sims[layout].run(x, Wg, b)
                times[layout]["run"].append(time.perf_counter() - t0)
                times[layout]["simulation"].append(rec.timings["simulation"])
            loads.append(load())
        med = {layout: {k: float(np.median(v)) for k, v in times[layout].items()} for layout in LAYOUTS}
        result["mnist"]["weights"][name] = {
            "gains": gains, "spike_rates": rates, "median_seconds": med, "times": times,
            "ratio_simulation": med["synapses"]["simulation"] / med["kernel"]["simulation"],
            "ratio_run": med["synapses"]["run"] / med["kernel"]["run"],
            "load_average": {"min": min(loads), "max": max(loads), "median": float(np.median(loads))},
            "identical_recordings": True}
        print(name, json.dumps({k: v for k, v in result["mnist"]["weights"][name].items() if k != "times"}),
              flush=True)
    for layout in LAYOUTS:
        sims[layout].close()

if not args.skip_dvs:
    T = args.dvs_steps
    net = sdsnn_conv((2, 128, 128), 11, steps=T)
    rng = np.random.default_rng([args.seed, 7])
    W, b = net.init_params(rng)
    x = (rng.random((T, 1, net.input.size)) < 0.05).astype(np.uint8)  # about an event frame's density
    dvs = {}
    for layout in (["kernel", "synapses"] if args.dvs_old else ["kernel"]):
        own_peak = reset_own_peak()
        sim = Simulator(net, 1, "cpp_standalone", cache_dir=cache, conv_layout=layout, memory_check=False)
        t0 = time.perf_counter()
        sim.build()
        built = time.perf_counter() - t0
        t0 = time.perf_counter()
        rec = sim.run(x, W, b)
        run = time.perf_counter() - t0
        dvs[layout] = {"build_seconds": built, "first_run_seconds": run, "synapses_built": sim.synapses_built,
                       "binary_peak_rss_bytes": peak_rss(sim._server.proc.pid),
                       "estimate_bytes": sim.memory_estimate().total,
                       # this build's own peak when VmHWM could be reset, else the process's peak so far
                       "python_peak_rss_bytes": (peak_rss(os.getpid()) if own_peak else
                                                 resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
                       "python_peak_is_this_builds": own_peak,
                       "spike_rates": [float(s.mean()) for s in rec.s], "load_average": load()}
        sim.close()
        print(f"DVS-Gesture-sized, {layout}: {json.dumps(dvs[layout])}", flush=True)
    dvs["synapses_estimate"] = {"synapses": sum(c.n_synapses() for c in net.connections),
                                "estimate_bytes": memory_estimate(net, 1, conv_layout="synapses").total}
    result["dvs_gesture"] = {"network": net.name, "T": T, "batch": 1, **dvs}

with open(args.out, "w") as fh:
    json.dump(result, fh, indent=1)

if "mnist" in result:
    m = result["mnist"]
    print("\n| weights (spike rates per layer) | layout | synapses built | simulation ms (median) | run ms (median) |"
          "\n| --- | --- | --- | --- | --- |")
    for name, w in m["weights"].items():
        for layout in LAYOUTS:
            print(f"| {name} ({', '.join(f'{r:.3f}' for r in w['spike_rates'])}) | {layout} | "
                  f"{m['synapses_built'][layout]:,} | {1e3 * w['median_seconds'][layout]['simulation']:.1f} "
                  f"| {1e3 * w['median_seconds'][layout]['run']:.1f} |")
        print(f"\n{name}: ratio synapses/kernel: simulation {w['ratio_simulation']:.2f}x, run {w['ratio_run']:.2f}x; "
              f"load average {w['load_average']}\n")
if "dvs_gesture" in result:
    d = result["dvs_gesture"]["kernel"]
    print(f"\nDVS-Gesture-sized (kernel): built in {d['build_seconds']:.0f} s, {d['synapses_built']:,} synapses, "
          f"binary peak RSS {d['binary_peak_rss_bytes'] / 2 ** 20:.0f} MiB, Python peak "
          f"{d['python_peak_rss_bytes'] / 2 ** 20:.0f} MiB")
