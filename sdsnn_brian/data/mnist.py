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

Damaged files
-------------
Reading a file ends in one of three ways:

1. the data.  A gzip file is decoded to its end every time (``limit`` only
   decides how much is kept), each gzip member's CRC-32 and length trailer
   is checked, and the decompressed length must be exactly what the idx
   header declares;
2. a truncation: the file simply stops -- a gzip stream that ends inside its
   deflate data or trailer with no decoding error before that point, or a
   plain file shorter than its header declares.  Whole records are kept and
   a :class:`TruncatedDataWarning` gives the count (also when every record
   was decoded but the stream stops before its checksum; with ``limit``, only
   when fewer than ``limit`` records are there);
3. :class:`~sdsnn_brian.data.errors.CorruptDataError` (a ``ValueError``)
   naming the file and the fault: invalid deflate data (zlib's "invalid block
   type", "invalid distance too far back", ...), a CRC-32 or length (ISIZE)
   mismatch, bytes after the gzip stream that do not form another gzip member
   (concatenated members are read as one stream, as ``gunzip`` does), more data
   than the header declares, a bad magic number, image dimensions other than
   28x28, a header cut short, a label outside 0..9, or a label file that does
   not fit its image file.

What this cannot promise: the bytes of a *cut* gzip stream are covered by no
checksum, since the CRC-32 sits in the trailer the cut removed.  zlib's own
structural checks (block types, code lengths, distances, stored-block length
pairs) still catch most damage there, but a flipped byte that keeps the
deflate data valid -- for instance inside a stored block or a literal --
changes records without any error; hence the warning says the records read
are unverified.  Likewise a plain (uncompressed) idx file carries no checksum
at all: only its header, its size and the label range are checked.

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

from .errors import CorruptDataError, TruncatedDataWarning

__all__ = [
    "MNIST",
    "load_mnist",
    "TruncatedDataWarning",
    "CorruptDataError",
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


def _damaged(path: Path, what: str) -> CorruptDataError:
    return CorruptDataError(
        f"{path}: {what}; the file is damaged: download it again or restore it from a good copy "
        "(the standard MNIST files' md5 sums are published with them)"
    )


def _zlib_problem(message: str) -> str:
    if "incorrect data check" in message:
        return "the gzip stream fails its CRC-32 check (the decompressed bytes are not the ones compressed)"
    if "incorrect length check" in message:
        return "the gzip stream fails its length check (ISIZE trailer)"
    return f"the gzip stream holds invalid deflate data (zlib: {message})"


def _gunzip(path: Path, keep: int | None) -> tuple[bytes, int, bool]:
    """Decode the whole gzip file ``path``.

    Returns ``(data, total, complete)``: the first ``keep`` decompressed bytes (all
    when None), the number of bytes the file decompresses to, and whether its last
    gzip member reached its end (CRC-32 and ISIZE checked by zlib).  ``complete``
    False means the file stops inside a member without any decoding error: a cut
    stream.  Raises :class:`CorruptDataError` on every decoding error and on bytes
    after a member that do not start another member.
    """
    out = bytearray()
    total = 0
    dec = None  # decompressor of the current gzip member; None between members
    member = 0  # number of the current member (1-based)
    member_out = 0  # bytes the current member has decompressed to
    pos = 0  # file offset of the start of ``data`` below
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            data = chunk
            while data:
                if dec is None:
                    dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    member += 1
                    member_out = 0
                try:
                    piece = dec.decompress(data)
                except zlib.error as e:
                    if member > 1 and member_out == 0:
                        raise _damaged(
                            path,
                            f"the bytes after the end of the gzip stream (from offset {pos}) "
                            f"are not another gzip member (zlib: {e})",
                        ) from None
                    where = ""  # a checksum fails at the end, wherever the damage is
                    if "check" not in str(e):
                        where = f", in the compressed bytes {pos}..{pos + len(data)}"
                    raise _damaged(path, _zlib_problem(str(e)) + where) from None
                total += len(piece)
                member_out += len(piece)
                if keep is None:
                    out += piece
                elif len(out) < keep:
                    out += piece[: keep - len(out)]
                if dec.eof:  # member verified; what follows must be another member
                    rest = dec.unused_data
                    pos += len(data) - len(rest)
                    data = rest
                    dec = None
                else:
                    pos += len(data)
                    data = b""
    complete = dec is None and member > 0
    if dec is not None:
        try:
            piece = dec.flush()
        except zlib.error as e:  # pragma: no cover - flush of a cut stream does not raise
            raise _damaged(path, _zlib_problem(str(e))) from None
        total += len(piece)
        if keep is None or len(out) < keep:
            out += piece if keep is None else piece[: keep - len(out)]
    return bytes(out), total, complete


def _read_idx(path: Path, kind: str, limit: int | None):
    """Read an idx file of MNIST images (kind 'images') or labels ('labels').

    Returns ``(array uint8 [n, ...], declared_count, truncated, problem)``:
    ``truncated`` is True when fewer whole records than needed were read, and
    ``problem`` is then what cut the file short; ``problem`` is also set (with
    ``truncated`` False) when every record was read from a gzip stream that stops
    before its checksum.  Raises :class:`CorruptDataError` for a damaged file.
    """
    magic_expected = IMAGE_MAGIC if kind == "images" else LABEL_MAGIC
    ndim = 3 if kind == "images" else 1
    header_len = 4 + 4 * ndim
    item = ROWS * COLS if kind == "images" else 1
    gz = _is_gzip(path)
    if gz:
        data, total, complete = _gunzip(path, None if limit is None else header_len + limit * item)
        what = "decompresses to"
    else:
        total, complete = path.stat().st_size, True
        with open(path, "rb") as f:
            data = f.read() if limit is None else f.read(header_len + limit * item)
        what = "has"
    if total < 4:
        raise CorruptDataError(f"{path}: too short to be an idx file ({total} bytes)")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != magic_expected:
        raise CorruptDataError(
            f"{path}: bad magic number 0x{magic:08x}, expected 0x{magic_expected:08x} "
            f"(idx {'images' if kind == 'images' else 'labels'}, unsigned byte, {ndim} dims); "
            "the file is damaged or is not an MNIST idx file"
        )
    if total < header_len:
        raise CorruptDataError(f"{path}: header cut short ({total} of {header_len} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    count = dims[0]
    if kind == "images" and tuple(dims[1:]) != (ROWS, COLS):
        raise CorruptDataError(
            f"{path}: images are {dims[1]}x{dims[2]}, expected {ROWS}x{COLS}; "
            "the header is damaged or this is not MNIST"
        )
    expected = header_len + count * item
    if total > expected:
        raise CorruptDataError(
            f"{path}: {what} {total} bytes, more than the {expected} its header declares "
            f"({count} {kind} of {item} bytes after a {header_len}-byte header); the header or "
            "the file is damaged"
        )
    want = count if limit is None else min(count, limit)
    n_whole = min((total - header_len) // item, want)
    truncated = n_whole < want
    problem = None
    if gz and not complete:
        problem = "the gzip stream stops early (a cut file; no checksum covers what was read)"
        if not truncated and want < count:
            problem = None  # the first ``limit`` records, all there, are what was asked for
    elif truncated:
        problem = f"file ends early ({total - header_len} of {count * item} data bytes)"
    arr = np.frombuffer(data, dtype=np.uint8, count=n_whole * item, offset=header_len).copy()
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
        Read at most this many examples (the first ones).  A gzip file is still
        decoded to its end, so that its checksum is verified; only the first
        ``limit`` records are kept.

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
                raise CorruptDataError(
                    f"{lab_path}: holds {n_lab_decl} labels but {img_path} holds "
                    f"{n_img_decl} images; the label file must label every image"
                )
            raise CorruptDataError(
                f"{lab_path}: declares {n_lab_decl} labels but {img_path} declares "
                f"{n_img_decl} images; the files do not belong together"
            )
        if not lab_trunc and len(labels) < len(raw):
            # complete label file that cannot cover the images that exist
            raise CorruptDataError(
                f"{lab_path}: holds {len(labels)} labels, fewer than the {len(raw)} images "
                f"read from {img_path}"
            )
        bad = np.flatnonzero(labels >= N_CLASSES)
        if bad.size:
            raise CorruptDataError(
                f"{lab_path}: label {int(labels[bad[0]])} at index {int(bad[0])} is out of "
                f"range 0..{N_CLASSES - 1} ({bad.size} bad labels); the file is damaged or is "
                "not an MNIST label file"
            )

        want_img = n_img_decl if limit is None else min(n_img_decl, limit)
        want_lab = n_lab_decl if limit is None else min(n_lab_decl, limit)
        if img_problem is not None:
            warnings.warn(
                f"{img_path.name}: {img_problem}; read {len(raw)} of {want_img} images "
                f"(header declares {n_img_decl}; whole images only)",
                TruncatedDataWarning,
                stacklevel=2,
            )
        if lab_problem is not None:
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
