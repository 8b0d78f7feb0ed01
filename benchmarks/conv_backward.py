"""The numpy backward pass of the reference conv network: where its time goes, and what is faster.

The network is ``models.sdsnn_conv`` (15C3-AP2-40C3-AP2-FC300-FC10, SD-SNN neurons, hard reset,
T = 20, batch 100), on 1x28x28 MNIST or 2x34x34 N-MNIST.  One minibatch is recorded and then
every implementation runs on the same recording (rectangular surrogate, rate MSE), the
alternatives of each part **in turn, round after round** (a change of machine load hits them
alike), at each BLAS thread count (threadpoolctl) and in float32 and float64:

``whole``        ``sdsnn_brian.gradient.backward`` against the implementation before this
                 benchmark (``benchmarks/_legacy_backward.py``, commit ca1c055)
``layer1 dK``    the first conv layer's kernel gradient (1 input channel, 28x28)
``layer2 dK``    the second conv layer's kernel gradient (15 pooled channels, 14x14)
``layer2 dX``    the second conv layer's gradient to its input (the transposed convolution)
``g layer1/2``   ``dL/du`` of a conv layer for every step (surrogate, coefficients, time recurrence)
``pool``         average pooling of the spikes below layer 2

The alternatives of the conv products (see ``ALTERNATIVES`` below): the old rows-of-positions
im2col (``legacy``); the same with only the rows (position, sample, step) where ``G`` has a
nonzero entry and the input window a spike (``rows-gather``), or, for ``dX``, only the nonzero
rows of ``G`` (scatter of those rows only); ``G`` in channel-major layout ``[C_out, T*B, Ho*Wo]``
so that both products are one matrix product per chunk without transposing G (``new``, the
library's now, which leaves out the rows ``t*B + b`` whose ``G`` -- or, for dK, input -- is all
zero when they are more than 20 %; ``new-all-rows`` never, ``new-skip-always`` always leaves
them out; ``new-chunk-2^k`` other chunk sizes, the library's being 2^21); one small product per
sample on G's natural layout (``per-sample``); ``np.add.at`` for the scatter of ``dX``.  For the
per-layer ``g``: the old whole-array computation, the new step-by-step one in cache-sized blocks
(``new``) and without the blocks (``new-unblocked``).  Gradients are compared with the
legacy implementation (max abs difference / max abs value).

The recording: ``--dataset mnist`` simulates the network in numpy (Connection.current, the
same maps the Brian2 build runs; tests/test_conv.py checks they agree) on rate-coded MNIST
images, after ``--train-steps`` training minibatches (Adam 1e-3, this backward) from the
initial weights, so that the layers' activity is that of a network being trained; ``nmnist``
does the same on the shared N-MNIST subset's frames; ``synthetic`` draws spikes and membranes
at given rates (no structure).  It is cached in ``--cache``.

    python benchmarks/conv_backward.py [--dataset mnist] [--train-steps 30] [--repeats 10]
        [--threads 1 2] [--dtypes float32 float64] [--out benchmarks/conv_backward.json]
"""
from __future__ import annotations

import argparse
import os

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--dataset", default="mnist", choices=["mnist", "nmnist", "synthetic"])
parser.add_argument("--data-dir", default=None, help="N-MNIST folder (default: the shared subset)")
parser.add_argument("--train-steps", type=int, default=30)
parser.add_argument("--batch-size", type=int, default=100)
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--repeats", type=int, default=10)
parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
parser.add_argument("--parts", nargs="*", default=None, help="only these parts (default: all)")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--cache", default=None, help="recording cache (.npz); default in the temp dir")
parser.add_argument("--out", default=None, help="JSON (default benchmarks/conv_backward[_DATASET].json)")
parser.add_argument("--merge", action="store_true",
                    help="keep the results of other --dtypes/--threads already in --out (same recording)")
args = parser.parse_args()
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(max(args.threads))

import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _legacy_backward as legacy  # noqa: E402

from sdsnn_brian import gradient, layers  # noqa: E402
from sdsnn_brian.gradient import backward  # noqa: E402
from sdsnn_brian.losses import get_loss  # noqa: E402
from sdsnn_brian.models import sdsnn_conv  # noqa: E402
from sdsnn_brian.optim import Adam  # noqa: E402
from sdsnn_brian.surrogate import get_surrogate  # noqa: E402

T, B = args.steps, args.batch_size
SHAPES = {"mnist": (1, 28, 28), "nmnist": (2, 34, 34), "synthetic": (1, 28, 28)}
SG = get_surrogate("rectangular")
LOSS = get_loss("rate_mse")


# ---------------------------------------------------------------------------------------------
# the recording
# ---------------------------------------------------------------------------------------------
def simulate(net, x, W, b):
    """The network's numpy re-simulation: per layer the input current of all steps, then the map."""
    dyn = net.dynamics()
    z = x.reshape(T * B, -1)
    us, ss = [], []
    for cn, d, w, bias in zip(dyn.connections, dyn, W, b):
        I = cn.current(z, w)
        if bias is not None:
            I = I + cn.expand_bias(bias)
        I = I.reshape(T, B, -1)
        p = np.full(I.shape[1:], d.u_init)
        u, s = np.empty_like(I), np.empty(I.shape, dtype=np.uint8)
        for t in range(T):
            u[t] = d.a * p + d.c + I[t]
            s[t] = d.spikes(u[t])
            p = d.after_reset(u[t], s[t])
        us.append(u)
        ss.append(s)
        z = s.reshape(T * B, -1)
    return us, ss


def data_source(shape):
    """``(draw(k) -> (x [T, B, N] uint8, labels), description)``."""
    rng = np.random.default_rng([args.seed, 1])
    if args.dataset == "mnist":
        from sdsnn_brian import MNIST
        from sdsnn_brian.data import TruncatedDataWarning
        from sdsnn_brian.encoding import Rate

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TruncatedDataWarning)
            data = MNIST(train=True)
        order = rng.permutation(len(data.labels))

        def draw(k):
            idx = order[np.arange(k * B, (k + 1) * B) % len(order)]
            x = Rate()(np.asarray(data.images, np.float32)[idx], T, np.random.default_rng([args.seed, 2, k]))
            return x.reshape(T, B, -1), np.asarray(data.labels)[idx]
        return draw, f"MNIST training images, Rate coding, {len(data.labels)} images"
    if args.dataset == "nmnist":
        from sdsnn_brian.data.events import NMNIST, FrameSettings

        root = args.data_dir or "/work/shared/data/events/nmnist-small"
        train = NMNIST(root, train=True, frames=FrameSettings(n_time_bins=T),
                       cache_dir=os.path.join(tempfile.gettempdir(), "sdsnn_conv_backward_frames"), verbose=False)
        images = np.asarray(train.images)
        labels = np.asarray(train.labels)
        order = rng.permutation(len(labels))

        def draw(k):
            idx = order[np.arange(k * B, (k + 1) * B) % len(order)]
            x = images[idx].reshape(B, T, -1).transpose(1, 0, 2)  # [B, T, ...] -> [T, B, N]
            return np.ascontiguousarray(x, dtype=np.uint8), labels[idx]
        return draw, f"N-MNIST frames ({root}, {len(labels)} recordings, {T} bins)"

    def draw(k):
        r = np.random.default_rng([args.seed, 3, k])
        return (r.random((T, B, int(np.prod(shape)))) < 0.15).astype(np.uint8), r.integers(0, 10, B)
    return draw, "synthetic input spikes, rate 0.15"


def recording():
    shape = SHAPES[args.dataset]
    net = sdsnn_conv(shape, 10, steps=T)
    path = args.cache or os.path.join(tempfile.gettempdir(), f"sdsnn_conv_backward_{args.dataset}_s{args.seed}_"
                                                            f"t{args.train_steps}_T{T}_B{B}.npz")
    if os.path.exists(path):
        f = np.load(path, allow_pickle=False)
        L = int(f["L"])
        rec = dict(x=f["x"], u=[f[f"u{k}"] for k in range(L)], s=[f[f"s{k}"] for k in range(L)],
                   W=[f[f"W{k}"] for k in range(L)], b=[f[f"b{k}"] for k in range(L)], grad_s=f["grad_s"],
                   source=str(f["source"]))
        print(f"recording: {path}", flush=True)
        return net, rec
    draw, source = data_source(shape)
    W, b = net.init_params(np.random.default_rng([args.seed, 0]))
    if args.dataset == "synthetic":
        x, labels = draw(0)
        rng = np.random.default_rng([args.seed, 4])
        # membranes: ~10 % above threshold, ~45 % inside the surrogate's window (0, 1)
        u = [rng.choice([-0.6, 0.25, 0.75, 1.4], p=[0.5, 0.35, 0.1, 0.05], size=(T, B, n))
             + rng.uniform(-0.2, 0.2, (T, B, n)) for n in net.sizes[1:]]
        s = [(v > 0.5).astype(np.uint8) for v in u]
        res = LOSS(u[-1], s[-1], labels)
        source += "; membranes drawn at random (10 % above threshold, ~45 % in the surrogate window)"
    else:
        opt = Adam(1e-3)
        dyn = net.dynamics()
        for k in range(args.train_steps + 1):
            x, labels = draw(k)
            u, s = simulate(net, x, W, b)
            res = LOSS(u[-1], s[-1], labels)
            print(f"recording: minibatch {k}, loss {res.value:.4f}, spike rates "
                  + " ".join(f"{v.mean():.3f}" for v in s), flush=True)
            if k == args.train_steps:
                break
            g = backward(dyn, x, u, s, W, res.grad_s, res.grad_u, SG, dtype=np.float32)
            opt.step(W + b, [q[0] for q in g] + [q[1] for q in g])
        source += f"; numpy simulation, initial weights + {args.train_steps} training minibatches (Adam 1e-3)"
    L = len(W)
    np.savez(path, L=L, x=x, grad_s=res.grad_s, source=source, **{f"u{k}": u[k] for k in range(L)},
             **{f"s{k}": s[k] for k in range(L)}, **{f"W{k}": W[k] for k in range(L)},
             **{f"b{k}": b[k] for k in range(L)})
    print(f"recording written: {path}", flush=True)
    return net, dict(x=x, u=u, s=s, W=W, b=b, grad_s=res.grad_s, source=source)


# ---------------------------------------------------------------------------------------------
# alternatives of the conv products (own code, for this benchmark)
# ---------------------------------------------------------------------------------------------
def per_sample_dK(cn, G, z, dtype):
    """dK as one small product per row (t, b) on G's natural layout [M, C_out, Ho*Wo]: no transposed G."""
    C, H, W = cn.op_shape
    C_out, Ho, Wo = cn.out_shape
    (kh, kw), (sh, sw) = cn.kernel, cn.stride
    M, P, K = G.shape[0], Ho * Wo, cn.fan_in
    xp = cn.op_input(z, dtype)  # [C, M, Hp, Wp]
    G3 = G.reshape(M, C_out, P)
    dK = np.zeros((C_out, K), dtype)
    step = max(1, layers.CHUNK_ELEMENTS // (K * P))
    buf = np.empty(step * K * P, dtype)
    for i in range(0, M, step):
        m = min(step, M - i)
        cols = buf[:m * K * P].reshape(m, C, kh, kw, Ho, Wo)
        xs = xp[:, i:i + m].transpose(1, 0, 2, 3)
        for a in range(kh):
            for b in range(kw):
                cols[:, :, a, b] = xs[:, :, a:a + sh * (Ho - 1) + 1:sh, b:b + sw * (Wo - 1) + 1:sw]
        dK += np.matmul(G3[i:i + m], cols.reshape(m, K, P).transpose(0, 2, 1)).sum(axis=0)
    return dK.reshape(cn.param_shape), G3.sum(axis=(0, 2))


def rows_gather_dK(cn, G, z, dtype):
    """The legacy rows-of-positions im2col, with only the rows where G has a nonzero entry and the
    input window a spike going into the product (a gather of those rows)."""
    x = legacy.pooled(cn, z)
    M = G.shape[0]
    C_out, Ho, Wo = cn.out_shape
    G4 = G.reshape(M, C_out, Ho, Wo)
    dK = np.zeros((C_out, cn.fan_in), dtype=dtype)
    step = legacy._chunk(cn)
    for i in range(0, M, step):
        cols = legacy._im2col(cn, x[i:i + step], dtype)
        Gm = G4[i:i + step].transpose(0, 2, 3, 1).reshape(-1, C_out)
        r = np.flatnonzero(Gm.any(axis=1) & cols.any(axis=1))
        dK += Gm[r].T @ cols[r]
    return dK.reshape(cn.param_shape), G4.sum(axis=(0, 2, 3))


def per_sample_dX(cn, G, W, dtype):
    """dX as one small product per row on G's natural layout, col2im channel-major, then unpool."""
    C, H, Wd = cn.op_shape
    C_out, Ho, Wo = cn.out_shape
    (kh, kw), (sh, sw), (ph, pw) = cn.kernel, cn.stride, cn.padding
    M, P, K = G.shape[0], Ho * Wo, cn.fan_in
    KT = np.ascontiguousarray(np.asarray(W, dtype).reshape(C_out, K).T)
    G3 = G.reshape(M, C_out, P)
    e = np.zeros((M, C, H + 2 * ph, Wd + 2 * pw), dtype)
    step = max(1, layers.CHUNK_ELEMENTS // (K * P))
    buf = np.empty(step * K * P, dtype)
    for i in range(0, M, step):
        m = min(step, M - i)
        d = buf[:m * K * P].reshape(m, K, P)
        np.matmul(KT, G3[i:i + m], out=d)
        d6 = d.reshape(m, C, kh, kw, Ho, Wo)
        blk = e[i:i + m]
        for a in range(kh):
            for b in range(kw):
                blk[:, :, a:a + sh * (Ho - 1) + 1:sh, b:b + sw * (Wo - 1) + 1:sw] += d6[:, :, a, b]
    return cn.unpool(e[:, :, ph:ph + H, pw:pw + Wd].reshape(M, -1))


def rows_skip_dX(cn, G, W, dtype, add_at=False):
    """The legacy dX with the all-zero rows of G left out of the product and of the scatter
    (``add_at``: the scatter by ``np.add.at`` on flat indices instead of strided slices)."""
    W = np.asarray(W, dtype=dtype)
    M = G.shape[0]
    C, H, Wd = cn.op_shape
    (kh, kw), (sh, sw), (ph, pw) = cn.kernel, cn.stride, cn.padding
    C_out, Ho, Wo = cn.out_shape
    Kmat = W.reshape(C_out, -1)
    G4 = G.reshape(M, C_out, Ho, Wo)
    Hp, Wp = H + 2 * ph, Wd + 2 * pw
    e = np.zeros((M, C, Hp, Wp), dtype=dtype)
    if add_at:  # flat index of every (row position, C, kh, kw) entry of dcols in one sample's padded map
        oy, ox, c, a, b = np.meshgrid(np.arange(Ho), np.arange(Wo), np.arange(C), np.arange(kh), np.arange(kw),
                                      indexing="ij")
        tgt = ((c * Hp + oy * sh + a) * Wp + ox * sw + b).reshape(Ho * Wo, -1)
    step = legacy._chunk(cn)
    for i in range(0, M, step):
        Gm = G4[i:i + step].transpose(0, 2, 3, 1).reshape(-1, C_out)
        r = np.flatnonzero(Gm.any(axis=1))
        vals = Gm[r] @ Kmat
        blk = e[i:i + step]
        if add_at:
            m_of, p_of = np.divmod(r, Ho * Wo)
            idx = m_of[:, None] * (C * Hp * Wp) + tgt[p_of]
            np.add.at(blk.reshape(-1), idx.ravel(), vals.ravel())
            continue
        full = np.zeros((Gm.shape[0], Kmat.shape[1]), dtype)
        full[r] = vals
        dcols = full.reshape(-1, Ho, Wo, C, kh, kw)
        for a in range(kh):
            for b in range(kw):
                blk[:, :, a:a + sh * (Ho - 1) + 1:sh, b:b + sw * (Wo - 1) + 1:sw] += \
                    dcols[..., a, b].transpose(0, 3, 1, 2)
    return cn.unpool(e[:, :, ph:ph + H, pw:pw + Wd].reshape(M, -1))


class chunk_elements:
    """Run with another ``layers.CHUNK_ELEMENTS`` (and ``gradient.SKIP_ROWS_BELOW``)."""

    def __init__(self, n=None, skip=None):
        self.n, self.skip = n, skip

    def __enter__(self):
        self.old = layers.CHUNK_ELEMENTS, gradient.SKIP_ROWS_BELOW
        if self.n is not None:
            layers.CHUNK_ELEMENTS = self.n
        if self.skip is not None:
            gradient.SKIP_ROWS_BELOW = self.skip

    def __exit__(self, *exc):
        layers.CHUNK_ELEMENTS, gradient.SKIP_ROWS_BELOW = self.old


def with_settings(fn, n=None, skip=None, block=None):
    def run():
        old_block = gradient.STEP_BLOCK
        if block is not None:
            gradient.STEP_BLOCK = block
        try:
            with chunk_elements(n, skip):
                return fn()
        finally:
            gradient.STEP_BLOCK = old_block
    return run


# ---------------------------------------------------------------------------------------------
# the parts
# ---------------------------------------------------------------------------------------------
def layer_inputs(net, rec, dtype):
    """Per layer: G natural [T*B, N] and channel-major, the input spikes z, what arrives from above
    (old: e [T, B, N] unpooled; new: the _Arriving object), in ``dtype``."""
    dyn = net.dynamics()
    conns = dyn.connections
    x, u, s, W = rec["x"], rec["u"], rec["s"], [np.asarray(w, dtype) for w in rec["W"]]
    L = len(W)
    out = [None] * L
    arriving = gradient._Arriving(np.asarray(rec["grad_s"], dtype).reshape(T * B, -1), "rows", None)
    e_old = np.asarray(rec["grad_s"], dtype)
    for l in range(L - 1, -1, -1):
        cn = conns[l]
        conv = cn.kind == "conv"
        G, active = gradient._layer_gradient(dyn[l], SG, u[l], s[l], arriving, None, np.dtype(dtype), False,
                                             cn.out_shape if conv else None, None)
        z = np.asarray(x if l == 0 else s[l - 1]).reshape(T * B, -1)
        Gn = np.ascontiguousarray(G.transpose(1, 0, 2)).reshape(T * B, -1) if conv else G
        out[l] = dict(G=Gn, Gc=G if conv else None, active=active, z=z, arriving=arriving, e_old=e_old, W=W[l])
        if conv:
            E = cn.conv_grad_input(G, W[l])
            arriving = gradient._Arriving(E, "channels", cn if cn.pool is not None else None)
        else:
            arriving = gradient._Arriving(G @ W[l], "rows", cn if cn.pool is not None else None)
        e_old = legacy.grad_input(cn, Gn, W[l], dtype=dtype).reshape(T, B, -1) if l > 0 else None
    return out


def new_dK(cn, li, dtype, skip=True):
    xp = cn.op_input(li["z"], dtype)
    rows = gradient._rows_to_use(li["active"] & xp.any(axis=(0, 2, 3))) if skip else None
    return cn.conv_grad_params(li["Gc"], xp, rows=rows)


def new_dX(cn, li, skip=True):
    rows = gradient._rows_to_use(li["active"]) if skip else None
    return cn.conv_grad_input(li["Gc"], li["W"], rows=rows)


def parts(net, rec, dtype):
    """name -> {alternative: (function, comparable output function or None)}."""
    dyn = net.dynamics()
    conns = dyn.connections
    li = layer_inputs(net, rec, dtype)
    x, u, s, W = rec["x"], rec["u"], rec["s"], rec["W"]
    out = {}
    chunks = [1 << 20, 1 << 21, 1 << 22, 1 << 24]

    def dK_alts(l):
        cn, q = conns[l], li[l]
        alts = {
            "legacy": lambda: legacy.grad_params(cn, q["G"], q["z"], dtype=dtype),
            "new": lambda: new_dK(cn, q, dtype),
            "new-all-rows": lambda: new_dK(cn, q, dtype, skip=False),
            "new-skip-always": with_settings(lambda: new_dK(cn, q, dtype), skip=1.01),
        }
        for n in chunks:
            alts[f"new-chunk-2^{n.bit_length() - 1}"] = with_settings(lambda: new_dK(cn, q, dtype), n=n)
        alts["per-sample"] = lambda: per_sample_dK(cn, q["G"], q["z"], dtype)
        alts["rows-gather"] = lambda: rows_gather_dK(cn, q["G"], q["z"], dtype)
        return alts

    out["layer1 dK"] = dK_alts(0)
    out["layer2 dK"] = dK_alts(1)
    cn2, q2 = conns[1], li[1]

    def to_natural(e):  # the new operator's [C, M, H, W] -> unpooled natural [M, n_pre], for the comparison
        return cn2.unpool(np.ascontiguousarray(e.transpose(1, 0, 2, 3)).reshape(T * B, -1))
    alts = {
        "legacy": lambda: legacy.grad_input(cn2, q2["G"], q2["W"], dtype=dtype),
        "new": lambda: new_dX(cn2, q2),
        "new-all-rows": lambda: new_dX(cn2, q2, skip=False),
        "new-skip-always": with_settings(lambda: new_dX(cn2, q2), skip=1.01),
    }
    for n in chunks:
        alts[f"new-chunk-2^{n.bit_length() - 1}"] = with_settings(lambda: new_dX(cn2, q2), n=n)
    alts["per-sample"] = lambda: per_sample_dX(cn2, q2["G"], q2["W"], dtype)
    alts["rows-skip"] = lambda: rows_skip_dX(cn2, q2["G"], q2["W"], dtype)
    alts["rows-skip-add.at"] = lambda: rows_skip_dX(cn2, q2["G"], q2["W"], dtype, add_at=True)
    out["layer2 dX"] = (alts, {k: to_natural for k in alts if k.startswith("new")})
    for l in (0, 1):
        cn, q, d = conns[l], li[l], dyn[l]
        C_out, Ho, Wo = cn.out_shape

        def old_g(l=l, q=q, d=d):
            return legacy.layer_gradient(d, SG, np.asarray(u[l], dtype), np.asarray(s[l], dtype), q["e_old"], None,
                                         np.dtype(dtype), False)

        def new_g(l=l, q=q, d=d, cn=cn):
            return gradient._layer_gradient(d, SG, u[l], s[l], q["arriving"], None, np.dtype(dtype), False,
                                            cn.out_shape, None)[0]

        def nat(G, C_out=C_out):
            return G.transpose(1, 0, 2).reshape(T, B, -1)
        out[f"g layer{l + 1}"] = ({"legacy": old_g, "new": new_g,
                                   "new-unblocked": with_settings(new_g, block=1 << 40)},
                                  {"new": nat, "new-unblocked": nat})
    cnp = conns[1]
    out["pool"] = {"legacy": lambda: legacy.pooled(cnp, li[1]["z"]).astype(dtype),
                   "new": lambda: cnp.pooled(li[1]["z"], dtype)}
    out["whole"] = {
        "legacy": lambda: legacy.backward(dyn, x, u, s, W, rec["grad_s"], None, SG, dtype=dtype),
        "new": lambda: backward(dyn, x, u, s, W, rec["grad_s"], None, SG, dtype=dtype),
        "new-all-rows": with_settings(lambda: backward(dyn, x, u, s, W, rec["grad_s"], None, SG, dtype=dtype),
                                      skip=0.0),
        "new-skip-always": with_settings(lambda: backward(dyn, x, u, s, W, rec["grad_s"], None, SG, dtype=dtype),
                                         skip=1.01),
    }
    return out


def rel_error(got, ref):
    got = got if isinstance(got, (tuple, list)) else [got]
    ref = ref if isinstance(ref, (tuple, list)) else [ref]
    flat_g, flat_r = [], []
    for g, r in zip(got, ref):
        if isinstance(g, tuple):
            flat_g += list(g)
            flat_r += list(r)
        else:
            flat_g.append(g)
            flat_r.append(r)
    errs = [float(np.abs(np.asarray(g, float) - np.asarray(r, float)).max() / max(np.abs(np.asarray(r, float)).max(),
                                                                                  1e-300))
            for g, r in zip(flat_g, flat_r) if g is not None]
    return max(errs)


def stats(net, rec):
    """How sparse the recording is: what the skipping can use."""
    li = layer_inputs(net, rec, np.float64)
    conns = net.connections
    out = {"input_density": float(np.mean(rec["x"]))}
    for l, cn in enumerate(conns):
        out[f"layer{l + 1}_spike_rate"] = float(np.mean(rec["s"][l]))
        out[f"layer{l + 1}_surrogate_nonzero"] = float(np.mean(SG.derivative(rec["u"][l] - 0.5) != 0))
        out[f"layer{l + 1}_G_zero_entries"] = float(np.mean(li[l]["G"] == 0))
        if cn.kind == "conv":
            q = li[l]
            C_out, Ho, Wo = cn.out_shape
            out[f"layer{l + 1}_G_zero_rows_tb"] = float(np.mean(~q["active"]))
            Gm = q["G"].reshape(T * B, C_out, Ho * Wo).transpose(0, 2, 1).reshape(-1, C_out)
            cols_any = legacy._im2col(cn, legacy.pooled(cn, q["z"]), np.float32).any(axis=1)
            out[f"layer{l + 1}_G_zero_position_rows"] = float(np.mean(~Gm.any(axis=1)))
            out[f"layer{l + 1}_empty_window_position_rows"] = float(np.mean(~cols_any))
            out[f"layer{l + 1}_position_rows_skippable_dK"] = float(np.mean(~(Gm.any(axis=1) & cols_any)))
    return out


def blas_threads(n):
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="blas")


def main():
    net, rec = recording()
    print(rec["source"], flush=True)
    st = stats(net, rec)
    print("recording: " + ", ".join(f"{k} {v:.3f}" for k, v in st.items()), flush=True)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                   "conv_backward.json" if args.dataset == "mnist"
                                   else f"conv_backward_{args.dataset}.json")
    results, commands = [], []
    if args.merge and os.path.exists(out):  # keep the other precisions / thread counts of an earlier run
        with open(out) as fh:
            old = json.load(fh)
        if old.get("recording") != rec["source"]:
            raise SystemExit(f"--merge: {out} was measured on another recording")
        results = [r for r in old["results"] if not (r["dtype"] in args.dtypes and r["threads"] in args.threads)]
        commands = old.get("commands", [old.get("command")])
    commands.append("python benchmarks/conv_backward.py " + " ".join(sys.argv[1:]))
    for dtname in args.dtypes:
        dtype = np.dtype(dtname)
        P = parts(net, rec, dtype)
        if args.parts:
            P = {k: v for k, v in P.items() if k in args.parts}
        table = {}
        for name, spec in P.items():
            alts, conv = spec if isinstance(spec, tuple) else (spec, {})
            ref = alts["legacy"]()
            errs = {}
            for k, fn in alts.items():
                got = fn()
                errs[k] = rel_error(conv[k](got) if k in conv else got, ref)
            table[name] = (alts, errs)
        for n_threads in args.threads:
            with blas_threads(n_threads):
                wall = {(p, k): [] for p, (alts, _) in table.items() for k in alts}
                cpu = {key: [] for key in wall}
                for rep in range(args.repeats):  # round robin over every part and alternative
                    for p, (alts, _) in table.items():
                        for k, fn in alts.items():
                            t0, c0 = time.perf_counter(), time.process_time()
                            fn()
                            wall[(p, k)].append(time.perf_counter() - t0)
                            cpu[(p, k)].append(time.process_time() - c0)
                    print(f"{dtname}, {n_threads} BLAS threads: round {rep + 1}/{args.repeats}, load "
                          f"{os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
                for (p, k), w in wall.items():
                    c = cpu[(p, k)]
                    results.append({"part": p, "alternative": k, "dtype": dtname, "threads": n_threads,
                                    "wall_ms_median": 1e3 * float(np.median(w)),
                                    "cpu_ms_median": 1e3 * float(np.median(c)),
                                    "wall_ms_min": 1e3 * float(np.min(w)), "cpu_ms_min": 1e3 * float(np.min(c)),
                                    "rel_error_vs_legacy": table[p][1][k]})
                write(out, results, commands, rec, st)  # after every block: a killed run keeps its numbers
        del P, table
    print("\n| part | alternative | dtype | BLAS threads | wall ms (median) | / legacy | CPU ms (median) | / legacy "
          "| rel. error vs legacy |\n| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['part']} | {r['alternative']} | {r['dtype']} | {r['threads']} | {r['wall_ms_median']:.1f} | "
              f"{r['wall_ratio_vs_legacy']:.3f} | {r['cpu_ms_median']:.1f} | {r['cpu_ratio_vs_legacy']:.3f} | "
              f"{r['rel_error_vs_legacy']:.1e} |")
    print(f"written: {out}")


def write(out, results, commands, rec, st):
    base = {(r["part"], r["dtype"], r["threads"]): r for r in results if r["alternative"] == "legacy"}
    for r in results:
        b = base[(r["part"], r["dtype"], r["threads"])]
        r["wall_ratio_vs_legacy"] = r["wall_ms_median"] / b["wall_ms_median"]
        r["cpu_ratio_vs_legacy"] = r["cpu_ms_median"] / b["cpu_ms_median"]
    try:
        from threadpoolctl import threadpool_info
        blas = [{k: i.get(k) for k in ("internal_api", "version", "architecture")}
                for i in threadpool_info() if i.get("user_api") == "blas"]
    except ImportError:
        blas = None
    with open(out, "w") as fh:
        json.dump({"commands": commands,
                   "network": "sdsnn_conv " + "x".join(map(str, SHAPES[args.dataset]))
                              + " (15C3-AP2-40C3-AP2-FC300-FC10)",
                   "batch_size": B, "T": T, "recording": rec["source"], "recording_stats": st,
                   "repeats": args.repeats, "blas": blas, "cpu_count": os.cpu_count(),
                   "load_average_at_end": list(os.getloadavg()),
                   "protocol": "every alternative of every part once per round, rounds repeated; medians; "
                               "wall = perf_counter, cpu = process_time (all threads of the process); "
                               "ratios against 'legacy' of the same part, precision and BLAS thread count",
                   "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
