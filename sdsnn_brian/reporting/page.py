"""The report page: every figure of a run (or comparison) directory, its configuration and metrics
on one static page, written as Markdown and HTML.

>>> from sdsnn_brian.reporting import write_report
>>> rep = write_report("runs/sdsnn_mnist")            # a comparison directory or a single run
>>> rep.markdown, rep.html, rep.figures               # RUN_DIR/report/index.md, index.html, PNGs

A report of a run that has not finished starts with a line saying so and which checkpoint the
figures show (:func:`progress_note`).  The figures come from :mod:`sdsnn_brian.reporting.figures`.
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

from .. import energy as _en
from ..rundir import COMPARISON_MD_FILE, REPORT_DIR, write_atomic
from .figures import COMPARISON_FIGURE, DPI, FIGURES, need_simulation, applicable, make_figure
from .run import RunDirectoryError, comparison_runs, is_comparison_dir, load_run

__all__ = ["Report", "write_report", "progress_note"]


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
        from ..structure.events import RESTORED

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
            sim_est = need_simulation(ctx, run).estimate
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
