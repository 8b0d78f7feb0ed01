r"""Decoders for time decoding: small numpy networks over a window of readout spikes.

A decoder maps the readout spike raster of a window of ``L`` steps, ``x`` of shape
``[M, L, N]`` (``M`` rows: samples x window positions; ``N`` readout neurons), to
``n_out`` outputs (logits).  Everything is plain numpy with a hand-written backward:
no deep-learning framework at run time.

Kinds (:func:`make_decoder`)
----------------------------
``'mlp'``
    Flatten the raster (``L*N`` values), then ``Linear - ReLU`` per entry of ``hidden``,
    then ``Linear`` to ``n_out``.
``'conv1d'``
    A 1-D convolution over time (the ``N`` readouts are its input channels, ``channels``
    filters of ``kernel`` steps, 'valid', stride 1), ReLU, flatten, ``Linear`` to ``n_out``.
``'linear'``
    Flatten, one ``Linear`` to ``n_out`` (with the softmax distortion this is the paper's
    linear + softmax decoder).

Windows (:class:`Window`)
-------------------------
``tau='whole'`` decodes the whole sample once (``L = T``); an integer ``tau`` slides a
window of ``tau`` steps along the sample, one decision per position ``p = 0..T-tau``
(the window ending at step ``p + tau - 1``), with the same decoder weights: online
prediction.  ``rate=True`` is rate decoding: each window is reduced to its spike counts,
fed as the mean rate ``count / tau`` (one 'step', ``L = 1``), so the decoder sees the
counts only; the hidden sizes of the decoder stay the same, only its input layer is
``N`` wide instead of ``tau*N`` (a conv decoder's kernel shrinks to 1 step).

Distortions (:func:`distortion`)
--------------------------------
``'ce'`` cross-entropy of a softmax over the logits against integer labels;
``'bce'`` binary cross-entropy of sigmoid outputs against targets in [0, 1], summed
over the outputs (images).  Both return per-row losses and their gradient with respect
to the logits.
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["Linear", "ReLU", "Conv1d", "Decoder", "make_decoder", "Window", "distortion", "DECODERS",
           "DISTORTIONS"]

DECODERS = ("mlp", "conv1d", "linear")
DISTORTIONS = ("ce", "bce")


class Linear:
    """``y = x W^T + b`` on ``[M, n_in]``; weights uniform in ``±1/sqrt(n_in)`` (PyTorch's default)."""

    def __init__(self, n_in, n_out, rng):
        bound = 1.0 / np.sqrt(n_in)
        self.W = rng.uniform(-bound, bound, (n_out, n_in))
        self.b = rng.uniform(-bound, bound, n_out)

    def params(self):
        return [self.W, self.b]

    def forward(self, x):
        self._x = x
        return x @ self.W.T + self.b

    def backward(self, g):
        self.grads = [g.T @ self._x, g.sum(axis=0)]
        return g @ self.W


class ReLU:
    def params(self):
        return []

    def forward(self, x):
        self._mask = x > 0
        return x * self._mask

    def backward(self, g):
        self.grads = []
        return g * self._mask


class Conv1d:
    """'valid' 1-D cross-correlation over time: ``[M, C_in, L] -> [M, C_out, L - k + 1]``."""

    def __init__(self, c_in, c_out, kernel, rng):
        bound = 1.0 / np.sqrt(c_in * kernel)
        self.K = rng.uniform(-bound, bound, (c_out, c_in, kernel))
        self.b = rng.uniform(-bound, bound, c_out)
        self.k = int(kernel)

    def params(self):
        return [self.K, self.b]

    def forward(self, x):
        M, C, L = x.shape
        Lo = L - self.k + 1
        # columns [M, Lo, C*k]: entry (m, p, c*k + j) = x[m, c, p + j]
        cols = np.stack([x[:, :, j:j + Lo] for j in range(self.k)], axis=-1)  # [M, C, Lo, k]
        cols = cols.transpose(0, 2, 1, 3).reshape(M, Lo, C * self.k)
        self._cols, self._shape = cols, x.shape
        out = cols @ self.K.reshape(self.K.shape[0], -1).T + self.b  # [M, Lo, C_out]
        return out.transpose(0, 2, 1)

    def backward(self, g):
        M, C, L = self._shape
        Co = self.K.shape[0]
        Lo = L - self.k + 1
        gm = g.transpose(0, 2, 1).reshape(M * Lo, Co)
        self.grads = [(gm.T @ self._cols.reshape(M * Lo, -1)).reshape(self.K.shape), gm.sum(axis=0)]
        dcols = (gm @ self.K.reshape(Co, -1)).reshape(M, Lo, C, self.k)
        dx = np.zeros(self._shape)
        for j in range(self.k):
            dx[:, :, j:j + Lo] += dcols[..., j].transpose(0, 2, 1)
        return dx


class _Flatten:
    def params(self):
        return []

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, g):
        self.grads = []
        return g.reshape(self._shape)


class _TimeToChannels:
    """``[M, L, N] -> [M, N, L]`` (readouts become the conv's channels)."""

    def params(self):
        return []

    def forward(self, x):
        return x.transpose(0, 2, 1)

    def backward(self, g):
        self.grads = []
        return g.transpose(0, 2, 1)


class Decoder:
    """A chain of layers with ``forward``/``backward``; ``params()`` and ``grads()`` are
    lists of arrays in the same order (the optimiser updates ``params()`` in place).

    ``forward(x)``: ``x`` float ``[M, L, N]`` -> logits ``[M, n_out]``;
    ``backward(g)``: ``g = dLoss/dlogits`` -> ``dLoss/dx`` ``[M, L, N]``, parameter gradients
    kept for :meth:`grads`.
    """

    def __init__(self, kind, layers, in_shape, n_out, config):
        self.kind = kind
        self.layers = layers
        self.in_shape = tuple(in_shape)
        self.n_out = int(n_out)
        self._config = dict(config)

    def params(self) -> list:
        return [p for layer in self.layers for p in layer.params()]

    def grads(self) -> list:
        return [g for layer in self.layers for g in layer.grads]

    def n_params(self) -> int:
        return int(sum(p.size for p in self.params()))

    def config(self) -> dict:
        return dict(self._config)

    def forward(self, x):
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 3 or x.shape[1:] != self.in_shape:
            raise ValueError(f"decoder input must have shape [M, {self.in_shape[0]}, {self.in_shape[1]}] "
                             f"(rows, window steps, readouts), got {x.shape}")
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, g):
        g = np.asarray(g, dtype=np.float64)
        for layer in reversed(self.layers):
            g = layer.backward(g)
        return g

    def state(self) -> dict:
        return {f"dec.{i}": p.copy() for i, p in enumerate(self.params())}

    def load_state(self, arrays: dict):
        for i, p in enumerate(self.params()):
            p[...] = arrays[f"dec.{i}"]

    def __repr__(self):
        return f"Decoder({self.kind!r}, in={self.in_shape}, out={self.n_out}, params={self.n_params()})"


def make_decoder(kind, n_readout, length, n_out, *, hidden=(256,), channels=32, kernel=5, rng=None,
                 seed=0) -> Decoder:
    """A decoder of ``kind`` (``'mlp'``, ``'conv1d'``, ``'linear'``) for windows ``[M, length, n_readout]``.

    ``hidden``: MLP widths; ``channels``/``kernel``: the conv's filters (the kernel is
    clipped to ``length``).  Weights from ``rng`` (default ``default_rng(seed)``).
    """
    if kind not in DECODERS:
        raise ValueError(f"unknown decoder {kind!r}; known decoders: {', '.join(DECODERS)}")
    for v, what in ((n_readout, "n_readout"), (length, "length"), (n_out, "n_out")):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"make_decoder: {what} must be a positive integer, got {v!r}")
    hidden = tuple(int(h) for h in hidden)
    if any(h < 1 for h in hidden):
        raise ValueError(f"make_decoder: hidden widths must be positive, got {hidden}")
    rng = np.random.default_rng(seed) if rng is None else rng
    N, L = int(n_readout), int(length)
    cfg = {"kind": kind, "n_readout": N, "length": L, "n_out": int(n_out)}
    if kind == "linear":
        layers = [_Flatten(), Linear(L * N, n_out, rng)]
    elif kind == "mlp":
        layers, n = [_Flatten()], L * N
        for h in hidden:
            layers += [Linear(n, h, rng), ReLU()]
            n = h
        layers.append(Linear(n, n_out, rng))
        cfg["hidden"] = list(hidden)
    else:
        k = min(int(kernel), L)
        layers = [_TimeToChannels(), Conv1d(N, int(channels), k, rng), ReLU(), _Flatten(),
                  Linear(int(channels) * (L - k + 1), n_out, rng)]
        cfg.update(channels=int(channels), kernel=k)
    return Decoder(kind, layers, (L, N), n_out, cfg)


class Window:
    """What the decoder sees of a readout raster ``z [T, B, N]``.

    ``tau``: ``'whole'`` (one window, the whole sample) or an integer window length
    (sliding, one decision per position ``p``, the window ``[p, p + tau)``);
    ``rate``: rate decoding (the window's mean rate, ``count / tau``, as one step).
    """

    def __init__(self, tau="whole", rate=False):
        if tau != "whole" and (isinstance(tau, bool) or not isinstance(tau, numbers.Integral) or tau < 1):
            raise ValueError(f"Window: tau must be 'whole' or a positive integer, got {tau!r}")
        self.tau = tau
        self.rate = bool(rate)

    def length(self, T) -> int:
        """Window steps the decoder gets (1 for rate decoding)."""
        return 1 if self.rate else self._tau(T)

    def _tau(self, T):
        tau = T if self.tau == "whole" else int(self.tau)
        if tau > T:
            raise ValueError(f"Window: tau={tau} is longer than the sample ({T} steps)")
        return tau

    def positions(self, T) -> int:
        """Decisions per sample: 1 for the whole sample, ``T - tau + 1`` for a sliding window."""
        return T - self._tau(T) + 1

    def __call__(self, z):
        """``[P, B, L, N]`` decoder inputs (float64)."""
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 3:
            raise ValueError(f"Window: the raster must be [T, B, N], got shape {z.shape}")
        T = z.shape[0]
        tau, P = self._tau(T), self.positions(T)
        if self.rate:
            c = np.cumsum(np.concatenate([np.zeros((1,) + z.shape[1:]), z]), axis=0)
            return ((c[tau:tau + P] - c[:P]) / tau)[:, :, None, :]
        idx = np.arange(P)[:, None] + np.arange(tau)[None, :]  # [P, tau]
        return z[idx].transpose(0, 2, 1, 3)  # [P, tau, B, N] -> [P, B, tau, N]

    def backward(self, g, T):
        """Gradient ``[P, B, L, N]`` on the windows -> gradient ``[T, B, N]`` on the raster."""
        tau, P = self._tau(T), self.positions(T)
        g = np.asarray(g, dtype=np.float64)
        out = np.zeros((T, g.shape[1], g.shape[3]))
        for p in range(P):
            if self.rate:
                out[p:p + tau] += g[p, :, 0, :][None] / tau
            else:
                out[p:p + tau] += g[p].transpose(1, 0, 2)
        return out

    def config(self) -> dict:
        return {"tau": self.tau, "rate": self.rate}


def _softplus(x):
    return np.logaddexp(0.0, x)


def distortion(kind, logits, targets):
    """Per-row distortion and its gradient with respect to ``logits`` (``[M, n_out]``).

    ``'ce'``: ``targets`` int labels ``[M]``, loss ``-log softmax(logits)[label]``;
    ``'bce'``: ``targets`` ``[M, n_out]`` in [0, 1], loss ``sum_j BCE(sigmoid(logits_j), y_j)``.
    Returns ``(loss [M], grad [M, n_out])``.
    """
    if kind not in DISTORTIONS:
        raise ValueError(f"unknown distortion {kind!r}; known: {', '.join(DISTORTIONS)}")
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError(f"distortion: logits must be [M, n_out], got shape {logits.shape}")
    if not np.all(np.isfinite(logits)):
        raise ValueError("distortion: logits contain NaN or infinite values")
    M, C = logits.shape
    if kind == "ce":
        y = np.asarray(targets)
        if y.shape != (M,) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"distortion 'ce': targets must be {M} integer labels, got {y.dtype} {y.shape}")
        if y.size and (y.min() < 0 or y.max() >= C):
            raise ValueError(f"distortion 'ce': labels must lie in 0..{C - 1}, got [{y.min()}, {y.max()}]")
        z = logits - logits.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = -logp[np.arange(M), y]
        grad = np.exp(logp)
        grad[np.arange(M), y] -= 1.0
        return loss, grad
    y = np.asarray(targets, dtype=np.float64)
    if y.shape != (M, C):
        raise ValueError(f"distortion 'bce': targets must have shape {(M, C)}, got {y.shape}")
    if not np.all(np.isfinite(y)) or y.min(initial=0) < 0 or y.max(initial=0) > 1:
        raise ValueError("distortion 'bce': targets must be finite and in [0, 1]")
    loss = (_softplus(logits) - y * logits).sum(axis=1)
    grad = 0.5 * (1.0 + np.tanh(0.5 * logits)) - y  # sigmoid, stable
    return loss, grad
