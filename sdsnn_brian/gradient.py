r"""Backpropagation through time for the layered network Brian2 simulates.

The forward model
-----------------
Layers ``l = 1..L``; ``z^0_t = x_t`` are the input spikes, ``z^l_t = s^l_t``.  Per
layer, sample and step ``t = 0..T-1`` (:class:`sdsnn_brian.neuron.Dynamics`)::

    u_t = a p_{t-1} + c + W z^{l-1}_t + b          p_{-1} = u_init
    s_t = H(u_t - theta)
    p_t = u_t (1 - s_t) + v_reset s_t               (hard reset)
    p_t = u_t - reset_amount s_t                    (subtraction)

``W`` is ``[N_l, N_{l-1}]`` (post x pre).  There is no delay between layers: layer
``l`` at step ``t`` sees the spikes of layer ``l-1`` at step ``t``.

The backward pass
-----------------
``H'`` is replaced by a surrogate ``sg'(u - theta)`` (:mod:`sdsnn_brian.surrogate`).
Write ``g_t = dL/du_t`` (total derivative, through everything later), ``e_t =
dL/ds_t`` arriving from above (the loss for the output layer, ``g^{l+1}_t W^{l+1}``
for a hidden layer) and ``d_t`` the loss's direct ``dL/du_t`` (output layer only).
``u_t`` influences the loss through ``s_t`` and through ``p_t`` (hence
``u_{t+1}``, with ``du_{t+1}/dp_t = a``)::

    dp_t/du_t = (1 - s_t) + (v_reset - u_t) sg'_t      (hard)
              = 1 - reset_amount sg'_t                 (subtraction)

so, with ``g_T = 0``::

    hard:     g_t = (e_t + a g_{t+1} (v_reset - u_t)) sg'_t + a g_{t+1} (1 - s_t) + d_t
    subtract: g_t = (e_t - a g_{t+1} reset_amount) sg'_t + a g_{t+1} + d_t

``detach_reset=True`` drops the path through the spike inside the reset (the
``(v_reset - u_t) sg'_t`` and ``- reset_amount sg'_t`` terms), as when the spike is
detached in the reset of an autograd implementation.

Both are a linear recurrence ``g_t = A_t + K_t g_{t+1}`` with ``A_t = e_t sg'_t +
d_t`` and ``K_t = dp_t/du_t * a``, whose coefficients are computed for all steps at
once; the time loop is one elementwise multiply-add on ``[B, N]`` per step.  The
parameter gradients and the propagation to the layer below are single matrix
products over ``[T*B, N]``::

    dW^l = sum_{t,b} g_t^T z^{l-1}_t = G^T Z        db^l = sum_{t,b} g_t
    e^{l-1}_t = g^l_t W^l                    i.e.   E = G W

Convolution and pooling layers
------------------------------
When the layers' :class:`~sdsnn_brian.layers.Connection` objects are known
(``connections=``, or carried by ``dynamics`` as ``Network.dynamics()`` does), the
last two lines use each layer's own operator: for a conv layer ``dK`` is the
im2col product summed per kernel entry (the tied-weight rule), ``db`` sums over
positions per channel, and ``E`` is the transposed convolution; a pooling before a
layer averages ``Z`` over each window and spreads ``E`` back with weight
``1/(ph*pw)`` -- exactly what the Brian2 relay groups computed forward.  The
recurrence in time is the same for every layer (it is per neuron).

How it is computed (benchmarks/conv_backward.py measured the alternatives)
-------------------------------------------------------------------------
* ``g`` is computed step by step, t = T-1 .. 0, each step in blocks of about
  :data:`STEP_BLOCK` neurons x samples with scratch arrays that are reused (the same
  operations, in the same order, as the formulas above): the recordings are read once and
  the temporaries stay in the cache, where whole-array expressions allocated and wrote a
  dozen arrays of ``T*B*N`` values.  The spread of a pooled gradient over its windows is
  done there too, block by block, instead of as a separate array.
* A conv layer's ``g`` is written channel-major, ``[C_out, T*B, Ho*Wo]``: the layout in
  which ``dK = G cols^T`` and ``dcols = K^T G`` are one matrix product per chunk of rows,
  with no transposed copy of ``G`` (:meth:`~sdsnn_brian.layers.Connection.conv_grad_params`,
  :meth:`~sdsnn_brian.layers.Connection.conv_grad_input`); ``dL/ds`` of the layer below
  stays channel-major.
* Rows ``t*B + b`` whose ``g`` is all zero in a conv layer (no neuron of the sample in its
  surrogate window at that step or later with a path to the loss), or whose input is all
  zero, contribute nothing to its products; when they are more than ``1 -``
  :data:`SKIP_ROWS_BELOW` of the rows, the products leave them out.  Finer-grained
  skipping (single positions whose input window is empty, or whose ``g`` is zero) was
  measured and is slower: gathering the rows costs more than the product it saves.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .surrogate import Surrogate, get_surrogate

__all__ = ["backward"]


def _per_layer(dynamics, L):
    if isinstance(dynamics, (list, tuple)):
        if len(dynamics) != L:
            raise ValueError(f"backward: {len(dynamics)} dynamics for {L} layers")
        return list(dynamics)
    return [dynamics] * L


def backward(dynamics, x, u: Sequence, s: Sequence, weights: Sequence,
             grad_s_out, grad_u_out, surrogate, detach_reset: bool = False,
             need_bias: bool = True, dtype=np.float64, connections=None):
    """Gradients of the loss with respect to every layer's weights and biases.

    Parameters
    ----------
    dynamics : list of Dynamics (one per layer), or one Dynamics for all layers
    x : array [T, B, N0]
        Input spikes (0/1; bool, int or float).
    u, s : lists of arrays [T, B, N_l]
        Recorded membrane before the reset, and spikes (0/1), per layer.
    weights : list of arrays [N_l, N_{l-1}]
        Weight matrices (post x pre), per layer.
    grad_s_out, grad_u_out : array [T, B, N_L] or None
        ``dL/ds`` and direct ``dL/du`` of the output layer
        (:class:`sdsnn_brian.losses.LossResult`'s ``grad_s`` / ``grad_u``).
    surrogate : Surrogate, name or config dict
    detach_reset : bool
        Drop the gradient path through the spike in the reset.
    need_bias : bool
        Compute the bias gradients (else ``None`` in their place).
    dtype : numpy float dtype
        Precision of the computation and of the results (float64 by default;
        inputs of any float type are converted).
    connections : list of Connection, optional
        How each layer's input current is formed (conv, pooling); default: the
        ``connections`` attribute of ``dynamics`` if it has one, else all dense.

    Returns
    -------
    list of ``(dW_l, db_l)``, one per layer: ``dW_l`` of ``weights[l]``'s shape,
    ``db_l`` of shape ``[N_l]`` (a conv layer: ``[C_out]``) or ``None``.
    """
    sg = surrogate if isinstance(surrogate, Surrogate) else get_surrogate(surrogate)
    dtype = np.dtype(dtype)
    L = len(weights)
    if L == 0:
        raise ValueError("backward: no layers")
    if len(u) != L or len(s) != L:
        raise ValueError(f"backward: {L} weight matrices but {len(u)} membrane and {len(s)} spike recordings")
    dyn = _per_layer(dynamics, L)
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"backward: input x must be [T, B, N0], got shape {x.shape}")
    T, B, _ = x.shape

    if connections is None:
        connections = getattr(dynamics, "connections", None)
    if connections is not None and all(c.plain for c in connections):
        connections = None  # the fully connected path below, unchanged
    if connections is not None and len(connections) != L:
        raise ValueError(f"backward: {len(connections)} connections for {L} layers")
    Ws = [np.asarray(W, dtype=dtype) for W in weights]
    n_prev = x.shape[2]
    for l, W in enumerate(Ws):
        if connections is not None:
            cn = connections[l]
            if W.shape != tuple(cn.param_shape) or cn.n_pre != n_prev:
                raise ValueError(f"backward: layer {l} weights have shape {W.shape}, expected {cn.param_shape} "
                                 f"fed by {cn.n_pre} inputs (got {n_prev})")
            n_out = cn.n_post
        elif W.ndim != 2 or W.shape[1] != n_prev:
            raise ValueError(f"backward: layer {l} weights have shape {W.shape}, expected (N, {n_prev})")
        else:
            n_out = W.shape[0]
        shape = (T, B, n_out)
        if np.shape(u[l]) != shape or np.shape(s[l]) != shape:
            raise ValueError(
                f"backward: layer {l} recordings have shapes {np.shape(u[l])} (u) and {np.shape(s[l])} (s), "
                f"expected {shape}"
            )
        n_prev = n_out
    out_shape = (T, B, n_prev)
    for name, arr in (("grad_s_out", grad_s_out), ("grad_u_out", grad_u_out)):
        if arr is not None and np.shape(arr) != out_shape:
            raise ValueError(f"backward: {name} has shape {np.shape(arr)}, expected {out_shape}")

    results = [None] * L
    # dL/ds arriving at layer l from above, as left by layer l+1's operator (see _Arriving)
    arriving = None if grad_s_out is None else _Arriving(np.asarray(grad_s_out, dtype=dtype).reshape(T * B, -1),
                                                       "rows", None)
    d_out = None if grad_u_out is None else np.asarray(grad_u_out, dtype=dtype)
    for l in range(L - 1, -1, -1):
        d = dyn[l]
        if d.reset not in ("hard", "subtract"):
            raise ValueError(f"backward: layer {l} has unknown reset kind {d.reset!r}; use 'hard' or 'subtract'")
        cn = None if connections is None else connections[l]
        conv = cn is not None and cn.kind == "conv"
        N = Ws[l].shape[0] if connections is None else cn.n_post
        live = _reaching_neurons(Ws, l, N) if connections is None and arriving is not None else None
        G, active = _layer_gradient(d, sg, np.asarray(u[l]), np.asarray(s[l]), arriving,
                                    d_out if l == L - 1 else None, dtype, detach_reset,
                                    cn.out_shape if conv else None, live)
        z = np.asarray(x if l == 0 else s[l - 1]).reshape(T * B, -1)
        arriving = None
        if conv:  # G is [C_out, T*B, Ho*Wo]
            xp = cn.op_input(z, dtype)
            rows = _rows_to_use(active & xp.any(axis=(0, 2, 3)))
            results[l] = cn.conv_grad_params(G, xp, need_bias=need_bias, rows=rows)
            del xp
            if l > 0:
                E = cn.conv_grad_input(G, Ws[l], rows=_rows_to_use(active))
                arriving = _Arriving(E, "channels", cn if cn.pool is not None else None)
            del G
            continue
        if cn is not None:  # dense, perhaps after a pooling: G is [T*B, N]
            Z = np.asarray(cn.pooled(z, dtype), dtype=dtype)
            results[l] = (G.T @ Z, G.sum(axis=0) if need_bias else None)
            if l > 0:
                arriving = _Arriving(G @ Ws[l], "rows", cn if cn.pool is not None else None)
            del G, Z
            continue
        Z = np.asarray(z, dtype=dtype)
        if live is None:
            dW = G.T @ Z
            db = G.sum(axis=0) if need_bias else None
            W_live = Ws[l]
        else:
            n_all = N
            dW = np.zeros((n_all, Z.shape[1]), dtype=dtype)
            dW[live] = G.T @ Z
            db = None
            if need_bias:
                db = np.zeros(n_all, dtype=dtype)
                db[live] = G.sum(axis=0)
            W_live = Ws[l][live]
        results[l] = (dW, db)
        if l > 0:
            arriving = _Arriving(G @ W_live, "rows", None)
        del G, Z
    return results


#: Rows (``t*B + b``) of a conv layer enter its products only where they contribute -- dL/du
#: not all zero (and, for the weights, an input that is not all zero) -- when fewer than this
#: fraction of them do (else all rows go through, without the gathers).  Measured on the reference
#: conv net (benchmarks/README.md): leaving rows out anyway cost 10-20 % of the backward with 91 % of
#: the rows active, and saved 7 % with ~72 %, 21 % with ~45 %, 40 % with 17 %.
SKIP_ROWS_BELOW = 0.8


def _rows_to_use(active):
    n = int(np.count_nonzero(active))
    return np.flatnonzero(active) if n < SKIP_ROWS_BELOW * active.size else None


class _Arriving:
    """``dL/ds`` arriving at a layer from the one above, as that layer's operator left it.

    ``array``: ``[T*B, n]`` (``layout='rows'``) or ``[C, T*B, H, W]`` (``'channels'``, a conv
    operator's); ``pool``: the connection whose average pooling is spread back over the
    windows (in :func:`_layer_gradient`, block by block), or None."""

    def __init__(self, array, layout, pool):
        self.array, self.layout, self.pool = array, layout, pool

    def at(self, t, B, work):
        """Step ``t``: in the layer's working layout (``work``: ``[B, n]`` -> working view), or,
        with pooling, the pooled-level ``[C, B, Hp, Wp]`` view."""
        lo, hi = t * B, (t + 1) * B
        if self.pool is None:
            if self.layout == "rows":
                return work(self.array[lo:hi])
            C = self.array.shape[0]
            return self.array[:, lo:hi].reshape(C, B, -1)  # a conv layer's own layout
        C, _, _ = self.pool.in_shape
        _, Hp, Wp = self.pool.op_shape
        if self.layout == "rows":
            return self.array[lo:hi].reshape(B, C, Hp, Wp).transpose(1, 0, 2, 3)
        return self.array[:, lo:hi]


#: Elements per block of the step-by-step loop of :func:`_layer_gradient` (its scratch stays in cache).
STEP_BLOCK = 1 << 16


def _layer_gradient(d, sg, u, s, arriving, d_out, dtype, detach_reset, conv_out, live):
    """``g_t = dL/du_t`` of one layer for every step, by the recurrence of the module docstring.

    Computed step by step (t = T-1 .. 0), each step in blocks of about :data:`STEP_BLOCK`
    elements with reused scratch, so that the recordings are read once and the temporaries
    stay in cache; the operations are those of the formulas, in the same order.  Returns
    ``(G, active)``: ``G`` is ``[T*B, N]`` (``N``: the ``live`` neurons when given), or
    ``[C_out, T*B, Ho*Wo]`` for a conv layer (``conv_out = (C_out, Ho, Wo)``; the layout of its
    operators); ``active`` (conv layers only, else None): per row ``t*B + b``, whether ``g`` is
    not all zero there.
    """
    T, B = u.shape[0], u.shape[1]
    if conv_out is not None:
        C_out, Ho, Wo = conv_out
        P = Ho * Wo
        lead, rest = C_out, (B, P)

        def work(a):  # [B, N] -> [C_out, B, P] view
            return a.reshape(B, C_out, P).transpose(1, 0, 2)

        G = np.empty((C_out, T * B, P), dtype=dtype)

        def g_at(t):
            return G[:, t * B:(t + 1) * B]
        active = np.zeros(T * B, dtype=bool)
    else:
        n = u.shape[2] if live is None else len(live)
        lead, rest = B, (n,)

        def work(a):
            return a if live is None else a[:, live]

        G = np.empty((T * B, n), dtype=dtype)

        def g_at(t):
            return G[t * B:(t + 1) * B]
        active = None
    per_lead = int(np.prod(rest))
    nb = max(1, min(lead, STEP_BLOCK // max(per_lead, 1)))
    a = dtype.type(d.a)
    theta = dtype.type(d.theta)
    v_reset = dtype.type(d.v_reset)
    reset_amount = dtype.type(d.reset_amount)
    hard = d.reset == "hard"
    scratch = (nb,) + rest
    ub = np.empty(scratch, dtype=dtype) if u.dtype != dtype else None  # the membrane in dtype
    sgd = np.empty(scratch, dtype=dtype)  # sg'(u - theta)
    kb = np.empty(scratch, dtype=dtype)   # K_t, then K_t g_{t+1}
    tb = np.empty(scratch, dtype=dtype) if hard and not detach_reset else None
    pool = None if arriving is None else arriving.pool
    if pool is not None:
        C, H, W = pool.in_shape
        _, Hp, Wp = pool.op_shape
        (ph, pw), (qh, qw) = pool.pool.kernel, pool.pool.stride
        tiled = (qh, qw) == (ph, pw)  # non-overlapping windows: spread and multiply in one go
        eb = np.empty((nb, B, Hp, Wp) if tiled else scratch, dtype=dtype)
    for t in range(T - 1, -1, -1):
        uw, G_t = work(u[t]), g_at(t)
        sw = work(s[t]) if t < T - 1 and tb is not None or (hard and detach_reset) else None
        ew = None if arriving is None else arriving.at(t, B, work)
        dw = None if d_out is None else work(d_out[t])
        G_next = g_at(t + 1) if t < T - 1 else None
        for c0 in range(0, lead, nb):
            c1 = min(lead, c0 + nb)
            m = c1 - c0
            if ub is None:
                U = uw[c0:c1]
            else:
                U = ub[:m]
                np.copyto(U, uw[c0:c1], casting="unsafe")
            S = sgd[:m]
            np.subtract(U, theta, out=S)
            sg.derivative(S, out=S)
            g = G_t[c0:c1]
            # g_t = e_t sg'_t (+ d_t)
            if ew is None:
                g[...] = 0
            elif pool is None:
                np.multiply(ew[c0:c1], S, out=g)
            elif tiled:
                # e_t = the pooled gradient times 1/(ph*pw), spread over each window
                e4 = eb[:m]
                np.multiply(ew[c0:c1], pool.pool_scale, out=e4, casting="same_kind")
                g4, s4 = g.reshape(m, B, H, W), S.reshape(m, B, H, W)
                if Hp * ph != H:
                    g4[:, :, Hp * ph:] = 0
                if Wp * pw != W:
                    g4[:, :, :, Wp * pw:] = 0
                for i in range(ph):
                    for j in range(pw):
                        np.multiply(e4, s4[:, :, i:Hp * ph:ph, j:Wp * pw:pw], out=g4[:, :, i:Hp * ph:ph, j:Wp * pw:pw])
            else:
                e = eb[:m]
                pool._unpool_into(ew[c0:c1].transpose(1, 0, 2, 3), e.reshape(m, B, H, W).transpose(1, 0, 2, 3))
                np.multiply(e, S, out=g)
            if dw is not None:
                g += dw[c0:c1]
            if G_next is not None:
                # K_t = a dp_t/du_t (the formulas of the module docstring), then g_t += K_t g_{t+1}
                Kb = kb[:m]
                if hard:
                    if detach_reset:
                        np.copyto(Kb, sw[c0:c1], casting="unsafe")
                        np.subtract(1.0, Kb, out=Kb)
                        np.multiply(a, Kb, out=Kb)
                    else:
                        np.subtract(v_reset, U, out=Kb)
                        np.multiply(a, Kb, out=Kb)
                        np.multiply(Kb, S, out=Kb)
                        Tb = tb[:m]
                        np.copyto(Tb, sw[c0:c1], casting="unsafe")
                        np.subtract(1.0, Tb, out=Tb)
                        np.multiply(a, Tb, out=Tb)
                        np.add(Tb, Kb, out=Kb)
                    np.multiply(Kb, G_next[c0:c1], out=Kb)
                elif detach_reset:
                    np.multiply(G_next[c0:c1], a, out=Kb)
                else:
                    np.multiply(reset_amount, S, out=Kb)
                    np.subtract(1.0, Kb, out=Kb)
                    np.multiply(a, Kb, out=Kb)
                    np.multiply(Kb, G_next[c0:c1], out=Kb)
                g += Kb
            if active is not None:
                act = active[t * B:(t + 1) * B]
                np.logical_or(act, g.any(axis=(0, 2)), out=act)
    return G, active


def _reaching_neurons(Ws, l, N):
    """The neurons of hidden layer ``l`` with a nonzero weight to the layer above, when they are
    at most 3/4 of the layer (else ``None``: all of them).  The others -- pruned neurons whose
    outgoing synapses were removed -- get ``dL/ds = 0`` from above, hence ``dL/du = 0`` at
    every step (a hidden layer has no direct loss term): their rows of ``dW`` and ``db`` are 0
    and they add nothing to the layer below, so the backward skips them."""
    if l + 1 >= len(Ws):
        return None
    live = np.flatnonzero(np.any(Ws[l + 1] != 0, axis=0))
    return live if len(live) <= 0.75 * N else None
