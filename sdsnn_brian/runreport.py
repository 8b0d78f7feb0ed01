"""Run reports: every figure of a run directory, its configuration and metrics on one static page.

>>> from sdsnn_brian.runreport import write_report, render_figure, load_run
>>> rep = write_report("runs/sdsnn_mnist")            # a comparison directory or a single run
>>> rep.markdown, rep.html, rep.figures               # RUN_DIR/report/index.md, index.html, PNGs
>>> render_figure("runs/sdsnn_mnist/sdsnn-reference", "lifetimes", "lifetimes.png")

A *run directory* is what :class:`~sdsnn_brian.callbacks.RunDirectory` writes (``config.json``,
``metrics.jsonl``, ``ckpt-*.npz``, ``summary.json``; with a structural schedule also
``structure.jsonl`` and ``structure_events.npz``; the layout and the checkpoint keys are defined in
:mod:`sdsnn_brian.rundir`).  A *comparison directory* is what
``protocols/sdsnn_mnist.py`` writes: ``comparison.md``/``comparison.json`` over sub-run
directories (``dense/``, ``sdsnn-reference/``, ``sdsnn-strict/``).

Figures (:data:`FIGURES`; ``sdsnn plot RUN_DIR --figure NAME``): ``training``, ``raster``,
``membrane``, ``structure``, ``spines``, ``weights-ranges``, ``lifetimes``, ``connectivity``,
``energy`` and, for comparison directories, ``comparison``.  ``raster`` and ``membrane`` (and
the dense fan-out reference of ``energy``) rebuild the network from ``config.json``, load the
newest checkpoint and simulate the first test images with the evaluation encoding (one
``device.run`` through the C++ standalone project, compiled once per network and batch size in
the cache directory).  Structural figures need a run with a structural schedule.  A report of a
run that has not finished (no ``summary.json``, or fewer epochs than ``config.json`` asks for)
starts with a line saying so and which checkpoint the figures show (:func:`progress_note`).
"""
from __future__ import annotations

import datetime
import html as _html
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import energy as _en
from . import lifetimes as _lt
from . import plotting as _pl
from .rundir import (COMPARISON_JSON_FILE, COMPARISON_MD_FILE, CONFIG_FILE, EVAL_SEED_OFFSET, METRICS_FILE,
                     REPORT_DIR, STRUCTURE_EVENTS_FILE, STRUCTURE_FILE, STRUCTURE_PREFIX, SUMMARY_FILE,
                     MissingLayerArray, layer_arrays, parse_checkpoint_name, write_atomic)

__all__ = ["RunDirectoryError", "Run", "Simulation", "FigureSpec", "FIGURES", "load_run", "is_comparison_dir",
           "comparison_runs", "applicable", "make_figure", "render_figure", "write_report", "Report", "DPI",
           "progress_note"]

DPI = 100
#: rasters of larger populations (conv maps) show one neuron in ``ceil(N / RASTER_MAX_NEURONS)``
RASTER_MAX_NEURONS = 2000


class RunDirectoryError(FileNotFoundError):
    """A run directory is missing, or lacks a file a figure or the report needs."""


# ============================================================================ loading
def _read_jsonl(path):
    out = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise RunDirectoryError(f"incomplete run directory: {path} line {n} is not JSON ({exc.msg}); "
                                        "was the run interrupted while writing?") from None
    return out


def _read_json(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise RunDirectoryError(f"damaged file {path}: not valid JSON ({exc.msg}, line {exc.lineno} column "
                                f"{exc.colno}); was it cut short or edited by hand?") from None


@dataclass
class Simulation:
    """One simulated minibatch of test images with a run's final weights."""

    x: np.ndarray            # input spikes [T, B, n]
    rec: object              # Recording: .u, .s lists of [T, B, N]
    labels: np.ndarray
    predictions: np.ndarray
    dt: float                # seconds
    theta: list
    estimate: dict           # energy.energy_estimate over the simulated samples


class Run:
    """A loaded run directory (validated on construction; arrays load lazily).

    Attributes: ``path``, ``name``, ``config``, ``metrics`` (per-epoch records), ``summary`` (or
    None), ``stats`` (per-step structure records or None), ``log`` (StructureLog or None),
    ``n_steps`` (structural steps run), ``checkpoint`` (path of the newest valid checkpoint).
    A run still training (or interrupted) loads too: :attr:`in_progress`, :func:`progress_note`.
    """

    def __init__(self, path):
        from .checkpoint import latest_checkpoint

        self.path = os.path.abspath(os.fspath(path))
        self.name = os.path.basename(self.path.rstrip(os.sep))
        if not os.path.isdir(self.path):
            raise RunDirectoryError(f"run directory {path!r} does not exist")
        need = "a run directory holds config.json, metrics.jsonl and ckpt-*.npz (written by Trainer.fit)"
        cfg = os.path.join(self.path, CONFIG_FILE)
        if not os.path.isfile(cfg):
            raise RunDirectoryError(f"{path!r} is not a run directory: config.json is missing ({need})")
        self.config = _read_json(cfg)
        met = os.path.join(self.path, METRICS_FILE)
        if not os.path.isfile(met):
            raise RunDirectoryError(f"incomplete run directory {path!r}: metrics.jsonl is missing ({need})")
        self.metrics = _read_jsonl(met)
        if not self.metrics:
            raise RunDirectoryError(f"incomplete run directory {path!r}: metrics.jsonl holds no finished epoch")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.checkpoint = latest_checkpoint(self.path)
        if self.checkpoint is None:
            raise RunDirectoryError(f"incomplete run directory {path!r}: no readable checkpoint ckpt-*.npz")
        summ = os.path.join(self.path, SUMMARY_FILE)
        self.summary = _read_json(summ) if os.path.isfile(summ) else None
        self.stats = self.log = None
        self.n_steps = 0
        if self.structural:
            from .checkpoint import load_checkpoint
            from .structure.events import StructureLog

            for fname in (STRUCTURE_FILE, STRUCTURE_EVENTS_FILE):
                if not os.path.isfile(os.path.join(self.path, fname)):
                    raise RunDirectoryError(f"incomplete run directory {path!r}: {fname} is missing (the "
                                            "configuration has a structural schedule)")
            self.stats = StructureLog.read_stats_jsonl(os.path.join(self.path, STRUCTURE_FILE))
            arrays, meta = load_checkpoint(os.path.join(self.path, STRUCTURE_EVENTS_FILE))
            self.log = StructureLog.from_dict(arrays)
            steps = [r["step"] for r in self.stats]
            self.n_steps = int(meta.get("steps", max(steps, default=-1) + 1))
        self._arrays = None
        self._meta = None
        self._sim = {}
        self._net = None

    # -- progress ------------------------------------------------------------------
    @property
    def epochs_done(self) -> int:
        """Epochs finished: the last record of ``metrics.jsonl``."""
        return int(self.metrics[-1].get("epoch", len(self.metrics)))

    @property
    def epochs_planned(self):
        """Epochs the (latest) ``fit`` was asked for (``config.json``), or None if not recorded."""
        e = self.config.get("epochs")
        return int(e) if isinstance(e, (int, float)) and not isinstance(e, bool) else None

    @property
    def in_progress(self) -> bool:
        """The run has not finished: no ``summary.json`` (written when ``fit`` ends), or fewer epochs in
        the metrics than configured (a resumed run asked for more)."""
        planned = self.epochs_planned
        return self.summary is None or (planned is not None and self.epochs_done < planned)

    def checkpoint_position(self):
        """``(epoch, batch)`` of the newest checkpoint: epochs finished and batches of the next one
        (its metadata, else its name ``ckpt-EEEE-BBBBB.npz``; ``(None, None)`` if neither tells)."""
        self.arrays()
        meta = self._meta or {}
        if "epoch" in meta and "batch" in meta:
            return int(meta["epoch"]), int(meta["batch"])
        pos = parse_checkpoint_name(self.checkpoint)
        return pos if pos is not None and pos[1] is not None else (None, None)

    # -- configuration -------------------------------------------------------------
    @property
    def structural(self) -> bool:
        return self.config.get("structure") is not None

    def _trained_entries(self) -> list:
        """The ``config["network"]["layers"]`` entries of trained layers (pooling entries left out)."""
        return [l for l in self.config["network"]["layers"] if l.get("type", "dense") in ("dense", "conv2d")]

    @property
    def n_layers(self) -> int:
        """Trained layers (Dense and Conv2d; an AvgPool2d is not a layer of neurons)."""
        return len(self._trained_entries())

    @property
    def is_conv(self) -> bool:
        """A network with conv or pooling layers (parameter-shaped, not ``[post, pre]``, conv masks)."""
        return any(l.get("type", "dense") != "dense" for l in self.config["network"]["layers"])

    @property
    def layer_names(self) -> list:
        """Trained layers' names: the structural schedule's, else those of
        :func:`~sdsnn_brian.structure.schedule.network_layer_specs` (``fc0, fc1, ...`` for a fully
        connected network, ``conv1, conv2, fc3, ...`` otherwise)."""
        st = self.config.get("structure")
        if st and isinstance(st, dict) and st.get("layers"):
            return [l["name"] for l in st["layers"]]
        if not self.is_conv:
            return [f"fc{k}" for k in range(self.n_layers)]
        return [f"{'conv' if l.get('type') == 'conv2d' else 'fc'}{k + 1}"
                for k, l in enumerate(self._trained_entries())]

    @property
    def population_names(self) -> list:
        """Input and every trained layer, for rasters."""
        sizes = [self.config["network"]["input"]["size"]] + [l["size"] for l in self._trained_entries()]
        names = ["input"] + [f"{n} (output)" if k == self.n_layers - 1 else n
                             for k, n in enumerate(self.layer_names)]
        return [f"{n}, {s}" for n, s in zip(names, sizes)]

    def step_to_epoch(self):
        """A map from structural step to training time in epochs (None when the config lacks sizes)."""
        c = self.config
        n_train, bs, se = c.get("n_train"), c.get("batch_size"), c.get("structure_every")
        if not n_train or not bs:
            return None
        nb = -(-int(n_train) // int(bs))
        if not se:
            return lambda s: float(s) + 1.0
        spe = nb // int(se)
        if spe < 1:
            return None
        return lambda s: int(s) // spe + ((int(s) % spe) + 1) * int(se) / nb

    # -- arrays ------------------------------------------------------------------------
    def arrays(self):
        if self._arrays is None:
            from .checkpoint import load_checkpoint

            self._arrays, self._meta = load_checkpoint(self.checkpoint)
            try:
                layer_arrays(self._arrays, self.n_layers)
            except MissingLayerArray as exc:
                raise RunDirectoryError(f"checkpoint {self.checkpoint} lacks {exc.key}") from None
        return self._arrays

    @property
    def weights(self):
        return layer_arrays(self.arrays(), self.n_layers)[0]

    @property
    def masks(self):
        return layer_arrays(self.arrays(), self.n_layers)[1]

    @property
    def biases(self):
        return layer_arrays(self.arrays(), self.n_layers)[2]

    def spine_ranges(self, k):
        """``(r+, r-)`` of layer ``k`` from the checkpoint, or None without spine state."""
        a = self.arrays()
        key = f"{STRUCTURE_PREFIX}layer{k}.spines.r_pos"
        if key not in a:
            return None
        return np.asarray(a[key]), np.asarray(a[f"{STRUCTURE_PREFIX}layer{k}.spines.r_neg"])

    def spine_layers(self) -> list:
        if not self.structural:
            return []
        return [k for k in range(self.n_layers) if self.spine_ranges(k) is not None]

    def synapse_counts(self, present=False) -> list:
        """Synapses built per trained layer (a conv layer: one per kernel entry and position it links,
        :meth:`Connection.n_synapses <sdsnn_brian.layers.Connection.n_synapses>`); ``present=True``:
        those present under the final masks.  For a dense layer these are its matrix entries."""
        masks = self.masks if present else [None] * self.n_layers
        return [int(c.n_synapses(m)) for c, m in zip(self.connections, masks)]

    def weight_shapes(self) -> list:
        """Shape of each trained layer's parameter (``net.weight_shapes``: ``(N, n_in)`` for a dense
        layer, ``(C_out, C_in, kh, kw)`` for a conv layer); also the shape of its mask."""
        return [tuple(s) for s in self.network().weight_shapes]

    @property
    def connections(self) -> list:
        """The :class:`~sdsnn_brian.layers.Connection` of every trained layer."""
        return self.network().connections

    # -- siblings ------------------------------------------------------------------------
    def dense_sibling(self):
        """The dense baseline run next to this one in a comparison directory (or None)."""
        if not self.structural:
            return None
        parent = os.path.dirname(self.path)
        cand = os.path.join(parent, "dense")
        if os.path.isdir(cand) and os.path.isfile(os.path.join(cand, CONFIG_FILE)):
            try:
                r = Run(cand)
            except RunDirectoryError:
                return None
            return None if r.structural else r
        return None

    # -- simulation ------------------------------------------------------------------------
    def network(self):
        """The declared network rebuilt from ``config.json`` (cached; :meth:`Network.from_description
        <sdsnn_brian.network.Network.from_description>`), without checking it against the checkpoint."""
        if self._net is None:
            from .network import Network

            try:
                self._net = Network.from_description(self.config["network"])
            except ValueError as exc:
                raise ValueError(f"cannot rebuild the network of {self.path!r} from config.json: {exc}") from None
        return self._net

    def build_network(self):
        """:meth:`network`, checked against the checkpoint's structure key (to simulate it)."""
        net = self.network()
        self.arrays()
        key = (self._meta or {}).get("structure_key")
        if key is not None and key != net.structure_key():
            raise ValueError(f"cannot rebuild the network of {self.path!r} from config.json: its structure key "
                             f"differs from the checkpoint's (a neuron model defined outside sdsnn_brian?)")
        return net

    def simulate(self, n_samples=None, cache_dir=None, data=None, device="cpp_standalone") -> Simulation:
        """Simulate test images with the final weights (cached per argument set).

        ``data``: ``(images, labels)``; default the first MNIST test images.  ``n_samples``: default
        the run's batch size (at most 100), which reuses the project compiled for training.
        """
        key = (n_samples, cache_dir, device, id(data))
        if key in self._sim:
            return self._sim[key]
        from .trainer import Trainer

        net = self.build_network()
        bs = int(self.config.get("batch_size") or 100)
        n = min(bs, 100) if n_samples is None else int(n_samples)
        if data is None:
            from .data import MNIST

            if net.input.size != 784:
                raise ValueError("the network's input is not MNIST-sized: give the data to simulate")
            test = MNIST(train=False, limit=n)
            images, labels = test.images, test.labels
        else:
            images, labels = (np.asarray(a) for a in data)
        images, labels = images[:n].reshape(min(n, len(images)), -1), labels[:n]
        tr = Trainer(net, device=device, loss=self.config.get("loss", "rate_mse"), seed=int(self.config.get("seed", 0)),
                     threads=int(self.config.get("threads") or 0), cache_dir=cache_dir)
        tr.weights, tr.masks, tr.biases = self.weights, self.masks, self.biases
        x, rec = tr.forward(images, np.random.default_rng([tr.seed, EVAL_SEED_OFFSET, 0]), max(bs, len(images)))
        res = tr.loss(rec.u[-1], rec.s[-1], labels)
        sim = Simulation(x=x, rec=rec, labels=labels, predictions=np.argmax(res.scores, axis=1),
                         dt=float(net.dt), theta=[d.theta for d in net.dynamics()],
                         estimate=_en.energy_estimate(x, rec, tr.masks, connections=net.connections))
        self._sim[key] = sim
        return sim


def load_run(path) -> Run:
    """Load and validate a run directory (:class:`RunDirectoryError` naming what is missing)."""
    return Run(path)


def is_comparison_dir(path) -> bool:
    path = os.fspath(path)
    if not os.path.isdir(path) or os.path.isfile(os.path.join(path, CONFIG_FILE)):
        return False
    if any(os.path.isfile(os.path.join(path, f)) for f in (COMPARISON_MD_FILE, COMPARISON_JSON_FILE)):
        return True
    return any(os.path.isfile(os.path.join(path, d, CONFIG_FILE)) for d in os.listdir(path))


def comparison_runs(path) -> dict:
    """``{name: Run}`` of a comparison directory, in the order of ``comparison.json``."""
    path = os.fspath(path)
    names = None
    cj = os.path.join(path, COMPARISON_JSON_FILE)
    if os.path.isfile(cj):
        names = list(_read_json(cj).get("runs", {}))
    if not names:
        names = sorted(d for d in os.listdir(path) if os.path.isfile(os.path.join(path, d, CONFIG_FILE)))
    if not names:
        raise RunDirectoryError(f"comparison directory {path!r} holds no sub-run directory with a config.json")
    out = {}
    for n in names:
        if not os.path.isdir(os.path.join(path, n)):
            raise RunDirectoryError(f"incomplete comparison directory {path!r}: sub-run {n!r} listed in "
                                    "comparison.json is missing")
        out[n] = Run(os.path.join(path, n))
    return out


# ============================================================================ figures
@dataclass(frozen=True)
class FigureSpec:
    name: str
    title: str
    caption: str
    draw: object                 # draw(run_or_runs, fig, ctx) -> None
    figsize: object              # figsize(run_or_runs) -> (w, h) inches
    needs: tuple = ()            # 'structure', 'simulation', 'spines', 'comparison'


def _need_sim(ctx, run):
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
    sim = _need_sim(ctx, run)
    samples = [k for k in ctx.get("samples", (0, 1, 2)) if k < len(sim.labels)] or [0]
    L = len(sim.rec.s) + 1
    ratios = [3] + [2] * (L - 2) + [1]
    axes = fig.subplots(L, 1, sharex=True, gridspec_kw={"height_ratios": ratios[:L]})
    _pl.plot_layer_rasters(sim.x, sim.rec, samples, dt=sim.dt, ax=axes, layer_names=run.population_names,
                           labels=sim.labels, predictions=sim.predictions, max_neurons=RASTER_MAX_NEURONS)


def _draw_membrane(run, fig, ctx):
    sim = _need_sim(ctx, run)
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
        est = _need_sim(ctx, run).estimate if ctx.get("simulate", True) else None
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
    fig.suptitle("Runs compared: accuracy, synapses present, synaptic operations (SOPs x 0.9 pJ = E_SNN estimate)")


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


def _load_any(path):
    if isinstance(path, (Run, dict)):
        return path
    if is_comparison_dir(path):
        return comparison_runs(path)
    return load_run(path)


def render_figure(run_dir, name, out=None, **ctx) -> str:
    """Draw figure ``name`` of a run (or comparison) directory into a PNG; returns its path.

    ``out`` defaults to ``RUN_DIR/report/NAME.png``.
    """
    run = _load_any(run_dir)
    fig = make_figure(run, name, **ctx)
    if out is None:
        base = os.path.dirname(next(iter(run.values())).path) if isinstance(run, dict) else run.path
        out = os.path.join(base, REPORT_DIR, f"{name}.png")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=DPI)
    return out


# ============================================================================ the page
@dataclass
class Report:
    """What :func:`write_report` wrote: the pages, the figures, and what was left out and why."""

    markdown: str
    html: str
    figures: list = field(default_factory=list)       # PNG paths
    skipped: dict = field(default_factory=dict)       # "run/figure" -> reason


def _fmt(v, pct=False, digits=4):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if pct:
        return f"{100 * v:.2f} %"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{digits}g}"
    return str(v)


def _metrics_table(run):
    head = ["epoch", "train loss", "train acc.", "test loss", "test acc.", "SOPs/sample", "E_SNN est. (nJ)",
            "synapses removed", "neurons pruned", "lr", "train samples/s"]
    rows = []
    for r in run.metrics:
        s = r.get("sops_per_sample")
        np_ = r.get("neurons_pruned")
        rows.append([str(r.get("epoch")), _fmt(r.get("train_loss")), _fmt(r.get("train_accuracy"), True),
                     _fmt(r.get("val_loss")), _fmt(r.get("val_accuracy"), True), _fmt(s),
                     "-" if s is None else f"{s * _en.E_AC_PJ * 1e-3:.1f}", _fmt(r.get("compression"), True),
                     "-" if np_ is None else ", ".join(f"{k}: {v}" for k, v in np_.items()),
                     _fmt(r.get("lr")), _fmt(r.get("train_samples_per_s"))])
    return head, rows


def _synapse_rows(run):
    """Built and present synapses per layer (conv: through the synapse map, so the fraction removed
    is that of the simulated synapses, not of the kernel entries), or the reason they are unknown."""
    try:
        built, present = run.synapse_counts(), run.synapse_counts(present=True)
    except ValueError as exc:
        return [["synapses present / built", f"- ({exc})"]]
    per = "; ".join(f"{n}: {p:,} of {b:,}" for n, p, b in zip(run.layer_names, present, built))
    removed = 1 - sum(present) / max(sum(built), 1)
    return [["synapses present / built (final masks)", f"{per}; all: {sum(present):,} of {sum(built):,} "
                                                       f"({100 * removed:.2f} % removed)"]]


def _summary_table(run, sim_est):
    last = run.metrics[-1]
    val = [r for r in run.metrics if r.get("val_accuracy") is not None]
    best = max(val, key=lambda r: r["val_accuracy"]) if val else None
    rows = [["epochs trained", str(last.get("epoch")) + (f" of {run.epochs_planned} (in progress or interrupted)"
                                                          if run.in_progress and run.epochs_planned else "")],
            ["final train accuracy", _fmt(last.get("train_accuracy"), True)],
            ["final test accuracy", _fmt(val[-1]["val_accuracy"], True) if val else "-"],
            ["best test accuracy", f"{_fmt(best['val_accuracy'], True)} (epoch {best['epoch']})" if best else "-"],
            ["kernel and weight entries removed (masked)" if run.is_conv else "synapses removed (masked)",
             _fmt(last.get("compression"), True)],
            *_synapse_rows(run),
            ["gradient mode", str(run.config.get("gradient_mode")) if run.structural else "dense"]]
    if run.structural:
        from .structure.events import RESTORED

        rows.append(["neurons pruned", ", ".join(f"{k}: {v}" for k, v in (last.get("neurons_pruned") or {}).items())])
        rows.append(["synapses regenerated (events)", str(run.log.n_events(RESTORED))])
        planned = run.config.get("structural_steps_planned")
        rows.append(["structural steps", str(run.n_steps) + (f" of {planned} planned" if planned else "")])
        if run.log.n_events() == 0:
            rows.append(["**warning**", "**no mask changed in any structural step: this run's structure stayed "
                         "dense (too few structural steps for its timeline?)**"])
    if last.get("sops_per_sample") is not None or val:
        s = val[-1].get("sops_per_sample") if val else None
        rows.append(["SOPs per test sample (last evaluation)", _fmt(s)])
        if s is not None:
            rows.append(["E_SNN estimate per sample", f"{s * _en.E_AC_PJ * 1e-3:.1f} nJ (SOPs x {_en.E_AC_PJ} pJ)"])
    if sim_est:
        rows.append(["E_ANN estimate per sample (dense equivalent)", f"{sim_est['E_ann_dense_J'] * 1e9:.1f} nJ "
                     f"({sim_est['macs_dense']:,.0f} MACs x {_en.E_MAC_PJ} pJ)"])
    rows.append(["mean train samples/s", _fmt(float(np.mean([r["train_samples_per_s"] for r in run.metrics])))])
    rows.append(["checkpoint", os.path.basename(run.checkpoint)])
    return ["quantity", "value"], rows


def progress_note(run):
    """The line a report of an unfinished run starts with, or None for a finished run."""
    if not run.in_progress:
        return None
    planned = run.epochs_planned
    done = f"{run.epochs_done} of {planned}" if planned is not None else f"{run.epochs_done} (of an unknown number of)"
    e, b = run.checkpoint_position()
    if e is None:
        at = ""
    elif b == 0:
        at = f"epoch {e}, batch {b}: the end of epoch {e}; "
    else:
        at = (f"epoch {e}, batch {b}: {e} epoch{'' if e == 1 else 's'} finished and {b} "
              f"batch{'' if b == 1 else 'es'} of the next; ")
    return (f"Run in progress (or interrupted): {done} epochs done; the figures show the newest checkpoint "
            f"({at}`{os.path.basename(run.checkpoint)}`), the metrics the finished epochs.")


def _run_blocks(run, out_dir, rel_prefix, ctx, report, level=2):
    """Blocks of one run's section; figures written to out_dir."""
    blocks = []
    note = progress_note(run)
    if note:
        blocks.append(("p", f"**{note}**"))
    sim_est = None
    if ctx.get("simulate", True):
        try:
            sim_est = _need_sim(ctx, run).estimate
        except Exception as exc:  # keep going: the rest of the report does not need it
            reason = f"simulation failed: {type(exc).__name__}: {exc}"
            warnings.warn(f"{run.path}: {reason}")
            ctx["simulate"] = False
            ctx["sim_error"] = reason
    head, rows = _summary_table(run, sim_est)
    blocks += [("h", level, "Summary"), ("table", head, rows)]
    blocks.append(("h", level, "Figures"))
    os.makedirs(out_dir, exist_ok=True)
    for name, spec in FIGURES.items():
        why = applicable(spec, run)
        if why is None and "simulation" in spec.needs and not ctx.get("simulate", True):
            why = ctx.get("sim_error", "simulation disabled (--no-simulate)")
        if why:
            report.skipped[f"{run.name}/{name}"] = why
            blocks.append(("p", f"**{spec.title}** (`{name}`): not drawn -- {why}."))
            continue
        fig = make_figure(run, name, **ctx)
        path = os.path.join(out_dir, f"{name}.png")
        fig.savefig(path, dpi=DPI)
        report.figures.append(path)
        blocks += [("h", level + 1, f"{spec.title} (`{name}`)"), ("img", f"{rel_prefix}{name}.png", spec.title),
                   ("p", spec.caption)]
    head, rows = _metrics_table(run)
    blocks += [("h", level, "Metrics per epoch"), ("table", head, rows)]
    if run.structural:
        blocks.append(("p", f"Per-step structure records: `structure.jsonl` ({len(run.stats)} records, "
                            f"{run.n_steps} steps); synapse events: `structure_events.npz` "
                            f"({run.log.n_events()} events)."))
    blocks.append(("code", "json", json.dumps(run.config, indent=2), "Configuration (config.json)"))
    if run.summary is not None:
        blocks.append(("code", "json", json.dumps(run.summary, indent=2, default=str)[:20000], "summary.json"))
    return blocks


def _slug(text):
    return re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", text.lower()).strip())


def _inline_html(text):
    t = _html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)
    return t


def _md_table(head, rows):
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    out = ["| " + " | ".join(esc(h) for h in head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _html_table(head, rows):
    th = "".join(f"<th>{_inline_html(str(h))}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{_inline_html(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def _md_to_html(text):
    """The Markdown subset of comparison.md: tables and paragraphs with inline code."""
    out, table, para = [], [], []

    def flush():
        if table:
            cells = [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", l.strip().strip("|"))]
                     for l in table if not re.fullmatch(r"\|?[\s\-:|]+\|?", l.strip())]
            out.append(_html_table(cells[0], cells[1:]))
            table.clear()
        if para:
            out.append(f"<p>{_inline_html(' '.join(para))}</p>")
            para.clear()
    for line in text.splitlines():
        if line.strip().startswith("|"):
            if para:
                flush()
            table.append(line)
        elif not line.strip():
            flush()
        else:
            if table:
                flush()
            para.append(line.strip())
    flush()
    return "\n".join(out)


def _render(blocks, title):
    md, ht = [], []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            md.append("#" * b[1] + " " + b[2])
            ht.append(f'<h{b[1]} id="{_slug(b[2])}">{_inline_html(b[2])}</h{b[1]}>')
        elif kind == "p":
            md.append(b[1])
            ht.append(f"<p>{_inline_html(b[1])}</p>")
        elif kind == "img":
            md.append(f"![{b[2]}]({b[1]})")
            ht.append(f'<p><img src="{_html.escape(b[1])}" alt="{_html.escape(b[2])}" style="max-width:100%"></p>')
        elif kind == "table":
            md.append(_md_table(b[1], b[2]))
            ht.append(_html_table(b[1], b[2]))
        elif kind == "code":
            md.append(f"<details><summary>{b[3]}</summary>\n\n```{b[1]}\n{b[2]}\n```\n\n</details>")
            ht.append(f"<details><summary>{_html.escape(b[3])}</summary><pre>{_html.escape(b[2])}</pre></details>")
        elif kind == "md":
            md.append(b[1].rstrip())
            ht.append(_md_to_html(b[1]))
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}table{border-collapse:collapse;"
             "margin:0.5em 0}td,th{border:1px solid #bbb;padding:2px 6px;font-size:90%}pre{background:#f4f4f4;"
             "padding:0.5em;overflow:auto}")
    html_text = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{_html.escape(title)}</title>"
                 f"<style>{style}</style></head><body>\n" + "\n".join(ht) + "\n</body></html>\n")
    return "\n\n".join(md) + "\n", html_text


def write_report(run_dir, out=None, *, simulate=True, cache_dir=None, n_samples=None, samples=(0, 1, 2),
                 data=None) -> Report:
    """Write ``index.md`` and ``index.html`` with every figure (PNGs next to them) into ``out``
    (default ``RUN_DIR/report``), for a single run or a comparison directory.

    ``simulate=False`` skips the figures that need a simulation of the final network (rasters,
    membrane traces); a failing simulation (no compiler, no MNIST files) does the same with the reason
    in the report and a warning.  Raises :class:`RunDirectoryError` naming what is missing.
    """
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise RunDirectoryError(f"run directory {run_dir!r} does not exist")
    out = os.path.join(run_dir, REPORT_DIR) if out is None else os.fspath(out)
    os.makedirs(out, exist_ok=True)
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    report = Report(markdown=os.path.join(out, "index.md"), html=os.path.join(out, "index.html"))
    base_ctx = {"simulate": simulate, "cache_dir": cache_dir, "n_samples": n_samples, "samples": tuple(samples),
                "data": data}
    if is_comparison_dir(run_dir):
        runs = comparison_runs(run_dir)
        title = f"Comparison report: {os.path.basename(os.path.abspath(run_dir))}"
        blocks = [("h", 1, title), ("p", f"Directory `{os.path.abspath(run_dir)}`, {len(runs)} runs "
                                         f"({', '.join(runs)}); report written {now}.")]
        blocks += [("p", f"**{n}: {note}**") for n, note in ((n, progress_note(r)) for n, r in runs.items()) if note]
        cmp_md = os.path.join(run_dir, COMPARISON_MD_FILE)
        if os.path.isfile(cmp_md):
            with open(cmp_md) as fh:
                blocks += [("h", 2, "Comparison table (comparison.md)"), ("md", fh.read())]
        fig = make_figure(runs, "comparison")
        path = os.path.join(out, "comparison.png")
        fig.savefig(path, dpi=DPI)
        report.figures.append(path)
        blocks += [("h", 3, f"{COMPARISON_FIGURE.title} (`comparison`)"), ("img", "comparison.png", "comparison"),
                   ("p", COMPARISON_FIGURE.caption)]
        blocks.append(("p", "Runs: " + ", ".join(f"[{n}](#run-{n})" for n in runs)))
        for n, run in runs.items():
            blocks.append(("h", 2, f"Run: {n}"))
            blocks += _run_blocks(run, os.path.join(out, n), f"{n}/", dict(base_ctx), report, level=3)
    else:
        run = load_run(run_dir)
        title = f"Run report: {run.name}"
        blocks = [("h", 1, title),
                  ("p", f"Run directory `{run.path}`; protocol `{run.config.get('protocol', '-')}`; "
                        f"report written {now}.")]
        blocks += _run_blocks(run, out, "", dict(base_ctx), report)
    if report.skipped:
        blocks += [("h", 2, "Figures not drawn"),
                   ("table", ["figure", "reason"], [[k, v] for k, v in report.skipped.items()])]
    blocks.append(("p", "Energy figures are estimates: " + _en.FORMULA))
    md, ht = _render(blocks, title)
    write_atomic(report.markdown, md)
    write_atomic(report.html, ht)
    return report
