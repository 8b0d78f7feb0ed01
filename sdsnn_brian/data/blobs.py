"""A drifting-blob stimulus for predictive coding (VDIB, after Chalk, Marre & Tkacik 2018).

``n`` input neurons on a line; a blob -- a contiguous run of active inputs ``[lo, hi]`` --
drifts at a constant speed (reflecting at the ends) with a fixed width per sample.  Inputs
inside the blob spike with probability ``p_on`` per step, the others with ``p_off``.  There
are ``n (n + 1) / 2`` possible blobs (210 for 20 inputs); :func:`segment_id` numbers them.

The prediction target of a decoder whose window ends at step ``t`` is the blob at
``t + delta`` (``delta > 0`` predicts the future, ``delta < 0`` recalls the past).
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["DriftingBlob", "segment_id", "n_segments"]


def n_segments(n: int) -> int:
    """How many contiguous segments ``[lo, hi]`` a line of ``n`` inputs holds."""
    return n * (n + 1) // 2


def segment_id(lo, hi, n: int):
    """The index of segment ``[lo, hi]`` (``0 <= lo <= hi < n``) among all ``n (n + 1) / 2``."""
    lo, hi = np.asarray(lo), np.asarray(hi)
    if np.any(lo < 0) or np.any(hi >= n) or np.any(lo > hi):
        raise ValueError("segment_id: need 0 <= lo <= hi < n")
    return lo * n - lo * (lo - 1) // 2 + (hi - lo)


class DriftingBlob:
    """``size`` samples of a blob drifting over ``n`` inputs for ``steps`` (+ look-ahead) steps.

    Attributes
    ----------
    frames : uint8 [size, steps, n] input spikes (``Direct(time_first=False)`` layout).
    patterns : int64 [size, steps + |delta|] the blob's segment id at every step
        (the first ``|delta|`` steps precede the frames when ``delta < 0``).
    """

    def __init__(self, size=1000, n=20, steps=30, delta=2, widths=(2, 3, 4, 5), speeds=(-1, 1), p_on=0.9,
                 p_off=0.02, seed=0):
        for v, what in ((size, "size"), (n, "n"), (steps, "steps")):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"DriftingBlob: {what} must be a positive integer, got {v!r}")
        if not isinstance(delta, numbers.Integral):
            raise ValueError(f"DriftingBlob: delta must be an integer, got {delta!r}")
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1 or max(widths) > n:
            raise ValueError(f"DriftingBlob: widths must lie in 1..{n}, got {widths}")
        if not (0 <= p_off <= 1 and 0 <= p_on <= 1):
            raise ValueError("DriftingBlob: p_on and p_off must lie in [0, 1]")
        self.n, self.steps, self.delta = int(n), int(steps), int(delta)
        rng = np.random.default_rng(seed)
        total = self.steps + abs(self.delta)
        w = rng.choice(widths, size)
        v = rng.choice(speeds, size)
        lo0 = rng.integers(0, n - w + 1)
        lo = np.empty((size, total), np.int64)
        pos, vel = lo0.astype(np.int64), v.astype(np.int64)
        for t in range(total):  # reflect at both ends
            lo[:, t] = pos
            nxt = pos + vel
            bounce = (nxt < 0) | (nxt > n - w)
            vel = np.where(bounce, -vel, vel)
            pos = np.where(bounce, pos + vel, nxt)
        hi = lo + w[:, None] - 1
        self.patterns = segment_id(lo, hi, n)
        off = max(0, -self.delta)  # frames start after the look-back part
        idx = np.arange(n)
        inside = (idx[None, None] >= lo[:, off:off + self.steps, None]) & (idx[None, None] <= hi[:, off:off + self.steps, None])
        p = np.where(inside, p_on, p_off)
        self.frames = (rng.random(p.shape) < p).astype(np.uint8)
        self._off = off

    @property
    def n_classes(self) -> int:
        return n_segments(self.n)

    def targets(self, tau: int) -> np.ndarray:
        """int64 [size, steps - tau + 1]: the blob at ``t + delta`` for the window ending at ``t``."""
        if isinstance(tau, bool) or not isinstance(tau, numbers.Integral) or not 1 <= tau <= self.steps:
            raise ValueError(f"tau must be an integer in 1..{self.steps}, got {tau!r}")
        t_end = np.arange(tau - 1, self.steps) + self._off + self.delta
        return self.patterns[:, t_end]

    def __len__(self):
        return len(self.frames)
