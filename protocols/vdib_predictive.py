"""
Predictive coding of a drifting blob with time decoding (VDIB, Skatchkovsky et al. 2021)
========================================================================================

A blob drifts over 20 inputs (a contiguous run of active inputs, one of 210 patterns,
reflecting at the ends; inputs inside spike with probability 0.9, outside with 0.02).  A
spiking encoder (20 inputs, a hidden layer of SD-SNN LIF neurons, 10 stochastic readouts)
is read by a linear + softmax decoder over a sliding window of ``--tau`` steps; its target
is the blob ``--delta`` steps after the window's last step (prediction; negative values
recall the past).  Loss: cross-entropy + beta x the KL sample to a Bernoulli(r) prior
(paper defaults for prediction: beta = 1, r = 0.2); score-function encoder gradient with
per-parameter baselines, BPTT into the hidden layer.  Time decoding and rate decoding
(the same decoder fed the window's spike counts) are trained with the same budget.

Results: ``RUN_DIR/results.json`` and ``RUN_DIR/report.md`` (with this command line).

    python protocols/vdib_predictive.py [--delta 2] [--tau 5] [--epochs 10] [--seeds 0]
    python protocols/vdib_predictive.py --smoke
"""
import argparse
import shlex
import sys

from sdsnn_brian.data import DriftingBlob
from sdsnn_brian.encoding import Direct
from sdsnn_brian.vdib_experiments import fmt, markdown_table, summarise, train_and_test, vdib_encoder, write_results

parser = argparse.ArgumentParser(description="VDIB predictive coding of a drifting blob")
parser.add_argument("--delta", type=int, default=2, help="target: the blob this many steps after the window")
parser.add_argument("--tau", type=int, default=5, help="decoder window (steps)")
parser.add_argument("--steps", type=int, default=30)
parser.add_argument("--hidden", type=int, default=64)
parser.add_argument("--readouts", type=int, default=10)
parser.add_argument("--beta", type=float, default=1.0)
parser.add_argument("--r", type=float, default=0.2)
parser.add_argument("--estimator", default="score", choices=["score", "straight_through"])
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--dec-lr", type=float, default=1e-2)
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--train-size", type=int, default=2000)
parser.add_argument("--test-size", type=int, default=1000)
parser.add_argument("--seeds", nargs="+", type=int, default=[0])
parser.add_argument("--decodings", nargs="+", default=["time", "rate"], choices=["time", "rate"])
parser.add_argument("--device", default="cpp_standalone")
parser.add_argument("--run-dir", default="runs/vdib_predictive")
parser.add_argument("--overwrite", action="store_true", help="replace runs already in --run-dir")
parser.add_argument("--smoke", action="store_true")
args = parser.parse_args()
command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
if args.smoke:
    args.train_size, args.test_size, args.epochs, args.steps, args.hidden = 200, 100, 1, 12, 16

# The stimulus: training and test sets from different seeds; targets per window position.
train = DriftingBlob(args.train_size, steps=args.steps, delta=args.delta, seed=10_000)
test = DriftingBlob(args.test_size, steps=args.steps, delta=args.delta, seed=20_000)
data = ((train.frames, train.targets(args.tau)), (test.frames, test.targets(args.tau)))

# The encoder reads the frames as they are (Direct, [B, T, n] layout).
net = vdib_encoder(train.n, hidden=(args.hidden,), readouts=args.readouts, steps=args.steps,
                   encoding=Direct(time_first=False), name="vdib_blob")
runs = []
for seed in args.seeds:
    for decoding in args.decodings:
        name = f"predict_{decoding}_s{seed}"
        print(f"== {name}", flush=True)
        rec = train_and_test(net, *data, task="predict", decoding=decoding, seed=seed, epochs=args.epochs,
                             decoder="linear", tau=args.tau, n_out=train.n_classes, beta=args.beta, r=args.r,
                             estimator=args.estimator, lr=args.lr, dec_lr=args.dec_lr, device=args.device,
                             run_dir=f"{args.run_dir}/{name}", protocol=command, overwrite=args.overwrite)
        print(f"   test {rec['test']}", flush=True)
        runs.append(rec)

summary = summarise(runs, {"predict": "accuracy"})
rows = [[k.split("/")[1], fmt(s["accuracy"], 100), fmt(s["rate"], 1, 3), f"{args.r:g}"] for k, s in summary.items()]
report = "\n".join([
    "# VDIB predictive coding of a drifting blob\n", f"Command: `{command}`\n",
    f"{train.n} inputs, {train.n_classes} blob patterns, T = {args.steps}, window tau = {args.tau}, "
    f"delta = {args.delta}; encoder {train.n}-{args.hidden}(LIF)-{args.readouts}(stochastic); linear + softmax "
    f"decoder; beta {args.beta:g}, r {args.r:g}; {args.epochs} epochs of {args.train_size} samples; "
    f"{args.test_size} test samples (chance {100 / train.n_classes:.2f} %).\n",
    markdown_table(["decoding", "test accuracy % (all window positions)", "readout rate", "prior r"], rows), ""])
path = write_results(args.run_dir, {"command": command, "args": vars(args), "summary": summary, "runs": runs}, report)
print(report)
print(f"report: {path}")
