"""Synaptic regeneration: removed synapses that keep asking to grow come back.

Slots
-----
Regeneration works on *slots*: a single synapse of a fully connected layer
(``kind='fc'``, slot array shape ``[N_out, N_in]``) or a whole ``kh x kw`` kernel of a
conv layer (``kind='conv'``, slot array ``[C_out, C_in]``; masks live on kernels).  A
slot is *removed* when its mask is 0 (conv: every entry of the kernel's mask is 0).

Score
-----
The score of a slot is the value of its weight (conv: the *signed sum* of the
kernel).  Which weight:

* ``mode='reference'``: the current weight.  Weights train densely within a
  structural step and the mask is only applied at step end, so a removed synapse's
  weight is exactly what its gradient made of it since its last zeroing.
* ``mode='strict'``: removed synapses transmit nothing and are not updated, so their
  weight stays 0 (the schedule re-zeroes them at every step end anyway).  The trainer then supplies ``grad_score``: per weight, the
  displacement the synapse *would* have had over the step had it been free, in
  weight units, i.e. ``-lr * sum_over_minibatches dL/dw`` (or the optimiser's
  would-be update) -- positive when the loss wants the synapse up.  The score uses
  the *virtual weights* ``V = W`` for present synapses and ``V = W + grad_score``
  for removed ones (:func:`virtual_weights`), so both modes compare the same kind of
  quantity.

In both modes the threshold is the ``p(t)``-th percentile (``np.percentile``, linear
interpolation) of the scores of *all* the layer's slots, present and removed.

Candidates, persistence, restoration
------------------------------------
A slot is a candidate when it is removed, its score is ``> threshold`` and -- only
when ``pruned_units`` is given to :func:`regeneration_candidates` -- its unit (row /
filter) is not pruned.  Whether synapses of pruned units may regrow is the
schedule's choice (``SDSNNConfig.regrow_pruned_units``): neuronal pruning is the
*only* way synapses are removed, so when pruned units are excluded regeneration can
only act on synapses that were absent from the start (an initially sparse mask),
i.e. it is inert in the standard setting.  The reference code does not exclude
them: regeneration regrows synapses (conv: kernels) *into pruned units*.

A per-slot counter counts consecutive candidate steps (a break resets it); when it exceeds ``G``
(``count > G``) the slot is restored (mask 1, keeping its current value) and the
counter restarts.  With the default counting a slot is restored on its ``G+1``-th
consecutive candidate step; ``count_transitions=True`` reproduces the reference code
(which only counts a step when the slot was also a candidate on the previous step,
so it needs ``G+2`` steps).
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "slot_shape",
    "slot_scores",
    "removed_slots",
    "virtual_weights",
    "regeneration_candidates",
    "update_persistence",
    "restore_slots",
]


def _check_kind(kind: str) -> None:
    if kind not in ("fc", "conv"):
        raise ValueError(f"layer kind must be 'fc' or 'conv', got {kind!r}")


def slot_shape(weight_shape: tuple, kind: str) -> tuple:
    """Shape of the slot array: the weight shape (fc) or ``(C_out, C_in)`` (conv)."""
    _check_kind(kind)
    return tuple(weight_shape) if kind == "fc" else tuple(weight_shape[:2])


def slot_scores(values: np.ndarray, kind: str) -> np.ndarray:
    """Per-slot score: the value itself (fc) or the signed kernel sum (conv)."""
    _check_kind(kind)
    v = np.asarray(values, dtype=np.float64)
    if kind == "fc":
        return v.copy()
    return v.reshape(v.shape[0], v.shape[1], -1).sum(axis=2)


def removed_slots(mask: np.ndarray, kind: str) -> np.ndarray:
    """Boolean slot array: True where the synapse (fc) / whole kernel (conv) is absent."""
    _check_kind(kind)
    m = np.asarray(mask)
    if kind == "fc":
        return m == 0
    return ~(m.reshape(m.shape[0], m.shape[1], -1) != 0).any(axis=2)


def virtual_weights(weights: np.ndarray, mask: np.ndarray, grad_score: np.ndarray) -> np.ndarray:
    """Strict mode: ``W`` where present, ``W + grad_score`` where removed."""
    w = np.asarray(weights, dtype=np.float64)
    g = np.asarray(grad_score, dtype=np.float64)
    if g.shape != w.shape:
        raise ValueError(f"grad_score shape {g.shape} != weight shape {w.shape}")
    return np.where(np.asarray(mask) != 0, w, w + g)


def regeneration_candidates(scores: np.ndarray, removed: np.ndarray, pruned_units: np.ndarray | None,
                            percentile: float) -> tuple[np.ndarray, float]:
    """``(candidates, threshold)``: removed slots of living units scoring above the
    ``percentile``-th percentile of all slot scores."""
    scores = np.asarray(scores, dtype=np.float64)
    thr = float(np.percentile(scores, percentile))
    cand = np.asarray(removed, dtype=bool) & (scores > thr)
    if pruned_units is not None:
        cand &= ~np.asarray(pruned_units, dtype=bool).reshape((-1,) + (1,) * (scores.ndim - 1))
    return cand, thr


def update_persistence(count: np.ndarray, candidates: np.ndarray, G: int,
                       prev_candidates: np.ndarray | None = None,
                       count_transitions: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive-candidate counter; returns ``(new_count, restore)``.

    ``count`` increments where a slot is a candidate (and, with
    ``count_transitions``, also was one at the previous step, ``prev_candidates``),
    resets to 0 elsewhere; ``restore = new_count > G``, whose counters restart at 0.
    """
    cand = np.asarray(candidates, dtype=bool)
    inc = cand
    if count_transitions:
        if prev_candidates is None:
            raise ValueError("count_transitions needs prev_candidates")
        inc = cand & np.asarray(prev_candidates, dtype=bool)
    new = np.where(inc, np.asarray(count, dtype=np.float64) + 1.0, 0.0)
    restore = new > G
    new[restore] = 0.0
    return new, restore


def restore_slots(mask: np.ndarray, restore: np.ndarray, kind: str) -> None:
    """In place: set the mask of the restored slots (conv: whole kernels) to 1."""
    _check_kind(kind)
    r = np.asarray(restore, dtype=bool)
    if r.any():
        mask[r] = 1
