"""MNIST from the standard idx files, complete or truncated.

The four files of the original distribution are read directly, plain or
gzip-compressed::

    train-images-idx3-ubyte[.gz]   train-labels-idx1-ubyte[.gz]
    t10k-images-idx3-ubyte[.gz]    t10k-labels-idx1-ubyte[.gz]

A file whose gzip stream (or plain content) stops before the count its header
declares -- such as ``train-images-idx3-ubyte.partial.gz``, the first MiB of
the training-image archive -- is read as far as it goes: every *whole* image
is kept, the cut one is dropped, and a :class:`TruncatedDataWarning` says how
many of how many were read.  Images and labels are then paired up to the
smaller count.  A complete file is held to its header: a label file with
fewer labels than the image file has images is an error, not a truncation.

Where the files are looked for (first that exists):

1. the ``root`` argument;
2. the environment variable ``SDSNN_MNIST_DIR``;
3. ``<repo>/../shared/data/mnist`` (``<repo>`` is the directory holding the
   ``sdsnn_brian`` package);
4. ``./data/mnist``.

Within the directory each file may be named ``{stem}``, ``{stem}.gz`` or
``{stem}.partial.gz``, tried in that order (complete files first).
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "MNIST",
    "load_mnist",
    "TruncatedDataWarning",
    "default_mnist_root",
    "MNIST_URL_HINT",
]

IMAGE_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABEL_MAGIC = 0x00000801  # unsigned byte, 1 dimension
ROWS = COLS = 28
N_CLASSES = 10

SUFFIXES = ("", ".gz", ".partial.gz")
MNIST_URL_HINT = (
    "MNIST is distributed as the four idx files train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
    "(see http://yann.lecun.com/exdb/mnist/ or a mirror such as "
    "https://ossci-datasets.s3.amazonaws.com/mnist/); put them in one directory and pass "
    "it as root= or set SDSNN_MNIST_DIR"
)

_CHUNK = 1 << 18  # compressed bytes fed to the decompressor at a time


class TruncatedDataWarning(UserWarning):
    """A data file held fewer whole records than its header declares."""


# --------------------------------------------------------------------------- paths


def _repo_dir() -> Path:
    # sdsnn_brian/data/mnist.py -> sdsnn_brian/data -> sdsnn_brian -> repo
    return Path(__file__).resolve().parent.parent.parent


def _default_candidates() -> list[Path]:
    return [_repo_dir().parent / "shared" / "data" / "mnist", Path("data") / "mnist"]


def default_mnist_root() -> Path:
    """The directory MNIST is read from when no ``root`` is given.

    ``SDSNN_MNIST_DIR`` if set (it need not exist; reading then fails naming
    it), else the first existing of ``<repo>/../shared/data/mnist`` and
    ``./data/mnist``.  Raises :class:`FileNotFoundError` when none exists.
    """
    env = os.environ.get("SDSNN_MNIST_DIR")
    if env:
        return Path(env).expanduser()
    candidates = _default_candidates()
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError(
        "no MNIST directory found: SDSNN_MNIST_DIR is not set and none of "
        + ", ".join(str(c) for c in candidates)
        + " exists. "
        + MNIST_URL_HINT
    )


def _find_file(root: Path, stem: str) -> Path:
    names = [stem + s for s in SUFFIXES]
    for n in names:
        p = root / n
        if p.is_file():
            return p
    raise FileNotFoundError(
        f"MNIST file not found in {root}: looked for " + ", ".join(names) + ". " + MNIST_URL_HINT
    )


# --------------------------------------------------------------------------- idx reading


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _read_prefix(path: Path, need: int | None) -> tuple[bytes, bool, str | None]:
    """Read (decompressing if gzip) up to ``need`` bytes (all if None).

    Returns ``(data, stream_complete, problem)``: ``stream_complete`` is False
    when a gzip stream ends before its end marker (truncated) or is damaged,
    ``problem`` describes that.  Reading stops early once ``need`` bytes are
    available, in which case completeness is not known and True is returned.
    """
    if not _is_gzip(path):
        with open(path, "rb") as f:
            data = f.read() if need is None else f.read(need)
        return data, True, None

    dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    problem = None
    with open(path, "rb") as f:
        while True:
            if need is not None and len(out) >= need:
                return bytes(out), True, None
            chunk = f.read(_CHUNK)
            if not chunk:
                try:
                    out += dec.flush()
                except zlib.error as e:  # pragma: no cover - flush rarely raises
                    problem = f"damaged gzip stream ({e})"
                break
            good = dec.copy()
            try:
                out += dec.decompress(chunk)
            except zlib.error as e:
                # zlib drops the output of a call that fails: replay the chunk in ever
                # smaller pieces from the last good state to keep what precedes the damage
                out += _salvage(good, chunk)
                problem = f"damaged gzip stream ({e})"
                break
            if dec.eof:
                break
    if problem is None and not dec.eof:
        problem = "gzip stream ends early (truncated file)"
    return bytes(out), problem is None, problem


def _salvage(dec, data: bytes, piece: int = 4096) -> bytes:
    """Output of ``dec`` on ``data`` up to the point where decompression fails."""
    out = bytearray()
    pos = 0
    while pos < len(data) and not dec.eof:
        part = data[pos : pos + piece]
        good = dec.copy()
        try:
            out += dec.decompress(part)
        except zlib.error:
            if piece == 1:
                break
            dec = good
            out += _salvage(dec, part, max(1, piece // 64))
            break
        pos += piece
    return bytes(out)


def _read_idx(path: Path, kind: str, limit: int | None):
    """Read an idx file of MNIST images (kind 'images') or labels ('labels').

    Returns ``(array uint8 [n, ...], declared_count, truncated, problem)``.
    """
    magic_expected = IMAGE_MAGIC if kind == "images" else LABEL_MAGIC
    ndim = 3 if kind == "images" else 1
    header_len = 4 + 4 * ndim
    head, _, _ = _read_prefix(path, header_len)
    if len(head) < 4:
        raise ValueError(f"{path}: too short to be an idx file ({len(head)} bytes)")
    (magic,) = struct.unpack(">I", head[:4])
    if magic != magic_expected:
        raise ValueError(
            f"{path}: bad magic number 0x{magic:08x}, expected 0x{magic_expected:08x} "
            f"(idx {'images' if kind == 'images' else 'labels'}, unsigned byte, {ndim} dims)"
        )
    if len(head) < header_len:
        raise ValueError(f"{path}: header cut short ({len(head)} of {header_len} bytes)")
    dims = struct.unpack(f">{ndim}I", head[4:header_len])
    count = dims[0]
    if kind == "images" and tuple(dims[1:]) != (ROWS, COLS):
        raise ValueError(f"{path}: images are {dims[1]}x{dims[2]}, expected {ROWS}x{COLS}")
    item = ROWS * COLS if kind == "images" else 1
    want = count if limit is None else min(count, limit)
    data, complete, problem = _read_prefix(path, header_len + want * item)
    body = memoryview(data)[header_len:]
    n_whole = min(len(body) // item, want)
    truncated = n_whole < want
    if truncated and problem is None:
        problem = f"file ends early ({len(body)} of {want * item} data bytes)"
    if not truncated and problem is not None and problem.startswith("damaged"):
        # every record is there but the stream fails (e.g. its CRC): the bytes are suspect
        raise ValueError(f"{path}: {problem}; the file is damaged, download it again")
    if not truncated:
        problem = None
    arr = np.frombuffer(body[: n_whole * item], dtype=np.uint8).copy()
    if kind == "images":
        arr = arr.reshape(n_whole, ROWS * COLS)
    return arr, count, truncated, problem


# --------------------------------------------------------------------------- dataset


class MNIST:
    """MNIST images and labels from idx files.

    Parameters
    ----------
    root:
        Directory with the idx files; see the module docstring for the default.
    train:
        True for the ``train-*`` files, False for the ``t10k-*`` test files.
    limit:
        Read at most this many examples (the first ones).  Decompression stops
        as soon as they are available.

    Attributes
    ----------
    images : float32 [N, 784], pixel values in [0, 1] (raw byte / 255).
    labels : int64 [N], digits 0..9.
    n_read : N, the number of examples available.
    n_declared : the count the image file's header declares.
    truncated : True when a file held fewer whole records than needed.
    source : ``{"images": Path, "labels": Path}``.
    """

    def __init__(self, root=None, train: bool = True, limit: int | None = None):
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0:
                raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
            limit = int(limit)
        root = default_mnist_root() if root is None else Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"MNIST directory {root} does not exist. " + MNIST_URL_HINT)
        prefix = "train" if train else "t10k"
        img_path = _find_file(root, f"{prefix}-images-idx3-ubyte")
        lab_path = _find_file(root, f"{prefix}-labels-idx1-ubyte")
        self.root = root
        self.train = bool(train)
        self.source = {"images": img_path, "labels": lab_path}

        raw, n_img_decl, img_trunc, img_problem = _read_idx(img_path, "images", limit)
        labels, n_lab_decl, lab_trunc, lab_problem = _read_idx(lab_path, "labels", limit)

        if not lab_trunc and not img_trunc and n_lab_decl != n_img_decl:
            if n_lab_decl < n_img_decl:
                raise ValueError(
                    f"{lab_path}: holds {n_lab_decl} labels but {img_path} holds "
                    f"{n_img_decl} images; the label file must label every image"
                )
            raise ValueError(
                f"{lab_path}: declares {n_lab_decl} labels but {img_path} declares "
                f"{n_img_decl} images; the files do not belong together"
            )
        if not lab_trunc and len(labels) < len(raw):
            # complete label file that cannot cover the images that exist
            raise ValueError(
                f"{lab_path}: holds {len(labels)} labels, fewer than the {len(raw)} images "
                f"read from {img_path}"
            )
        bad = np.flatnonzero(labels >= N_CLASSES)
        if bad.size:
            raise ValueError(
                f"{lab_path}: label {int(labels[bad[0]])} at index {int(bad[0])} is out of "
                f"range 0..{N_CLASSES - 1} ({bad.size} bad labels)"
            )

        want_img = n_img_decl if limit is None else min(n_img_decl, limit)
        want_lab = n_lab_decl if limit is None else min(n_lab_decl, limit)
        if img_trunc:
            warnings.warn(
                f"{img_path.name}: {img_problem}; read {len(raw)} of {want_img} images "
                f"(header declares {n_img_decl}; whole images only)",
                TruncatedDataWarning,
                stacklevel=2,
            )
        if lab_trunc:
            warnings.warn(
                f"{lab_path.name}: {lab_problem}; read {len(labels)} of {want_lab} labels "
                f"(header declares {n_lab_decl})",
                TruncatedDataWarning,
                stacklevel=2,
            )

        n = min(len(raw), len(labels))
        self.images = raw[:n].astype(np.float32) / np.float32(255.0)
        self.labels = labels[:n].astype(np.int64)
        self.n_read = n
        self.n_declared = n_img_decl
        self.truncated = bool(img_trunc or lab_trunc)

    def __len__(self) -> int:
        return self.n_read

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            i = int(index)
            if i < -self.n_read or i >= self.n_read:
                raise IndexError(f"index {i} out of range for MNIST of {self.n_read} examples")
            return self.images[i], int(self.labels[i])
        raise TypeError(f"MNIST indices must be integers, got {type(index).__name__}")

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        t = ", truncated" if self.truncated else ""
        return f"MNIST({split}, n={self.n_read} of {self.n_declared}{t}, root={str(self.root)!r})"


def load_mnist(root=None, train: bool = True, limit: int | None = None):
    """``(images float32 [N, 784] in [0, 1], labels int64 [N])``; see :class:`MNIST`."""
    ds = MNIST(root=root, train=train, limit=limit)
    return ds.images, ds.labels
