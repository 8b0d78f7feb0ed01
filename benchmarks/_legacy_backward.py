"""The numpy backward pass as it was before benchmarks/conv_backward.py's changes (commit ca1c055).

A verbatim copy of ``sdsnn_brian.gradient.backward`` and of ``Connection``'s ``pooled``,
``unpool``, ``_im2col``, ``grad_params`` and ``grad_input`` of that commit, as functions of a
:class:`~sdsnn_brian.layers.Connection`, so that ``conv_backward.py`` can time the old and the
new implementation in the same process.  Not part of the package.
"""
from __future__ import annotations

import numpy as np

from sdsnn_brian.surrogate import Surrogate, get_surrogate

#: Elements of float64 scratch (im2col columns) allowed per chunk of the conv operators.
CHUNK_ELEMENTS = 1 << 23


def pooled(cn, z):
    z = np.asarray(z)
    if cn.pool is None:
        return z
    M = z.shape[0]
    C, H, W = cn.in_shape
    _, Hp, Wp = cn.op_shape
    (kh, kw), (sh, sw) = cn.pool.kernel, cn.pool.stride
    z4 = z.reshape(M, C, H, W)
    out = np.zeros((M, C, Hp, Wp))
    for a in range(kh):
        for b in range(kw):
            out += z4[:, :, a:a + sh * (Hp - 1) + 1:sh, b:b + sw * (Wp - 1) + 1:sw]
    out *= cn.pool_scale
    return out.reshape(M, -1)


def unpool(cn, e):
    if cn.pool is None:
        return e
    M = e.shape[0]
    C, H, W = cn.in_shape
    _, Hp, Wp = cn.op_shape
    (kh, kw), (sh, sw) = cn.pool.kernel, cn.pool.stride
    e4 = e.reshape(M, C, Hp, Wp) * cn.pool_scale
    if (sh, sw) == (kh, kw):  # non-overlapping windows: one broadcast write
        out = np.empty((M, C, H, W), dtype=e4.dtype)
        if (Hp * kh, Wp * kw) != (H, W):
            out[:, :, Hp * kh:] = 0
            out[:, :, :, Wp * kw:] = 0
        out[:, :, :Hp * kh, :Wp * kw].reshape(M, C, Hp, kh, Wp, kw)[...] = e4[:, :, :, None, :, None]
        return out.reshape(M, -1)
    out = np.zeros((M, C, H, W), dtype=e.dtype)
    for a in range(kh):
        for b in range(kw):
            out[:, :, a:a + sh * (Hp - 1) + 1:sh, b:b + sw * (Wp - 1) + 1:sw] += e4
    return out.reshape(M, -1)


def _chunk(cn):
    _, Ho, Wo = cn.out_shape
    per_row = Ho * Wo * cn.fan_in
    return max(1, CHUNK_ELEMENTS // max(per_row, 1))


def _im2col(cn, x, dtype):
    m = x.shape[0]
    C, H, W = cn.op_shape
    (kh, kw), (sh, sw), (ph, pw) = cn.kernel, cn.stride, cn.padding
    _, Ho, Wo = cn.out_shape
    x4 = np.asarray(x, dtype=dtype).reshape(m, C, H, W)
    if ph or pw:
        x4 = np.pad(x4, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(x4, (kh, kw), axis=(2, 3))
    win = win[:, :, :sh * (Ho - 1) + 1:sh, :sw * (Wo - 1) + 1:sw]  # [m, C, Ho, Wo, kh, kw]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(m * Ho * Wo, C * kh * kw)


def grad_params(cn, G, z, need_bias=True, dtype=np.float64):
    x = pooled(cn, z)
    if cn.kind == "dense":
        Z = np.asarray(x, dtype=dtype)
        return G.T @ Z, (G.sum(axis=0) if need_bias else None)
    M = G.shape[0]
    C_out, Ho, Wo = cn.out_shape
    G4 = G.reshape(M, C_out, Ho, Wo)
    dK = np.zeros((C_out, cn.fan_in), dtype=dtype)
    step = _chunk(cn)
    for i in range(0, M, step):
        cols = _im2col(cn, x[i:i + step], dtype)
        Gm = G4[i:i + step].transpose(0, 2, 3, 1).reshape(-1, C_out)
        dK += Gm.T @ cols
    db = G4.sum(axis=(0, 2, 3)) if need_bias else None
    return dK.reshape(cn.param_shape), db


def grad_input(cn, G, W, dtype=np.float64):
    W = np.asarray(W, dtype=dtype)
    if cn.kind == "dense":
        return unpool(cn, G @ W)
    M = G.shape[0]
    C, H, Wd = cn.op_shape
    (kh, kw), (sh, sw), (ph, pw) = cn.kernel, cn.stride, cn.padding
    C_out, Ho, Wo = cn.out_shape
    Kmat = W.reshape(C_out, -1)
    G4 = G.reshape(M, C_out, Ho, Wo)
    e = np.zeros((M, C, H + 2 * ph, Wd + 2 * pw), dtype=dtype)
    step = _chunk(cn)
    for i in range(0, M, step):
        Gm = G4[i:i + step].transpose(0, 2, 3, 1).reshape(-1, C_out)
        dcols = (Gm @ Kmat).reshape(-1, Ho, Wo, C, kh, kw)
        blk = e[i:i + step]
        for a in range(kh):
            for b in range(kw):
                blk[:, :, a:a + sh * (Ho - 1) + 1:sh, b:b + sw * (Wo - 1) + 1:sw] += \
                    dcols[..., a, b].transpose(0, 3, 1, 2)
    e = e[:, :, ph:ph + H, pw:pw + Wd].reshape(M, -1)
    return unpool(cn, e)


def backward(dynamics, x, u, s, weights, grad_s_out, grad_u_out, surrogate, detach_reset=False,
             need_bias=True, dtype=np.float64, connections=None):
    """The old ``sdsnn_brian.gradient.backward`` (argument checks left out)."""
    sg = surrogate if isinstance(surrogate, Surrogate) else get_surrogate(surrogate)
    dtype = np.dtype(dtype)
    L = len(weights)
    dyn = list(dynamics) if isinstance(dynamics, (list, tuple)) else [dynamics] * L
    x = np.asarray(x)
    T, B, _ = x.shape
    if connections is None:
        connections = getattr(dynamics, "connections", None)
    if connections is not None and all(c.plain for c in connections):
        connections = None
    Ws = [np.asarray(W, dtype=dtype) for W in weights]
    results = [None] * L
    e = None if grad_s_out is None else np.asarray(grad_s_out, dtype=dtype)
    for l in range(L - 1, -1, -1):
        d = dyn[l]
        N = Ws[l].shape[0] if connections is None else connections[l].n_post
        live = _reaching_neurons(Ws, l, N) if connections is None and e is not None else None
        if live is not None:
            n_all, N = N, len(live)
            e = e[:, :, live]
            ul = np.asarray(u[l])[:, :, live].astype(dtype, copy=False)
            sl = np.asarray(s[l])[:, :, live].astype(dtype, copy=False)
        else:
            ul = np.asarray(u[l], dtype=dtype)
            sl = np.asarray(s[l], dtype=dtype)
        g = layer_gradient(d, sg, ul, sl, e, grad_u_out if l == L - 1 else None, dtype, detach_reset)
        del ul, sl
        G = g.reshape(T * B, N)
        z = x if l == 0 else s[l - 1]
        if connections is not None:
            cn = connections[l]
            zf = np.asarray(z).reshape(T * B, -1)
            results[l] = grad_params(cn, G, zf, need_bias=need_bias, dtype=dtype)
            if l > 0:
                e = grad_input(cn, G, Ws[l], dtype=dtype).reshape(T, B, cn.n_pre)
            del g, G
            continue
        Z = np.asarray(z, dtype=dtype).reshape(T * B, -1)
        if live is None:
            dW = G.T @ Z
            db = G.sum(axis=0) if need_bias else None
            W_live = Ws[l]
        else:
            dW = np.zeros((n_all, Z.shape[1]), dtype=dtype)
            dW[live] = G.T @ Z
            db = None
            if need_bias:
                db = np.zeros(n_all, dtype=dtype)
                db[live] = G.sum(axis=0)
            W_live = Ws[l][live]
        results[l] = (dW, db)
        if l > 0:
            e = (G @ W_live).reshape(T, B, Ws[l].shape[1])
        del g, G, Z
    return results


def layer_gradient(d, sg, ul, sl, e, grad_u_out, dtype, detach_reset):
    """The old computation of one layer's ``g = dL/du [T, B, N]`` (whole arrays, then the time loop)."""
    T, B, N = ul.shape
    sgd = sg.derivative(ul - dtype.type(d.theta)).astype(dtype, copy=False)
    a = dtype.type(d.a)
    if d.reset == "hard":
        K = a * (1.0 - sl)
        if not detach_reset:
            K += a * (dtype.type(d.v_reset) - ul) * sgd
    elif d.reset == "subtract":
        if detach_reset:
            K = None
        else:
            K = a * (1.0 - dtype.type(d.reset_amount) * sgd)
    else:
        raise ValueError(f"backward: unknown reset kind {d.reset!r}")
    if e is not None:
        g = e * sgd
    else:
        g = np.zeros((T, B, N), dtype=dtype)
    del sgd
    if grad_u_out is not None:
        g += np.asarray(grad_u_out, dtype=dtype)
    buf = np.empty((B, N), dtype=dtype)
    if K is None:
        for t in range(T - 2, -1, -1):
            np.multiply(g[t + 1], a, out=buf)
            g[t] += buf
    else:
        for t in range(T - 2, -1, -1):
            np.multiply(K[t], g[t + 1], out=buf)
            g[t] += buf
    return g


def _reaching_neurons(Ws, l, N):
    if l + 1 >= len(Ws):
        return None
    live = np.flatnonzero(np.any(Ws[l + 1] != 0, axis=0))
    return live if len(live) <= 0.75 * N else None
