"""The figures of a run report: a registry of named figures and the functions drawing them.

>>> from sdsnn_brian.reporting import render_figure, make_figure, FIGURES
>>> render_figure("runs/sdsnn_mnist/sdsnn-reference", "lifetimes", "lifetimes.png")

Figures (:data:`FIGURES`; ``sdsnn plot RUN_DIR --figure NAME``): ``training``, ``raster``,
``membrane``, ``structure``, ``spines``, ``weights-ranges``, ``lifetimes``, ``connectivity``,
``energy`` and, for comparison directories, ``comparison``.  ``raster`` and ``membrane`` (and
the dense fan-out reference of ``energy``) simulate the first test images with the final weights
and the evaluation encoding (:meth:`Run.simulate <sdsnn_brian.reporting.run.Run.simulate>`).
Structural figures need a run with a structural schedule.  Every figure is a
:class:`matplotlib.figure.Figure` drawn with :mod:`sdsnn_brian.reporting.plots` (no pyplot).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from .. import energy as _en
from .. import lifetimes as _lt
from ..rundir import REPORT_DIR
from . import plots as _pl
from .run import load_any

__all__ = ["FigureSpec", "FIGURES", "COMPARISON_FIGURE", "FIGURE_NAMES", "applicable", "make_figure",
           "render_figure", "DPI", "RASTER_MAX_NEURONS"]

DPI = 100
#: rasters of larger populations (conv maps) show one neuron in ``ceil(N / RASTER_MAX_NEURONS)``
RASTER_MAX_NEURONS = 2000


@dataclass(frozen=True)
class FigureSpec:
    name: str
    title: str
    caption: str
    draw: object                 # draw(run_or_runs, fig, ctx) -> None
    figsize: object              # figsize(run_or_runs) -> (w, h) inches
    needs: tuple = ()            # 'structure', 'simulation', 'spines', 'comparison'


def need_simulation(ctx, run):
    """The simulation a figure of ``run`` draws: ``ctx["simulation"]``, else :meth:`Run.simulate` (cached)."""
    sim = ctx.get("simulation")
    if sim is None:
        sim = run.simulate(n_samples=ctx.get("n_samples"), cache_dir=ctx.get("cache_dir"), data=ctx.get("data"))
    return sim


def _draw_training(run, fig, ctx):
    a, b = fig.subplots(1, 2)
    _pl.plot_loss(run.metrics, a)
    _pl.plot_accuracy(run.metrics, b)
    fig.suptitle(f"Training curves, {run.name}")


def _draw_raster(run, fig, ctx):
    sim = need_simulation(ctx, run)
    samples = [k for k in ctx.get("samples", (0, 1, 2)) if k < len(sim.labels)] or [0]
    L = len(sim.rec.s) + 1
    ratios = [3] + [2] * (L - 2) + [1]
    axes = fig.subplots(L, 1, sharex=True, gridspec_kw={"height_ratios": ratios[:L]})
    _pl.plot_layer_rasters(sim.x, sim.rec, samples, dt=sim.dt, ax=axes, layer_names=run.population_names,
                           labels=sim.labels, predictions=sim.predictions, max_neurons=RASTER_MAX_NEURONS)


def _draw_membrane(run, fig, ctx):
    sim = need_simulation(ctx, run)
    axes = fig.subplots(len(sim.rec.u), 1, sharex=True)
    _pl.plot_membrane_traces(sim.rec, sample=int(ctx.get("samples", (0,))[0]), dt=sim.dt, theta=sim.theta,
                             ax=axes, layer_names=run.layer_names)


def _draw_structure(run, fig, ctx):
    axes = fig.subplots(5, 1, sharex=True)
    s2e = run.step_to_epoch()
    _pl.plot_structure_over_time(run.stats, run.metrics, run.layer_names, step_to_x=s2e,
                                 xlabel="training time (epochs)" if s2e else "structural step", ax=axes)
    if s2e:
        axes[0].set_xlim(left=0)


def _draw_spines(run, fig, ctx):
    layers = run.spine_layers() or [0]
    axes = np.atleast_1d(fig.subplots(len(layers), 1, squeeze=False)[:, 0])
    s2e = run.step_to_epoch()
    for axx, k in zip(axes, layers):
        _pl.plot_spine_ranges(run.stats, k, axx, step_to_x=s2e, name=run.layer_names[k],
                              xlabel="training time (epochs)" if s2e else "structural step")


def _draw_weights_ranges(run, fig, ctx):
    layers = run.spine_layers()
    axes = np.atleast_1d(fig.subplots(len(layers), 1, squeeze=False)[:, 0])
    for axx, k in zip(axes, layers):
        rp, rn = run.spine_ranges(k)
        _pl.plot_weights_vs_ranges(run.weights[k], rp, rn, run.masks[k], ax=axx, name=run.layer_names[k])


def _lifetime_data(run):
    # events index the layer's parameter array (kernel entries of a conv layer), so lives are per entry
    out = {}
    for k, m in enumerate(run.masks):
        lives = _lt.synapse_lives(run.log, k, m.size, run.n_steps)
        out[k] = lives
    return out


def _draw_lifetimes(run, fig, ctx):
    (a, b), (c, d) = fig.subplots(2, 2)
    data = _lifetime_data(run)
    active = [k for k, lv in data.items() if lv.observed.any() or lv.regrown.any()]
    names = run.layer_names
    what = ["kernel entries" if m.ndim == 4 else "lives" for m in run.masks]  # conv: lives of kernel entries
    for k in active:
        lv = data[k]
        km = _lt.kaplan_meier(lv.duration, lv.observed)
        _lt.plot_survival(km, a, label=f"{names[k]}: all {what[k]} (n={len(lv)})",
                                 censored_times=lv.duration[~lv.observed])
        if lv.regrown.any():
            rg = lv.select(lv.regrown)
            km2 = _lt.kaplan_meier(rg.duration, rg.observed)
            _lt.plot_survival(km2, a, label=f"{names[k]}: regrown lives (n={len(rg)})", linestyle="--",
                              censored_times=rg.duration[~rg.observed])
        _lt.plot_lifetime_histogram(lv, b, label=names[k] if len(active) > 1 else "")
        steps, rem, res = _lt.events_per_step(run.log, k, run.n_steps)
        _lt.plot_regrowth(steps, rem, res, c, label=names[k] if len(active) > 1 else "")
    if not active:
        for axx in (a, b, c):
            axx.text(0.5, 0.5, "no synapse was removed or restored", transform=axx.transAxes, ha="center")
        _lt.plot_survival(_lt.kaplan_meier([run.n_steps], [False]), a)
        b.set(xlabel="lifetime (structural steps)", ylabel="lives (count)", title="Synapse lifetime histogram")
        c.set(xlabel="structural step", ylabel="synapses per step (count)", title="Removals and regrowth per step")
    if len(a.lines) > 1:
        a.legend(fontsize="small")
    a.set_title("Synapse survival (Kaplan-Meier; + censored: still present)")
    xs = np.arange(len(names))
    summ = [_lt.regrowth_summary(data[k]) for k in range(len(names))]
    regrown = [s["restorations"] for s in summ]
    again = [s["regrown_removed_again"] for s in summ]
    d.bar(xs - 0.2, regrown, 0.4, label="regrown lives (restorations)")
    d.bar(xs + 0.2, again, 0.4, label="regrown, then removed again")
    for x, s in zip(xs, summ):
        f = s["fraction_removed_again"]
        d.text(x, max(s["restorations"], 1), "-" if math.isnan(f) else f"{100 * f:.1f} % removed again",
               ha="center", va="bottom", fontsize="small")
    d.set_xticks(xs, names)
    d.set_xlabel("layer")
    d.set_ylabel("synapses (count)")
    d.set_title("Regrowth and removal of regrown synapses")
    d.margins(y=0.2)
    if max(regrown + again, default=0) == 0:  # keep the "-" labels (drawn at 1) inside the axes
        d.set_ylim(0, 2)
    d.legend(fontsize="small")
    fig.suptitle(f"Synapse lifetimes, {run.name} ({run.n_steps} structural steps)")


def _draw_connectivity(run, fig, ctx):
    masks = run.masks
    L = len(masks)
    axes = fig.subplots(L, 3, squeeze=False)
    conns = run.connections if run.is_conv else [None] * L
    for k, (m, c) in enumerate(zip(masks, conns)):
        name = run.layer_names[k]
        _pl.plot_mask(m, axes[k, 0], name)
        if m.ndim == 4:  # conv: kernel entries per filter instead of per-neuron degrees
            _pl.plot_filters(m, axes[k, 1], name)
        else:
            _pl.plot_degree_distribution(m, axes[k, 1], name)
        if k == 0 and c is not None and len(c.in_shape) == 3:
            # present fan-out of every input position through the layer's synapses, summed over channels
            fan = np.asarray(c.fanout(m)).reshape(c.in_shape).sum(axis=0)
            _pl.plot_input_fanout(m, axes[k, 2], image_shape=c.in_shape[1:], name=name, fanout=fan)
            continue
        side = int(round(math.sqrt(m.shape[1])))
        if k == 0 and m.ndim == 2 and side * side == m.shape[1]:
            _pl.plot_input_fanout(m, axes[k, 2], name=name)
        else:
            axes[k, 2].axis("off")
    fig.suptitle(f"Connectivity at the final checkpoint, {run.name}")


def _energy_estimate_without_sim(run):
    last = [r for r in run.metrics if r.get("sops_per_sample") is not None]
    masks = run.masks
    conns = run.connections if run.is_conv else None
    m_pr = float(_en.macs(masks, connections=conns).sum())
    m_de = float(_en.macs(masks, pruned=False, connections=conns).sum())
    s = last[-1]["sops_per_sample"] if last else float("nan")
    return {"sops": s, "sops_dense": float("nan"), "macs": m_pr, "macs_dense": m_de,
            "E_snn_J": float(_en.snn_energy(s)), "E_snn_dense_J": float("nan"),
            "E_ann_J": float(_en.ann_energy(m_pr)), "E_ann_dense_J": float(_en.ann_energy(m_de))}


def _draw_energy(run, fig, ctx):
    try:
        est = need_simulation(ctx, run).estimate if ctx.get("simulate", True) else None
    except Exception as exc:  # the figure still has the metrics; say why the reference is missing
        ctx.setdefault("notes", []).append(f"energy: no simulation ({exc})")
        est = None
    if est is None:
        est = _energy_estimate_without_sim(run)
    dense = run.dense_sibling()
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(bottom=0.2)
    _pl.plot_energy(run.metrics, est, dense_metrics=dense.metrics if dense else None, ax=axes, label=run.name)


def _draw_comparison(runs, fig, ctx):
    axes = fig.subplots(1, 3)
    _pl.plot_comparison({n: r.metrics for n, r in runs.items()}, axes)
    fig.suptitle("Runs compared: accuracy, synapses present, synaptic operations "
                 f"(SOPs x {_en.E_AC_PJ} pJ = E_SNN estimate)")


def _n_layers(run):
    return run.n_layers


FIGURES = {s.name: s for s in [
    FigureSpec("training", "Training curves", "Loss and accuracy per epoch, train and test (the test set is "
               "evaluated every eval_every epochs).", _draw_training, lambda r: (12, 4.5)),
    FigureSpec("raster", "Spike rasters", "Spikes of the input and of every layer for the first test samples "
               "(evaluation encoding, final weights), one sample after the other on a common time axis; "
               "label and prediction over the output.", _draw_raster,
               lambda r: (12, 2.5 + 2.2 * (_n_layers(r) + 1)), ("simulation",)),
    FigureSpec("membrane", "Membrane traces", "Membrane potential (before reset) of the most active hidden "
               "neurons and of every output neuron for the first test sample; dashed: threshold.", _draw_membrane,
               lambda r: (12, 1 + 3.5 * _n_layers(r)), ("simulation",)),
    FigureSpec("structure", "Structure over time", "Accuracy next to the structural state after each "
               "structural step: synapses present per layer, neurons pruned, the pruning rate rho and the "
               "regeneration percentile.", _draw_structure, lambda r: (11, 15), ("structure",)),
    FigureSpec("spines", "Spine range evolution", "5/50/95 % quantiles of the spine bounds r+ and r- over the "
               "present synapses of each layer, after each structural step.", _draw_spines,
               lambda r: (11, 1 + 4 * max(1, len(r.spine_layers()))), ("structure", "spines")),
    FigureSpec("weights-ranges", "Weights against their ranges", "Final weights of (a sample of) the present "
               "synapses, sorted, with each synapse's spine range [r-, r+].", _draw_weights_ranges,
               lambda r: (11, 1 + 4 * max(1, len(r.spine_layers()))), ("structure", "spines")),
    FigureSpec("lifetimes", "Synapse lifetimes", "Kaplan-Meier survival of synapse lives (a life starts at step "
               "0 or at a regrowth, ends at a removal; lives still present are censored, +), lifetime "
               "histogram, removals and regrowth per step, and how many regrown synapses were removed again.",
               _draw_lifetimes, lambda r: (14, 10), ("structure",)),
    FigureSpec("connectivity", "Connectivity", "Final masks (present synapses dark), in/out degree "
               "distributions and the present fan-out of every input pixel; a conv layer shows its kernel "
               "mask (one row per filter) and the present kernel entries per filter, and its input fan-out "
               "counts the synapses built from each position (summed over channels).", _draw_connectivity,
               lambda r: (16, 1 + 4.2 * _n_layers(r))),
    FigureSpec("energy", "Synaptic operations and energy", "SOPs per test sample over training (this run; the "
               "dense baseline when there is one; the final spikes through all synapses) and the energy "
               "estimate per sample. " + _pl.ENERGY_CAPTION, _draw_energy, lambda r: (15, 6)),
]}
COMPARISON_FIGURE = FigureSpec("comparison", "Runs compared", "Test accuracy, synapses present and SOPs per "
                               "test sample over epochs for every run of the comparison.", _draw_comparison,
                               lambda runs: (17, 5), ("comparison",))
FIGURE_NAMES = list(FIGURES) + ["comparison"]


def applicable(spec, run):
    """None if figure ``spec`` (a FigureSpec or a name) can be drawn for ``run``, else the reason."""
    if isinstance(spec, str):
        spec = FIGURES[spec]
    if "structure" in spec.needs and not run.structural:
        return "dense run: no structural schedule (no structure.jsonl / structure_events.npz)"
    if "spines" in spec.needs and not run.spine_layers():
        return "the checkpoint holds no spine state"
    return None


def make_figure(run, name, **ctx):
    """A :class:`matplotlib.figure.Figure` (no pyplot) of figure ``name`` for a Run (or ``{name: Run}``
    for ``'comparison'``).  ``ctx``: ``cache_dir``, ``n_samples``, ``samples``, ``data``, ``simulate``."""
    from matplotlib.figure import Figure

    if name == "comparison":
        if not isinstance(run, dict):
            raise ValueError("figure 'comparison' needs a comparison directory (sub-runs and comparison.md)")
        spec = COMPARISON_FIGURE
    else:
        if name not in FIGURES:
            raise ValueError(f"unknown figure {name!r}; known figures: {', '.join(FIGURE_NAMES)}")
        if isinstance(run, dict):
            raise ValueError(f"figure {name!r} is drawn per run: give a sub-run directory "
                             f"({', '.join(run)}) or use --figure comparison")
        spec = FIGURES[name]
        why = applicable(spec, run)
        if why:
            raise ValueError(f"figure {name!r} does not apply to {run.path}: {why}")
    fig = Figure(figsize=spec.figsize(run), dpi=DPI, layout=None)
    spec.draw(run, fig, ctx)
    if name not in ("energy",):
        fig.tight_layout()
    else:
        fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def render_figure(run_dir, name, out=None, **ctx) -> str:
    """Draw figure ``name`` of a run (or comparison) directory into a PNG; returns its path.

    ``out`` defaults to ``RUN_DIR/report/NAME.png``.
    """
    run = load_any(run_dir)
    fig = make_figure(run, name, **ctx)
    if out is None:
        base = os.path.dirname(next(iter(run.values())).path) if isinstance(run, dict) else run.path
        out = os.path.join(base, REPORT_DIR, f"{name}.png")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=DPI)
    return out
