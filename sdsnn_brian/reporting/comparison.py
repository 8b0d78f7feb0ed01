"""Run summaries and comparison tables (the figures users quote, with their protocol).

:func:`summarize` turns a trained :class:`~sdsnn_brian.trainer.Trainer` into a flat
dict of the figures a run is quoted by; :func:`write_comparison` writes several of
them side by side (``comparison.md`` and ``comparison.json``) together with the
exact protocol that produced them.  (Formerly ``sdsnn_brian/report.py``, which re-exports these.)
"""
from __future__ import annotations

import os

import numpy as np

from ..energy import E_AC_PJ
from ..rundir import COMPARISON_JSON_FILE, COMPARISON_MD_FILE, write_atomic, write_json_atomic

__all__ = ["summarize", "structure_stable_since", "write_comparison", "comparison_markdown"]


def structure_stable_since(trainer):
    """The first structural step after which no mask or pruned set changed (None without a schedule).

    ``(step, total_steps)``: the structure stopped changing at ``step`` of ``total_steps``.
    """
    sched = trainer.structure
    if sched is None:
        return None
    last_change = -1
    for layer in range(len(sched.layers)):
        for rec in sched.log.stats_for(layer):
            if rec.get("restored", 0) or rec.get("removed", 0) or rec.get("newly_pruned", 0):
                last_change = max(last_change, int(rec["step"]))
    return {"last_change_step": last_change, "steps": int(sched.t)}


def summarize(trainer, wall_seconds=None, label=None) -> dict:
    """Figures of a finished run: accuracy, compression, pruning, regeneration, SOPs, time.

    ``wall_seconds`` defaults to the training and evaluation time summed over the
    run's epochs (correct also for a run resumed from a checkpoint).
    """
    last = trainer.history[-1] if trainer.history else {}
    if wall_seconds is None:
        wall_seconds = float(sum(r.get("train_seconds", 0) + r.get("val_seconds", 0) for r in trainer.history))
    out = {"label": label, "epochs": trainer.epoch, "test_accuracy": last.get("val_accuracy"),
           "train_accuracy": last.get("train_accuracy"), "sops_per_sample": last.get("sops_per_sample"),
           "train_samples_per_s": float(np.mean([r["train_samples_per_s"] for r in trainer.history]))
           if trainer.history else None,
           "wall_seconds": wall_seconds, "gradient_mode": trainer.gradient_mode if trainer.structure else "dense",
           "synapses_total": int(sum(m.size for m in trainer.masks)),
           "synapses_removed_masked": int(sum(m.size - m.sum() for m in trainer.masks))}
    out["compression_masked"] = out["synapses_removed_masked"] / out["synapses_total"]
    if trainer.structure is not None:
        rep = trainer.structure.removed_fractions(trainer.masks)
        out["per_layer"] = {name: {k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()}
                            for name, r in rep.items()}
        out["compression_with_dead_sources"] = float(rep["all"]["fraction_with_dead_sources"]) \
            if "all" in rep and "fraction_with_dead_sources" in rep["all"] else None
        from ..structure.events import RESTORED

        out["synapses_regenerated"] = int(trainer.structure.log.n_events(RESTORED))
        out["neurons_pruned"] = trainer.structure.neurons_pruned()
        out["structure"] = structure_stable_since(trainer)
        out["structure_config"] = trainer.structure.config.to_dict()
    return out


def _fmt(v, pct=False):
    if v is None:
        return "-"
    if pct:
        return f"{100 * v:.2f} %"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3f}"
    return str(v)


def comparison_markdown(rows: dict, protocol: str) -> str:
    """A Markdown table of several :func:`summarize` results, with the protocol under it."""
    lines = ["| run | test accuracy | synapses removed (masked) | removed incl. dead sources | neurons pruned "
             "| synapses regenerated | SOPs / sample | train samples/s | wall time | structural steps "
             "| structure last changed |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    unchanged = []
    for name, r in rows.items():
        pruned = ", ".join(f"{k}: {v}" for k, v in (r.get("neurons_pruned") or {}).items() if v) or "0"
        st = r.get("structure")
        steps = str(st["steps"]) if st else "-"
        if st and st["last_change_step"] < 0:
            unchanged.append(name)
            stable = "**never: no mask changed**"
        else:
            stable = f"step {st['last_change_step']}" if st else "-"
        wall = f"{r['wall_seconds'] / 60:.1f} min" if r.get("wall_seconds") else "-"
        lines.append(f"| {name} | {_fmt(r.get('test_accuracy'), True)} | {_fmt(r.get('compression_masked'), True)} "
                     f"| {_fmt(r.get('compression_with_dead_sources'), True)} | {pruned} "
                     f"| {r.get('synapses_regenerated', 0)} | {_fmt(r.get('sops_per_sample'))} "
                     f"| {_fmt(r.get('train_samples_per_s'))} | {wall} | {steps} | {stable} |")
    if unchanged:
        lines += ["", f"**Warning: {', '.join(unchanged)} changed no mask** in {'its' if len(unchanged) == 1 else 'their'} "
                  "structural steps: the structure stayed dense, so its numbers are those of a dense network "
                  "(too few structural steps for the timeline? see `structural steps` and the config's "
                  "`structural_steps_planned`)."]
    per_layer = [(name, lname, lr) for name, r in rows.items() for lname, lr in (r.get("per_layer") or {}).items()
                 if lname != "all"]
    if per_layer:
        lines += ["", "| run | layer | synapses | removed (masked) | removed incl. dead sources | neurons | pruned |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, lname, lr in per_layer:
            lines.append(f"| {name} | {lname} | {lr.get('synapses')} | {_fmt(lr.get('fraction_masked'), True)} "
                         f"| {_fmt(lr.get('fraction_with_dead_sources'), True)} | {lr.get('neurons')} "
                         f"| {lr.get('neurons_pruned')} |")
    lines += ["", "SOPs: synaptic operations per test sample, presynaptic spikes x present fan-out, summed over "
              f"layers and steps. Energy estimate (45 nm, Horowitz 2014): E = SOPs x {E_AC_PJ} pJ.", "",
              f"Protocol: `{protocol}`"]
    return "\n".join(lines) + "\n"


def write_comparison(run_dir, rows: dict, protocol: str):
    """Write ``comparison.md`` and ``comparison.json`` into ``run_dir``."""
    os.makedirs(run_dir, exist_ok=True)
    write_json_atomic(os.path.join(run_dir, COMPARISON_JSON_FILE), {"protocol": protocol, "runs": rows})
    text = comparison_markdown(rows, protocol)
    write_atomic(os.path.join(run_dir, COMPARISON_MD_FILE), text)
    return text
