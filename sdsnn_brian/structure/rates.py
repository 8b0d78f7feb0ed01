"""Adaptive pruning rate (the neurotrophic rule) and the rising regeneration percentile.

Units of ``rho``
----------------
``rho`` is a *fraction* here (``0.35`` = 35 % of the layer's units).  The reference
code keeps its rates in *percent* (``int(N * rate / 100)``) and adds the raw
neurotrophic increment to that percentage, so the increment of the notes' formula
is in *percentage points*.  ``unit`` (default ``0.01``) converts it: the fraction
grows by ``unit * increment``.  With ``unit=1`` the increment is read as a fraction
(then a 784-300-10 network's first FC update, ``(300 - 105) / 10 = 19.5``, would
exceed any possible rate, which is why the percent reading is the default).

Cap
---
``rho`` is clipped to ``[0, rho_max]`` after each update, ``rho_max < 1`` (default
``0.99``), so that a layer can never be asked to prune all its units; the pruning
step additionally keeps at least one unit alive (see ``pruning.prune_target``).

Formulas (``t`` the structural step; all applied after the step's pruning)
-----------------------------------------------------------------------------
* fully connected hidden layer: ``rho += unit * a(t) * (N_l - P_l) / N_out`` with
  ``a(t) = exp(-(t - centre) / scale)`` for ``t <= end`` else ``late``
  (reference: centre 37, scale 1, end 60, late 0.00075, N_out = 10 classes).
* conv layer: ``rho_l += unit * exp(-(t - centre) / scale) * (C_l - P_l) /
  (C_{l+1} - P_{l+1})`` (reference: centre 37 = 2*T_s + 1, scale 5).  When the next
  layer has no living unit the increment is 0.
* regeneration percentile: ``p(t) = min(p_max, p0 + growth ** (t - start - 1))``
  with ``start = 2*T_s`` (reference: p0 60 FC / 65 conv, growth 1.1, p_max 99).
"""
from __future__ import annotations

import math

__all__ = [
    "regeneration_percentile",
    "fc_rate_coefficient",
    "conv_rate_coefficient",
    "clip_rate",
    "update_fc_rate",
    "update_conv_rate",
]


def regeneration_percentile(t: int, p0: float, start: int, growth: float = 1.1, p_max: float = 99.0) -> float:
    """``p(t) = min(p_max, p0 + growth ** (t - start - 1))`` (percent)."""
    e = t - start - 1
    try:
        g = growth ** e
    except OverflowError:
        g = math.inf
    return float(min(p_max, p0 + g))


def _exp_neg(x: float) -> float:
    # exp(-x) without OverflowError for very negative x (t far before the centre)
    return math.exp(-x) if x > -700 else math.inf


def fc_rate_coefficient(t: int, centre: float = 37.0, end: float = 60.0, late: float = 0.00075,
                        scale: float = 1.0) -> float:
    """``a(t) = exp(-(t - centre)/scale)`` for ``t <= end``, else ``late``."""
    if t <= end:
        return _exp_neg((t - centre) / scale)
    return float(late)


def conv_rate_coefficient(t: int, centre: float = 37.0, scale: float = 5.0) -> float:
    """``exp(-(t - centre)/scale)``."""
    return _exp_neg((t - centre) / scale)


def clip_rate(rho: float, rho_max: float = 0.99) -> float:
    """Clip a rate (fraction) into ``[0, rho_max]``; a NaN rate raises ``ValueError``."""
    if math.isnan(rho):
        raise ValueError("pruning rate became NaN")
    return float(min(max(rho, 0.0), rho_max))


def update_fc_rate(rho: float, t: int, n_units: int, n_pruned: int, n_out: int, *,
                   centre: float = 37.0, end: float = 60.0, late: float = 0.00075, scale: float = 1.0,
                   unit: float = 0.01, rho_max: float = 0.99) -> float:
    """Neurotrophic update of a fully connected hidden layer's rate (a fraction)."""
    if n_out <= 0:
        raise ValueError(f"n_out must be positive, got {n_out}")
    alive = n_units - n_pruned
    if alive == 0:
        return clip_rate(rho, rho_max)
    a = fc_rate_coefficient(t, centre, end, late, scale)
    return clip_rate(rho + unit * a * alive / n_out, rho_max)


def update_conv_rate(rho: float, t: int, c_units: int, c_pruned: int, next_units: int, next_pruned: int, *,
                     centre: float = 37.0, scale: float = 5.0, unit: float = 0.01,
                     rho_max: float = 0.99) -> float:
    """Neurotrophic update of a conv layer's rate (a fraction)."""
    alive_next = next_units - next_pruned
    if alive_next <= 0 or c_units == c_pruned:
        return clip_rate(rho, rho_max)
    a = conv_rate_coefficient(t, centre, scale)
    return clip_rate(rho + unit * a * (c_units - c_pruned) / alive_next, rho_max)
