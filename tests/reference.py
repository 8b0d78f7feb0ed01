"""Independent reference implementations for the gradient tests.

* :func:`numpy_forward`: a plain per-step numpy simulation of the layered forward
  model (see :mod:`sdsnn_brian.gradient`), written without the package's code.
* :func:`torch_forward` / :func:`torch_loss`: the same forward and the three losses
  in torch, with a custom autograd spike function whose backward is the surrogate
  (written here in torch), so autograd gives reference gradients.

torch is optional: the module imports without it; the torch functions then raise.
"""
from __future__ import annotations

import math

import numpy as np

try:  # torch is a test-only dependency
    import torch
except ImportError:  # pragma: no cover - exercised only without torch
    torch = None


def _layer_list(dynamics, L):
    if isinstance(dynamics, (list, tuple)):
        assert len(dynamics) == L
        return list(dynamics)
    return [dynamics] * L


# ---------------------------------------------------------------------------
# numpy forward
# ---------------------------------------------------------------------------
def numpy_forward(dynamics, weights, biases, x):
    """Simulate the network step by step; returns ``(u_list, s_list)``, each a
    list of float64 ``[T, B, N_l]`` arrays (membrane before reset, spikes)."""
    x = np.asarray(x, dtype=np.float64)
    T, B, _ = x.shape
    L = len(weights)
    dyn = _layer_list(dynamics, L)
    if biases is None:
        biases = [None] * L
    u_list, s_list = [], []
    z = x
    for l in range(L):
        W = np.asarray(weights[l], dtype=np.float64)
        N = W.shape[0]
        b = np.zeros(N) if biases[l] is None else np.asarray(biases[l], dtype=np.float64)
        d = dyn[l]
        u = np.zeros((T, B, N))
        s = np.zeros((T, B, N))
        p = np.full((B, N), float(d.u_init))
        for t in range(T):
            inp = z[t] @ W.T  # [B, N_prev] x [N_prev, N]
            ut = d.a * p + d.c + inp + b
            if d.inclusive:
                st = (ut >= d.theta).astype(np.float64)
            else:
                st = (ut > d.theta).astype(np.float64)
            if d.reset == "hard":
                p = np.where(st > 0, d.v_reset, ut)
            elif d.reset == "subtract":
                p = ut - d.reset_amount * st
            else:
                raise ValueError(d.reset)
            u[t] = ut
            s[t] = st
        u_list.append(u)
        s_list.append(s)
        z = s
    return u_list, s_list


# ---------------------------------------------------------------------------
# torch reference
# ---------------------------------------------------------------------------
def _require_torch():
    if torch is None:
        raise ImportError("torch is needed for the torch reference")


def torch_surrogate(name, param, x):
    """The surrogate derivative written in torch (independent of the package)."""
    if name == "rectangular":
        return (x.abs() < param / 2).to(x.dtype) / param
    if name == "sigmoid":
        sg = torch.sigmoid(param * x)
        return param * sg * (1 - sg)
    if name == "fast_sigmoid":
        return 1.0 / (1.0 + param * x.abs()) ** 2
    if name == "arctan":
        return (param / 2) / (1 + (math.pi / 2 * param * x) ** 2)
    raise ValueError(name)


if torch is not None:

    class _Spike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, name, param, inclusive):
            ctx.save_for_backward(x)
            ctx.sg = (name, param)
            return ((x >= 0) if inclusive else (x > 0)).to(x.dtype)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            name, param = ctx.sg
            return grad * torch_surrogate(name, param, x), None, None, None


def torch_forward(dynamics, weights, biases, x, surrogate_name, surrogate_param, detach_reset=False):
    """The forward model in torch; ``weights``/``biases`` are tensors (biases may
    be None entries).  Returns ``(u_list, s_list)`` of ``[T, B, N]`` tensors."""
    _require_torch()
    T = x.shape[0]
    L = len(weights)
    dyn = _layer_list(dynamics, L)
    u_list, s_list = [], []
    z = x
    for l in range(L):
        W = weights[l]
        b = biases[l] if biases is not None else None
        d = dyn[l]
        N = W.shape[0]
        p = torch.full((x.shape[1], N), float(d.u_init), dtype=W.dtype)
        us, ss = [], []
        for t in range(T):
            ut = d.a * p + d.c + z[t] @ W.t()
            if b is not None:
                ut = ut + b
            st = _Spike.apply(ut - d.theta, surrogate_name, surrogate_param, d.inclusive)
            sr = st.detach() if detach_reset else st
            if d.reset == "hard":
                p = ut * (1 - sr) + d.v_reset * sr
            else:
                p = ut - d.reset_amount * sr
            us.append(ut)
            ss.append(st)
        u = torch.stack(us)
        s = torch.stack(ss)
        u_list.append(u)
        s_list.append(s)
        z = s
    return u_list, s_list


def torch_loss(name, u_out, s_out, labels):
    """The three losses in torch (scalar tensor)."""
    _require_torch()
    F = torch.nn.functional
    labels = torch.as_tensor(labels, dtype=torch.long)
    C = (u_out if u_out is not None else s_out).shape[2]
    if name == "rate_mse":
        r = s_out.mean(dim=0)
        return F.mse_loss(r, F.one_hot(labels, C).to(r.dtype))
    if name == "ce_count":
        return F.cross_entropy(s_out.sum(dim=0), labels)
    if name == "ce_max_membrane":
        T = u_out.shape[0]
        with torch.no_grad():  # first index attaining the max over time
            is_max = u_out == u_out.max(dim=0, keepdim=True).values
            rank = torch.arange(T, 0, -1).view(T, 1, 1).to(u_out.dtype)
            idx = (is_max.to(u_out.dtype) * rank).argmax(dim=0)
        logits = u_out.gather(0, idx.unsqueeze(0)).squeeze(0)
        return F.cross_entropy(logits, labels)
    raise ValueError(name)


# ---------------------------------------------------------------------------
# convolution and pooling references (written without the package's code)
# ---------------------------------------------------------------------------
# A layer spec is a dict: {"type": "conv", "stride": (sh, sw), "padding": (ph, pw), "pool": None or
# ((kh, kw), (sh, sw))} or {"type": "dense", "pool": ...}; "pool" is the average pooling applied to
# the layer below's spikes before this layer. Spikes travel as [B, C, H, W] maps (or [B, n] when flat).

def _np_avgpool(z, kernel, stride):
    B, C, H, W = z.shape
    (kh, kw), (sh, sw) = kernel, stride
    Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
    out = np.zeros((B, C, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            out[:, :, i, j] = z[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw].mean(axis=(2, 3))
    return out


def _np_conv2d(x, K, stride, padding):
    B, C, H, W = x.shape
    O, _, kh, kw = K.shape
    (sh, sw), (ph, pw) = stride, padding
    xp = np.zeros((B, C, H + 2 * ph, W + 2 * pw))
    xp[:, :, ph:ph + H, pw:pw + W] = x
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    out = np.zeros((B, O, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            patch = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            out[:, :, i, j] = np.einsum("bchw,ochw->bo", patch, K)
    return out


def numpy_conv_forward(dynamics, specs, weights, biases, x, in_shape):
    """Per-step numpy simulation of a conv/pool/dense chain; ``x`` is [T, B, prod(in_shape)].

    Returns ``(u_list, s_list)`` flattened channel-major to [T, B, N_l]."""
    x = np.asarray(x, dtype=np.float64)
    T, B, _ = x.shape
    L = len(weights)
    dyn = _layer_list(dynamics, L)
    z = x.reshape((T, B) + tuple(in_shape))
    u_list, s_list = [], []
    for l in range(L):
        spec, W, d = specs[l], np.asarray(weights[l], dtype=np.float64), dyn[l]
        b = None if biases is None else biases[l]
        currents = []
        for t in range(T):
            zt = z[t]
            if spec.get("pool") is not None:
                zt = _np_avgpool(zt, *spec["pool"])
            if spec["type"] == "conv":
                I = _np_conv2d(zt, W, spec["stride"], spec["padding"])
                if b is not None:
                    I = I + np.asarray(b)[None, :, None, None]
            else:
                I = zt.reshape(B, -1) @ W.T
                if b is not None:
                    I = I + np.asarray(b)
            currents.append(I)
        shape = currents[0].shape
        p = np.full(shape, float(d.u_init))
        u = np.zeros((T,) + shape)
        s = np.zeros((T,) + shape)
        for t in range(T):
            ut = d.a * p + d.c + currents[t]
            st = ((ut >= d.theta) if d.inclusive else (ut > d.theta)).astype(np.float64)
            p = np.where(st > 0, d.v_reset, ut) if d.reset == "hard" else ut - d.reset_amount * st
            u[t], s[t] = ut, st
        u_list.append(u.reshape(T, B, -1))
        s_list.append(s.reshape(T, B, -1))
        z = s
    return u_list, s_list


def torch_conv_forward(dynamics, specs, weights, biases, x, in_shape, surrogate_name, surrogate_param,
                       detach_reset=False):
    """The conv/pool/dense chain in torch (``F.conv2d``, ``F.avg_pool2d``); ``weights`` are tensors.

    Returns ``(u_list, s_list)`` of [T, B, N_l] tensors (flattened channel-major)."""
    _require_torch()
    F = torch.nn.functional
    T, B = x.shape[0], x.shape[1]
    L = len(weights)
    dyn = _layer_list(dynamics, L)
    z = x.reshape((T, B) + tuple(in_shape))
    u_list, s_list = [], []
    for l in range(L):
        spec, W, d = specs[l], weights[l], dyn[l]
        b = None if biases is None else biases[l]
        p = None
        us, ss = [], []
        for t in range(T):
            zt = z[t]
            if spec.get("pool") is not None:
                zt = F.avg_pool2d(zt, kernel_size=spec["pool"][0], stride=spec["pool"][1])
            if spec["type"] == "conv":
                I = F.conv2d(zt, W, b, stride=spec["stride"], padding=spec["padding"])
            else:
                I = zt.reshape(B, -1) @ W.t()
                if b is not None:
                    I = I + b
            if p is None:
                p = torch.full(I.shape, float(d.u_init), dtype=I.dtype)
            ut = d.a * p + d.c + I
            st = _Spike.apply(ut - d.theta, surrogate_name, surrogate_param, d.inclusive)
            sr = st.detach() if detach_reset else st
            p = ut * (1 - sr) + d.v_reset * sr if d.reset == "hard" else ut - d.reset_amount * sr
            us.append(ut)
            ss.append(st)
        u = torch.stack(us)
        s = torch.stack(ss)
        u_list.append(u.reshape(T, B, -1))
        s_list.append(s.reshape(T, B, -1))
        z = s
    return u_list, s_list
