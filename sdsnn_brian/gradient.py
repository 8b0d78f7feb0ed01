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
    e = None if grad_s_out is None else np.asarray(grad_s_out, dtype=dtype)
    for l in range(L - 1, -1, -1):
        d = dyn[l]
        N = Ws[l].shape[0] if connections is None else connections[l].n_post
        live = _reaching_neurons(Ws, l, N) if connections is None and e is not None else None
        if live is not None:  # only these neurons reach the loss: the others' gradients are exactly 0
            n_all, N = N, len(live)
            e = e[:, :, live]
            ul = np.asarray(u[l])[:, :, live].astype(dtype, copy=False)
            sl = np.asarray(s[l])[:, :, live].astype(dtype, copy=False)
        else:
            ul = np.asarray(u[l], dtype=dtype)
            sl = np.asarray(s[l], dtype=dtype)
        sgd = sg.derivative(ul - dtype.type(d.theta)).astype(dtype, copy=False)
        a = dtype.type(d.a)

        # K_t = a * dp_t/du_t
        if d.reset == "hard":
            K = a * (1.0 - sl)
            if not detach_reset:
                K += a * (dtype.type(d.v_reset) - ul) * sgd
        elif d.reset == "subtract":
            if detach_reset:
                K = None  # the constant a
            else:
                K = a * (1.0 - dtype.type(d.reset_amount) * sgd)
        else:
            raise ValueError(f"backward: layer {l} has unknown reset kind {d.reset!r}; use 'hard' or 'subtract'")
        del ul, sl

        # A_t = e_t sg'_t + d_t ; g accumulates in place
        if e is not None:
            g = e * sgd
        else:
            g = np.zeros((T, B, N), dtype=dtype)
        del sgd
        if l == L - 1 and grad_u_out is not None:
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
        del K, buf

        G = g.reshape(T * B, N)
        z = x if l == 0 else s[l - 1]
        if connections is not None:
            cn = connections[l]
            zf = np.asarray(z).reshape(T * B, -1)
            results[l] = cn.grad_params(G, zf, need_bias=need_bias, dtype=dtype)
            if l > 0:
                e = cn.grad_input(G, Ws[l], dtype=dtype).reshape(T, B, cn.n_pre)
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
