"""Callbacks: what happens around the training loop (progress, run directory, checkpoints).

A callback is any object with some of these methods, each taking the trainer first:
``on_fit_start(tr)``, ``on_batch_end(tr, batch, n_batches, measurements)``,
``on_structure_step(tr, stats)``, ``on_epoch_end(tr, record)``, ``on_fit_end(tr)``.

:class:`RunDirectory` writes a run directory (``config.json``, ``metrics.jsonl``, checkpoints,
``summary.json``, the structure log); its layout, file names and checkpoint keys are defined in
:mod:`sdsnn_brian.rundir`, as is :func:`write_json_atomic` (re-exported here).
"""
from __future__ import annotations

import os
import sys
import time
import warnings

from .checkpoint import latest_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint
from .rundir import (CONFIG_FILE, METRICS_FILE, STRUCTURE_EVENTS_FILE, STRUCTURE_FILE, SUMMARY_FILE,
                     checkpoint_name, write_atomic, write_json_atomic)

__all__ = ["ProgressLogger", "RunDirectory", "LearningRateChange", "restore_latest", "write_json_atomic",
           "is_writer"]


def is_writer(tr) -> bool:
    """Whether trainer ``tr``'s process writes files and prints: rank 0 (always, in one process).

    In data-parallel training (:mod:`sdsnn_brian.distributed`) every rank holds the
    same global state, so rank 0 alone writes the run directory and the progress.
    """
    return getattr(tr, "rank", 0) == 0


class ProgressLogger:
    """Progress on ``stream`` (stdout), rank 0 only.

    ``bar=False`` (default): one line every ``every`` batches and one per epoch, for logs.
    ``bar=True``: one line redrawn in place (for a terminal) with the epoch's progress, loss,
    accuracy, samples/s and the time left in the epoch and in the run, then the epoch line.
    ``bar=None``: a bar when ``stream`` is a terminal, lines otherwise.  Samples/s leave out
    the time spent compiling builds (``Trainer.build_seconds``).
    """

    def __init__(self, every=10, stream=None, bar=False):
        self.every = every
        self.stream = stream
        self.bar = bar

    def _out(self):
        return self.stream or sys.stdout

    def _print(self, text):
        print(text, file=self._out(), flush=True)

    def _use_bar(self):
        if self.bar is None:
            isatty = getattr(self._out(), "isatty", None)
            return bool(isatty and isatty())
        return bool(self.bar)

    def on_fit_start(self, tr):
        if not is_writer(tr):
            return
        self._t = time.perf_counter()
        self._b = tr.build_seconds
        self._n = 0
        self._drawn = 0.0
        self._bar_open = False

    def _rate(self, tr):
        return self._n / max(time.perf_counter() - self._t - (tr.build_seconds - self._b), 1e-9)

    def on_batch_end(self, tr, k, n_batches, m):
        if not is_writer(tr):
            return
        self._n += m["n"]
        acc = tr._epoch_acc
        if self._use_bar():
            now = time.perf_counter()
            if now - self._drawn < 0.2 and k + 1 < n_batches:
                return
            self._drawn = now
            rate = self._rate(tr)
            left_epoch = (n_batches - k - 1) * tr.batch_size / max(rate, 1e-9)
            left_run = left_epoch + (tr.epochs - tr.epoch - 1) * n_batches * tr.batch_size / max(rate, 1e-9)
            done = int(24 * (k + 1) / n_batches)
            line = (f"epoch {tr.epoch + 1}/{tr.epochs} [{'#' * done}{'.' * (24 - done)}] {k + 1}/{n_batches} "
                    f"loss {acc['loss'] / acc['n']:.4f} acc {acc['correct'] / acc['n']:.4f} {rate:.0f} samples/s "
                    f"left {_clock(left_epoch)} (run {_clock(left_run)})")
            self._out().write("\r" + line + "\x1b[K")
            self._out().flush()
            self._bar_open = True
            return
        if self.every and ((k + 1) % self.every == 0 or k + 1 == n_batches):
            self._print(f"epoch {tr.epoch + 1}/{tr.epochs} batch {k + 1}/{n_batches} "
                        f"loss {acc['loss'] / acc['n']:.4f} acc {acc['correct'] / acc['n']:.4f} "
                        f"{self._rate(tr):.0f} samples/s")

    def _close_bar(self):
        if getattr(self, "_bar_open", False):
            self._out().write("\n")
            self._bar_open = False

    def on_epoch_end(self, tr, r):
        if not is_writer(tr):
            return
        self._close_bar()
        val = f" val_loss {r['val_loss']:.4f} val_acc {r['val_accuracy']:.4f}" if "val_accuracy" in r else ""
        self._print(f"epoch {r['epoch']}/{tr.epochs} train_loss {r['train_loss']:.4f} "
                    f"train_acc {r['train_accuracy']:.4f}{val} ({r['train_seconds']:.1f} s, "
                    f"{r['train_samples_per_s']:.0f} samples/s, compression {r['compression']:.3f})")
        self._t = time.perf_counter()
        self._b = tr.build_seconds
        self._n = 0

    def on_fit_end(self, tr):
        if is_writer(tr):
            self._close_bar()


def _clock(seconds) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class RunDirectory:
    """Writes the run directory: configuration, metrics, checkpoints, summary (rank 0 only).

    ``checkpoint_every``: also checkpoint every this many batches (0: epoch ends only).
    ``keep``: checkpoints kept (the newest ones).
    """

    def __init__(self, path, checkpoint_every=0, keep=3, protocol=None, extra=None):
        self.path = path
        self.checkpoint_every = checkpoint_every
        self.keep = keep
        self.protocol = protocol
        self.extra = dict(extra or {})

    def on_fit_start(self, tr):
        if not is_writer(tr):
            return
        os.makedirs(self.path, exist_ok=True)
        self._t0 = time.perf_counter()
        cfg = tr.config()
        cfg["protocol"] = self.protocol or " ".join(sys.argv)
        cfg.update(self.extra)
        write_json_atomic(os.path.join(self.path, CONFIG_FILE), cfg)
        # a resumed run rewrites the metrics it has restored, dropping anything written after
        write_json_atomic(os.path.join(self.path, METRICS_FILE), tr.history, lines=True)

    def checkpoint(self, tr):
        arrays, meta = tr.state_dict()
        if "cli_args" in self.extra:  # the command's options travel with every checkpoint too
            meta["cli_args"] = self.extra["cli_args"]
        save_checkpoint(os.path.join(self.path, checkpoint_name(tr.epoch, tr.batch)), arrays, meta)
        prune_checkpoints(self.path, keep=self.keep)

    def on_batch_end(self, tr, k, n_batches, m):
        if not is_writer(tr):
            return
        if self.checkpoint_every and tr.batch % self.checkpoint_every == 0 and tr.batch < n_batches:
            self.checkpoint(tr)

    def write_structure(self, tr):
        """The schedule's per-step statistics and synapse event log, from its own state."""
        log = tr.structure.log
        write_atomic(os.path.join(self.path, STRUCTURE_FILE), log.stats_jsonl())
        save_checkpoint(os.path.join(self.path, STRUCTURE_EVENTS_FILE), log.to_dict(),
                        {"layers": [spec.name for spec in tr.structure.layers], "steps": int(tr.structure.t)})

    def on_epoch_end(self, tr, record):
        if not is_writer(tr):
            return
        write_json_atomic(os.path.join(self.path, METRICS_FILE), tr.history, lines=True)
        if tr.structure is not None:
            self.write_structure(tr)
        self.checkpoint(tr)

    def on_fit_end(self, tr):
        if not is_writer(tr):
            return
        last = tr.history[-1] if tr.history else {}
        summary = {"epochs": tr.epoch, "final": last, "config": tr.config(),
                   "wall_seconds_this_process": time.perf_counter() - self._t0,
                   "protocol": self.protocol or " ".join(sys.argv)}
        evaluated = [r for r in tr.history if "val_accuracy" in r]
        if evaluated:
            best = max(evaluated, key=lambda r: r["val_accuracy"])
            summary["best_val_accuracy"] = best["val_accuracy"]
            summary["best_epoch"] = best["epoch"]
        write_json_atomic(os.path.join(self.path, SUMMARY_FILE), summary)


class LearningRateChange:
    """Set the learning rate to ``lr`` when training starts (after a resumed checkpoint is loaded).

    With a learning-rate schedule its base rate becomes ``lr`` and the schedule goes on from
    its epoch (``lr`` scaled as the schedule scales it); without one the optimiser's rate is
    ``lr``.  ``sdsnn train --resume R --lr X`` uses it and records the change in config.json.
    """

    def __init__(self, lr):
        self.lr = float(lr)

    def on_fit_start(self, tr):
        sched = tr.lr_schedule
        if sched is not None and hasattr(sched, "base_lr"):
            sched.base_lr = self.lr
            tr.optimizer.lr = float(sched.get_lr(max(sched.last_epoch, 0)))
        else:
            tr.optimizer.lr = self.lr


def restore_latest(tr, run_dir):
    """Load the newest valid checkpoint of ``run_dir`` into trainer ``tr`` (warn if none)."""
    path = latest_checkpoint(run_dir)
    if path is None:
        warnings.warn(f"no checkpoint in {run_dir!r}: starting from scratch")
        return None
    arrays, meta = load_checkpoint(path)
    tr.load_state_dict(arrays, meta)
    return path
