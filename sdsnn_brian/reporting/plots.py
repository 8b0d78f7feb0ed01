"""Figures of spiking networks and their structural development (matplotlib only).

Every function draws into ``ax`` (one Axes, or a sequence of them for multi-panel figures)
and returns it; without ``ax`` it uses :func:`matplotlib.pyplot.gca` (or new subplots), like
``brian2tools``.  Nothing here selects a backend, so it works headless (Agg) and in notebooks;
:mod:`sdsnn_brian.reporting.figures` builds its figures from :class:`matplotlib.figure.Figure` objects
and never touches pyplot.

Time is handled the Brian way: a raster takes spike indices ``i`` and times ``t``, where ``t``
is a Brian2 ``Quantity`` (``t = [1, 3] * ms``), plain floats in seconds, or integer step indices
together with ``dt`` (a Quantity or seconds).  Axes show milliseconds.

>>> from brian2 import ms
>>> plot_raster(spikemon.i, spikemon.t)                        # a Brian2 SpikeMonitor
>>> i, t = spike_trains(rec.s[0][:, 0])                        # a Recording, sample 0
>>> plot_raster(i, t, dt=1 * ms)
>>> plot_layer_rasters(x, rec, samples=[0, 1, 2], dt=1 * ms)   # input ... output, aligned

(Formerly ``sdsnn_brian/plotting.py``, which re-exports these.)
"""
from __future__ import annotations

import math

import numpy as np

from ..energy import E_AC_PJ, E_MAC_PJ

__all__ = ["to_ms", "spike_trains", "plot_raster", "plot_layer_rasters", "plot_membrane", "most_active_neurons",
           "plot_membrane_traces", "stat_series", "plot_spine_ranges", "plot_weights_vs_ranges",
           "plot_accuracy", "plot_loss", "plot_structure_over_time", "plot_mask", "plot_filters",
           "plot_degree_distribution",
           "plot_input_fanout", "plot_connectivity", "plot_sops", "plot_energy_bars", "plot_energy",
           "plot_comparison", "ENERGY_CAPTION"]

ENERGY_CAPTION = (f"Estimate: E_SNN = SOPs x {E_AC_PJ} pJ (AC), E_ANN = MACs x {E_MAC_PJ} pJ (MAC); "
                  "45 nm FP32 (Horowitz 2014). SOPs = presynaptic spikes x present fan-out, summed over "
                  "layers and steps.")


# --------------------------------------------------------------------------- helpers
def _ax(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.gca()
    return ax


def _axes(ax, n, **subplots_kw):
    """``n`` axes: the given sequence (checked) or new pyplot subplots."""
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(n, 1, squeeze=False, **subplots_kw)
        return list(ax[:, 0])
    axes = list(np.ravel(ax)) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
    if len(axes) != n:
        raise ValueError(f"this figure needs {n} axes, got {len(axes)}")
    return axes


def _is_quantity(x):
    return hasattr(x, "dim") and hasattr(x, "get_best_unit")


def _seconds(dt):
    """A time step (Quantity or seconds) in seconds."""
    if _is_quantity(dt):
        from brian2 import second
        from brian2.units.fundamentalunits import fail_for_dimension_mismatch

        fail_for_dimension_mismatch(dt, second, "dt must be a time")
        return float(dt / second)
    return float(dt)


def to_ms(t, dt=None) -> np.ndarray:
    """Times in milliseconds from a Brian2 Quantity, floats in seconds, or step indices with ``dt``."""
    if _is_quantity(t):
        if dt is not None:
            raise ValueError("times carry units already; do not give dt as well")
        from brian2 import second
        from brian2.units.fundamentalunits import fail_for_dimension_mismatch

        fail_for_dimension_mismatch(t, second, "spike times must be times")
        return np.asarray(t / second, dtype=np.float64) * 1e3
    t = np.asarray(t)
    if dt is not None:
        if t.size and not np.issubdtype(t.dtype, np.integer) and not np.all(t == np.round(t)):
            raise ValueError("with dt, times must be integer step indices")
        return t.astype(np.float64) * _seconds(dt) * 1e3
    return t.astype(np.float64) * 1e3


def spike_trains(spikes):
    """``(i, t)`` (neuron indices, step indices) of a ``[T, N]`` 0/1 spike array, ordered by time."""
    s = np.asarray(spikes)
    if s.ndim != 2:
        raise ValueError(f"spikes must be [T, N] for one sample, got shape {s.shape}")
    t, i = np.nonzero(s)
    return i, t


def _legend(ax, **kw):
    handles, labels = ax.get_legend_handles_labels()
    if len(handles) > 1:
        ax.legend(fontsize="small", **kw)


def _epoch_axis(ax):
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _step_x(steps, step_to_x):
    steps = np.asarray(steps, dtype=np.float64)
    return steps if step_to_x is None else np.asarray([step_to_x(s) for s in steps], dtype=np.float64)


# --------------------------------------------------------------------------- spikes
def plot_raster(i, t, dt=None, ax=None, t_offset=0.0, label="spike", title=None, **kw):
    """Spike raster: neuron index ``i`` against time ``t`` (Quantity, seconds, or steps with ``dt``).

    ``t_offset`` (milliseconds) shifts every spike; extra keywords go to ``ax.plot``.
    """
    ax = _ax(ax)
    i = np.asarray(i)
    t_ms = to_ms(t, dt) + float(t_offset)
    if i.shape != t_ms.shape:
        raise ValueError(f"{i.size} neuron indices but {t_ms.size} spike times")
    kw.setdefault("marker", "|" if i.size < 3000 else ".")
    kw.setdefault("markersize", 3)
    kw.setdefault("color", "k")
    ax.plot(t_ms, i, linestyle="none", label=label, **kw)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("neuron index")
    if title:
        ax.set_title(title)
    return ax


def plot_layer_rasters(x, rec, samples=(0,), dt=None, ax=None, layer_names=None, labels=None, predictions=None,
                       max_neurons=None):
    """Rasters of the input and every trained layer for the chosen samples, aligned in time.

    ``x``: input spikes ``[T, B, n]``; ``rec``: a Recording (``rec.s``) or a list of ``[T, B, N]``
    spike arrays, one per trained layer.  Samples are shown one after the other, each ``T`` steps
    long (``dt``, default 1 ms), separated by dashed lines, so a spike of the input and of the
    output at the same moment sit above each other.  ``ax``: one axes per population (input first).
    ``labels``/``predictions``: per sample, written over the output panel.  ``max_neurons``: a
    population larger than this (a conv layer's maps) shows every ``k``-th neuron only,
    ``k = ceil(N / max_neurons)``, at its own index (the y label says so).
    """
    spikes = [np.asarray(x)] + [np.asarray(s) for s in (rec.s if hasattr(rec, "s") else rec)]
    T = spikes[0].shape[0]
    samples = [int(k) for k in np.atleast_1d(samples)]
    names = ["input"] + [f"layer {k}" for k in range(1, len(spikes))] if layer_names is None else list(layer_names)
    if len(names) != len(spikes):
        raise ValueError(f"{len(names)} layer names for {len(spikes)} populations (input included)")
    axes = _axes(ax, len(spikes), sharex=True)
    dt = 1e-3 if dt is None else dt
    T_ms = T * _seconds(dt) * 1e3
    for row, (axx, s, name) in enumerate(zip(axes, spikes, names)):
        every = 1 if max_neurons is None else max(1, -(-s.shape[2] // int(max_neurons)))
        for n, k in enumerate(samples):
            i, t = spike_trains(s[:, k])
            if every > 1:
                keep = i % every == 0
                i, t = i[keep], t[keep]
            plot_raster(i, t, dt=dt, ax=axx, t_offset=n * T_ms, label="spike" if n == 0 else None,
                        markersize=2 if s.shape[2] > 100 else 4)
        for n in range(1, len(samples)):
            axx.axvline(n * T_ms, color="tab:red", linestyle="--", linewidth=0.8,
                        label="sample boundary" if n == 1 else None)
        axx.set_ylim(-0.5, s.shape[2] - 0.5)
        axx.set_ylabel(f"{name}\nneuron index" + (f"\n(1 in {every} shown)" if every > 1 else ""))
        axx.set_xlim(0, len(samples) * T_ms)
        if row < len(spikes) - 1:
            axx.set_xlabel("")
        _legend(axx, loc="upper right")
    if labels is not None or predictions is not None:
        for n, k in enumerate(samples):
            parts = []
            if labels is not None:
                parts.append(f"label {labels[k]}")
            if predictions is not None:
                parts.append(f"pred {predictions[k]}")
            axes[-1].text((n + 0.5) * T_ms, 1.02, ", ".join(parts), transform=axes[-1].get_xaxis_transform(),
                          ha="center", va="bottom", fontsize="small")
    axes[0].set_title(f"Spike rasters, samples {', '.join(map(str, samples))} (input to output, aligned in time)")
    axes[-1].set_xlabel("time (ms)")
    return axes


def plot_membrane(u, dt=None, ax=None, neurons=None, theta=None, title=None, label_prefix="neuron"):
    """Membrane traces ``u [T, N]`` (or ``[T]``) of one sample against time; ``theta``: threshold line.

    ``u`` is the membrane before reset, in model units; ``neurons`` selects columns.
    """
    ax = _ax(ax)
    u = np.asarray(u, dtype=np.float64)
    if u.ndim == 1:
        u = u[:, None]
    if u.ndim != 2:
        raise ValueError(f"u must be [T, N] for one sample, got shape {u.shape}")
    neurons = range(u.shape[1]) if neurons is None else [int(n) for n in neurons]
    t = to_ms(np.arange(u.shape[0]), 1e-3 if dt is None else dt)
    for n in neurons:
        ax.plot(t, u[:, n], marker=".", markersize=3, linewidth=1, label=f"{label_prefix} {n}")
    if theta is not None:
        ax.axhline(theta, color="k", linestyle="--", linewidth=1, label=f"threshold θ = {theta:g}")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("membrane potential u (model units)")
    ax.set_title(title or "Membrane potential")
    _legend(ax, loc="upper left", ncol=2)
    return ax


def most_active_neurons(spikes, n, u=None):
    """The ``n`` neurons with the most spikes, most active first (a list of indices).

    ``spikes``: 0/1 ``[T, N]`` or ``[T, B, N]`` (any dtype, uint8 included); counts are summed over
    every axis but the last.  Ties go to the higher peak membrane ``u`` (same shape), then to the
    lower index.
    """
    s = np.asarray(spikes)
    # counted in float64: negating an unsigned (uint8 -> uint64) sum would wrap around and rank the
    # silent neurons first
    count = s.reshape(-1, s.shape[-1]).sum(axis=0, dtype=np.float64)
    peak = np.zeros_like(count)
    if u is not None:
        peak = np.asarray(u, dtype=np.float64).reshape(-1, s.shape[-1]).max(axis=0)
    return np.lexsort((np.arange(count.size), -peak, -count))[:int(n)].tolist()


def plot_membrane_traces(rec, sample=0, dt=None, theta=None, ax=None, n_hidden=4, layer_names=None):
    """Membrane traces of one sample: the most active neurons of each hidden layer, every output neuron.

    ``theta``: threshold per trained layer (list) or one value.
    """
    L = len(rec.u)
    axes = _axes(ax, L, sharex=True)
    names = [f"layer {k + 1}" for k in range(L)] if layer_names is None else list(layer_names)
    thetas = theta if isinstance(theta, (list, tuple, np.ndarray)) else [theta] * L
    for k, axx in enumerate(axes):
        u = np.asarray(rec.u[k])[:, sample]
        s = np.asarray(rec.s[k])[:, sample]
        if k < L - 1:
            neurons = sorted(most_active_neurons(s, n_hidden, u))
            what = f"{names[k]}: {len(neurons)} most active neurons"
        else:
            neurons = None
            what = f"{names[k]} (output): all neurons"
        plot_membrane(u, dt, ax=axx, neurons=neurons, theta=thetas[k], title=f"Membrane potential, sample {sample}, "
                      f"{what}")
        if k < L - 1:
            axx.set_xlabel("")
    return axes


# --------------------------------------------------------------------------- structure statistics
def stat_series(stats, layer, field):
    """``(steps, values)`` of one field of the per-step structure records of ``layer`` (NaN for null)."""
    rows = [r for r in stats if int(r["layer"]) == int(layer)]
    steps = np.array([r["step"] for r in rows], dtype=np.float64)
    vals = np.array([np.nan if r.get(field) is None else r[field] for r in rows], dtype=np.float64)
    return steps, vals


def plot_spine_ranges(stats, layer, ax=None, step_to_x=None, xlabel="structural step", name=None):
    """Quantiles (5/50/95 %) of the spine bounds r+ and r- over the present synapses of ``layer``."""
    ax = _ax(ax)
    name = name or f"layer {layer}"
    for sign, color in (("pos", "tab:red"), ("neg", "tab:blue")):
        steps, q05 = stat_series(stats, layer, f"r_{sign}_q05")
        _, q50 = stat_series(stats, layer, f"r_{sign}_q50")
        _, q95 = stat_series(stats, layer, f"r_{sign}_q95")
        xs = _step_x(steps, step_to_x)
        sym = "r+" if sign == "pos" else "r-"
        ax.fill_between(xs, q05, q95, color=color, alpha=0.25, label=f"{sym}: 5-95 % of synapses")
        ax.plot(xs, q50, color=color, label=f"{sym}: median")
    ax.axhline(0, color="k", linewidth=0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("spine range bound (weight units)")
    ax.set_title(f"Spine range evolution, {name}")
    _legend(ax, loc="best")
    return ax


def plot_weights_vs_ranges(w, r_pos, r_neg, mask=None, ax=None, max_points=3000, seed=0, name=None):
    """Present synapses' weights against their ranges ``[r-, r+]``, sorted by weight (a subsample)."""
    ax = _ax(ax)
    w, r_pos, r_neg = (np.asarray(a, dtype=np.float64).ravel() for a in (w, r_pos, r_neg))
    sel = np.ones(w.size, bool) if mask is None else (np.asarray(mask).ravel() != 0)
    idx = np.nonzero(sel)[0]
    if idx.size > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_points, replace=False))
    order = idx[np.argsort(w[idx], kind="stable")]
    rank = np.arange(order.size)
    ax.plot(rank, r_pos[order], ".", color="tab:red", markersize=2, label="r+ (upper bound)")
    ax.plot(rank, r_neg[order], ".", color="tab:blue", markersize=2, label="r- (lower bound)")
    ax.plot(rank, w[order], "-", color="k", linewidth=1.2, label="weight w")
    at = np.mean((w[idx] >= r_pos[idx]) | (w[idx] <= r_neg[idx])) if idx.size else float("nan")
    ax.set_xlabel(f"present synapse, sorted by weight (rank; {order.size} of {int(sel.sum())} shown)")
    ax.set_ylabel("weight and spine bounds (weight units)")
    ax.set_title(f"Weights against their spine ranges, {name or 'layer'} ({100 * at:.1f} % at a bound)")
    _legend(ax, loc="upper left", markerscale=4)
    return ax


def plot_accuracy(metrics, ax=None):
    """Train and test (validation) accuracy per epoch from metrics records."""
    ax = _ax(ax)
    ep = [r["epoch"] for r in metrics]
    ax.plot(ep, [100 * r["train_accuracy"] for r in metrics], "o-", label="train")
    ve = [(r["epoch"], 100 * r["val_accuracy"]) for r in metrics if r.get("val_accuracy") is not None]
    if ve:
        ax.plot(*zip(*ve), "s-", label="test")
    _epoch_axis(ax)
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy")
    _legend(ax, loc="lower right")
    return ax


def plot_loss(metrics, ax=None):
    """Train and test (validation) loss per epoch."""
    ax = _ax(ax)
    ep = [r["epoch"] for r in metrics]
    ax.plot(ep, [r["train_loss"] for r in metrics], "o-", label="train")
    ve = [(r["epoch"], r["val_loss"]) for r in metrics if r.get("val_loss") is not None]
    if ve:
        ax.plot(*zip(*ve), "s-", label="test")
    _epoch_axis(ax)
    ax.set_ylabel("loss (loss units)")
    ax.set_title("Loss")
    _legend(ax, loc="upper right")
    return ax


def plot_structure_over_time(stats, metrics, layer_names=None, step_to_x=None, xlabel="structural step", ax=None):
    """Five panels sharing the time axis: train/test accuracy, synapses present (% per layer),
    neurons pruned, pruning rate rho, regeneration percentile.

    ``stats``: per-step structure records (``structure.jsonl``); ``metrics``: per-epoch records.
    ``step_to_x``: maps a structural step to the x axis (e.g. to epochs, then ``xlabel='epoch'``);
    the accuracy is drawn at its epochs, so give a mapping to epochs to align them.
    """
    axes = _axes(ax, 5, sharex=True)
    layers = sorted({int(r["layer"]) for r in stats})
    names = {l: (layer_names[l] if layer_names is not None and l < len(layer_names) else f"layer {l}")
             for l in layers}
    plot_accuracy(metrics, axes[0])
    axes[0].set_title("Structure over time, next to accuracy")
    for l in layers:
        steps, present = stat_series(stats, l, "synapses_present")
        _, total = stat_series(stats, l, "synapses_total")
        xs = _step_x(steps, step_to_x)
        axes[1].plot(xs, 100 * present / np.maximum(total, 1), label=names[l])
        _, pruned = stat_series(stats, l, "neurons_pruned")
        axes[2].plot(xs, pruned, label=names[l])
        _, rho = stat_series(stats, l, "rho")
        if np.any(np.isfinite(rho)):
            axes[3].plot(xs, 100 * rho, label=names[l])
        _, perc = stat_series(stats, l, "regen_percentile")
        if np.any(np.isfinite(perc)):
            axes[4].plot(xs, perc, "o-", markersize=3, label=names[l])
    axes[1].set_ylabel("synapses present (%)")
    axes[2].set_ylabel("neurons pruned (count)")
    axes[3].set_ylabel("pruning rate ρ (%)")
    axes[4].set_ylabel("regeneration\npercentile (%)")
    for a, title in zip(axes[1:], ("Synapses present", "Neurons pruned", "Pruning rate ρ (after the step's update)",
                                   "Regeneration percentile")):
        a.set_title(title, fontsize="medium")
        _legend(a, loc="best")
        if not a.lines:
            a.text(0.5, 0.5, "not run in this training", transform=a.transAxes, ha="center", va="center")
    for a in axes[:-1]:
        a.set_xlabel("")
    axes[-1].set_xlabel(xlabel)
    return axes


# --------------------------------------------------------------------------- connectivity
def plot_mask(mask, ax=None, name=None):
    """A ``[post, pre]`` mask as an image (present synapses dark).

    A conv kernel mask ``(C_out, C_in, kh, kw)`` is drawn as ``(C_out, C_in*kh*kw)``: one row per
    filter, its kernel entries along the row.
    """
    ax = _ax(ax)
    m = np.asarray(mask) != 0
    conv = m.ndim == 4
    if conv:
        m = m.reshape(m.shape[0], -1)
    ax.imshow(m, aspect="auto", cmap="Greys", interpolation="nearest", vmin=0, vmax=1)
    if conv:
        c_in, kh, kw = np.shape(mask)[1:]
        ax.set_xlabel(f"kernel entry (input channel x row x column, {c_in}x{kh}x{kw})")
        ax.set_ylabel("output channel (filter)")
        ax.set_title(f"Kernel mask, {name or 'layer'} ({100 * m.mean():.1f} % of entries present)")
        return ax
    ax.set_xlabel("presynaptic neuron index")
    ax.set_ylabel("postsynaptic neuron index")
    ax.set_title(f"Mask, {name or 'layer'} ({100 * m.mean():.1f} % present)")
    return ax


def plot_filters(mask, ax=None, name=None):
    """Present kernel entries per filter of a conv kernel mask ``(C_out, C_in, kh, kw)`` (bars; a
    filter without any is pruned)."""
    ax = _ax(ax)
    m = np.asarray(mask) != 0
    if m.ndim != 4:
        raise ValueError(f"plot_filters needs a (C_out, C_in, kh, kw) kernel mask, got shape {m.shape}")
    per = m.reshape(m.shape[0], -1).sum(axis=1)
    alive = int((per > 0).sum())
    ax.bar(np.arange(per.size), per, color=np.where(per > 0, "tab:blue", "tab:red"),
           label="present entries (red: pruned filter)")
    ax.axhline(m[0].size, color="k", linestyle="--", linewidth=1, label=f"full kernel ({m[0].size} entries)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("output channel (filter)")
    ax.set_ylabel("present kernel entries")
    ax.set_title(f"Filters present, {name or 'layer'} ({alive} of {per.size})")
    _legend(ax, loc="lower right")
    return ax


def plot_degree_distribution(mask, ax=None, name=None, bins=30):
    """Histograms of in-degree (present inputs per postsynaptic neuron) and out-degree (per presynaptic)."""
    ax = _ax(ax)
    m = np.asarray(mask) != 0
    ind, outd = m.sum(axis=1), m.sum(axis=0)
    hi = max(int(ind.max(initial=0)), int(outd.max(initial=0)), 1)
    edges = np.linspace(0, hi + 1, min(bins, hi + 1) + 1)
    ax.hist(ind, edges, alpha=0.6, label=f"in-degree ({m.shape[0]} post. neurons)")
    ax.hist(outd, edges, alpha=0.6, label=f"out-degree ({m.shape[1]} pre. neurons)")
    ax.set_xlabel("degree (present synapses per neuron)")
    ax.set_ylabel("neurons (count)")
    ax.set_title(f"Degree distributions, {name or 'layer'}")
    _legend(ax, loc="best")
    return ax


def plot_input_fanout(mask, ax=None, image_shape=None, name=None, fanout=None):
    """The out-degree of every input (e.g. pixel) as an image of ``image_shape`` (square by default).

    ``fanout``: the out-degree per input when the mask's column sums are not it (a conv layer:
    ``Connection.fanout(mask)``, summed over the input channels).
    """
    ax = _ax(ax)
    outd = (np.asarray(mask) != 0).sum(axis=0) if fanout is None else np.asarray(fanout)
    if image_shape is None:
        side = int(round(math.sqrt(outd.size)))
        if side * side != outd.size:
            raise ValueError(f"{outd.size} inputs do not form a square image; give image_shape")
        image_shape = (side, side)
    im = ax.imshow(outd.reshape(image_shape), cmap="viridis", interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, label="out-degree (synapses)")
    ax.set_xlabel("pixel column")
    ax.set_ylabel("pixel row")
    ax.set_title(f"Present fan-out per input, {name or 'layer'}")
    return ax


def plot_connectivity(masks, layer_names=None, ax=None):
    """Per layer: the mask image and the in/out degree histograms (``ax``: ``2 * L`` axes, row-major);
    a conv kernel mask gets :func:`plot_filters` instead of the histograms."""
    L = len(masks)
    axes = _axes(ax, 2 * L)
    names = [f"layer {k}" for k in range(L)] if layer_names is None else list(layer_names)
    for k, m in enumerate(masks):
        plot_mask(m, axes[2 * k], names[k])
        (plot_filters if np.ndim(m) == 4 else plot_degree_distribution)(m, axes[2 * k + 1], names[k])
    return axes


# --------------------------------------------------------------------------- energy
def plot_sops(metrics, ax=None, label="this run", dense_metrics=None, dense_label="dense run",
              dense_fanout=None, energy_axis=True):
    """Synaptic operations per test sample over training, with the energy estimate on a second axis.

    ``dense_metrics``: metrics of a dense baseline run; ``dense_fanout``: SOPs per sample of this
    run's final spikes if every synapse were present (a horizontal reference line).
    """
    ax = _ax(ax)
    pts = [(r["epoch"], r["sops_per_sample"]) for r in metrics if r.get("sops_per_sample") is not None]
    if pts:
        ax.plot(*zip(*pts), "o-", label=f"{label} (present synapses)")
    if dense_metrics:
        dp = [(r["epoch"], r["sops_per_sample"]) for r in dense_metrics if r.get("sops_per_sample") is not None]
        if dp:
            ax.plot(*zip(*dp), "s--", label=dense_label)
    if dense_fanout is not None and math.isfinite(dense_fanout):
        ax.axhline(dense_fanout, color="tab:gray", linestyle=":",
                   label="final spikes through all synapses (dense fan-out)")
    if not pts:
        ax.text(0.5, 0.5, "no evaluated epoch yet", transform=ax.transAxes, ha="center", va="center")
    _epoch_axis(ax)
    ax.set_ylabel("SOPs per test sample")
    ax.set_ylim(bottom=0)
    ax.set_title("Synaptic operations per sample")
    if energy_axis:
        sec = ax.secondary_yaxis("right", functions=(lambda s: s * E_AC_PJ * 1e-3, lambda e: e / (E_AC_PJ * 1e-3)))
        sec.set_ylabel(f"E_SNN estimate (nJ) = SOPs x {E_AC_PJ} pJ")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="lower left")
    return ax


def plot_energy_bars(estimate, ax=None):
    """Energy per sample (nJ): SNN (present synapses, dense fan-out) and the equivalent ANN.

    ``estimate``: :func:`sdsnn_brian.energy.energy_estimate` output.
    """
    ax = _ax(ax)
    names = ["SNN\npruned", "SNN\ndense fan-out", "ANN\npruned", "ANN\ndense"]
    vals = [estimate["E_snn_J"], estimate["E_snn_dense_J"], estimate["E_ann_J"], estimate["E_ann_dense_J"]]
    colors = ["tab:green", "tab:olive", "tab:purple", "tab:gray"]
    vals = [float("nan") if v is None else float(v) for v in vals]
    bars = ax.bar(names, np.nan_to_num(np.asarray(vals) * 1e9), color=colors)
    for b, v, n in zip(bars, vals, (estimate["sops"], estimate["sops_dense"], estimate["macs"],
                                    estimate["macs_dense"])):
        text = f"{v * 1e9:.1f} nJ\n({n:,.0f} ops)" if math.isfinite(v) else "n/a\n(needs a simulation)"
        ax.text(b.get_x() + b.get_width() / 2, b.get_height(), text, ha="center", va="bottom", fontsize="x-small")
    ax.set_ylabel("energy estimate per sample (nJ)")
    ax.set_xlabel(f"model (SNN: SOPs x {E_AC_PJ} pJ; ANN: MACs x {E_MAC_PJ} pJ)")
    ax.set_title("Energy estimate per sample, final weights")
    ax.margins(y=0.25)
    return ax


def plot_energy(metrics, estimate=None, dense_metrics=None, ax=None, label="this run"):
    """Two panels: SOPs (and E_SNN) per sample over training, dense against pruned; energy bars.

    The formula and constants are written under the panels.
    """
    n = 2 if estimate is not None else 1
    axes = _axes(ax, n)
    plot_sops(metrics, axes[0], label=label, dense_metrics=dense_metrics,
              dense_fanout=None if estimate is None else estimate["sops_dense"])
    if estimate is not None:
        plot_energy_bars(estimate, axes[1])
    axes[0].figure.text(0.5, 0.01, ENERGY_CAPTION, ha="center", va="bottom", fontsize="small", wrap=True)
    return axes


# --------------------------------------------------------------------------- several runs
def plot_comparison(runs, ax=None):
    """Three panels over epochs for several runs (``{name: metrics records}``): test accuracy,
    synapses present (% of all), SOPs per test sample."""
    axes = _axes(ax, 3)
    for name, metrics in runs.items():
        ve = [(r["epoch"], 100 * r["val_accuracy"]) for r in metrics if r.get("val_accuracy") is not None]
        if ve:
            axes[0].plot(*zip(*ve), "o-", label=name)
        axes[1].plot([r["epoch"] for r in metrics], [100 * (1 - r.get("compression", 0.0)) for r in metrics],
                     "o-", label=name)
        sp = [(r["epoch"], r["sops_per_sample"]) for r in metrics if r.get("sops_per_sample") is not None]
        if sp:
            axes[2].plot(*zip(*sp), "o-", label=name)
    for a, yl, t in zip(axes, ("test accuracy (%)", "synapses present (% of all)", "SOPs per test sample"),
                        ("Test accuracy", "Synapses present", "Synaptic operations per sample")):
        _epoch_axis(a)
        a.set_ylabel(yl)
        a.set_title(t)
        _legend(a, loc="best")
    return axes
