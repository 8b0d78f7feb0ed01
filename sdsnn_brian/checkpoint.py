"""Checkpoints: named numpy arrays plus JSON metadata in one verified ``.npz``.

* :func:`save_checkpoint` writes atomically (:func:`sdsnn_brian.rundir.atomic_file`):
  a temporary file in the target directory is written, flushed and fsynced, then
  ``os.replace``-d over the target and the directory is fsynced.  A crash, a full disk or an unwritable
  directory leaves either the old file or the new one, never a mixture, and
  no temporary file behind; the error is an :class:`OSError` naming the path.
* The file holds the arrays under their own names, the metadata as a JSON
  string (``__meta__``), and a SHA-256 checksum (``__checksum__``) over every
  array's name, dtype, shape and bytes and over the metadata.
  :func:`load_checkpoint` recomputes it and raises
  :class:`CorruptCheckpointError` on any mismatch, truncation or unreadable
  archive.  Files load with ``allow_pickle=False``.
* :func:`latest_checkpoint` picks the newest checkpoint that loads, warning
  about (and skipping) damaged newer ones; :func:`prune_checkpoints` removes
  old ones.  "Newest" is decided by the numbers in the file name, compared as
  numbers (``ckpt-0002-00000.npz`` after ``ckpt-0001-00040.npz``, ``ckpt-10.npz``
  after ``ckpt-9.npz``), never by file times: a directory copied with ``cp -r``
  (new times, any order) resumes from the same checkpoint.
"""

from __future__ import annotations

import errno as _errno
import hashlib
import json
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .rundir import CHECKPOINT_PATTERN, atomic_file

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "prune_checkpoints",
    "CorruptCheckpointError",
    "CheckpointWarning",
    "FORMAT",
]

FORMAT = "sdsnn-checkpoint-1"
_META = "__meta__"
_CHECKSUM = "__checksum__"
_FORMAT = "__format__"
_RESERVED = (_META, _CHECKSUM, _FORMAT)


class CorruptCheckpointError(ValueError):
    """A checkpoint file is damaged: unreadable, truncated, or fails its checksum."""

    def __init__(self, path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"corrupt checkpoint {self.path}: {reason}")


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped (for example, because it is damaged)."""


# --------------------------------------------------------------------------- helpers


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"checkpoint meta value of type {type(o).__name__} is not JSON serialisable")


def _contiguous(a) -> np.ndarray:
    a = np.asarray(a)
    return a if a.flags.c_contiguous else a.copy(order="C")  # keeps 0-d arrays 0-d


def _checksum(arrays: dict[str, np.ndarray], meta_json: str) -> str:
    h = hashlib.sha256()
    h.update(FORMAT.encode())
    for name in sorted(arrays):
        a = _contiguous(arrays[name])
        h.update(b"\0name\0" + name.encode("utf-8"))
        h.update(b"\0dtype\0" + a.dtype.str.encode())
        h.update(b"\0shape\0" + repr(tuple(a.shape)).encode())
        h.update(b"\0data\0")
        h.update(a.reshape(-1).view(np.uint8) if a.size else b"")
    h.update(b"\0meta\0" + meta_json.encode("utf-8"))
    return h.hexdigest()


# --------------------------------------------------------------------------- save / load


def _write_npz(f, payload: dict, compress: bool):
    """The ``np.savez`` layout (one ``name.npy`` member per array), without pickles."""
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(f, "w", compression=mode, allowZip64=True) as zf:
        for name, a in payload.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, a, allow_pickle=False)


def save_checkpoint(path, arrays: dict, meta: dict | None = None, *, compress: bool = False) -> Path:
    """Write ``arrays`` (name -> array) and ``meta`` (JSON-able dict) to ``path`` atomically.

    The file is a standard ``.npz`` (``np.load`` reads it); ``compress=True``
    deflates the members.

    Returns the path.  Raises :class:`OSError` naming ``path`` when the
    directory is missing or unwritable or the disk is full (an existing file
    at ``path`` is then untouched), :class:`TypeError`/:class:`ValueError` for
    bad arrays or metadata (before anything is written).
    """
    path = Path(path)
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    data: dict[str, np.ndarray] = {}
    for name, a in arrays.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"array names must be non-empty strings, got {name!r}")
        if name in _RESERVED:
            raise ValueError(f"array name {name!r} is reserved")
        a = np.asarray(a)
        if a.dtype.hasobject:
            raise TypeError(f"array {name!r} has dtype object; checkpoints hold plain numeric arrays only")
        data[name] = _contiguous(a)
    meta_json = json.dumps(meta, default=_json_default, sort_keys=True, allow_nan=True)
    checksum = _checksum(data, meta_json)
    payload = dict(data)
    payload[_META] = np.array(meta_json)
    payload[_CHECKSUM] = np.array(checksum)
    payload[_FORMAT] = np.array(FORMAT)

    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(_errno.ENOENT, f"cannot write checkpoint {path}: directory {directory} does not exist", str(path))
    with atomic_file(path, what="checkpoint", private=True) as f:
        _write_npz(f, payload, compress)
    return path


def load_checkpoint(path):
    """``(arrays, meta)`` from a checkpoint written by :func:`save_checkpoint`.

    Raises :class:`FileNotFoundError` if ``path`` does not exist and
    :class:`CorruptCheckpointError` (naming the file) if it cannot be read as
    a zip archive, is truncated, lacks the checksum, or fails it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(_errno.ENOENT, "checkpoint not found", str(path))
    if path.is_file() and not zipfile.is_zipfile(path):
        raise CorruptCheckpointError(path, "not a zip archive (truncated, overwritten or not a checkpoint)")
    try:
        with np.load(path, allow_pickle=False) as z:
            raw = {name: z[name] for name in z.files}  # reading checks each member's CRC
    except (PermissionError, IsADirectoryError):
        raise
    except Exception as e:  # any failure to parse the archive means the file is damaged
        raise CorruptCheckpointError(path, f"unreadable archive ({type(e).__name__}: {e})") from e
    for key in (_META, _CHECKSUM):
        if key not in raw:
            raise CorruptCheckpointError(path, f"missing {key} (not an sdsnn checkpoint, or damaged)")
    try:
        meta_json = str(raw.pop(_META).item())
        stored = str(raw.pop(_CHECKSUM).item())
        raw.pop(_FORMAT, None)
    except ValueError as e:
        raise CorruptCheckpointError(path, f"malformed {_META}/{_CHECKSUM} ({e})") from e
    actual = _checksum(raw, meta_json)
    if actual != stored:
        raise CorruptCheckpointError(path, f"checksum mismatch (stored {stored[:16]}..., computed {actual[:16]}...)")
    try:
        meta = json.loads(meta_json)
    except json.JSONDecodeError as e:  # pragma: no cover - checksum would have caught it
        raise CorruptCheckpointError(path, f"metadata is not valid JSON ({e})") from e
    return raw, meta


# --------------------------------------------------------------------------- directories


def _natural_key(name: str):
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name)]


def list_checkpoints(directory, pattern: str = CHECKPOINT_PATTERN) -> list[Path]:
    """Files in ``directory`` matching ``pattern``, oldest first (see module doc for the order)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.glob(pattern):
        try:
            if not p.is_file():
                continue
        except OSError:
            continue
        found.append((_natural_key(p.name), p))
    found.sort(key=lambda t: t[0])
    return [p for _, p in found]


def latest_checkpoint(directory, pattern: str = CHECKPOINT_PATTERN) -> Path | None:
    """The newest checkpoint in ``directory`` that loads, or ``None``.

    Newer files that fail to load are skipped with a :class:`CheckpointWarning`.
    """
    for p in reversed(list_checkpoints(directory, pattern)):
        try:
            load_checkpoint(p)
        except (CorruptCheckpointError, OSError) as e:
            warnings.warn(f"skipping checkpoint {p}: {e}", CheckpointWarning, stacklevel=2)
            continue
        return p
    return None


def prune_checkpoints(directory, keep: int = 3, pattern: str = CHECKPOINT_PATTERN) -> list[Path]:
    """Delete all but the newest ``keep`` loadable checkpoints; return the removed paths.

    Files are checked newest first until ``keep`` good ones are found; every
    file older than the oldest kept one is removed.  Damaged files newer than
    that are left in place (never counted as kept), so pruning can never
    delete the last good checkpoint.
    """
    if int(keep) < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    files = list_checkpoints(directory, pattern)
    kept = 0
    cut = None
    for idx in range(len(files) - 1, -1, -1):
        try:
            load_checkpoint(files[idx])
        except (CorruptCheckpointError, OSError):
            continue
        kept += 1
        if kept == keep:
            cut = idx
            break
    if cut is None:
        return []
    removed = []
    for p in files[:cut]:
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
    return removed
