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
"""
from __future__ import annotations

import errno
import fcntl
import glob
import json
import os
import shutil
import socket
import sys
import time

__all__ = ["RUN_FILES", "RunDirectoryError", "RunDirectoryExists", "RunDirectoryBusy", "RunLock",
           "run_files", "open_run_directory"]

#: Files (glob patterns) that mark a directory as holding a run.
RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "structure.jsonl", "structure_events.npz",
             "ckpt-*.npz", "params.npz", "results.json", "report")

LOCK_NAME = ".lock"


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
