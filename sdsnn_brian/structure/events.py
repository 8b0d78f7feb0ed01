"""Synapse event log and per-step structure statistics.

Events
------
One row per synapse state change made by the structural schedule: ``layer`` (index
into the schedule's layers), ``index`` (flat index into that layer's weight array;
for conv layers every element of a removed/restored kernel gets its own row),
``step`` (structural step) and ``kind`` (:data:`REMOVED` = 0: mask 1 -> 0, by
neuronal pruning; :data:`RESTORED` = 1: mask 0 -> 1, by regeneration).  Synapses
absent in the mask the schedule first sees have no removal event (they were never
removed by it); lifetimes of such synapses start at their first restoration.

Statistics
----------
One record per (step, layer) with the fields of :data:`STAT_FIELDS`:
``synapses_total``/``synapses_present`` (mask entries), ``neurons_total``/
``neurons_pruned``/``newly_pruned``, ``neurons_dead`` (pruned units without any
present incoming synapse: a pruned unit may regain synapses by regeneration),
``rho`` (fraction, after this step's neurotrophic update, i.e. the rate the next
step prunes with; NaN for non-prunable layers), ``regen_percentile`` (NaN when no regeneration ran), ``regen_threshold``,
``candidates``/``restored`` (slots), ``removed`` (synapses newly masked),
``clipped`` (weights moved by the constraint), ``expanded_pos``/``expanded_neg``/
``contracted`` (spine updates), and ``r_pos_q05 .. r_neg_q95``: 5/50/95 % quantiles
of ``r+`` and ``r-`` over the layer's *present* synapses (NaN when the layer has no
spine state or no present synapse).

Serialisation
-------------
:meth:`StructureLog.to_dict` gives a flat dict of numpy arrays (no object arrays, so
``np.savez`` / ``np.load(allow_pickle=False)`` work); :meth:`from_dict` inverts it.
:meth:`stats_jsonl` writes one JSON object per record (NaN as ``null``).
"""
from __future__ import annotations

import json
import math
import os
from typing import Iterable

import numpy as np

__all__ = ["REMOVED", "RESTORED", "STAT_FIELDS", "INT_STAT_FIELDS", "StructureLog"]

REMOVED = 0
RESTORED = 1

INT_STAT_FIELDS = (
    "step", "layer", "synapses_total", "synapses_present", "neurons_total", "neurons_pruned",
    "neurons_dead", "newly_pruned", "candidates", "restored", "removed", "clipped", "expanded_pos", "expanded_neg",
    "contracted",
)
FLOAT_STAT_FIELDS = (
    "rho", "regen_percentile", "regen_threshold",
    "r_pos_q05", "r_pos_q50", "r_pos_q95", "r_neg_q05", "r_neg_q50", "r_neg_q95",
)
STAT_FIELDS = INT_STAT_FIELDS + FLOAT_STAT_FIELDS

_EV_DTYPES = {"layer": np.int32, "index": np.int64, "step": np.int64, "kind": np.int8}


class StructureLog:
    """Append-only log of synapse events and per-step statistics."""

    def __init__(self, layer_names: Iterable[str] = ()):
        self.layer_names = [str(n) for n in layer_names]
        self._chunks: list[dict] = []
        self._base = {k: np.zeros(0, dt) for k, dt in _EV_DTYPES.items()}
        self.stats: list[dict] = []

    # ------------------------------------------------------------------ events
    def record_events(self, step: int, layer: int, flat_indices: np.ndarray, kind: int) -> None:
        """Append one event of ``kind`` at ``step`` for every flat index given."""
        idx = np.asarray(flat_indices, dtype=np.int64).ravel()
        if idx.size == 0:
            return
        n = idx.size
        self._chunks.append({
            "layer": np.full(n, layer, np.int32), "index": idx.copy(),
            "step": np.full(n, step, np.int64), "kind": np.full(n, kind, np.int8),
        })

    def events(self) -> dict:
        """All events as a dict of equal-length arrays ``layer, index, step, kind``
        (in recording order; do not modify them)."""
        if self._chunks:
            self._base = {k: np.concatenate([self._base[k]] + [c[k] for c in self._chunks])
                          for k in _EV_DTYPES}
            self._chunks = []
        return self._base

    def history(self, layer: int, index: int) -> list[tuple[int, int]]:
        """``[(step, kind), ...]`` of one synapse, in order."""
        ev = self.events()
        sel = (ev["layer"] == layer) & (ev["index"] == index)
        return [(int(s), int(k)) for s, k in zip(ev["step"][sel], ev["kind"][sel])]

    def steps_of(self, layer: int, kind: int) -> np.ndarray:
        """Steps of all events of ``kind`` in ``layer`` (one per synapse event)."""
        ev = self.events()
        sel = (ev["layer"] == layer) & (ev["kind"] == kind)
        return ev["step"][sel]

    def n_events(self, kind: int | None = None) -> int:
        ev = self.events()
        return int(ev["kind"].size if kind is None else np.count_nonzero(ev["kind"] == kind))

    # ------------------------------------------------------------------- stats
    def record_stats(self, record: dict) -> None:
        missing = [f for f in STAT_FIELDS if f not in record]
        if missing:
            raise ValueError(f"stats record lacks {missing}")
        self.stats.append({f: (int(record[f]) if f in INT_STAT_FIELDS else float(record[f]))
                           for f in STAT_FIELDS})

    def stats_for(self, layer: int) -> list[dict]:
        return [r for r in self.stats if r["layer"] == layer]

    def stats_jsonl(self) -> str:
        """One JSON object per record (with ``layer_name``), NaN as ``null``."""
        lines = []
        for r in self.stats:
            o = {}
            for k, v in r.items():
                o[k] = None if isinstance(v, float) and not math.isfinite(v) else v
            if 0 <= r["layer"] < len(self.layer_names):
                o["layer_name"] = self.layer_names[r["layer"]]
            lines.append(json.dumps(o, sort_keys=True))
        return "".join(line + "\n" for line in lines)

    def write_stats_jsonl(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.stats_jsonl())

    @staticmethod
    def read_stats_jsonl(path: str | os.PathLike) -> list[dict]:
        """Records from a JSON-lines file (``null`` back to NaN, ``layer_name`` dropped)."""
        out = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                o = json.loads(line)
                out.append({k: (int(o[k]) if k in INT_STAT_FIELDS else
                                 (math.nan if o[k] is None else float(o[k]))) for k in STAT_FIELDS})
        return out

    # ---------------------------------------------------------- serialisation
    def to_dict(self, prefix: str = "log.") -> dict:
        ev = self.events()
        d = {f"{prefix}events.{k}": v.copy() for k, v in ev.items()}
        d[f"{prefix}layer_names"] = np.array(self.layer_names, dtype=np.str_)
        for f in STAT_FIELDS:
            dt = np.int64 if f in INT_STAT_FIELDS else np.float64
            d[f"{prefix}stats.{f}"] = np.array([r[f] for r in self.stats], dtype=dt)
        return d

    @classmethod
    def from_dict(cls, d, prefix: str = "log.") -> "StructureLog":
        log = cls([str(x) for x in np.asarray(d[f"{prefix}layer_names"]).tolist()])
        log._base = {k: np.array(d[f"{prefix}events.{k}"], dtype=dt) for k, dt in _EV_DTYPES.items()}
        cols = {f: np.asarray(d[f"{prefix}stats.{f}"]) for f in STAT_FIELDS}
        n = cols["step"].size
        for i in range(n):
            log.stats.append({f: (int(cols[f][i]) if f in INT_STAT_FIELDS else float(cols[f][i]))
                              for f in STAT_FIELDS})
        return log

    def equals(self, other: "StructureLog") -> bool:
        a, b = self.to_dict(), other.to_dict()
        if a.keys() != b.keys():
            return False
        for k in a:
            x, y = a[k], b[k]
            if x.shape != y.shape:
                return False
            if x.dtype.kind == "f":
                if not np.array_equal(x, y, equal_nan=True):
                    return False
            elif not np.array_equal(x, y):
                return False
        return True
