"""A run directory, loaded: configuration, metrics, structure log, the newest checkpoint's arrays.

>>> from sdsnn_brian.reporting import load_run
>>> run = load_run("runs/sdsnn_mnist/sdsnn-reference")
>>> run.config, run.metrics, run.weights, run.masks, run.in_progress, run.checkpoint_position()

A *run directory* is what :class:`~sdsnn_brian.callbacks.RunDirectory` writes (``config.json``,
``metrics.jsonl``, ``ckpt-*.npz``, ``summary.json``; with a structural schedule also
``structure.jsonl`` and ``structure_events.npz``; the layout and the checkpoint keys are defined in
:mod:`sdsnn_brian.rundir`).  A *comparison directory* is what
``protocols/sdsnn_mnist.py`` writes: ``comparison.md``/``comparison.json`` over sub-run
directories (``dense/``, ``sdsnn-reference/``, ``sdsnn-strict/``).  A run that has not finished
(no ``summary.json``, or fewer epochs than ``config.json`` asks for) loads too
(:attr:`Run.in_progress`, :meth:`Run.checkpoint_position`).  :meth:`Run.simulate` runs the final
network on test images (:mod:`sdsnn_brian.reporting.simulation`).
"""
from __future__ import annotations

import json
import os
import warnings

import numpy as np

from ..rundir import (COMPARISON_JSON_FILE, COMPARISON_MD_FILE, CONFIG_FILE, METRICS_FILE, STRUCTURE_EVENTS_FILE,
                      STRUCTURE_FILE, STRUCTURE_PREFIX, SUMMARY_FILE, MissingLayerArray, layer_arrays,
                      parse_checkpoint_name)

__all__ = ["RunDirectoryError", "Run", "load_run", "is_comparison_dir", "comparison_runs", "load_any"]


class RunDirectoryError(FileNotFoundError):
    """A run directory is missing, or lacks a file a figure or the report needs."""


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



class Run:
    """A loaded run directory (validated on construction; arrays load lazily).

    Attributes: ``path``, ``name``, ``config``, ``metrics`` (per-epoch records), ``summary`` (or
    None), ``stats`` (per-step structure records or None), ``log`` (StructureLog or None),
    ``n_steps`` (structural steps run), ``checkpoint`` (path of the newest valid checkpoint).
    A run still training (or interrupted) loads too: :attr:`in_progress`, :func:`progress_note`.
    """

    def __init__(self, path):
        from ..checkpoint import latest_checkpoint

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
            from ..checkpoint import load_checkpoint
            from ..structure.events import StructureLog

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
            from ..checkpoint import load_checkpoint

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
            from ..network import Network

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

    def simulate(self, n_samples=None, cache_dir=None, data=None, device="cpp_standalone"):
        """Simulate test images with the final weights (cached per argument set); a
        :class:`~sdsnn_brian.reporting.simulation.Simulation`.

        ``data``: ``(images, labels)``; default the first MNIST test images.  ``n_samples``: default
        the run's batch size (at most 100), which reuses the project compiled for training.
        """
        key = (n_samples, cache_dir, device, id(data))
        if key not in self._sim:
            from .simulation import simulate

            self._sim[key] = simulate(self, n_samples=n_samples, cache_dir=cache_dir, data=data, device=device)
        return self._sim[key]


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


def load_any(path):
    """A :class:`Run`, or ``{name: Run}`` of a comparison directory (a Run or dict is returned as is)."""
    if isinstance(path, (Run, dict)):
        return path
    if is_comparison_dir(path):
        return comparison_runs(path)
    return load_run(path)
