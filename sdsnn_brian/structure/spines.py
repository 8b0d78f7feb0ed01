"""Dendritic-spine synaptic constraint: per-synapse spine ranges ``[r-, r+]``.

Every synapse of a structural layer carries a spine range.  The functions here are
pure: they take a :class:`SpineState` (plus the masked weights of the step) and
return a new one; nothing is modified in place.

Dynamics (notes ``sdsnn-algorithm.md``, section 1), once per structural step on the
masked weights ``w = W * M``:

* initialisation (step 0, :func:`init_spines`): ``r+ = max(W)`` and ``r- = -max(W)``,
  the signed layer maximum, the same for every synapse.  When the layer maximum is
  positive, ``r- < 0 < r+`` and the dynamics keep it so (expansion only widens,
  contraction scales both by a positive factor).  When it is ``<= 0`` (a degenerate
  layer) the range is empty or inverted, exactly as in the reference code; the
  constraint then pins every weight to ``r-`` (see :func:`constrain`).
* expansion up (:func:`update_spines`): a synapse with ``w >= r+`` on consecutive
  steps counts ``c+`` and accumulates the excess ``d+ += w - r+``; a step where it
  is not above resets both.  When ``c+`` reaches ``T_s``: ``r+ += d+ / T_s`` (the
  mean excess over the run) and ``c+, d+`` restart from 0.
* expansion down: symmetric with ``w <= r-``; ``d- += w - r-`` (``<= 0``); at ``T_s``:
  ``r- += d- / T_s``.
* contraction: a synapse whose ``|w|`` strictly decreased on consecutive steps
  counts ``c0``; at ``T_s``: ``r+ *= contraction`` and ``r- *= contraction``
  (0.75), ``c0`` restarts.  Expansion is applied first, contraction second (the
  reference order).  The "previous ``|w|``" is the masked weight seen by the
  update, before the constraint clips it (as in the reference).
* constraint (:func:`constrain`, from step ``> T_s``): ``w = clip(w, r-, r+)``.

Counting convention (switchable, ``count_transitions``)
--------------------------------------------------------
Default (``False``, the notes' reading): a step on which the condition holds counts
1, so a synapse above ``r+`` on ``T_s`` consecutive steps widens ``r+`` at the
``T_s``-th step by the mean of those ``T_s`` excesses.  The reference code instead
counts *transitions*: a step counts only when the condition also held on the
previous step (it intersects the index set of the previous step), so the first step
of a run contributes nothing and expansion needs ``T_s + 1`` consecutive steps (the
excess of the first step is not accumulated; the mean is still over ``T_s``
excesses).  ``count_transitions=True`` reproduces that; the flags ``was_pos``,
``was_neg``, ``was_dec`` hold the previous step's conditions for it.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

__all__ = [
    "SpineState",
    "SpineUpdateInfo",
    "init_spines",
    "update_spines",
    "constrain",
    "constrain_inplace",
]


@dataclass
class SpineState:
    """Spine range state of one layer; every array has the layer's weight shape.

    ``r_pos``/``r_neg``: the range ``[r-, r+]``; ``c_pos``/``d_pos``: run length and
    accumulated excess above ``r+``; ``c_neg``/``d_neg``: the same below ``r-``;
    ``c_zero``: run length of strict ``|w|`` decreases; ``prev_abs``: ``|w|`` seen at
    the previous update; ``was_pos``/``was_neg``/``was_dec``: whether each condition
    held at the previous update (only used with ``count_transitions=True``).
    """

    r_pos: np.ndarray
    r_neg: np.ndarray
    c_pos: np.ndarray
    d_pos: np.ndarray
    c_neg: np.ndarray
    d_neg: np.ndarray
    c_zero: np.ndarray
    prev_abs: np.ndarray
    was_pos: np.ndarray
    was_neg: np.ndarray
    was_dec: np.ndarray

    @property
    def shape(self) -> tuple:
        return self.r_pos.shape

    def copy(self) -> "SpineState":
        return replace(self, **{f.name: getattr(self, f.name).copy() for f in fields(self)})

    def to_dict(self, prefix: str = "") -> dict:
        """Flat dict of arrays (for ``np.savez``); keys ``prefix + field``."""
        return {prefix + f.name: np.array(getattr(self, f.name), copy=True) for f in fields(self)}

    @classmethod
    def from_dict(cls, d, prefix: str = "") -> "SpineState":
        kw = {}
        for f in fields(cls):
            a = np.array(d[prefix + f.name], copy=True)
            kw[f.name] = a.astype(bool) if f.name.startswith("was_") else a.astype(np.float64)
        return cls(**kw)

    def equals(self, other: "SpineState") -> bool:
        return all(np.array_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))


@dataclass(frozen=True)
class SpineUpdateInfo:
    """How many synapses expanded up, expanded down and contracted in one update."""

    expanded_pos: int
    expanded_neg: int
    contracted: int


def init_spines(weights: np.ndarray, mask: np.ndarray | None = None) -> SpineState:
    """Spine state at step 0: ``r+ = max(W*M)``, ``r- = -max(W*M)`` for every synapse.

    ``mask`` (optional, same shape) is applied first; at step 0 it is normally all
    ones.  Counters start at 0 and ``prev_abs = |W*M|``.
    """
    w = np.asarray(weights, dtype=np.float64)
    if mask is not None:
        w = w * np.asarray(mask, dtype=np.float64)
    if w.size == 0:
        raise ValueError("init_spines: empty weight array")
    wmax = float(np.max(w))
    z = np.zeros(w.shape, dtype=np.float64)
    f = np.zeros(w.shape, dtype=bool)
    return SpineState(
        r_pos=np.full(w.shape, wmax), r_neg=np.full(w.shape, -wmax),
        c_pos=z.copy(), d_pos=z.copy(), c_neg=z.copy(), d_neg=z.copy(), c_zero=z.copy(),
        prev_abs=np.abs(w), was_pos=f.copy(), was_neg=f.copy(), was_dec=f.copy(),
    )


def _expand(w, r, count, excess, beyond, was_beyond, T_s, count_transitions):
    """One bound's expansion: a synapse beyond bound ``r`` in consecutive steps accumulates
    ``count`` and ``excess += w - r`` (a break resets both); at ``T_s`` the bound moves by the
    mean excess and the counters restart.  Returns ``(r, count, excess, fired)``."""
    inc = beyond & was_beyond if count_transitions else beyond
    count = np.where(inc, count + 1.0, 0.0)
    excess = np.where(inc, excess + (w - r), 0.0)
    fired = count >= T_s
    r = np.where(fired, r + excess / T_s, r)
    count[fired] = 0.0
    excess[fired] = 0.0
    return r, count, excess, fired


def update_spines(state: SpineState, w_masked: np.ndarray, T_s: int, contraction: float = 0.75,
                  count_transitions: bool = False) -> tuple[SpineState, SpineUpdateInfo]:
    """One spine-range update on the masked weights ``w = W*M``; returns the new state.

    See the module docstring for the rules and the counting convention.
    """
    if T_s < 1:
        raise ValueError(f"T_s must be >= 1, got {T_s}")
    w = np.asarray(w_masked, dtype=np.float64)
    if w.shape != state.shape:
        raise ValueError(f"weights shape {w.shape} != spine state shape {state.shape}")
    s = state.copy()

    # expansion up (w at or above r+), then down (w at or below r-): the same rule mirrored
    above = w >= s.r_pos
    s.r_pos, s.c_pos, s.d_pos, fire_pos = _expand(w, s.r_pos, s.c_pos, s.d_pos, above, s.was_pos, T_s,
                                                   count_transitions)
    s.was_pos = above
    below = w <= s.r_neg
    s.r_neg, s.c_neg, s.d_neg, fire_neg = _expand(w, s.r_neg, s.c_neg, s.d_neg, below, s.was_neg, T_s,
                                                   count_transitions)
    s.was_neg = below

    # contraction
    a = np.abs(w)
    dec = a < s.prev_abs
    inc = dec & s.was_dec if count_transitions else dec
    s.c_zero = np.where(inc, s.c_zero + 1.0, 0.0)
    fire_c = s.c_zero >= T_s
    s.r_pos = np.where(fire_c, s.r_pos * contraction, s.r_pos)
    s.r_neg = np.where(fire_c, s.r_neg * contraction, s.r_neg)
    s.c_zero[fire_c] = 0.0
    s.was_dec = dec
    s.prev_abs = a

    info = SpineUpdateInfo(int(fire_pos.sum()), int(fire_neg.sum()), int(fire_c.sum()))
    return s, info


def constrain(weights: np.ndarray, state: SpineState) -> np.ndarray:
    """``clip(w, r-, r+)`` element-wise (a new array of the weights' dtype).

    Implemented as ``max(min(w, r+), r-)``, the order of the reference code (first
    values above ``r+`` are set to ``r+``, then values below ``r-`` to ``r-``).  Both
    orders agree whenever ``r- <= r+``; in a degenerate, inverted range (``r- > r+``,
    only when the layer's initial maximum was negative) every weight becomes ``r-``.
    """
    w = np.asarray(weights)
    out = np.maximum(np.minimum(w, state.r_pos), state.r_neg)
    return out.astype(w.dtype, copy=False)


def constrain_inplace(weights: np.ndarray, state: SpineState) -> int:
    """Clip ``weights`` into their ranges in place; returns how many were changed."""
    new = constrain(weights, state)
    changed = int(np.count_nonzero(new != weights))
    weights[...] = new
    return changed
