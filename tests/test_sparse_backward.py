"""The backward's fast paths against plain dense computations.

The conv operators take ``G = dL/du`` channel-major and may leave out rows ``t*B + b`` whose
``G`` (or input) is all zero; the per-step recurrence works in blocks; spikes are pooled as
integer counts.  Each is compared with a straightforward dense numpy computation written
here (every row, whole arrays, float64 sums), on random sparse inputs with many all-zero rows
and the edge cases: nothing zero, everything zero, stride 2, padding 0 and 1, a pooling
before the layer (non-overlapping and overlapping, with leftover rows), float32 (1e-5) and
float64 (1e-12).
"""
import numpy as np
import pytest

from sdsnn_brian import AvgPool2d, Conv2d, Dense, Input, Network, gradient
from sdsnn_brian.gradient import backward
from sdsnn_brian.losses import get_loss
from sdsnn_brian.neuron import Dynamics
from sdsnn_brian.surrogate import SURROGATES, get_surrogate

TOL = {np.float32: 1e-5, np.float64: 1e-12}


# ---------------------------------------------------------------------------
# plain dense references
# ---------------------------------------------------------------------------
def ref_pool(cn, z):
    """Window averages, float64, by explicit loops over the window entries."""
    z = np.asarray(z, dtype=np.float64)
    if cn.pool is None:
        return z
    M = z.shape[0]
    C, H, W = cn.in_shape
    _, Hp, Wp = cn.op_shape
    (kh, kw), (sh, sw) = cn.pool.kernel, cn.pool.stride
    z4 = z.reshape(M, C, H, W)
    out = np.zeros((M, C, Hp, Wp))
    for y in range(Hp):
        for x in range(Wp):
            out[:, :, y, x] = z4[:, :, y * sh:y * sh + kh, x * sw:x * sw + kw].mean(axis=(2, 3))
    return out.reshape(M, -1)


def ref_unpool(cn, e):
    if cn.pool is None:
        return e
    M = e.shape[0]
    C, H, W = cn.in_shape
    _, Hp, Wp = cn.op_shape
    (kh, kw), (sh, sw) = cn.pool.kernel, cn.pool.stride
    e4 = e.reshape(M, C, Hp, Wp)
    out = np.zeros((M, C, H, W))
    for y in range(Hp):
        for x in range(Wp):
            out[:, :, y * sh:y * sh + kh, x * sw:x * sw + kw] += e4[:, :, y, x, None, None] / (kh * kw)
    return out.reshape(M, -1)


def ref_conv_grads(cn, G, z, W):
    """dK, db and dL/dz of a conv layer: every row, every output position, float64 einsums."""
    G = np.asarray(G, dtype=np.float64)
    M = G.shape[0]
    C, H, Wd = cn.op_shape
    C_out, Ho, Wo = cn.out_shape
    (kh, kw), (sh, sw), (ph, pw) = cn.kernel, cn.stride, cn.padding
    x = np.pad(ref_pool(cn, z).reshape(M, C, H, Wd), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    G4 = G.reshape(M, C_out, Ho, Wo)
    dK = np.zeros((C_out, C, kh, kw))
    ex = np.zeros_like(x)
    for a in range(kh):
        for b in range(kw):
            win = x[:, :, a:a + sh * (Ho - 1) + 1:sh, b:b + sw * (Wo - 1) + 1:sw]
            dK[:, :, a, b] = np.einsum("moyx,miyx->oi", G4, win)
            ex[:, :, a:a + sh * (Ho - 1) + 1:sh, b:b + sw * (Wo - 1) + 1:sw] += \
                np.einsum("moyx,oi->miyx", G4, np.asarray(W, np.float64)[:, :, a, b])
    dz = ref_unpool(cn, ex[:, :, ph:ph + H, pw:pw + Wd].reshape(M, -1))
    return dK, G4.sum(axis=(0, 2, 3)), dz


def close(got, ref, dtype):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    scale = np.abs(ref).max()
    if scale == 0:
        assert np.abs(got).max() == 0
        return
    assert np.abs(got - ref).max() <= TOL[dtype] * scale, np.abs(got - ref).max() / scale


# ---------------------------------------------------------------------------
# the conv operators, rows left out or not
# ---------------------------------------------------------------------------
GEOMETRIES = {
    "pad1": dict(pool=None, kernel=3, stride=1, padding=1),
    "pad0": dict(pool=None, kernel=3, stride=1, padding=0),
    "stride2-pad1": dict(pool=None, kernel=3, stride=2, padding=1),
    "rect-stride12": dict(pool=None, kernel=(2, 3), stride=(1, 2), padding=(0, 1)),
    "pool2-pad1": dict(pool=(2, None), kernel=3, stride=1, padding=1),
    "pool2-stride2-pad0": dict(pool=(2, None), kernel=3, stride=2, padding=0),
    "pool3s2-overlap": dict(pool=(3, 2), kernel=2, stride=1, padding=1),
}


def conv_connection(geom, in_shape=(3, 11, 13)):
    """The Connection of a conv layer with the given geometry (after a pooling when asked)."""
    if geom["pool"] is None:
        net = Network(Input(in_shape), Conv2d(4, kernel=geom["kernel"], stride=geom["stride"],
                                              padding=geom["padding"]), Dense(2))
        return net.connections[0]
    k, s = geom["pool"]
    net = Network(Input(in_shape), Conv2d(3, kernel=3, padding=1), AvgPool2d(k, stride=s),
                  Conv2d(4, kernel=geom["kernel"], stride=geom["stride"], padding=geom["padding"]), Dense(2))
    return net.connections[1]


def sparse_problem(cn, zeros, seed, M=24):
    """``G [M, n_post]`` zero where a rectangular window would be closed, whole rows zero, and
    binary input spikes ``z [M, n_pre]`` (uint8) with whole rows silent."""
    rng = np.random.default_rng(seed)
    G = rng.normal(size=(M, cn.n_post)) * (rng.random((M, cn.n_post)) < 0.35)
    z = (rng.random((M, cn.n_pre)) < 0.15).astype(np.uint8)
    if zeros == "many":
        G[rng.random(M) < 0.6] = 0
        z[rng.random(M) < 0.3] = 0
    elif zeros == "all-G":
        G[:] = 0
    elif zeros == "all-z":
        z[:] = 0
    elif zeros == "none":
        G = rng.normal(size=(M, cn.n_post))
        z = (rng.random((M, cn.n_pre)) < 0.5).astype(np.uint8)
        z[:, 0] = 1
    W = rng.normal(size=cn.param_shape)
    return G, z, W


def channel_major(cn, G, dtype):
    M = G.shape[0]
    C_out, Ho, Wo = cn.out_shape
    return np.ascontiguousarray(np.asarray(G, dtype).reshape(M, C_out, Ho * Wo).transpose(1, 0, 2))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("zeros", ["many", "none", "all-G", "all-z"])
@pytest.mark.parametrize("geom", list(GEOMETRIES))
def test_conv_operators_equal_dense_with_and_without_skipped_rows(geom, zeros, dtype):
    cn = conv_connection(GEOMETRIES[geom])
    G, z, W = sparse_problem(cn, zeros, seed=len(geom) * 7 + len(zeros))
    rdK, rdb, rdz = ref_conv_grads(cn, G, z, W)
    Gc = channel_major(cn, G, dtype)
    xp = cn.op_input(z, dtype)
    assert xp.dtype == dtype
    g_rows = Gc.any(axis=(0, 2))
    x_rows = xp.any(axis=(0, 2, 3))
    M = G.shape[0]
    if zeros == "many":
        assert 0 < g_rows.sum() < M and 0 < x_rows.sum() < M  # rows are left out indeed
    for rows_p, rows_g in ((None, None), (np.flatnonzero(g_rows & x_rows), np.flatnonzero(g_rows))):
        dK, db = cn.conv_grad_params(Gc, xp, rows=rows_p)
        assert dK.dtype == dtype and dK.shape == tuple(cn.param_shape) and db.shape == (cn.out_shape[0],)
        close(dK, rdK, dtype)
        close(db, rdb, dtype)
        E = cn.conv_grad_input(Gc, W, rows=rows_g)
        assert E.dtype == dtype and E.shape == (cn.op_shape[0], M) + tuple(cn.op_shape[1:])
        close(cn.unpool(np.ascontiguousarray(E.transpose(1, 0, 2, 3)).reshape(M, -1)), rdz, dtype)
    # the public row-layout methods
    dK, db = cn.grad_params(np.asarray(G, dtype), z, dtype=dtype)
    close(dK, rdK, dtype)
    close(db, rdb, dtype)
    close(cn.grad_input(np.asarray(G, dtype), W, dtype=dtype), rdz, dtype)


@pytest.mark.parametrize("chunk", [1, 700, 1 << 23])
def test_conv_operators_any_chunking(chunk, monkeypatch):
    """Chunks of one row, of a few rows (a last chunk shorter than the others) and of all rows."""
    from sdsnn_brian import layers

    monkeypatch.setattr(layers, "CHUNK_ELEMENTS", chunk)
    cn = conv_connection(GEOMETRIES["pool2-pad1"])
    G, z, W = sparse_problem(cn, "many", seed=3, M=17)
    rdK, _, rdz = ref_conv_grads(cn, G, z, W)
    Gc = channel_major(cn, G, np.float64)
    rows = np.flatnonzero(Gc.any(axis=(0, 2)))
    for r in (None, rows):
        close(cn.conv_grad_params(Gc, cn.op_input(z, np.float64), rows=r)[0], rdK, np.float64)
        E = cn.conv_grad_input(Gc, W, rows=r)
        close(cn.unpool(np.ascontiguousarray(E.transpose(1, 0, 2, 3)).reshape(17, -1)), rdz, np.float64)


@pytest.mark.parametrize("geom", ["pool2-pad1", "pool3s2-overlap", "pool2-stride2-pad0"])
@pytest.mark.parametrize("kind", ["bool", "uint8-spikes", "uint8-counts", "int32", "float64", "float32"])
def test_pooling_equals_dense(geom, kind):
    cn = conv_connection(GEOMETRIES[geom])
    rng = np.random.default_rng(5)
    spikes = rng.random((6, cn.n_pre)) < 0.3
    z = {"bool": spikes, "uint8-spikes": spikes.astype(np.uint8),
         "uint8-counts": (spikes * rng.integers(0, 256, spikes.shape)).astype(np.uint8),
         "int32": (spikes * rng.integers(-5, 9, spikes.shape)).astype(np.int32),
         "float64": rng.random((6, cn.n_pre)), "float32": rng.random((6, cn.n_pre)).astype(np.float32)}[kind]
    ref = ref_pool(cn, z)
    got = cn.pooled(z)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-14, atol=1e-14)
    got32 = cn.pooled(z, np.float32)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, ref, rtol=1e-6, atol=1e-6)
    e = rng.normal(size=(6, cn.n_op))
    np.testing.assert_allclose(cn.unpool(e), ref_unpool(cn, e), rtol=1e-14, atol=1e-14)


# ---------------------------------------------------------------------------
# the whole backward: skipping rows and blocking the steps change nothing
# ---------------------------------------------------------------------------
def ref_backward(dyn, x, u, s, W, grad_s, sg, conns):
    """BPTT with whole arrays and the dense references above (hard reset, every row)."""
    T, B = x.shape[:2]
    out = [None] * len(W)
    e = np.asarray(grad_s, np.float64)
    for l in range(len(W) - 1, -1, -1):
        d, cn = dyn[l], conns[l]
        sgd = sg.derivative(u[l] - d.theta)
        K = d.a * (1 - s[l]) + d.a * (d.v_reset - u[l]) * sgd
        g = e * sgd
        for t in range(T - 2, -1, -1):
            g[t] += K[t] * g[t + 1]
        G = g.reshape(T * B, -1)
        z = (x if l == 0 else s[l - 1]).reshape(T * B, -1)
        if cn.kind == "conv":
            dK, db, dz = ref_conv_grads(cn, G, z, W[l])
            out[l] = (dK, db)
        else:
            out[l] = (G.T @ ref_pool(cn, z), G.sum(axis=0))
            dz = ref_unpool(cn, G @ W[l])
        e = dz.reshape(T, B, -1)
    return out


def conv_problem(seed=0, T=6, B=5):
    net = Network(Input((2, 10, 12)), Conv2d(3, kernel=3, padding=1), AvgPool2d(2),
                  Conv2d(4, kernel=(2, 3), stride=(1, 2)), AvgPool2d(2), Dense(5), Dense(3), steps=T)
    rng = np.random.default_rng(seed)
    W, b = net.init_params(rng)
    W = [3.0 * w for w in W]
    x = (rng.random((T, B, net.input.size)) < 0.4).astype(np.uint8)
    d = Dynamics(a=0.2, c=0.0, theta=0.5, reset="hard", v_reset=0.0, u_init=0.0)
    dyn = [d] * 4
    # membranes and spikes of a plausible recording (the backward takes them as given)
    u = [rng.normal(0.3, 0.6, (T, B, n)) for n in net.sizes[1:]]
    s = [(v > 0.5).astype(np.uint8) for v in u]
    labels = rng.integers(0, 3, B)
    res = get_loss("rate_mse")(u[-1], s[-1], labels)
    grad_s = res.grad_s.copy()
    grad_s[:, :2] = 0  # two samples that contribute nothing: their rows are zero in every layer
    return net, dyn, x, u, s, W, grad_s


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("skip", [0.0, 1.01])
@pytest.mark.parametrize("block", [1, 37, 1 << 30])
def test_backward_equals_dense_reference(dtype, skip, block, monkeypatch):
    monkeypatch.setattr(gradient, "SKIP_ROWS_BELOW", skip)  # 0: never leave rows out; 1.01: always
    monkeypatch.setattr(gradient, "STEP_BLOCK", block)      # 1: a block per channel (conv) or sample (dense)
    net, dyn, x, u, s, W, grad_s = conv_problem()
    sg = get_surrogate("rectangular")
    ref = ref_backward(dyn, x, u, s, W, grad_s, sg, net.connections)
    got = backward(dyn, x, u, s, W, grad_s, None, sg, dtype=dtype, connections=net.connections)
    for (dW, db), (rW, rb) in zip(got, ref):
        assert dW.dtype == dtype and np.abs(rW).max() > 0
        close(dW, rW, dtype)
        close(db, rb, dtype)


def test_backward_all_zero_gradient_and_single_step():
    net, dyn, x, u, s, W, grad_s = conv_problem(T=1)
    sg = get_surrogate("rectangular")
    got = backward(dyn, x, u, s, W, np.zeros_like(grad_s), None, sg, connections=net.connections)
    assert all(np.all(dW == 0) and np.all(db == 0) for dW, db in got)
    ref = ref_backward(dyn, x, u, s, W, grad_s, sg, net.connections)
    got = backward(dyn, x, u, s, W, grad_s, None, sg, connections=net.connections)
    for (dW, db), (rW, rb) in zip(got, ref):
        close(dW, rW, np.float64)
        close(db, rb, np.float64)


@pytest.mark.parametrize("name", list(SURROGATES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_surrogate_derivative_into_out(name, dtype):
    sg = get_surrogate(name)
    x = np.random.default_rng(0).normal(0, 1, 1000).astype(dtype)
    x[:3] = [0.5, -0.5, 0.0]  # the rectangle's edges
    ref = sg.derivative(x)
    buf = x.copy()
    got = sg.derivative(buf, out=buf)
    assert got is buf and got.dtype == dtype
    np.testing.assert_array_equal(got, ref)
