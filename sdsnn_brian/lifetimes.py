"""Synapse lifetimes from the structural event log: Kaplan-Meier survival, histograms, regrowth.

A *life* is one uninterrupted stretch during which a synapse is present.  It starts at step 0
(synapses present in the first mask the schedule saw) or at a RESTORED event, and ends at the
next REMOVED event of that synapse (an *observed* life, duration ``removal step - start step``),
or is still running after the last structural step ``n_steps - 1``: such a life is *censored* at
``(n_steps - 1) - start`` -- it is known to have lasted longer than that, and the Kaplan-Meier
estimate keeps it in the risk set up to that time instead of dropping it.  Durations are in
structural steps.

Within a step the schedule regenerates before it prunes, so a synapse restored and pruned at the
same step has a life of duration 0.  Events come from
:class:`~sdsnn_brian.structure.events.StructureLog` (``layer, index, step, kind``, in recording
order; ``REMOVED = 0``, ``RESTORED = 1``).

>>> lives = synapse_lives(log.events(), layer=0, n_synapses=400 * 784, n_steps=schedule.t)
>>> km = kaplan_meier(lives.duration, lives.observed)
>>> km.times, km.survival, km.at_risk
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .structure.events import REMOVED, RESTORED

__all__ = ["Lives", "KaplanMeier", "synapse_lives", "kaplan_meier", "lifetime_histogram", "regrowth_summary",
           "events_per_step", "plot_survival", "plot_lifetime_histogram", "plot_regrowth"]


@dataclass
class Lives:
    """Lives of the synapses of one layer (equal-length arrays, one entry per life).

    ``index``: flat synapse index; ``start``: step the life began (0 or a restoration);
    ``duration``: steps until removal, or until the last step when censored; ``observed``: it
    ended by a removal (False: censored); ``regrown``: it began with a restoration.
    """

    index: np.ndarray
    start: np.ndarray
    duration: np.ndarray
    observed: np.ndarray
    regrown: np.ndarray
    n_steps: int

    def __len__(self):
        return int(self.duration.size)

    def select(self, sel) -> "Lives":
        return Lives(self.index[sel], self.start[sel], self.duration[sel], self.observed[sel],
                     self.regrown[sel], self.n_steps)


@dataclass
class KaplanMeier:
    """Kaplan-Meier estimate at the distinct observed event times.

    ``survival[k]``: S just after ``times[k]``, the product over ``j <= k`` of
    ``1 - events[j] / at_risk[j]``; ``at_risk[k]``: lives with duration ``>= times[k]`` (observed
    or censored); ``events[k]``: lives ending at ``times[k]``.  S is 1 before the first event time.
    """

    times: np.ndarray
    survival: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray
    n: int
    n_censored: int

    def at(self, t) -> np.ndarray:
        """S(t) (right-continuous step function)."""
        t = np.asarray(t, dtype=np.float64)
        k = np.searchsorted(self.times, t, side="right")
        s = np.concatenate([[1.0], self.survival])
        return s[k]

    def median(self) -> float:
        """Smallest event time with S <= 0.5 (NaN when S stays above one half)."""
        below = np.nonzero(self.survival <= 0.5)[0]
        return float(self.times[below[0]]) if below.size else float("nan")


def kaplan_meier(durations, observed) -> KaplanMeier:
    """Kaplan-Meier survival estimate of lives with right censoring.

    ``durations``: lifetimes (any unit); ``observed``: True where the life ended (event), False where
    it was censored (still alive at that duration).  Censored lives count in the risk set of every
    event time up to and including their censoring time.
    """
    d = np.asarray(durations, dtype=np.float64).ravel()
    o = np.asarray(observed, dtype=bool).ravel()
    if d.shape != o.shape:
        raise ValueError(f"{d.size} durations but {o.size} observed flags")
    if d.size and (not np.all(np.isfinite(d)) or d.min() < 0):
        raise ValueError("durations must be finite and non-negative")
    times, events = np.unique(d[o], return_counts=True)
    ds = np.sort(d)
    at_risk = d.size - np.searchsorted(ds, times, side="left")
    surv = np.cumprod(1.0 - events / at_risk) if times.size else np.zeros(0)
    return KaplanMeier(times, surv, at_risk.astype(np.int64), events.astype(np.int64), int(d.size),
                       int((~o).sum()))


def synapse_lives(events, layer, n_synapses, n_steps, initially_present=None) -> Lives:
    """Lives of layer ``layer``'s synapses from an event log (see the module docstring).

    ``events``: dict of arrays ``layer, index, step, kind`` (``StructureLog.events()``) or a
    StructureLog; ``n_synapses``: the layer's synapse count; ``n_steps``: structural steps run (the
    last one is ``n_steps - 1``); ``initially_present``: flat bool array (or None: all present, the
    trainer's dense start) saying which synapses without any event were present throughout.  A
    synapse whose first event is a restoration was absent at the start whatever this says.
    """
    if hasattr(events, "events"):
        events = events.events()
    n_synapses, n_steps = int(n_synapses), int(n_steps)
    last = n_steps - 1
    lay = np.asarray(events["layer"])
    sel = lay == layer
    idx = np.asarray(events["index"], dtype=np.int64)[sel]
    step = np.asarray(events["step"], dtype=np.int64)[sel]
    kind = np.asarray(events["kind"], dtype=np.int64)[sel]
    if idx.size:
        if idx.min() < 0 or idx.max() >= n_synapses:
            raise ValueError(f"layer {layer}: event index out of range for {n_synapses} synapses")
        if step.max() > last:
            raise ValueError(f"layer {layer}: event at step {step.max()} after the last step {last}")
    order = np.argsort(idx, kind="stable")  # recording order kept within each synapse
    idx, step, kind = idx[order], step[order], kind[order]
    same_prev = np.zeros(idx.size, bool)
    same_prev[1:] = idx[1:] == idx[:-1]
    same_next = np.zeros(idx.size, bool)
    same_next[:-1] = same_prev[1:]
    if np.any(same_prev & (kind == np.roll(kind, 1))):
        raise ValueError(f"layer {layer}: a synapse has two consecutive events of the same kind")
    if np.any(same_prev & (step < np.roll(step, 1))):
        raise ValueError(f"layer {layer}: events of a synapse are not in step order")
    rem = kind == REMOVED
    res = kind == RESTORED
    # lives ending in a removal
    r_start = np.where(same_prev, np.roll(step, 1), 0)[rem]
    r_idx, r_dur = idx[rem], step[rem] - r_start
    r_regrown = same_prev[rem]
    # lives begun by a restoration and still running
    c_sel = res & ~same_next
    c_idx, c_start = idx[c_sel], step[c_sel]
    # synapses without events, present from step 0 to the end
    has_ev = np.zeros(n_synapses, bool)
    has_ev[idx] = True
    quiet = ~has_ev
    if initially_present is not None:
        ip = np.asarray(initially_present).ravel() != 0
        if ip.size != n_synapses:
            raise ValueError(f"initially_present has {ip.size} entries, the layer {n_synapses} synapses")
        quiet &= ip
    q_idx = np.nonzero(quiet)[0]
    index = np.concatenate([r_idx, c_idx, q_idx])
    start = np.concatenate([r_start, c_start, np.zeros(q_idx.size, np.int64)])
    duration = np.concatenate([r_dur, last - c_start, np.full(q_idx.size, last, np.int64)])
    observed = np.concatenate([np.ones(r_idx.size, bool), np.zeros(c_idx.size + q_idx.size, bool)])
    regrown = np.concatenate([r_regrown, np.ones(c_idx.size, bool), np.zeros(q_idx.size, bool)])
    return Lives(index, start.astype(np.int64), duration.astype(np.int64), observed, regrown, n_steps)


def lifetime_histogram(lives: Lives, bins=None):
    """``(edges, removed_counts, censored_counts)``: observed and censored durations per bin.

    Default bins: one per step, ``0 .. n_steps``.
    """
    if bins is None:
        bins = np.arange(0, max(lives.n_steps, 1) + 1) - 0.5
    edges = np.asarray(bins, dtype=np.float64) if not np.isscalar(bins) else None
    if edges is None:
        hi = max(float(lives.duration.max()) if len(lives) else 1.0, 1.0)
        edges = np.linspace(0, hi, int(bins) + 1)
    removed, _ = np.histogram(lives.duration[lives.observed], edges)
    censored, _ = np.histogram(lives.duration[~lives.observed], edges)
    return edges, removed, censored


def events_per_step(events, layer, n_steps):
    """``(steps, removed, restored)``: synapse events of ``layer`` at each structural step."""
    if hasattr(events, "events"):
        events = events.events()
    sel = np.asarray(events["layer"]) == layer
    st = np.asarray(events["step"], dtype=np.int64)[sel]
    kd = np.asarray(events["kind"])[sel]
    n = max(int(n_steps), int(st.max()) + 1 if st.size else 0)
    return (np.arange(n), np.bincount(st[kd == REMOVED], minlength=n),
            np.bincount(st[kd == RESTORED], minlength=n))


def regrowth_summary(lives: Lives) -> dict:
    """Regrowth figures of one layer's lives.

    ``restorations`` (RESTORED events = regrown lives), ``synapses_regrown`` (distinct synapses),
    ``regrowths_per_synapse`` (``{times restored: synapses}``), ``regrown_removed_again`` (regrown lives
    that ended in a removal), ``fraction_removed_again`` (of the regrown lives; NaN if none),
    ``removals``, ``lives``, ``censored``.
    """
    rg = lives.regrown
    n_rg = int(rg.sum())
    again = int((rg & lives.observed).sum())
    ids, counts = np.unique(lives.index[rg], return_counts=True)
    per, n_per = np.unique(counts, return_counts=True)
    return {"restorations": n_rg, "synapses_regrown": int(ids.size),
            "regrowths_per_synapse": {int(k): int(v) for k, v in zip(per, n_per)},
            "regrown_removed_again": again,
            "fraction_removed_again": again / n_rg if n_rg else float("nan"),
            "removals": int(lives.observed.sum()), "lives": len(lives),
            "censored": int((~lives.observed).sum())}


# ----------------------------------------------------------------------------- plots
def _ax(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.gca()
    return ax


def plot_survival(km: KaplanMeier, ax=None, label=None, censored_times=None, color=None, **kw):
    """Kaplan-Meier curve as a step function from (0, 1); ``censored_times`` marked with ``+``."""
    ax = _ax(ax)
    t = np.concatenate([[0.0], km.times])
    s = np.concatenate([[1.0], km.survival])
    t_end = [max(t[-1], np.max(censored_times) if censored_times is not None and len(censored_times) else t[-1])]
    line, = ax.step(np.concatenate([t, t_end]), np.concatenate([s, s[-1:]]), where="post", label=label,
                    color=color, **kw)
    if censored_times is not None and len(censored_times):
        ct = np.unique(np.asarray(censored_times, dtype=np.float64))
        ax.plot(ct, km.at(ct), "+", color=line.get_color(), markersize=8, mew=1.2)
    ax.set_xlabel("lifetime (structural steps)")
    ax.set_ylabel("survival probability S(t)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Synapse survival (Kaplan-Meier, censored +)")
    return ax


def plot_lifetime_histogram(lives: Lives, ax=None, bins=None, label=""):
    """Stacked histogram of observed (removed) and censored (still present) lifetimes."""
    ax = _ax(ax)
    edges, rem, cen = lifetime_histogram(lives, bins)
    centres = 0.5 * (edges[1:] + edges[:-1])
    width = np.diff(edges)
    pre = f"{label}: " if label else ""
    ax.bar(centres, rem, width=width * 0.9, label=f"{pre}removed (observed)")
    ax.bar(centres, cen, width=width * 0.9, bottom=rem, label=f"{pre}still present (censored)", alpha=0.6)
    ax.set_xlabel("lifetime (structural steps)")
    ax.set_ylabel("lives (count)")
    ax.set_title("Synapse lifetime histogram")
    ax.legend(fontsize="small")
    return ax


def plot_regrowth(steps, removed, restored, ax=None, label=""):
    """Synapses removed and restored at each structural step."""
    ax = _ax(ax)
    pre = f"{label}: " if label else ""
    ax.step(steps, removed, where="mid", label=f"{pre}removed")
    ax.step(steps, restored, where="mid", label=f"{pre}restored (regrown)")
    ax.set_xlabel("structural step")
    ax.set_ylabel("synapses per step (count)")
    ax.set_title("Removals and regrowth per step")
    ax.legend(fontsize="small")
    return ax
