"""Neuronal pruning driven by spine ranges.

A *unit* is a post-synaptic neuron of a fully connected layer (a row of the
``[N_out, N_in]`` weight matrix) or a filter of a conv layer (``weights[i]`` of a
``[C_out, C_in, kh, kw]`` array).  Its incoming synapses are ``weights[i]`` and
``mask[i]``.

Importance (notes, section 2)::

    D_i = sum_j M_ij * norm(r+_ij + |r-_ij|)

``norm`` is min-max over *all* synapses of the layer (present or removed, as in the
reference), and 0.5 everywhere when max == min.  A pruned unit has an all-zero mask
row, so ``D_i = 0``.

Pruning target (decision)
-------------------------
``floor(N * rho)`` is read as the *total* number of pruned units the layer should
have after the step, already-pruned ones included (which is how the neurotrophic
rule's ``P_l`` reads, and what the reference code does: it takes the ``floor(N*rho)``
lowest-importance units and skips those already pruned).  Only the shortfall
``floor(N*rho) - P`` is newly pruned, chosen as the least important *living* units
(stable sort: ties go to the lower index).  The reference sorts all units together,
so when living units tie with pruned ones at ``D = 0`` it may prune a little less;
choosing among living units makes the count exact.  Pruned units stay pruned: the
set only grows.  At least ``min_alive`` (default 1) units always survive, and
``floor`` carries a ``1e-9`` tolerance so that e.g. ``100 * 0.29`` gives 29.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "minmax_normalise",
    "neuron_importance",
    "prune_target",
    "select_units_to_prune",
    "prune_step",
    "apply_unit_pruning",
]


def minmax_normalise(x: np.ndarray) -> np.ndarray:
    """``(x - min) / (max - min)`` over the whole array; all 0.5 when ``max == min``."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return x.copy()
    lo, hi = float(np.min(x)), float(np.max(x))
    if hi == lo or not math.isfinite(hi - lo):
        return np.full(x.shape, 0.5)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def neuron_importance(r_pos: np.ndarray, r_neg: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``D_i = sum_j M_ij * norm(r+_ij + |r-_ij|)``, one value per unit (axis 0)."""
    b = minmax_normalise(np.asarray(r_pos, dtype=np.float64) + np.abs(np.asarray(r_neg, dtype=np.float64)))
    m = np.asarray(mask, dtype=np.float64)
    return (b * m).reshape(m.shape[0], -1).sum(axis=1)


def prune_target(n_units: int, rho: float, min_alive: int = 1) -> int:
    """Total pruned units wanted: ``floor(n_units * rho)``, at most ``n_units - min_alive``."""
    k = int(math.floor(n_units * rho + 1e-9))
    return max(0, min(k, n_units - min_alive))


def select_units_to_prune(importance: np.ndarray, pruned: np.ndarray, target: int) -> np.ndarray:
    """Indices of the ``target - pruned.sum()`` least important living units (sorted ascending)."""
    pruned = np.asarray(pruned, dtype=bool)
    k = int(target) - int(pruned.sum())
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    alive = np.flatnonzero(~pruned)
    order = np.argsort(np.asarray(importance)[alive], kind="stable")
    return np.sort(alive[order[:k]]).astype(np.int64)


def prune_step(r_pos: np.ndarray, r_neg: np.ndarray, mask: np.ndarray, pruned: np.ndarray, rho: float,
               min_alive: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """One pruning decision (pure): returns ``(new_pruned, newly_pruned_indices)``.

    ``new_pruned`` is ``pruned`` plus the newly chosen units; nothing is un-pruned.
    Apply it to the arrays with :func:`apply_unit_pruning`.
    """
    pruned = np.asarray(pruned, dtype=bool)
    imp = neuron_importance(r_pos, r_neg, mask)
    new = select_units_to_prune(imp, pruned, prune_target(pruned.size, rho, min_alive))
    out = pruned.copy()
    out[new] = True
    return out, new


def apply_unit_pruning(mask: np.ndarray, pruned: np.ndarray, weights: np.ndarray | None = None,
                       biases: np.ndarray | None = None) -> None:
    """In place: zero the whole incoming mask row (conv: filter) of every pruned unit,
    and the corresponding weights and biases when given."""
    pruned = np.asarray(pruned, dtype=bool)
    if not pruned.any():
        return
    mask[pruned] = 0
    if weights is not None:
        weights[pruned] = 0
    if biases is not None:
        biases[pruned] = 0
