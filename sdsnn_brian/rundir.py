"""A run directory's safety: what marks a run, who may write it, and when it may be replaced.

Guarantees (the trainers call :func:`open_run_directory` before writing anything):

* **Never overwritten without being asked.**  A directory that already holds a run
  (any of :data:`RUN_FILES`) is refused unless the caller resumes it (``resume=True``,
  ``--resume``) or asks to replace it (``overwrite=True``, ``--overwrite``).  Replacing
  removes the earlier run's files (configuration, metrics, checkpoints, summary, structure
  log, report) and nothing else; other files in the directory are left alone.
* **One writer at a time.**  The directory is locked (``flock`` on ``RUN_DIR/.lock``, which
  holds the owner's pid, host, start time and command) for as long as the run trains.  A
  second process, or a second trainer in the same process, fails at once naming the
  holder's pid.  The lock dies with its process (a killed run leaves no stale lock).
* Checkpoints are ordered by the (epoch, batch) in their names (``ckpt-EEEE-BBBBB.npz``),
  not by file times, so a directory copied with ``cp -r`` resumes from the right one
  (:mod:`sdsnn_brian.checkpoint`).

This module also owns the run directory's *format*; every writer and reader takes the names
from here:

* the files (:data:`CONFIG_FILE` ... :data:`REPORT_DIR`, :data:`RUN_FILES`)::

      config.json           the resolved configuration (network, device, loss, optimiser, data, seed)
      metrics.jsonl         one JSON object per epoch (losses, accuracies, timings, SOPs, structure)
      structure.jsonl       one JSON object per structural step and layer (with a structural schedule)
      structure_events.npz  every synapse removal/restoration: layer, flat index, step, kind
      ckpt-EEEE-BBBBB.npz   checkpoints after EEEE epochs and BBBBB batches of the next
                            (:func:`checkpoint_name`; VDIB: ``ckpt-EEEE.npz``), atomic, checksummed
      summary.json          final figures and the protocol that produced them
      params.npz            VDIB: the final trained parameters
      results.json          VDIB experiments: the results (with ``report.md``)
      report/               the run report (``index.md``, ``index.html``, figures)

  A comparison directory (``sdsnn compare``, ``protocols/sdsnn_mnist.py``) holds
  :data:`COMPARISON_MD_FILE` and :data:`COMPARISON_JSON_FILE` over sub-run directories.
* the checkpoint's array names (:func:`weight_key`, :func:`mask_key`, :func:`bias_key`,
  :func:`grad_score_key`, the :data:`OPTIMIZER_PREFIX`/:data:`SCHEDULE_PREFIX`/
  :data:`STRUCTURE_PREFIX` groups; VDIB's :func:`vdib_weight_key`/:func:`vdib_bias_key`) and
  their reader :func:`layer_arrays`;
* the evaluation encoding's seed, ``default_rng([seed, EVAL_SEED_OFFSET, k])`` for batch ``k``
  (:data:`EVAL_SEED_OFFSET`);
* the one atomic file write (:func:`write_atomic`, :func:`write_json_atomic`,
  :func:`atomic_file`): a temporary file in the target's directory, flushed and fsynced, then
  ``os.replace``-d over the target and the directory fsynced; a failure removes the temporary
  file and leaves the target as it was.

It imports nothing from the package (every other module may import it).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time

import numpy as np

__all__ = ["RUN_FILES", "RunDirectoryError", "RunDirectoryExists", "RunDirectoryBusy", "RunLock",
           "run_files", "open_run_directory",
           "CONFIG_FILE", "METRICS_FILE", "SUMMARY_FILE", "STRUCTURE_FILE", "STRUCTURE_EVENTS_FILE",
           "CHECKPOINT_PATTERN", "PARAMS_FILE", "RESULTS_FILE", "RESULTS_REPORT_FILE", "REPORT_DIR",
           "COMPARISON_MD_FILE", "COMPARISON_JSON_FILE", "checkpoint_name", "parse_checkpoint_name",
           "weight_key", "mask_key", "bias_key", "grad_score_key", "OPTIMIZER_PREFIX", "SCHEDULE_PREFIX",
           "STRUCTURE_PREFIX", "vdib_weight_key", "vdib_bias_key", "layer_arrays", "MissingLayerArray",
           "EVAL_SEED_OFFSET", "atomic_file", "write_atomic", "write_json_atomic", "jsonable",
           "fsync_directory"]

# -- files -----------------------------------------------------------------------------------
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
STRUCTURE_FILE = "structure.jsonl"
STRUCTURE_EVENTS_FILE = "structure_events.npz"
#: every checkpoint of a run (the glob :mod:`sdsnn_brian.checkpoint` lists and prunes)
CHECKPOINT_PATTERN = "ckpt-*.npz"
PARAMS_FILE = "params.npz"
RESULTS_FILE = "results.json"
RESULTS_REPORT_FILE = "report.md"
REPORT_DIR = "report"
COMPARISON_MD_FILE = "comparison.md"
COMPARISON_JSON_FILE = "comparison.json"

#: Files (glob patterns) that mark a directory as holding a run.
RUN_FILES = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, STRUCTURE_FILE, STRUCTURE_EVENTS_FILE,
             CHECKPOINT_PATTERN, PARAMS_FILE, RESULTS_FILE, REPORT_DIR)

LOCK_NAME = ".lock"

_CHECKPOINT_RE = re.compile(r"ckpt-(\d+)(?:-(\d+))?\.npz")


def checkpoint_name(epoch: int, batch: int | None = None) -> str:
    """``ckpt-EEEE-BBBBB.npz``: the checkpoint after ``epoch`` epochs and ``batch`` batches of the
    next; ``batch=None`` gives the epoch-only ``ckpt-EEEE.npz`` (VDIB)."""
    if batch is None:
        return f"ckpt-{int(epoch):04d}.npz"
    return f"ckpt-{int(epoch):04d}-{int(batch):05d}.npz"


def parse_checkpoint_name(name):
    """``(epoch, batch)`` of a :func:`checkpoint_name` (a path's file name is used; ``batch`` is
    None for ``ckpt-EEEE.npz``), or None for any other name."""
    m = _CHECKPOINT_RE.fullmatch(os.path.basename(os.fspath(name)))
    if m is None:
        return None
    return int(m[1]), (None if m[2] is None else int(m[2]))


# -- checkpoint arrays ----------------------------------------------------------------------------
def weight_key(k: int) -> str:
    """Trained layer ``k``'s weights (``weight_{k}``)."""
    return f"weight_{k}"


def mask_key(k: int) -> str:
    """Trained layer ``k``'s synapse mask (``mask_{k}``)."""
    return f"mask_{k}"


def bias_key(k: int) -> str:
    """Trained layer ``k``'s bias (``bias_{k}``), present only for a layer with a bias."""
    return f"bias_{k}"


def grad_score_key(k: int) -> str:
    """Trained layer ``k``'s regeneration score of removed synapses (``grad_score_{k}``)."""
    return f"grad_score_{k}"


#: the optimiser's state, the learning-rate schedule's and the structural schedule's, under these prefixes
OPTIMIZER_PREFIX = "optim/"
SCHEDULE_PREFIX = "sched/"
STRUCTURE_PREFIX = "structure/"


def vdib_weight_key(k: int) -> str:
    """A VDIB encoder layer ``k``'s weights (``W{k}``, in its checkpoints and ``params.npz``)."""
    return f"W{k}"


def vdib_bias_key(k: int) -> str:
    """A VDIB encoder layer ``k``'s bias (``b{k}``)."""
    return f"b{k}"


class MissingLayerArray(KeyError):
    """A checkpoint lacks a layer's array; ``key`` names it."""

    def __init__(self, key):
        super().__init__(key)
        self.key = key


def layer_arrays(arrays, n_layers=None, *, bias=None, dtype=np.float64, copy=False):
    """``(weights, masks, biases)``: the trained layers' arrays of a checkpoint's ``arrays``.

    ``n_layers``: layers to read (default: as many as ``weight_0``, ``weight_1``, ... present).
    ``bias``: per layer, whether it has a bias (True: required; False: ``None`` returned); by
    default a bias is read where present, else ``None``.  Arrays come as ``dtype`` (float64),
    copied with ``copy=True``.  Raises :class:`MissingLayerArray` (a ``KeyError``) naming the
    first missing key.
    """
    if n_layers is None:
        n_layers = 0
        while weight_key(n_layers) in arrays:
            n_layers += 1
    if bias is not None and len(bias) != n_layers:
        raise ValueError(f"bias: {len(bias)} entries for {n_layers} layers")

    def get(key):
        if key not in arrays:
            raise MissingLayerArray(key)
        return np.array(arrays[key], dtype=dtype) if copy else np.asarray(arrays[key], dtype=dtype)

    weights, masks, biases = [], [], []
    for k in range(n_layers):
        weights.append(get(weight_key(k)))
        masks.append(get(mask_key(k)))
        wanted = bias_key(k) in arrays if bias is None else bool(bias[k])
        biases.append(get(bias_key(k)) if wanted else None)
    return weights, masks, biases


# -- evaluation ---------------------------------------------------------------------------------------
#: the evaluation encoding of batch ``k``: ``default_rng([seed, EVAL_SEED_OFFSET, k])`` (Trainer.evaluate,
#: Trainer.predict, the export's baked-in inputs, the run report's simulations, VDIBTrainer.evaluate)
EVAL_SEED_OFFSET = 10**6


# -- atomic writes -----------------------------------------------------------------------------------
def fsync_directory(directory):
    """fsync a directory (its entries survive a crash); silently skipped where refused."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


@contextlib.contextmanager
def atomic_file(path, *, what="file", private=False):
    """A binary file handle whose contents replace ``path`` atomically when the block ends.

    The temporary file (``.NAME.XXXXXXXX.tmp``) lies in ``path``'s directory; on leaving the
    block it is flushed, fsynced and ``os.replace``-d over ``path``, then the directory is
    fsynced.  An exception in the block or while writing removes the temporary file and
    leaves ``path`` as it was.  An :class:`OSError` is raised again as ``cannot write WHAT
    PATH: REASON`` (same errno, so the same subclass).  The file gets the mode a plain
    ``open(path, "w")`` would give (``0o666`` less the umask), or ``0o600`` with ``private``.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "wb") as fh:
            if not private:
                os.fchmod(fh.fileno(), 0o666 & ~_umask())
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        msg = f"cannot write {what} {path}: {e.strerror or e}"
        if e.errno is not None:
            raise OSError(e.errno, msg, path) from e  # becomes PermissionError etc. by errno
        raise OSError(msg) from e
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    fsync_directory(directory)


def write_atomic(path, data):
    """Replace ``path`` with ``data`` (bytes, or str written as UTF-8) atomically (:func:`atomic_file`)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_file(path) as fh:
        fh.write(data)


def jsonable(obj):
    """``obj`` with numpy scalars and arrays as Python numbers and lists, dict keys as strings."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def write_json_atomic(path, obj, lines=False):
    """Write ``obj`` as indented JSON, or (``lines=True``) each item of a list as one JSON line,
    atomically (:func:`write_atomic`); numpy values are converted (:func:`jsonable`)."""
    if lines:
        text = "".join(json.dumps(jsonable(item)) + "\n" for item in obj)
    else:
        text = json.dumps(jsonable(obj), indent=2)
    write_atomic(path, text)


class RunDirectoryError(OSError):
    """A run directory cannot be used as asked."""


class RunDirectoryExists(RunDirectoryError, FileExistsError):
    """The directory already holds a run, and neither resuming nor replacing it was asked for."""


class RunDirectoryBusy(RunDirectoryError):
    """Another live process (or trainer) holds the directory's lock."""


def run_files(path) -> list:
    """The files and folders in ``path`` that belong to a run (sorted), ``[]`` if none or no directory."""
    if not os.path.isdir(path):
        return []
    found = set()
    for pattern in RUN_FILES:
        found.update(glob.glob(os.path.join(glob.escape(str(path)), pattern)))
    return sorted(found)


def _describe(files) -> str:
    names = [os.path.basename(f) for f in files]
    ckpts = [n for n in names if n.startswith("ckpt-")]
    others = [n for n in names if not n.startswith("ckpt-")]
    parts = others[:4] + ([f"{len(ckpts)} checkpoint{'s' if len(ckpts) != 1 else ''}"] if ckpts else [])
    return ", ".join(parts)


class RunLock:
    """An exclusive lock on a run directory for the life of a run (``release()`` or the process ending)."""

    def __init__(self, path, command=None):
        self.path = str(path)
        self.file = os.path.join(self.path, LOCK_NAME)
        self._fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = self._holder()
            os.close(self._fd)
            self._fd = None
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            who = (f"process {holder.get('pid')} on {holder.get('host')} since {holder.get('started')} "
                   f"({holder.get('command')})") if holder else "another process"
            raise RunDirectoryBusy(errno.EBUSY, f"run directory {self.path!r} is in use by {who}; wait for it "
                                   "to finish, stop it, or choose another run directory") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": command or " ".join(sys.argv)}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, (json.dumps(info) + "\n").encode(), 0)

    def _holder(self):
        try:
            with open(self.file) as fh:
                return json.loads(fh.read() or "{}")
        except (OSError, ValueError):
            return {}

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self):
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __del__(self):  # pragma: no cover - released explicitly in normal use
        try:
            self.release()
        except Exception:
            pass


def open_run_directory(path, *, resume=False, overwrite=False, command=None) -> RunLock:
    """Create/lock ``path`` for a run and return the held :class:`RunLock` (release it when the run ends).

    Refuses (:class:`RunDirectoryExists`) a directory holding an earlier run unless ``resume``
    or ``overwrite``; with ``overwrite`` (and not ``resume``) the earlier run's files are removed
    once the lock is held.  Raises :class:`RunDirectoryBusy` when another live run holds it, and an
    ``OSError`` naming the directory when it cannot be created or written.
    """
    path = str(path)
    try:
        os.makedirs(path, exist_ok=True)
        lock = RunLock(path, command)
    except RunDirectoryError:
        raise
    except OSError as exc:
        raise type(exc)(exc.errno, f"run directory {path!r} is not writable ({exc.strerror})") from None
    try:
        existing = run_files(path)
        if existing and not resume:
            if not overwrite:
                raise RunDirectoryExists(
                    errno.EEXIST, f"run directory {path!r} already holds a run ({_describe(existing)}); "
                    "continue it with --resume (resume=True), choose another run directory, or pass "
                    "--overwrite (overwrite=True) to replace it")
            for f in existing:
                if os.path.isdir(f) and not os.path.islink(f):
                    shutil.rmtree(f)
                else:
                    os.remove(f)
    except BaseException:
        lock.release()
        raise
    return lock
