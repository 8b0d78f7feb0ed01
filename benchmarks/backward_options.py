"""Options for the numpy backward pass of 784-400-10, measured on a real recording.

One minibatch (batch 100, T = 20, rate-coded MNIST) is simulated by sdsnn_brian on
cpp_standalone; the recorded membranes and spikes then go through several
implementations of the same BPTT (rectangular surrogate, hard reset, rate-MSE loss):

``library``          ``sdsnn_brian.gradient.backward`` as it is (float64)
``library-f32``      the same function with ``dtype=np.float32``
``plain-f64/f32``    a restatement of the same algorithm written for this benchmark (the
                     baseline the variants below change one thing at a time from)
``sparse-x``         dW1 = G1^T X with X (input spikes) as a ``scipy.sparse`` CSR matrix
                     instead of a dense float [T*B, 784] copy
``sparse-all``       every layer's presynaptic spikes as CSR
``skip-rows``        only the (t, b) rows where G (dL/du) is not all zero enter the
                     products dW = G^T Z and E = G W (rows are zero where the surrogate
                     window never opened from t onward)
``skip-rows+sparse-x`` / ``...-f32``   combinations

Every option's weight gradients are compared with the library's (relative error), and the
time per minibatch is the median of ``--repeats`` calls.  The weights are the initial ones
after ``--train-steps`` training minibatches (default 10), or the newest checkpoint of
``--run-dir`` if given (trained weights give more realistic activity).

    python benchmarks/backward_options.py [--repeats 20] [--train-steps 10] [--run-dir runs/mnist_dense]
        [--threads 1 2] [--out benchmarks/backward_options.json]

Every option is timed at each BLAS thread count of ``--threads`` (set per measurement with
threadpoolctl when several are given).
"""
from __future__ import annotations

import argparse
import os

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--repeats", type=int, default=20)
parser.add_argument("--train-steps", type=int, default=10)
parser.add_argument("--run-dir", default=None, help="load the newest checkpoint of this run directory")
parser.add_argument("--batch-size", type=int, default=100)
parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="numpy BLAS thread counts to measure (default 1 2; several need threadpoolctl)")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", default="benchmarks/backward_options.json")
args = parser.parse_args()
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(max(args.threads))

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

warnings.filterwarnings("ignore", message=".*_get_vc_env is private.*")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from sdsnn_brian import MNIST, Adam, Trainer  # noqa: E402
from sdsnn_brian.data import TruncatedDataWarning  # noqa: E402
from sdsnn_brian.gradient import backward  # noqa: E402
from sdsnn_brian.models import mnist_fc  # noqa: E402

T, B = 20, args.batch_size


def recording():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncatedDataWarning)
        data = MNIST(train=True)
    images = np.asarray(data.images, dtype=np.float32).reshape(len(data.images), -1)
    labels = np.asarray(data.labels, dtype=np.int64)
    order = np.random.default_rng([args.seed, 0]).permutation(len(labels))
    tr = Trainer(mnist_fc(hidden=(400,), steps=T), device="cpp_standalone", optimizer=Adam(1e-3), seed=args.seed)
    source = f"initial weights, seed {args.seed}"
    if args.run_dir:
        from sdsnn_brian.callbacks import restore_latest

        path = restore_latest(tr, args.run_dir)
        source = f"checkpoint {path}"
    for k in range(args.train_steps):
        idx = order[np.arange(k * B, (k + 1) * B) % len(order)]
        tr.train_step(images[idx], labels[idx], np.random.default_rng([args.seed, 0, k]), B)
    if args.train_steps:
        source += f" + {args.train_steps} training minibatches"
    k = args.train_steps
    idx = order[np.arange(k * B, (k + 1) * B) % len(order)]
    W = [w.copy() for w in tr.training_weights()]
    x, rec = tr.forward(images[idx], np.random.default_rng([args.seed, 0, k]), B, weights=W)
    res = tr.loss(rec.u[-1], rec.s[-1], labels[idx])
    return tr, x, rec, W, res, source


def plain(dyn, x, u, s, W, grad_s, sg, dtype=np.float64, sparse=(), skip_rows=False, parts=None):
    """BPTT for hard-reset layers (reset not detached), no bias; options change only how the products are done.

    ``sparse``: layer indices whose presynaptic spikes enter dW as CSR matrices.
    ``parts``: a dict that receives the seconds spent in each phase, per layer.
    """
    clock = [time.perf_counter()]

    def mark(name):
        if parts is not None:
            now = time.perf_counter()
            parts[name] = parts.get(name, 0.0) + now - clock[0]
            clock[0] = now

    dtype = np.dtype(dtype)
    L = len(W)
    out = [None] * L
    e = np.asarray(grad_s, dtype=dtype)
    for l in range(L - 1, -1, -1):
        d = dyn[l]
        N = W[l].shape[0]
        ul = np.asarray(u[l], dtype=dtype)
        sgd = sg.derivative(ul - dtype.type(d.theta)).astype(dtype, copy=False)
        a = dtype.type(d.a)
        K = a * (1 - s[l].astype(dtype))
        K += a * (dtype.type(d.v_reset) - ul) * sgd
        g = e * sgd
        mark(f"layer{l + 1}: surrogate and coefficients")
        buf = np.empty((B, N), dtype)
        for t in range(T - 2, -1, -1):
            np.multiply(K[t], g[t + 1], out=buf)
            g[t] += buf
        G = g.reshape(T * B, N)
        mark(f"layer{l + 1}: time recurrence")
        z = (x if l == 0 else s[l - 1]).reshape(T * B, -1)
        rows = None
        if skip_rows:
            rows = np.flatnonzero(G.any(axis=1))
            G = G[rows]
            z = z[rows]
        if l in sparse:
            Zs = sp.csr_matrix(z, dtype=dtype)
            dW = np.asarray((Zs.T @ G).T)
        else:
            dW = G.T @ z.astype(dtype)
        out[l] = dW
        mark(f"layer{l + 1}: dW = G^T Z")
        if l > 0:
            Wl = np.asarray(W[l], dtype=dtype)
            if rows is None:
                e = (G @ Wl).reshape(T, B, -1)
            else:
                E = np.zeros((T * B, Wl.shape[1]), dtype)
                E[rows] = G @ Wl
                e = E.reshape(T, B, -1)
            mark(f"layer{l + 1}: E = G W (to the layer below)")
    return out


def main():
    tr, x, rec, W, res, source = recording()
    dyn, sg = tr.dynamics, tr.surrogate
    u, s = rec.u, rec.s

    def lib(dtype):
        return lambda: [g[0] for g in backward(dyn, x, u, s, W, res.grad_s, res.grad_u, sg,
                                               need_bias=False, dtype=dtype)]

    def pl(**kw):
        return lambda: plain(dyn, x, u, s, W, res.grad_s, sg, **kw)

    options = {
        "library": lib(np.float64),
        "library-f32": lib(np.float32),
        "plain-f64": pl(),
        "plain-f32": pl(dtype=np.float32),
        "sparse-x": pl(sparse=(0,)),
        "sparse-x-f32": pl(sparse=(0,), dtype=np.float32),
        "sparse-all": pl(sparse=(0, 1)),
        "skip-rows": pl(skip_rows=True),
        "skip-rows-f32": pl(skip_rows=True, dtype=np.float32),
        "skip-rows+sparse-x": pl(skip_rows=True, sparse=(0,)),
        "skip-rows+sparse-x-f32": pl(skip_rows=True, sparse=(0,), dtype=np.float32),
    }
    ref = options["library"]()
    errors = {}
    for name, fn in options.items():
        got = fn()  # warm-up, and the accuracy check
        errors[name] = [float(np.linalg.norm(np.asarray(g, float) - r) / max(np.linalg.norm(r), 1e-300))
                        for g, r in zip(got, ref)]
    rows, profile = [], {}
    for n_threads in args.threads:
        with blas_threads(n_threads):
            times = {name: [] for name in options}
            for rep in range(args.repeats):  # round robin: a change of machine load hits every option alike
                for name, fn in options.items():
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
                print(f"threads {n_threads}: repeat {rep + 1}/{args.repeats}", file=sys.stderr, flush=True)
            rows += [{"option": name, "threads": n_threads, "ms_median": 1e3 * float(np.median(t)),
                      "ms_min": 1e3 * float(np.min(t)), "ms_mean": 1e3 * float(np.mean(t)),
                      "rel_error_vs_library": errors[name]} for name, t in times.items()]
            # where the time of the plain float64 / float32 versions goes (mean over the repeats)
            for dt in (np.float64, np.float32):
                acc = {}
                for _ in range(args.repeats):
                    plain(dyn, x, u, s, W, res.grad_s, sg, dtype=dt, parts=acc)
                profile[f"{np.dtype(dt).name}, {n_threads} threads"] = {k: 1e3 * v / args.repeats
                                                                        for k, v in acc.items()}

    # what the recording looks like (what the sparse options can exploit)
    stats = {"input_density": float(x.mean()), "hidden_spike_density": float(s[0].mean()),
             "output_spike_density": float(s[1].mean())}
    for l in (1, 0):
        stats[f"surrogate_nonzero_fraction_layer{l + 1}"] = float(np.mean(sg.derivative(u[l] - dyn[l].theta) != 0))
        G = _layer_G(dyn, u, s, W, res.grad_s, sg, l)  # dL/du: which (t, b) rows and entries are zero
        stats[f"G_zero_rows_fraction_layer{l + 1}"] = float(np.mean(~G.reshape(T * B, -1).any(axis=1)))
        stats[f"G_zero_entries_fraction_layer{l + 1}"] = float(np.mean(G == 0))

    base = {r["threads"]: r["ms_median"] for r in rows if r["option"] == "library"}
    print("\n| option | BLAS threads | ms per minibatch (median) | min | / library (same threads) | "
          "rel. error dW1, dW2 |\n| --- | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(f"| {r['option']} | {r['threads']} | {r['ms_median']:.2f} | {r['ms_min']:.2f} | "
              f"{r['ms_median'] / base[r['threads']]:.2f} | "
              + ", ".join(f"{v:.1e}" for v in r["rel_error_vs_library"]) + " |")
    keys = list(profile)
    print("\n| phase (plain, mean ms) | " + " | ".join(keys) + " |\n| --- |" + " ---: |" * len(keys))
    for k in profile[keys[0]]:
        print(f"| {k} | " + " | ".join(f"{profile[c].get(k, float('nan')):.2f}" for c in keys) + " |")
    print("\nRecording: " + ", ".join(f"{k} {v:.3f}" for k, v in stats.items()))
    print(f"Weights: {source}; {args.repeats} repeats; BLAS threads {args.threads}; load average "
          f"{os.getloadavg()[0]:.2f}.")
    with open(args.out, "w") as fh:
        json.dump({"source": source, "batch_size": B, "T": T, "threads": args.threads, "repeats": args.repeats,
                   "load_average": list(os.getloadavg()), "recording": stats, "options": rows,
                   "profile_ms": profile}, fh, indent=2)
    print(f"written: {args.out}")


def blas_threads(n):
    """A context limiting numpy's BLAS to ``n`` threads (threadpoolctl), or a no-op for one setting."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        if len(args.threads) > 1:
            raise SystemExit("several --threads values need threadpoolctl (pip install threadpoolctl)")
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def _layer_G(dyn, u, s, W, grad_s, sg, layer):
    """dL/du of one layer, [T, B, N] (float64), by the same recurrence."""
    L = len(W)
    e = np.asarray(grad_s, float)
    for l in range(L - 1, layer - 1, -1):
        d = dyn[l]
        sgd = sg.derivative(u[l] - d.theta)
        K = d.a * (1 - s[l]) + d.a * (d.v_reset - u[l]) * sgd
        g = e * sgd
        for t in range(T - 2, -1, -1):
            g[t] += K[t] * g[t + 1]
        if l == layer:
            return g
        e = g @ np.asarray(W[l], float)


if __name__ == "__main__":
    main()
