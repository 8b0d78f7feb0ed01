"""Training and inference throughput of sdsnn_brian against PyTorch and snnTorch, dense and pruned.

One run, one machine, one data set: 784-400-10 fully connected SD-SNN network
(``u_t = 0.2 u_{t-1} (1 - s_{t-1}) + W x_t``, threshold 0.5, hard reset to 0), T = 20,
batch 100, rate-coded MNIST (the shared training images), rectangular surrogate
(1 where ``|u - 0.5| < 0.5``), rate MSE against one-hot (torch ``MSELoss``, mean), Adam 1e-3.

Systems measured:

* ``sdsnn_brian`` on ``cpp_standalone`` through ``Trainer.train_step`` (training) and
  ``Trainer.forward`` (inference), at every density twice: ``masked-dense`` (all-to-all
  build, removed synapses have zero weight) and ``compacted`` (the build holds only the
  present synapses: ``Simulator(..., masks=..., compact_below=1.01)`` installed as the
  trainer's simulator).  At 100 % both are the same all-to-all build, measured once as
  ``dense``; ``dense-brian2-code`` is that build with Brian2's own event propagation
  (``event_code='brian2'``: spike queue) instead of sdsnn_brian's (``sdsnn_brian.codegen``);
  ``dense-process-per-run`` is the dense build started as a new process for every minibatch
  through Brian2's ``device.run`` (``persistent=False``) instead of one process serving them all;
  ``dense-float32-weights`` stores the synaptic weights in float32 (``weight_dtype='float32'``;
  the arithmetic stays float64, the weights are rounded).
  ``Simulator``'s default (``compact_below=0.2``) gives the masked-dense build at 50 and 25 %
  and the compacted one at 10 %.
* ``neurons-rows`` / ``neurons-compacted`` at density d: SD-SNN's structure instead of random
  masks -- d of the 400 hidden neurons live, the others are pruned with their incoming and
  outgoing synapses (so d of every matrix is present); ``neurons-rows`` is the build the
  trainer itself chooses for it (``Trainer(compact=True)``, the default: ``Simulator``'s
  rows from every source to the living neurons only, vectorised),
  ``neurons-compacted`` walks the present synapses one by one (``compact_below=1.01``).
* ``pytorch``: a hand-written BPTT loop of exactly the same discretised model and loss
  (step by step through both layers, the usual way of writing it; the reference of the ratios);
  ``pytorch-layerwise``: the same model with each layer's input current computed for all
  T steps in one matrix product (exact, because there is no delay and no recurrence).
* ``snntorch`` (if importable): ``snn.Leaky(beta=0.2, threshold=0.5, reset_mechanism='zero')``
  with the fast-sigmoid surrogate (its forward pass is the same model; its gradient is not).

Every system encodes its minibatches with sdsnn_brian's ``Rate`` encoder inside the timed
loop, from the same generators, so the input spikes are identical and the encoding cost is
counted for everyone.  The first minibatch of every configuration is a warm-up (for
sdsnn_brian it triggers code generation and compilation, reported as build time) and is
not timed.

    python benchmarks/throughput.py                 # full run (20 minibatches per configuration)
    python benchmarks/throughput.py --quick         # smoke test: 3 minibatches, densities 1.0 and 0.1
    python benchmarks/throughput.py --batches 40 --densities 1 0.25 --out /tmp/t.json

Writes a JSON file (``--out``, default ``benchmarks/throughput.json``; ``--quick`` defaults to
``benchmarks/throughput_quick.json``) and prints markdown tables.  See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import os
import sys

# -- arguments first: the BLAS thread count must be in the environment before numpy loads --
parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--batches", type=int, default=None,
                    help="minibatches timed per configuration (default 20; 3 with --quick)")
parser.add_argument("--densities", type=float, nargs="+", default=None,
                    help="fractions of synapses present (default 1 0.5 0.25 0.1; 1 0.1 with --quick)")
parser.add_argument("--quick", action="store_true", help="tiny smoke test: 3 minibatches, 2 densities")
parser.add_argument("--batch-size", type=int, default=100)
parser.add_argument("--threads", type=int, default=2,
                    help="CPU threads for torch (set_num_threads) and, unless --blas-threads, numpy's BLAS "
                         "(default 2)")
parser.add_argument("--blas-threads", type=int, default=None,
                    help="numpy BLAS threads for sdsnn_brian's backward pass (default: --threads)")
parser.add_argument("--brian-threads", type=int, nargs="+", default=[0],
                    help="OpenMP threads of the C++ standalone build (Trainer(threads=...)); 0 = Brian2's "
                         "single-threaded build without OpenMP (default). Several values: every sdsnn_brian "
                         "configuration is measured with each (e.g. --brian-threads 0 2)")
parser.add_argument("--backward-dtypes", nargs="+", default=["float64", "float32"],
                    choices=["float64", "float32"],
                    help="precision(s) of sdsnn_brian's numpy backward pass (Trainer(backward_dtype=...)); "
                         "every sdsnn_brian configuration is measured with each (default: float64 float32; "
                         "PyTorch and snnTorch run in float32)")
parser.add_argument("--no-fixed-cost", action="store_true",
                    help="skip the empty compacted build (no synapses) that measures the simulation's "
                         "fixed per-step cost")
parser.add_argument("--mask-layers", choices=("both", "hidden"), default="both",
                    help="which layers get the random masks: both weight matrices (default) or only "
                         "the input->hidden one")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", default=None)
parser.add_argument("--cache-dir", default=None,
                    help="directory for compiled projects (default: sdsnn_brian's cache; a cached project "
                         "makes the reported build time code generation plus a no-op make)")
parser.add_argument("--fresh-cache", action="store_true",
                    help="build into a new temporary cache directory, so build times include compilation")
parser.add_argument("--no-masked-dense", action="store_true", help="skip the masked-dense sdsnn_brian runs")
parser.add_argument("--mask-kinds", nargs="+", choices=("random", "neurons"), default=["random", "neurons"],
                    help="how synapses are removed at each density: 'random' places (builds masked-dense and "
                         "compacted), and/or 'neurons': SD-SNN's neuronal pruning, whole hidden neurons with "
                         "their incoming and outgoing synapses (builds neurons-rows, the trainer's own build: rows "
                         "onto the living neurons; and neurons-compacted: synapse by synapse). Default: both")
parser.add_argument("--no-brian2-code", action="store_true",
                    help="skip the dense run with Brian2's own event code (Simulator(event_code='brian2'))")
parser.add_argument("--no-float32-weights", action="store_true",
                    help="skip the dense run whose build stores the synaptic weights in float32 "
                         "(Simulator(weight_dtype='float32'))")
parser.add_argument("--no-process-per-run", action="store_true",
                    help="skip the dense run that starts the binary for every minibatch through Brian2's "
                         "device.run (Simulator(persistent=False)) instead of one serving process")
parser.add_argument("--no-torch", action="store_true", help="skip PyTorch and snnTorch")
parser.add_argument("--no-snntorch", action="store_true", help="skip snnTorch")
parser.add_argument("--no-layerwise", action="store_true", help="skip the pytorch-layerwise variant")
parser.add_argument("--torch-masked", action="store_true",
                    help="also run the hand-written PyTorch loop with the masks applied (W*M) at each density")
args = parser.parse_args()
if args.batches is None:
    args.batches = 3 if args.quick else 20
if args.densities is None:
    args.densities = [1.0, 0.1] if args.quick else [1.0, 0.5, 0.25, 0.1]
if args.out is None:
    args.out = "benchmarks/throughput_quick.json" if args.quick else "benchmarks/throughput.json"
if args.batches < 1:
    parser.error("--batches must be at least 1")
if any(not (0 < d <= 1) for d in args.densities):
    parser.error("--densities must lie in (0, 1]")
if args.blas_threads is None:
    args.blas_threads = args.threads
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.blas_threads)

import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

warnings.filterwarnings("ignore", message=".*_get_vc_env is private.*")

import numpy as np  # noqa: E402

from sdsnn_brian import MNIST, Adam, Rate, Trainer  # noqa: E402
from sdsnn_brian.data import TruncatedDataWarning  # noqa: E402
from sdsnn_brian.device import Simulator  # noqa: E402
from sdsnn_brian.gradient import backward  # noqa: E402
from sdsnn_brian.models import mnist_fc  # noqa: E402
from sdsnn_brian.rundir import EVAL_SEED_OFFSET  # noqa: E402

DEVICE = "cpp_standalone"
T = 20
B = args.batch_size
perf = time.perf_counter


# ---------------------------------------------------------------------------------------------
# data, network, masks
# ---------------------------------------------------------------------------------------------
with warnings.catch_warnings():
    warnings.simplefilter("ignore", TruncatedDataWarning)
    DATA = MNIST(train=True)
IMAGES = np.asarray(DATA.images, dtype=np.float32).reshape(len(DATA.images), -1)
LABELS = np.asarray(DATA.labels, dtype=np.int64)
ORDER = np.random.default_rng([args.seed, 0]).permutation(len(LABELS))
ENCODER = Rate()


def net_factory():
    return mnist_fc(hidden=(400,), steps=T)


NET = net_factory()
SHAPES = NET.weight_shapes  # [(400, 784), (10, 400)]
DYN = NET.dynamics()


def minibatch(k):
    """Images, labels of consecutive minibatch ``k`` (of the seeded shuffle; wraps around)."""
    idx = ORDER[np.arange(k * B, (k + 1) * B) % len(ORDER)]
    return IMAGES[idx], LABELS[idx]


def train_rng(k):
    return np.random.default_rng([args.seed, 0, k])  # what Trainer.fit uses for batch k of epoch 0


def infer_rng(k):
    return np.random.default_rng([args.seed, EVAL_SEED_OFFSET, k])


def random_mask(shape, density, rng):
    """A (post, pre) 0/1 mask with exactly round(density * size) ones at random places."""
    n = int(np.prod(shape))
    keep = int(round(density * n))
    flat = np.zeros(n)
    flat[rng.permutation(n)[:keep]] = 1.0
    return flat.reshape(shape)


def neuron_masks(density, rng):
    """SD-SNN's structure in a 784-H-10 network: whole hidden neurons pruned (their incoming rows
    of W1) and their outgoing synapses (columns of W2) with them; round(density * H) neurons
    live, so exactly that fraction of each matrix is present."""
    H = SHAPES[0][0]
    living = np.zeros(H, bool)
    living[rng.permutation(H)[:int(round(density * H))]] = True
    return [np.repeat(living[:, None], SHAPES[0][1], axis=1).astype(float),
            np.repeat(living[None, :], SHAPES[1][0], axis=0).astype(float)]


def masks_for(density, kind="random"):
    """Per layer (post, pre) masks; a layer left whole gets None.  ``kind``: ``'random'``
    (synapses removed at random places) or ``'neurons'`` (:func:`neuron_masks`)."""
    if density >= 1.0:
        return [None] * len(SHAPES)
    if kind == "neurons":
        return neuron_masks(density, np.random.default_rng([args.seed, 11, int(round(density * 10**6))]))
    if density == 0.0:  # the empty build: every synapse removed
        return [np.zeros(shape) for shape in SHAPES]
    rng = np.random.default_rng([args.seed, 7, int(round(density * 10**6))])
    out = []
    for k, shape in enumerate(SHAPES):
        if args.mask_layers == "hidden" and k > 0:
            out.append(None)
        else:
            out.append(random_mask(shape, density, rng))
    return out


def initial_weights():
    """The trainer's initial weights for this seed (identical for every system)."""
    w, _ = NET.init_params(np.random.default_rng([args.seed, 2**31]))
    return w


def summary(values):
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "median": float(np.median(a)), "min": float(a.min()), "max": float(a.max())}


def ms(values):
    return 1e3 * float(np.mean(values))


# ---------------------------------------------------------------------------------------------
# sdsnn_brian
# ---------------------------------------------------------------------------------------------
_CHECKED = []


def run_sdsnn(build, density, masks, cache_dir, threads, backward_dtype):
    """Train and infer with sdsnn_brian on one build ('dense', 'masked-dense', 'compacted', or
    'empty': compacted with no synapse at all, whose simulation time is the fixed per-step cost)."""
    net = net_factory()
    pruned = any(m is not None for m in masks)
    trainer = Trainer(net, device=DEVICE, surrogate="rectangular", loss="rate_mse", optimizer=Adam(1e-3),
                      seed=args.seed, threads=threads, cache_dir=cache_dir,
                      gradient_mode="strict" if pruned else "reference", backward_dtype=backward_dtype,
                      compact=build == "neurons-rows")  # the trainer's own choice of build there
    trainer.COMPACT_SWITCH_EVERY = 0  # compile at once (the build time is reported apart)
    full = [np.ones(s) if m is None else m for m, s in zip(masks, SHAPES)]
    if pruned:
        # a pruned network: removed synapses are zero, get no update ('strict') and do not exist
        # in the compacted build
        trainer.masks = [m.copy() for m in full]
        for w, m in zip(trainer.weights, full):
            w *= m
    if build in ("compacted", "empty", "neurons-compacted"):  # every masked layer compacted synapse by synapse
        trainer._sim = Simulator(net, B, DEVICE, threads=threads, cache_dir=cache_dir, masks=masks,
                                 compact_below=1.01)
    elif build == "dense-brian2-code":  # Brian2's own event propagation (spike queue), for comparison
        trainer._sim = Simulator(net, B, DEVICE, threads=threads, cache_dir=cache_dir, event_code="brian2")
    elif build == "dense-process-per-run":  # the same binary started for every minibatch (device.run)
        trainer._sim = Simulator(net, B, DEVICE, threads=threads, cache_dir=cache_dir, persistent=False)
    elif build == "dense-float32-weights":  # synaptic weights stored in float32 (arithmetic float64)
        trainer._sim = Simulator(net, B, DEVICE, threads=threads, cache_dir=cache_dir, weight_dtype="float32")

    # warm-up minibatch: builds (code generation + make) and runs once
    t0 = perf()
    xb, yb = minibatch(0)
    trainer.train_step(xb, yb, train_rng(0), B)
    warmup_s = perf() - t0
    sim = trainer._compact_sim or trainer._sim
    if build == "neurons-rows":
        assert sim is trainer._compact_sim and sim.connectivity[0] is not None, "the trainer did not compact"
    build_s = sim.build_seconds

    steps = []
    for k in range(1, args.batches + 1):
        xb, yb = minibatch(k)
        rng = train_rng(k)
        t0 = perf()
        m = trainer.train_step(xb, yb, rng, B)
        m["t_wall"] = perf() - t0
        steps.append(m)

    fan_present = [m.sum(axis=0) for m in full]  # fan-out of every presynaptic neuron
    # fan-out of every presynaptic neuron in the build (the work actually done per spike)
    conns = sim.connectivity or [None] * len(SHAPES)
    fan_built = [np.full(s[1], float(s[0])) if c is None else np.bincount(c[0], minlength=s[1]).astype(float)
                 for c, s in zip(conns, SHAPES)]
    inf = []
    for k in range(1, args.batches + 1):
        xb, _ = minibatch(k)
        rng = infer_rng(k)
        t0 = perf()
        x, rec = trainer.forward(xb, rng, B)
        wall = perf() - t0
        pre = [x] + rec.s[:-1]
        counts = [p.sum(axis=(0, 1), dtype=np.float64) for p in pre]
        inf.append({"t_wall": wall, **{f"t_{k2}": v for k2, v in rec.timings.items()},
                    "input_spikes": float(counts[0].sum()),
                    "hidden_spikes": float(sum(c.sum() for c in counts[1:])),
                    "events_present": float(sum(c @ f for c, f in zip(counts, fan_present))),
                    "events_built": float(sum(c @ f for c, f in zip(counts, fan_built)))})

    check = None
    if build == "dense" and not _CHECKED:
        check = equivalence_check(trainer)
        _CHECKED.append(True)

    def col(rows, key):
        return [r[key] for r in rows]

    tr_wall = col(steps, "t_wall")
    train = {
        "samples_per_s": B * len(steps) / sum(tr_wall),
        "samples_per_s_median": B / float(np.median(tr_wall)),
        "wall_s": summary(tr_wall),
        "per_batch_ms": {
            "total": ms(tr_wall),
            "forward": ms(col(steps, "t_forward")),
            "encode_and_checks": ms([s["t_forward"] - s["t_write_inputs"] - s["t_binary"] - s["t_read_results"]
                                     for s in steps]),
            "write_inputs": ms(col(steps, "t_write_inputs")),
            "binary": ms(col(steps, "t_binary")),
            "simulation": ms(col(steps, "t_simulation")),
            "process_and_binary_io": ms([s["t_binary"] - s["t_simulation"] for s in steps]),
            "read_results": ms(col(steps, "t_read_results")),
            "backward": ms(col(steps, "t_backward")),
            "update": ms(col(steps, "t_update")),
        },
        "loss_first": float(steps[0]["loss"]), "loss_last": float(steps[-1]["loss"]),
    }
    in_wall = col(inf, "t_wall")
    ev_p = sum(col(inf, "events_present"))
    ev_b = sum(col(inf, "events_built"))
    t_bin = sum(col(inf, "t_binary"))
    t_sim = sum(col(inf, "t_simulation"))
    n_inf = B * len(inf)
    inference = {
        "samples_per_s": n_inf / sum(in_wall),
        "samples_per_s_median": B / float(np.median(in_wall)),
        "wall_s": summary(in_wall),
        "per_batch_ms": {
            "total": ms(in_wall),
            "encode_and_checks": ms([r["t_wall"] - r["t_write_inputs"] - r["t_binary"] - r["t_read_results"]
                                     for r in inf]),
            "write_inputs": ms(col(inf, "t_write_inputs")),
            "binary": ms(col(inf, "t_binary")),
            "simulation": ms(col(inf, "t_simulation")),
            "process_and_binary_io": ms([r["t_binary"] - r["t_simulation"] for r in inf]),
            "read_results": ms(col(inf, "t_read_results")),
        },
        "simulation_ms_per_sample": 1e3 * t_sim / n_inf,
        "binary_ms_per_sample": 1e3 * t_bin / n_inf,
        "input_spikes_per_sample": sum(col(inf, "input_spikes")) / n_inf,
        "hidden_spikes_per_sample": sum(col(inf, "hidden_spikes")) / n_inf,
        "synaptic_events_per_sample": ev_p / n_inf,
        "built_events_per_sample": ev_b / n_inf,
        "synaptic_events_per_s_binary": ev_p / t_bin,
        "synaptic_events_per_s_simulation": ev_p / t_sim,
        "built_events_per_s_simulation": ev_b / t_sim,
    }
    out = {"system": "sdsnn_brian", "build": build, "density": density,
           "present_fraction": [float(m.mean()) for m in full],
           "synapses_built": int(sum(f.sum() for f in fan_built)),
           "gradient_mode": trainer.gradient_mode, "brian_threads": threads, "backward_dtype": backward_dtype,
           "build_s": build_s, "warmup_minibatch_s": warmup_s, "project_dir": sim.project_dir,
           "train": train, "inference": inference}
    if check is not None:
        out["equivalence_check"] = check
    return out


# ---------------------------------------------------------------------------------------------
# PyTorch and snnTorch
# ---------------------------------------------------------------------------------------------
def torch_modules():
    import torch
    import torch.nn.functional as F

    class RectSpike(torch.autograd.Function):
        """Heaviside of ``u - theta`` forward; rectangular surrogate (1 where |u - theta| < 0.5) backward."""

        @staticmethod
        def forward(ctx, v):
            ctx.save_for_backward(v)
            return (v > 0).to(v.dtype)

        @staticmethod
        def backward(ctx, grad):
            (v,) = ctx.saved_tensors
            return grad * (v.abs() < 0.5).to(grad.dtype)

    spike = RectSpike.apply

    class HandBPTT(torch.nn.Module):
        """The SD-SNN network written by hand; autograd does BPTT (the reset is not detached)."""

        def __init__(self, weights, dynamics, masks=None, layerwise=False, dtype=torch.float32):
            super().__init__()
            self.w = torch.nn.ParameterList(
                [torch.nn.Parameter(torch.tensor(np.asarray(w), dtype=dtype)) for w in weights])
            self.masks = None if masks is None else [
                None if m is None else torch.tensor(m, dtype=dtype) for m in masks]
            self.a = [float(d.a) for d in dynamics]
            self.theta = [float(d.theta) for d in dynamics]
            self.layerwise = layerwise

        def weights(self):
            if self.masks is None:
                return list(self.w)
            return [w if m is None else w * m for w, m in zip(self.w, self.masks)]

        def forward(self, x, record=False):  # x [T, B, n_in] float
            Ws = self.weights()
            Tn, Bn = x.shape[0], x.shape[1]
            if self.layerwise:
                z, rec = x, []
                for W, a, th in zip(Ws, self.a, self.theta):
                    cur = F.linear(z, W)  # all steps in one product
                    p = x.new_zeros(Bn, W.shape[0])
                    out = []
                    for t in range(Tn):
                        u = a * p + cur[t]
                        s = spike(u - th)
                        p = u * (1 - s)
                        out.append(s)
                    z = torch.stack(out)
                    rec.append(z)
                return (z.mean(0), rec) if record else z.mean(0)
            ps = [x.new_zeros(Bn, W.shape[0]) for W in Ws]
            outs = [[] for _ in Ws]
            for t in range(Tn):
                z = x[t]
                for l, (W, a, th) in enumerate(zip(Ws, self.a, self.theta)):
                    u = a * ps[l] + F.linear(z, W)
                    s = spike(u - th)
                    ps[l] = u * (1 - s)
                    outs[l].append(s)
                    z = s
            rec = [torch.stack(o) for o in outs]
            return (rec[-1].mean(0), rec) if record else rec[-1].mean(0)

    return torch, F, HandBPTT


def snntorch_module(weights):
    import torch
    import snntorch as snn
    from snntorch import surrogate

    class SnnTorchNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.ModuleList()
            self.lif = torch.nn.ModuleList()
            for w in weights:
                fc = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
                with torch.no_grad():
                    fc.weight.copy_(torch.tensor(w, dtype=torch.float32))
                self.fc.append(fc)
                self.lif.append(snn.Leaky(beta=0.2, threshold=0.5, reset_mechanism="zero",
                                          spike_grad=surrogate.fast_sigmoid()))

        def forward(self, x):
            mems = [lif.reset_mem() for lif in self.lif]
            out = []
            for t in range(x.shape[0]):
                z = x[t]
                for l, (fc, lif) in enumerate(zip(self.fc, self.lif)):
                    z, mems[l] = lif(fc(z), mems[l])
                out.append(z)
            return torch.stack(out).mean(0)

    return SnnTorchNet(), snn.__version__


def run_torch(system, density=1.0, masks=None):
    try:
        torch, F, HandBPTT = torch_modules()
    except Exception as exc:  # noqa: BLE001
        return {"system": system, "available": False, "reason": f"{type(exc).__name__}: {exc}"}
    torch.set_num_threads(args.threads)
    W0 = initial_weights()
    version = {"torch": torch.__version__}
    if system == "snntorch":
        try:
            model, v = snntorch_module(W0)
            version["snntorch"] = v
        except Exception as exc:  # noqa: BLE001
            return {"system": system, "available": False, "reason": f"{type(exc).__name__}: {exc}"}
    else:
        W = W0 if masks is None else [w if m is None else w * m for w, m in zip(W0, masks)]
        model = HandBPTT(W, DYN, masks=masks, layerwise=(system == "pytorch-layerwise"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n_classes = SHAPES[-1][0]

    def train_step(k):
        xb, yb = minibatch(k)
        t0 = perf()
        x = torch.from_numpy(ENCODER(xb, T, train_rng(k))).to(torch.float32)
        target = F.one_hot(torch.from_numpy(yb), n_classes).to(torch.float32)
        t1 = perf()
        rate = model(x)
        loss = F.mse_loss(rate, target)
        t2 = perf()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t3 = perf()
        opt.step()
        t4 = perf()
        return {"t_wall": t4 - t0, "t_encode": t1 - t0, "t_forward": t2 - t1, "t_backward": t3 - t2,
                "t_update": t4 - t3, "loss": float(loss.detach())}

    def infer_step(k):
        xb, _ = minibatch(k)
        t0 = perf()
        x = torch.from_numpy(ENCODER(xb, T, infer_rng(k))).to(torch.float32)
        t1 = perf()
        with torch.no_grad():
            model(x).argmax(1)
        t2 = perf()
        return {"t_wall": t2 - t0, "t_encode": t1 - t0, "t_forward": t2 - t1}

    train_step(0)  # warm-up
    steps = [train_step(k) for k in range(1, args.batches + 1)]
    infer_step(0)
    inf = [infer_step(k) for k in range(1, args.batches + 1)]
    tw = [s["t_wall"] for s in steps]
    iw = [s["t_wall"] for s in inf]
    return {
        "system": system, "available": True, "versions": version, "density": density,
        "masked": masks is not None, "threads": torch.get_num_threads(),
        "train": {"samples_per_s": B * len(steps) / sum(tw), "samples_per_s_median": B / float(np.median(tw)),
                  "wall_s": summary(tw),
                  "per_batch_ms": {"total": ms(tw), **{k[2:]: ms([s[k] for s in steps])
                                                       for k in ("t_encode", "t_forward", "t_backward",
                                                                 "t_update")}},
                  "loss_first": steps[0]["loss"], "loss_last": steps[-1]["loss"]},
        "inference": {"samples_per_s": B * len(inf) / sum(iw), "samples_per_s_median": B / float(np.median(iw)),
                      "wall_s": summary(iw),
                      "per_batch_ms": {"total": ms(iw), "encode": ms([s["t_encode"] for s in inf]),
                                       "forward": ms([s["t_forward"] for s in inf])}},
    }


def equivalence_check(trainer):
    """Same input and weights through Brian2 + numpy BPTT and through the hand-written torch loop (float64)."""
    try:
        torch, F, HandBPTT = torch_modules()
    except Exception as exc:  # noqa: BLE001
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
    xb, yb = minibatch(0)
    W = [w.copy() for w in trainer.training_weights()]
    x, rec = trainer.forward(xb, np.random.default_rng([args.seed, 99]), B, weights=W)
    res = trainer.loss(rec.u[-1], rec.s[-1], yb)
    grads = backward(trainer.dynamics, x, rec.u, rec.s, W, res.grad_s, res.grad_u, trainer.surrogate)
    model = HandBPTT(W, DYN, dtype=torch.float64)
    rate, srec = model(torch.from_numpy(x).to(torch.float64), record=True)
    loss = F.mse_loss(rate, F.one_hot(torch.from_numpy(yb), SHAPES[-1][0]).to(torch.float64))
    loss.backward()
    out = {"available": True, "loss_brian_numpy": float(res.value), "loss_torch": float(loss.detach()),
           "spike_agreement": [], "spikes_brian": [], "spikes_torch": [], "grad_rel_error": []}
    for l in range(len(W)):
        s_t = srec[l].detach().numpy()
        out["spike_agreement"].append(float(np.mean(s_t == rec.s[l])))
        out["spikes_brian"].append(int(rec.s[l].sum()))
        out["spikes_torch"].append(int(s_t.sum()))
        g_t = model.w[l].grad.numpy()
        g_n = grads[l][0]
        out["grad_rel_error"].append(float(np.linalg.norm(g_t - g_n) / max(np.linalg.norm(g_n), 1e-300)))
    return out


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
def versions():
    import brian2

    v = {"python": platform.python_version(), "numpy": np.__version__, "brian2": brian2.__version__}
    try:
        import sdsnn_brian

        v["sdsnn_brian"] = sdsnn_brian.__version__
    except Exception:  # noqa: BLE001
        pass
    try:
        import torch

        v["torch"] = torch.__version__
    except Exception:  # noqa: BLE001
        pass
    return v


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def main():
    cache_dir = args.cache_dir
    if args.fresh_cache:
        cache_dir = tempfile.mkdtemp(prefix="sdsnn_throughput_")
    meta = {
        "command": " ".join(sys.argv), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_start": list(os.getloadavg()), "versions": versions(),
        "network": "784-400-10", "neuron": "sdsnn_lif (u_t = 0.2 u_{t-1} (1 - s_{t-1}) + W x_t, theta 0.5, hard reset)",
        "T": T, "batch_size": B, "batches_timed": args.batches, "warmup_batches": 1,
        "data": f"MNIST train (shared), {len(LABELS)} images, Rate encoder", "surrogate": "rectangular width 1",
        "loss": "rate MSE vs one-hot (mean)", "optimizer": "Adam(1e-3)", "threads": args.threads,
        "blas_threads": args.blas_threads,
        "brian_threads": args.brian_threads, "densities": args.densities, "mask_layers": args.mask_layers,
        "mask_kinds": args.mask_kinds,
        "seed": args.seed, "cache_dir": cache_dir,
    }
    results = []

    def record(r):
        results.append(r)
        tr = r.get("train")
        if tr:
            log(f"  {r['system']:<18} {r.get('build', ''):<12} d={r.get('density', 1.0):<5} "
                f"omp={r.get('brian_threads', '-')!s:<3} "
                f"train {tr['samples_per_s']:8.0f}/s  infer {r['inference']['samples_per_s']:8.0f}/s")
        else:
            log(f"  {r['system']}: not available ({r.get('reason')})")

    densities = sorted(set(args.densities) | {1.0}, reverse=True)  # the dense run is every ratio's reference
    for bdtype in args.backward_dtypes:
        for threads in args.brian_threads:
            for d in densities + ([] if args.no_fixed_cost else [0.0]):
                if d == 0.0:
                    builds = ["empty"]
                elif d >= 1.0:
                    builds = (["dense"] + ([] if args.no_brian2_code else ["dense-brian2-code"])
                              + ([] if args.no_process_per_run else ["dense-process-per-run"])
                              + ([] if args.no_float32_weights else ["dense-float32-weights"]))
                else:
                    builds = []
                    if "random" in args.mask_kinds:
                        builds += (["masked-dense"] if not args.no_masked_dense else []) + ["compacted"]
                    if "neurons" in args.mask_kinds:
                        builds += ["neurons-rows", "neurons-compacted"]
                for build in builds:
                    masks = masks_for(d, "neurons" if build.startswith("neurons") else "random")
                    log(f"sdsnn_brian {build}, density {d}, OpenMP threads {threads}, backward {bdtype} ...")
                    record(run_sdsnn(build, d, masks, cache_dir, threads, bdtype))

    if not args.no_torch:
        log("pytorch (hand-written BPTT, dense) ...")
        record(run_torch("pytorch"))
        if not args.no_layerwise:
            log("pytorch-layerwise (dense) ...")
            record(run_torch("pytorch-layerwise"))
        if args.torch_masked:
            for d in densities:
                if d < 1.0:
                    log(f"pytorch masked, density {d} ...")
                    record(run_torch("pytorch-masked", d, masks_for(d)))
        if not args.no_snntorch:
            log("snntorch (dense) ...")
            record(run_torch("snntorch"))

    meta["load_average_end"] = list(os.getloadavg())
    ratios = compute_ratios(results)
    report = {"meta": meta, "results": results, "ratios": ratios}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=2)
    print(tables(report))
    print(f"\nwritten: {args.out}")
    if args.fresh_cache:
        import shutil

        shutil.rmtree(cache_dir, ignore_errors=True)


def _find(results, system, **kw):
    for r in results:
        if r.get("system") == system and r.get("available", True) and all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def compute_ratios(results):
    torch_ref = _find(results, "pytorch")
    snn_ref = _find(results, "snntorch")
    out = []
    for r in results:
        if r.get("system") != "sdsnn_brian":
            continue
        same = dict(brian_threads=r["brian_threads"], backward_dtype=r["backward_dtype"])
        dense = _find(results, "sdsnn_brian", build="dense", **same)
        empty = _find(results, "sdsnn_brian", build="empty", **same)
        q = {"build": r["build"], "density": r["density"], "brian_threads": r["brian_threads"],
             "backward_dtype": r["backward_dtype"]}
        for key, ref in (("pytorch", torch_ref), ("snntorch", snn_ref)):
            if ref is not None:
                q[f"train_over_{key}"] = r["train"]["samples_per_s"] / ref["train"]["samples_per_s"]
                q[f"inference_over_{key}"] = r["inference"]["samples_per_s"] / ref["inference"]["samples_per_s"]
        if dense is not None:
            q["train_time_per_sample_over_dense"] = dense["train"]["samples_per_s"] / r["train"]["samples_per_s"]
            q["inference_time_per_sample_over_dense"] = (dense["inference"]["samples_per_s"]
                                                         / r["inference"]["samples_per_s"])
            q["simulation_time_per_sample_over_dense"] = (r["inference"]["simulation_ms_per_sample"]
                                                          / dense["inference"]["simulation_ms_per_sample"])
            q["train_simulation_time_over_dense"] = (r["train"]["per_batch_ms"]["simulation"]
                                                     / dense["train"]["per_batch_ms"]["simulation"])
            q["events_over_dense"] = (r["inference"]["synaptic_events_per_sample"]
                                      / dense["inference"]["synaptic_events_per_sample"])
            if empty is not None:
                # simulation = fixed per-step cost (the empty build) + the synaptic part
                fixed = empty["inference"]["simulation_ms_per_sample"]
                q["fixed_simulation_ms_per_sample"] = fixed
                q["synaptic_simulation_time_over_dense"] = (
                    (r["inference"]["simulation_ms_per_sample"] - fixed)
                    / (dense["inference"]["simulation_ms_per_sample"] - fixed))
        out.append(q)
    return out


def _label(r):
    return (r["build"] + (f" (OpenMP {r['brian_threads']})" if r.get("brian_threads") else "")
            + f", backward {r.get('backward_dtype', 'float64')}")


def _f(v, fmt="{:.0f}"):
    return "-" if v is None else fmt.format(v)


def tables(report):
    res, ratios = report["results"], report["ratios"]
    rmap = {(q["build"], q["density"], q["brian_threads"], q["backward_dtype"]): q for q in ratios}
    lines = ["", "### Throughput (samples/s; training = forward + backward + update, both include encoding)", "",
             "| system | build | density | train /s | x PyTorch | x snnTorch | time/sample / dense | "
             "infer /s | infer x PyTorch | sim time/sample / dense | synaptic part / dense | events/sample | "
             "events/s (binary) | events/s (simulation) | build s |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in res:
        if not r.get("available", True):
            lines.append(f"| {r['system']} | not available: {r.get('reason')} |" + " |" * 13)
            continue
        if r["system"] == "sdsnn_brian":
            q = rmap.get((r["build"], r["density"], r["brian_threads"], r["backward_dtype"]), {})
            inf = r["inference"]
            lines.append(
                f"| sdsnn_brian | {_label(r)} | {r['density']:g} | {r['train']['samples_per_s']:.0f} | "
                f"{_f(q.get('train_over_pytorch'), '{:.2f}')} | {_f(q.get('train_over_snntorch'), '{:.2f}')} | "
                f"{_f(q.get('train_time_per_sample_over_dense'), '{:.2f}')} | {inf['samples_per_s']:.0f} | "
                f"{_f(q.get('inference_over_pytorch'), '{:.2f}')} | "
                f"{_f(q.get('simulation_time_per_sample_over_dense'), '{:.2f}')} | "
                f"{_f(q.get('synaptic_simulation_time_over_dense'), '{:.2f}')} | "
                f"{inf['synaptic_events_per_sample']:.3g} | {inf['synaptic_events_per_s_binary']:.3g} | "
                f"{inf['synaptic_events_per_s_simulation']:.3g} | {_f(r['build_s'], '{:.1f}')} |")
        else:
            lines.append(f"| {r['system']} | {'masked' if r.get('masked') else 'dense'} | {r['density']:g} | "
                         f"{r['train']['samples_per_s']:.0f} | | | | {r['inference']['samples_per_s']:.0f} | "
                         "| | | | | | |")
    lines += ["", "### Time per training minibatch (ms, mean over the timed minibatches)", "",
              "| system | build | density | total | encode + checks | write inputs | binary (process) | "
              "simulation (inside binary) | process start + binary I/O | read results | backward | update |",
              "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in res:
        if not r.get("available", True):
            continue
        p = r["train"]["per_batch_ms"]
        if r["system"] == "sdsnn_brian":
            lines.append(f"| sdsnn_brian | {_label(r)} | {r['density']:g} | {p['total']:.1f} | "
                         f"{p['encode_and_checks']:.1f} | {p['write_inputs']:.1f} | {p['binary']:.1f} | "
                         f"{p['simulation']:.1f} | {p['process_and_binary_io']:.1f} | {p['read_results']:.1f} | "
                         f"{p['backward']:.1f} | {p['update']:.1f} |")
        else:
            lines.append(f"| {r['system']} | {'masked' if r.get('masked') else 'dense'} | {r['density']:g} | "
                         f"{p['total']:.1f} | {p['encode']:.1f} (encode) | | forward {p['forward']:.1f} | | | | "
                         f"{p['backward']:.1f} | {p['update']:.1f} |")
    chk = next((r.get("equivalence_check") for r in res if r.get("equivalence_check")), None)
    if chk and chk.get("available"):
        lines += ["", "Equivalence check (one minibatch, same input and weights, torch in float64): loss "
                  f"{chk['loss_brian_numpy']:.6f} (Brian2 + numpy) vs {chk['loss_torch']:.6f} (torch); "
                  f"spike agreement per layer {', '.join(f'{a:.6f}' for a in chk['spike_agreement'])}; "
                  f"weight-gradient relative error {', '.join(f'{e:.2e}' for e in chk['grad_rel_error'])}."]
    m = report["meta"]
    lines += ["", f"Load average at start {m['load_average_start'][0]:.2f}, at end {m['load_average_end'][0]:.2f} "
              f"on {m['cpu_count']} CPUs; {m['batches_timed']} minibatches of {m['batch_size']} timed per "
              f"configuration; masks on {'both weight matrices' if m['mask_layers'] == 'both' else 'the input->hidden matrix only'}; Brian2 OpenMP threads {m['brian_threads']} (0: no OpenMP); torch threads {m['threads']}, numpy BLAS threads {m['blas_threads']}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
