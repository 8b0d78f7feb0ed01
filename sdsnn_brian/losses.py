"""Losses on the output layer's recorded activity, with their gradients.

A loss is called as ``loss(u_out, s_out, labels)``: ``u_out`` and ``s_out`` are the
output layer's membrane (before the reset) and spikes, ``[T, B, C]`` float arrays,
``labels`` are integer classes ``[B]``.  It returns a :class:`LossResult` holding
the value (a float, averaged over the batch) and the gradient of exactly that value
with respect to the spikes (``grad_s``) and/or directly to the membrane
(``grad_u``), which :func:`sdsnn_brian.gradient.backward` consumes.

``'rate_mse'`` (SD-SNN reference)
    ``r = mean_t s``; ``L = mean over the B*C entries of (r - onehot)**2``
    (torch ``MSELoss`` with ``reduction='mean'``).
    ``dL/ds_t = 2 (r - onehot) / (T B C)``.
``'ce_count'``
    ``logits = sum_t s``; ``L = mean_b CE(softmax(logits_b), label_b)``.
    ``dL/ds_t = (softmax(logits) - onehot) / B`` at every step.
``'ce_max_membrane'``
    ``logits = max_t u`` (the first step attaining the maximum); ``L = mean CE``.
    ``dL/du_t = (softmax - onehot) / B`` at that step, 0 elsewhere.

``scores`` (``[B, C]``) are the quantities whose argmax is the prediction: the
rates, the counts or the maximal membranes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Loss", "LossResult", "get_loss", "LOSSES"]


@dataclass
class LossResult:
    """Value and gradients of a loss on one batch.

    ``value``: float (batch mean); ``grad_s``/``grad_u``: ``[T, B, C]`` arrays
    (``dL/ds``, direct ``dL/du``) or ``None`` when the loss does not depend on
    that quantity; ``scores``: ``[B, C]``, prediction = ``scores.argmax(1)``.
    """

    value: float
    grad_s: np.ndarray | None
    grad_u: np.ndarray | None
    scores: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.scores, axis=1)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    m = logits.max(axis=1, keepdims=True)
    shifted = logits - m
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _one_hot(labels: np.ndarray, C: int, dtype) -> np.ndarray:
    y = np.zeros((labels.shape[0], C), dtype=dtype)
    y[np.arange(labels.shape[0]), labels] = 1.0
    return y


def _rate_mse(u, s, labels):
    T, B, C = s.shape
    r = s.mean(axis=0)
    diff = r - _one_hot(labels, C, s.dtype)
    value = float(np.mean(diff ** 2))
    g = (2.0 / (T * B * C)) * diff
    grad_s = np.broadcast_to(g, (T, B, C)).copy()
    return LossResult(value, grad_s, None, r)


def _ce_count(u, s, labels):
    T, B, C = s.shape
    logits = s.sum(axis=0)
    logp = _log_softmax(logits)
    value = float(-np.mean(logp[np.arange(B), labels]))
    g = (np.exp(logp) - _one_hot(labels, C, logp.dtype)) / B
    grad_s = np.broadcast_to(g, (T, B, C)).copy()
    return LossResult(value, grad_s, None, logits)


def _ce_max_membrane(u, s, labels):
    T, B, C = u.shape
    idx = np.argmax(u, axis=0)  # first maximum on ties, [B, C]
    logits = np.take_along_axis(u, idx[None], axis=0)[0]
    logp = _log_softmax(logits)
    value = float(-np.mean(logp[np.arange(B), labels]))
    g = (np.exp(logp) - _one_hot(labels, C, logp.dtype)) / B
    grad_u = np.zeros_like(u)
    np.put_along_axis(grad_u, idx[None], g[None], axis=0)
    return LossResult(value, None, grad_u, logits)


#: name -> (function, needs membrane, needs spikes)
LOSSES = {
    "rate_mse": (_rate_mse, False, True),
    "ce_count": (_ce_count, False, True),
    "ce_max_membrane": (_ce_max_membrane, True, False),
}


def _as_float(arr, what: str, name: str):
    a = np.asarray(arr)
    if a.dtype not in (np.float32, np.float64):
        if a.dtype == bool or np.issubdtype(a.dtype, np.number):
            a = a.astype(np.float64)
        else:
            raise ValueError(f"loss {name!r}: {what} must be numeric, got dtype {a.dtype}")
    if a.ndim != 3:
        raise ValueError(f"loss {name!r}: {what} must be [T, B, C], got shape {a.shape}")
    return a


class Loss:
    """A named loss; call as ``loss(u_out, s_out, labels) -> LossResult``.

    ``u_out`` may be ``None`` for losses on spikes (``uses_membrane`` False) and
    ``s_out`` may be ``None`` for losses on the membrane (``uses_spikes`` False).
    """

    def __init__(self, name: str):
        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
        self.name = name
        self._fn, self.uses_membrane, self.uses_spikes = LOSSES[name]

    def __repr__(self) -> str:
        return f"Loss({self.name!r})"

    def __call__(self, u_out, s_out, labels) -> LossResult:
        name = self.name
        if u_out is None and self.uses_membrane:
            raise ValueError(f"loss {name!r} needs the output membrane u_out")
        if s_out is None and self.uses_spikes:
            raise ValueError(f"loss {name!r} needs the output spikes s_out")
        u = None if u_out is None else _as_float(u_out, "u_out", name)
        s = None if s_out is None else _as_float(s_out, "s_out", name)
        if u is not None and s is not None and u.shape != s.shape:
            raise ValueError(f"loss {name!r}: u_out {u.shape} and s_out {s.shape} differ in shape")
        ref = u if u is not None else s
        T, B, C = ref.shape
        if T < 1 or C < 1:
            raise ValueError(f"loss {name!r}: need T >= 1 and C >= 1, got shape {ref.shape}")
        lab = np.asarray(labels)
        if lab.dtype == bool or not np.issubdtype(lab.dtype, np.integer):
            raise ValueError(f"loss {name!r}: labels must be integers, got dtype {lab.dtype}")
        if lab.shape != (B,):
            raise ValueError(f"loss {name!r}: labels must have shape ({B},) to match the batch, got {lab.shape}")
        bad = (lab < 0) | (lab >= C)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"loss {name!r}: label {int(lab[i])} (sample {i}) is outside [0, {C}) for {C} output neurons"
            )
        return self._fn(u, s, lab.astype(np.intp))


def get_loss(name) -> Loss:
    """The :class:`Loss` called ``name`` (``'rate_mse'``, ``'ce_count'``,
    ``'ce_max_membrane'``); a :class:`Loss` is returned as is."""
    if isinstance(name, Loss):
        return name
    return Loss(name)
