"""
Time decoding against rate decoding on MNIST (VDIB, Skatchkovsky et al. 2021)
=============================================================================

A hybrid variational autoencoder: a spiking encoder (784 rate-coded inputs over T = 20
steps, a deterministic hidden layer of SD-SNN LIF neurons, then stochastic readout neurons
that spike with probability sigmoid(u), run by Brian2 as C++ standalone code) and a small
numpy MLP decoder over the readout raster.  The loss is the distortion (cross-entropy for
classification, BCE for image reconstruction) plus beta times the per-step KL sample to a
Bernoulli(r) prior.  The encoder learns by the score-function estimator with a
per-parameter baseline (the paper), the hidden layer by BPTT through the surrogate.

For each task and seed the same encoder, decoder widths and budget are trained twice:
time decoding (the decoder reads the whole T x N raster) and rate decoding (the same
decoder fed only the spike counts).  ``--beta-sweep B1 B2 ...`` adds runs of time decoding
on the reconstruction task at other beta values (rate against distortion).

Data: the shared MNIST files -- every whole training image (6,309) and the complete test
set (10,000).  Results: ``RUN_DIR/results.json`` and ``RUN_DIR/report.md`` (the exact
command line next to the numbers); every run has its own directory under ``RUN_DIR``.

    python protocols/vdib_mnist.py [--seeds 0 1 2] [--epochs 5] [--beta-sweep 0 1e-2 1e-1]
    python protocols/vdib_mnist.py --smoke          # seconds: a tiny network on 200 images
"""
import argparse
import shlex
import sys
import time

from sdsnn_brian import MNIST
from sdsnn_brian.vdib_experiments import (fmt, markdown_table, summarise, train_and_test, vdib_encoder,
                                          write_results)

parser = argparse.ArgumentParser(description="VDIB on MNIST: time decoding against rate decoding")
parser.add_argument("--tasks", nargs="+", default=["classify", "reconstruct"], choices=["classify", "reconstruct"])
parser.add_argument("--decodings", nargs="+", default=["time", "rate"], choices=["time", "rate"])
parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--hidden", type=int, default=256, help="LIF hidden neurons")
parser.add_argument("--readouts", type=int, default=128, help="stochastic readout neurons")
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--encoding", default="rate", choices=["rate", "latency"], help="input spike code")
parser.add_argument("--decoder", default="mlp", choices=["mlp", "conv1d", "linear"])
parser.add_argument("--decoder-hidden", type=int, default=256)
parser.add_argument("--beta", type=float, default=1e-3)
parser.add_argument("--r", type=float, default=0.3, help="prior firing probability")
parser.add_argument("--estimator", default="score", choices=["score", "straight_through"])
parser.add_argument("--lr", type=float, default=1e-3, help="encoder Adam learning rate")
parser.add_argument("--dec-lr", type=float, default=1e-3, help="decoder Adam learning rate")
parser.add_argument("--init-gain", type=float, default=6.0, help="readout initial weight gain")
parser.add_argument("--batch-size", type=int, default=100)
parser.add_argument("--beta-sweep", nargs="*", type=float, default=[],
                    help="extra beta values for time decoding on reconstruction (first seed)")
parser.add_argument("--device", default="cpp_standalone")
parser.add_argument("--run-dir", default="runs/vdib_mnist")
parser.add_argument("--mnist-dir", default=None)
parser.add_argument("--train-limit", type=int, default=None)
parser.add_argument("--test-limit", type=int, default=None)
parser.add_argument("--resume", action="store_true",
                    help="continue interrupted runs from their newest checkpoints (finished runs are only re-tested)")
parser.add_argument("--overwrite", action="store_true", help="replace runs already in --run-dir (without it, or "
                    "--resume, a run directory that holds a run is refused)")
parser.add_argument("--smoke", action="store_true", help="a seconds-long run: tiny network, 200/100 images")
args = parser.parse_args()
command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
if args.smoke:
    args.train_limit, args.test_limit = args.train_limit or 200, args.test_limit or 100
    args.hidden, args.readouts, args.steps, args.decoder_hidden = 32, 16, 8, 32
    args.epochs, args.seeds = 1, args.seeds[:1]

# The data: every whole training image, the full test set; pixels in [0, 1] are also the targets
# of reconstruction.
train = MNIST(args.mnist_dir, train=True, limit=args.train_limit)
test = MNIST(args.mnist_dir, train=False, limit=args.test_limit)
print(f"{len(train)} training images, {len(test)} test images")
data = {"classify": ((train.images, train.labels), (test.images, test.labels)),
        "reconstruct": ((train.images, train.images), (test.images, test.images))}

# The encoder: declared once; the readout layer is stochastic (Dense(stochastic=True)).
net = vdib_encoder(784, hidden=(args.hidden,), readouts=args.readouts, steps=args.steps, init_gain=args.init_gain,
                   encoding=args.encoding)
common = dict(epochs=args.epochs, decoder=args.decoder, decoder_options={"hidden": (args.decoder_hidden,)}
              if args.decoder == "mlp" else None, r=args.r, estimator=args.estimator, lr=args.lr,
              dec_lr=args.dec_lr, batch_size=args.batch_size, device=args.device, protocol=command,
              resume=args.resume, overwrite=args.overwrite)

runs, t0 = [], time.perf_counter()
for task in args.tasks:
    for seed in args.seeds:
        for decoding in args.decodings:
            name = f"{task}_{decoding}_s{seed}"
            print(f"== {name}", flush=True)
            rec = train_and_test(net, *data[task], task=task, decoding=decoding, seed=seed, beta=args.beta,
                                 run_dir=f"{args.run_dir}/{name}", **common)
            print(f"   test {rec['test']}  ({rec['train_seconds']:.0f} s training)", flush=True)
            runs.append(rec)
sweep = []
for beta in args.beta_sweep:
    name = f"sweep_reconstruct_time_beta{beta:g}_s{args.seeds[0]}"
    print(f"== {name}", flush=True)
    rec = train_and_test(net, *data["reconstruct"], task="reconstruct", decoding="time", seed=args.seeds[0],
                         beta=beta, run_dir=f"{args.run_dir}/{name}", **common)
    print(f"   test {rec['test']}", flush=True)
    sweep.append(rec)

# The report: test metrics per task and decoding (mean ± std over seeds), readout rate against r.
metric = {"classify": "accuracy", "reconstruct": "bce"}
summary = summarise(runs, metric)
rows = []
for key, s in summary.items():
    task, dec = key.split("/")
    m = s[s["metric"]]
    scale, unit = (100, " %") if task == "classify" else (1, " nats/pixel")
    rows.append([task, dec, s["metric"] + unit, fmt(m, scale, 2 if task == "classify" else 4),
                 ", ".join(f"{v * scale:.{2 if task == 'classify' else 4}f}" for v in m["values"]),
                 fmt(s["rate"], 1, 3), f"{args.r:g}", f"{s['train_seconds']['mean']:.0f}"])
table = markdown_table(["task", "decoding", "test metric", "mean ± std", "per seed", "readout rate", "prior r",
                        "train s / run"], rows)
verdict = []
for task in args.tasks:
    t, r = summary.get(f"{task}/time"), summary.get(f"{task}/rate")
    if t and r:
        better = t[t["metric"]]["mean"] > r[r["metric"]]["mean"] if task == "classify" else \
            t[t["metric"]]["mean"] < r[r["metric"]]["mean"]
        per_seed = [(a > b) if task == "classify" else (a < b)
                    for a, b in zip(t[t["metric"]]["values"], r[r["metric"]]["values"])]
        verdict.append(f"- {task}: time decoding {'beats' if better else 'does NOT beat'} rate decoding on the mean "
                       f"({sum(per_seed)} of {len(per_seed)} seeds better)")
sweep += [r for r in runs if r["task"] == "reconstruct" and r["decoding"] == "time" and r["seed"] == args.seeds[0]
          and args.beta_sweep]
sweep_rows = [[f"{s['beta']:g}", f"{s['test']['rate']:.3f}", f"{s['test']['p_fire']:.3f}",
               f"{s['test']['kl']:.1f}", f"{s['test']['distortion']:.2f}", f"{s['test']['bce']:.4f}",
               f"{s['test']['mse']:.4f}"] for s in sorted(sweep, key=lambda s: s["beta"])]
report = ["# VDIB on MNIST: time decoding vs rate decoding\n",
          f"Command: `{command}`\n",
          f"Encoder 784-{args.hidden}(LIF)-{args.readouts}(stochastic), T = {args.steps}, {args.encoding}-coded input; "
          f"decoder {args.decoder} (hidden {args.decoder_hidden}); estimator {args.estimator}; beta {args.beta:g}, "
          f"r {args.r:g}; {args.epochs} epochs of {len(train)} images, batch {args.batch_size}; tested on "
          f"{len(test)} images (one readout noise sample each).\n", table, "", *verdict, ""]
if sweep:
    report += ["## beta sweep (reconstruction, time decoding, seed %d)\n" % args.seeds[0],
               markdown_table(["beta", "readout rate", "mean sigmoid(u)", "KL sample / image (nats)",
                               "distortion / image (nats)", "BCE / pixel", "MSE / pixel"], sweep_rows), ""]
report.append(f"Wall time of the protocol: {time.perf_counter() - t0:.0f} s.")
path = write_results(args.run_dir, {"command": command, "args": vars(args), "summary": summary, "runs": runs,
                                    "beta_sweep": sweep}, "\n".join(report) + "\n")
print("\n".join(report))
print(f"report: {path}")
