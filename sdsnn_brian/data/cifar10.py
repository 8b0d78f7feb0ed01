"""CIFAR-10 (Krizhevsky 2009) from the python batches, an image folder, or a checked archive.

Three layouts are read; :class:`CIFAR10` finds which one ``root`` holds (first match):

1. **python batches** -- the standard ``cifar-10-batches-py`` folder (``root`` itself or
   ``root/cifar-10-batches-py``): ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and
   ``batches.meta``, each a pickled dict.  A batch holds ``data``, a uint8 array
   ``[n, 3072]`` whose rows are 1024 red, 1024 green and 1024 blue bytes (each a 32x32
   image in row order), and ``labels``, a list of ``n`` ints 0..9; the meta file holds
   ``label_names`` (the ten classes in the standard order) and ``num_cases_per_batch``.
   Keys may be ``bytes`` or ``str`` (files pickled by Python 2 or 3).
2. **image folder** -- ``root/train/<class>/*`` and ``root/test/<class>/*`` (``.png``,
   ``.jpg``, ``.jpeg``, ``.bmp``), each image 32x32 RGB, decoded with Pillow.  The class
   folders must be exactly the ten standard class names; files are taken in name order
   within each class, classes in the standard order.
3. **a known archive** -- a ``.tar.gz`` file (``root`` itself, or a file of a known name in
   ``root``) whose md5 is in :data:`KNOWN_ARCHIVES`: the shared ``cifar10-jpeg.tar.gz``
   (all 60,000 images as JPEG files in the image-folder layout; JPEG at about quality 75,
   so pixel values differ slightly from the original batches: its ``source`` says
   "CIFAR-10 (JPEG copy)", and every number measured on it should say so too) or the
   original ``cifar-10-python.tar.gz``.  The archive is hashed on every load; a file whose
   md5 is not in the table is refused.  It is extracted once into ``cache_dir`` (see
   :func:`default_cache_dir`) as ``cifar10-<md5>/``: into a temporary folder next to it,
   with a completion marker holding the md5 written last, then moved into place with
   ``os.replace`` -- a folder without that marker is never used, but extracted again.
   Members with absolute paths, ``..`` components, links or device entries are refused
   before anything is written for them.  A split decoded in full is kept as uint8 arrays
   ``cifar10-<md5>-<split>-images.npy`` / ``-labels.npy`` next to the extracted folder,
   with a marker holding their sha256 written last; a cache that fails its marker is
   decoded again (with a warning).  Only the split asked for is decoded.

Order and ``limit``
-------------------
The batches keep their file order (``data_batch_1`` .. ``5``), the image folder is sorted
by class, then by file name.  ``limit`` keeps a class-balanced prefix of that order: the
first ``limit // 10`` images of every class (the first ``limit % 10`` classes get one
more), so a small run sees all ten classes; the kept images stay in the split's order.  A
class with fewer images than its share gives all it has.  With ``limit``, an archive split
that is not decoded yet has only the kept images decoded.

Damaged files
-------------
A reader returns the data exactly or raises :class:`~sdsnn_brian.data.errors.CorruptDataError`
naming the file; there is no partial read here (a pickle cannot be read in part, and a
missing image is a missing record, not a cut file).  Errors: a missing batch or meta file, a
pickle that fails to load (cut short, damaged opcodes, bytes after its end), a pickle that
names any global beyond the numpy array and dtype constructors (refused by a restricted
unpickler *before* anything is called: never ``os.system`` & co.), data that is not uint8
``[n, 3072]``, a label outside 0..9 or a label count that differs from the image count, a
batch size that differs from ``num_cases_per_batch``, class names that differ from the
standard ones, an extra ``data_batch_6``; in an image folder, a missing or unknown class
folder, an empty class folder, a file that is not an image of a known suffix, a file
Pillow fails to decode (truncated images are never padded, whatever
``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` says) or one that is not 32x32 RGB; for an archive,
an md5 not in the table, an unsafe member, and a class count other than the archive's.

What this cannot promise: the python batches carry no checksum, so a flipped pixel byte
inside them goes unnoticed -- unless the files are the published ones: each batch's md5 is
compared with the published value and a :class:`UserWarning` says when they differ
(re-pickled files differ too, so that is not an error).  An image folder carries no
checksum either, and a JPEG with damaged entropy-coded data may still decode (libjpeg
fills in); an archive is covered by its md5, and its extracted copy is only trusted by
its completion marker.

Where the data is looked for when ``root`` is None (first that exists): the environment
variable ``SDSNN_CIFAR10_DIR``; ``<repo>/../shared/data/cifar10``; ``./data/cifar10``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tarfile
import tempfile
import warnings
from pathlib import Path, PurePosixPath

import numpy as np

from ..rundir import atomic_file, write_json_atomic
from .errors import CorruptDataError

__all__ = [
    "CIFAR10",
    "CLASSES",
    "KNOWN_ARCHIVES",
    "CorruptDataError",
    "default_cifar10_root",
    "default_cache_dir",
    "load_cifar10",
]

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
N_CLASSES = 10
SIDE = 32
N_VIS = 3 * SIDE * SIDE
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
JPEG_COPY = "CIFAR-10 (JPEG copy)"

# md5 of the files of the original cifar-10-python.tar.gz (published with the dataset)
PUBLISHED_BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}

#: Archives this module accepts, by md5: the file name it is looked for under, what is
#: inside (``layout`` "folder" or "batches", ``subdir`` the folder the layout is in), the
#: label its ``source`` starts with, and (for an image folder) the images per class.
KNOWN_ARCHIVES = {
    "9b9cb15fbd7d0a9e20935109c58d1911": {
        "name": "cifar10-jpeg.tar.gz",
        "layout": "folder",
        "subdir": "",
        "label": JPEG_COPY,
        "per_class": {"train": 5000, "test": 1000},
    },
    "c58f30108f718f92721af3b95e74349a": {
        "name": "cifar-10-python.tar.gz",
        "layout": "batches",
        "subdir": BATCHES_DIR,
        "label": "CIFAR-10 (python batches)",
        "per_class": None,
    },
}

CIFAR10_HINT = (
    "CIFAR-10 is read from the standard cifar-10-batches-py folder (from "
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, unpacked), from an image folder "
    "train/<class>/*.png|jpg and test/<class>/..., or from a known archive (the shared "
    "cifar10-jpeg.tar.gz); pass its directory as root= or set SDSNN_CIFAR10_DIR"
)

_MARKER = ".complete"
_CACHE_VERSION = 1


# --------------------------------------------------------------------------- paths


def _repo_dir() -> Path:
    # sdsnn_brian/data/cifar10.py -> sdsnn_brian/data -> sdsnn_brian -> repo
    return Path(__file__).resolve().parent.parent.parent


def default_cifar10_root() -> Path:
    """The directory CIFAR-10 is read from when no ``root`` is given.

    ``SDSNN_CIFAR10_DIR`` if set (it need not exist; reading then fails naming it), else the
    first existing of ``<repo>/../shared/data/cifar10`` and ``./data/cifar10``.  Raises
    :class:`FileNotFoundError` when none exists.
    """
    env = os.environ.get("SDSNN_CIFAR10_DIR")
    if env:
        return Path(env).expanduser()
    candidates = [_repo_dir().parent / "shared" / "data" / "cifar10", Path("data") / "cifar10"]
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError(
        "no CIFAR-10 directory found: SDSNN_CIFAR10_DIR is not set and none of "
        + ", ".join(str(c) for c in candidates) + " exists. " + CIFAR10_HINT
    )


def default_cache_dir() -> Path:
    """Where archives are extracted and decoded: ``$SDSNN_CACHE_DIR/data``, else
    ``~/.cache/sdsnn_brian/data``."""
    base = os.environ.get("SDSNN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "sdsnn_brian")
    return Path(base) / "data"


def _is_batches_dir(d: Path) -> bool:
    return any((d / n).is_file() for n in (META, TEST_BATCH) + TRAIN_BATCHES)


def _locate(root: Path) -> tuple[str, Path]:
    """``(layout, path)``: "batches" and the batches folder, "folder" and the folder holding
    train/ and test/, or "archive" and the archive file."""
    if root.is_file():
        if root.name.endswith((".tar.gz", ".tgz")):
            return "archive", root
        raise FileNotFoundError(f"{root} is a file but not a .tar.gz archive. " + CIFAR10_HINT)
    if not root.is_dir():
        raise FileNotFoundError(f"CIFAR-10 directory {root} does not exist. " + CIFAR10_HINT)
    if _is_batches_dir(root):
        return "batches", root
    if (root / BATCHES_DIR).is_dir():
        return "batches", root / BATCHES_DIR
    if (root / "train").is_dir() or (root / "test").is_dir():
        return "folder", root
    for info in KNOWN_ARCHIVES.values():
        if (root / info["name"]).is_file():
            return "archive", root / info["name"]
    raise FileNotFoundError(
        f"no CIFAR-10 data in {root}: looked for {BATCHES_DIR}/ (or its files), train/ and test/ "
        "class folders, and the archives " + ", ".join(i["name"] for i in KNOWN_ARCHIVES.values())
        + ". " + CIFAR10_HINT
    )


def _file_hash(path: Path, algo: str = "md5") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- python batches


class _ForbiddenGlobal(Exception):
    pass


def _np_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _reconstruct_ndarray(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise _ForbiddenGlobal(f"an array of type {subtype!r}")
    return _np_reconstruct()(np.ndarray, shape, dtype)


def _array_from_buffer(buf, dtype, shape, order="C"):
    return np.frombuffer(bytes(buf), dtype=dtype).reshape(shape, order=order)


def _latin1_bytes(text, encoding):
    # how protocol-2 pickles written by Python 3 store bytes
    if encoding not in ("latin1", "latin-1"):
        raise _ForbiddenGlobal(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_ndarray,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_ndarray,
    ("numpy.core.numeric", "_frombuffer"): _array_from_buffer,
    ("numpy._core.numeric", "_frombuffer"): _array_from_buffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
}


class _BatchUnpickler(pickle.Unpickler):
    """Builds only dicts, lists, strings, numbers and numpy arrays: any other global is refused
    when the pickle names it, before it could be called."""

    def find_class(self, module, name):
        f = _ALLOWED_GLOBALS.get((module, name))
        if f is None:
            raise _ForbiddenGlobal(f"{module}.{name}")
        return f


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise CorruptDataError(f"{path}: missing; the {BATCHES_DIR} folder is incomplete ({CIFAR10_HINT})")
    with open(path, "rb") as f:
        try:
            obj = _BatchUnpickler(f, encoding="latin1").load()
        except _ForbiddenGlobal as e:
            raise CorruptDataError(
                f"{path}: the pickle asks for {e}, which a CIFAR-10 batch never holds; refused "
                "without loading it (it may be damaged or not a CIFAR-10 file)"
            ) from None
        except Exception as e:  # noqa: BLE001 - every unpickling failure is a damaged file
            raise CorruptDataError(
                f"{path}: not a readable pickle ({type(e).__name__}: {e}); the file is cut short or "
                "damaged: restore it from a good copy"
            ) from None
        extra = len(f.read())
    if extra:
        raise CorruptDataError(f"{path}: {extra} bytes after the end of the pickle; the file is damaged")
    if not isinstance(obj, dict):
        raise CorruptDataError(f"{path}: holds a {type(obj).__name__}, not the dict of a CIFAR-10 batch")
    out = {}
    for k, v in obj.items():
        out[k.decode("latin1") if isinstance(k, bytes) else k] = v
    return out


def _names(value, path: Path, key: str) -> list[str]:
    if not isinstance(value, (list, tuple)):
        raise CorruptDataError(f"{path}: {key!r} is a {type(value).__name__}, not a list of names")
    return [v.decode("latin1") if isinstance(v, bytes) else str(v) for v in value]


def _read_meta(path: Path) -> int | None:
    meta = _unpickle(path)
    if "label_names" not in meta:
        raise CorruptDataError(f"{path}: no 'label_names'; not a CIFAR-10 batches.meta file")
    names = _names(meta["label_names"], path, "label_names")
    if tuple(names) != CLASSES:
        raise CorruptDataError(
            f"{path}: label_names are {names}, not the CIFAR-10 classes {list(CLASSES)} "
            "(CIFAR-100 or another dataset?)"
        )
    if "num_vis" in meta and meta["num_vis"] != N_VIS:
        raise CorruptDataError(f"{path}: num_vis is {meta['num_vis']!r}, expected {N_VIS} (3x32x32)")
    per_batch = meta.get("num_cases_per_batch")
    if per_batch is not None and (isinstance(per_batch, bool) or not isinstance(per_batch, int) or per_batch <= 0):
        raise CorruptDataError(f"{path}: num_cases_per_batch is {per_batch!r}, not a positive count")
    return per_batch


def _read_batch(path: Path, per_batch: int | None) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    for key in ("data", "labels"):
        if key not in batch:
            raise CorruptDataError(f"{path}: no {key!r} entry; not a CIFAR-10 batch (keys: {sorted(batch)})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != N_VIS:
        what = (f"a {data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
                else f"a {type(data).__name__}")
        raise CorruptDataError(f"{path}: 'data' is {what}, expected a uint8 array [n, {N_VIS}]")
    raw = batch["labels"]
    if not isinstance(raw, (list, tuple, np.ndarray)):
        raise CorruptDataError(f"{path}: 'labels' is a {type(raw).__name__}, not a list of ints")
    if isinstance(raw, np.ndarray):
        if raw.ndim != 1 or not np.issubdtype(raw.dtype, np.integer):
            raise CorruptDataError(f"{path}: 'labels' is a {raw.dtype} array of shape {raw.shape}, not 1-d ints")
        labels = raw.astype(np.int64)
    else:
        for i, v in enumerate(raw):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise CorruptDataError(f"{path}: label {i} is {v!r}, not an int")
        labels = np.array(raw, dtype=np.int64).reshape(-1)
    if len(labels) != len(data):
        raise CorruptDataError(f"{path}: {len(data)} images but {len(labels)} labels")
    bad = np.flatnonzero((labels < 0) | (labels >= N_CLASSES))
    if bad.size:
        raise CorruptDataError(
            f"{path}: label {int(labels[bad[0]])} at index {int(bad[0])} is out of range "
            f"0..{N_CLASSES - 1} ({bad.size} bad labels); the file is damaged"
        )
    if per_batch is not None and len(data) != per_batch:
        raise CorruptDataError(
            f"{path}: holds {len(data)} images, but batches.meta says every batch holds {per_batch}"
        )
    return data.reshape(len(data), 3, SIDE, SIDE), labels


def _read_batches(folder: Path, train: bool) -> tuple[np.ndarray, np.ndarray, bool]:
    """uint8 images [N, 3, 32, 32], int64 labels and whether every file read is the published one."""
    extra = sorted(p.name for p in folder.glob("data_batch_*") if p.name not in TRAIN_BATCHES)
    if extra:
        raise CorruptDataError(
            f"{folder / extra[0]}: CIFAR-10 has five training batches (data_batch_1..5); "
            f"unexpected {', '.join(extra)}"
        )
    per_batch = _read_meta(folder / META)
    names = TRAIN_BATCHES if train else (TEST_BATCH,)
    parts = [_read_batch(folder / n, per_batch) for n in names]
    published = True
    for n in (META,) + names:
        md5 = _file_hash(folder / n)
        if md5 != PUBLISHED_BATCH_MD5[n]:
            published = False
            warnings.warn(
                f"{folder / n}: md5 {md5} is not that of the published file ({PUBLISHED_BATCH_MD5[n]}); "
                "it may have been re-pickled, but the python batches carry no checksum, so damage "
                "inside them cannot be detected",
                UserWarning,
                stacklevel=3,
            )
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return images, labels, published


# --------------------------------------------------------------------------- image folder


def _scan_folder(split_dir: Path) -> tuple[list[Path], np.ndarray]:
    """Image files of ``split_dir/<class>/`` in class order then name order, and their labels."""
    if not split_dir.is_dir():
        raise FileNotFoundError(f"CIFAR-10 image folder {split_dir} does not exist. " + CIFAR10_HINT)
    present = set()
    for entry in sorted(split_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            raise CorruptDataError(
                f"{entry}: a file where only the class folders {', '.join(CLASSES)} belong"
            )
        if entry.name not in CLASSES:
            raise CorruptDataError(
                f"{entry}: {entry.name!r} is not a CIFAR-10 class; the class folders must be "
                + ", ".join(CLASSES)
            )
        present.add(entry.name)
    missing = [c for c in CLASSES if c not in present]
    if missing:
        raise CorruptDataError(f"{split_dir}: no folder for class {', '.join(missing)}; the copy is incomplete")
    files: list[Path] = []
    labels: list[int] = []
    for ci, c in enumerate(CLASSES):
        found = []
        for f in sorted((split_dir / c).iterdir()):
            if f.name.startswith("."):
                continue
            if not f.is_file() or f.suffix.lower() not in IMAGE_SUFFIXES:
                raise CorruptDataError(
                    f"{f}: not an image file (the class folders hold {', '.join(IMAGE_SUFFIXES)} files only)"
                )
            found.append(f)
        if not found:
            raise CorruptDataError(f"{split_dir / c}: holds no images; the copy is incomplete")
        files += found
        labels += [ci] * len(found)
    return files, np.array(labels, dtype=np.int64)


def _decode_images(files: list[Path]) -> np.ndarray:
    """uint8 [n, 3, 32, 32] from 32x32 RGB image files (Pillow)."""
    try:
        from PIL import Image, ImageFile
    except ImportError as e:  # pragma: no cover - matplotlib brings Pillow
        raise ImportError("reading CIFAR-10 image files needs Pillow (pip install pillow)") from e
    out = np.empty((len(files), 3, SIDE, SIDE), dtype=np.uint8)
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a cut file is an error, never grey padding
    try:
        for i, f in enumerate(files):
            try:
                with Image.open(f) as im:
                    if im.size != (SIDE, SIDE) or im.mode != "RGB":
                        raise CorruptDataError(
                            f"{f}: a {im.size[0]}x{im.size[1]} {im.mode} image; CIFAR-10 images are "
                            f"{SIDE}x{SIDE} RGB"
                        )
                    im.load()
                    out[i] = np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
            except CorruptDataError:
                raise
            except Exception as e:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError, ...
                raise CorruptDataError(
                    f"{f}: cannot be decoded as an image ({type(e).__name__}: {e}); the file is damaged"
                ) from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved
    return out


# --------------------------------------------------------------------------- archives


def _check_archive(path: Path) -> tuple[str, dict]:
    md5 = _file_hash(path)
    info = KNOWN_ARCHIVES.get(md5)
    if info is None:
        named = [(m, i) for m, i in KNOWN_ARCHIVES.items() if i["name"] == path.name]
        expected = f"expected {named[0][0]}" if named else "known: " + ", ".join(
            f"{i['name']} {m}" for m, i in KNOWN_ARCHIVES.items())
        raise CorruptDataError(
            f"{path}: md5 {md5} is not that of a known CIFAR-10 archive ({expected}); the file is "
            "damaged or not the archive it is named after: copy it again"
        )
    return md5, info


def _member_parts(archive: Path, member: tarfile.TarInfo) -> tuple[str, ...]:
    name = member.name
    parts = PurePosixPath(name).parts
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts \
            or "\\" in name:
        raise CorruptDataError(
            f"{archive}: member {name!r} would be written outside the extraction folder (absolute path "
            "or '..'); refused"
        )
    if not (member.isdir() or member.isreg()):
        raise CorruptDataError(
            f"{archive}: member {name!r} is a link or special file; only files and folders are extracted"
        )
    return tuple(p for p in parts if p not in ("", "."))


def _extract(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into the (new, empty) folder ``dest``, member by member, checking each
    member's path before writing it."""
    try:
        with tarfile.open(archive, "r:gz") as tf:
            for m in tf:
                parts = _member_parts(archive, m)
                if not parts:
                    continue
                target = dest.joinpath(*parts)
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(m)
                with open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise CorruptDataError(f"{archive}: cannot be extracted ({type(e).__name__}: {e})") from None


def _marker_ok(folder: Path, md5: str) -> bool:
    try:
        return (folder / _MARKER).read_text().strip() == md5
    except OSError:
        return False


def _extracted(archive: Path, md5: str, cache_dir: Path) -> Path:
    """The folder ``cache_dir/cifar10-<md5>`` with the archive's content, extracted if needed."""
    target = cache_dir / f"cifar10-{md5}"
    if _marker_ok(target, md5):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=cache_dir))
    try:
        _extract(archive, tmp)
        (tmp / _MARKER).write_text(md5 + "\n")  # last: the folder is complete
        if target.exists() and not _marker_ok(target, md5):  # an incomplete leftover
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".stale", dir=cache_dir))
            os.replace(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not _marker_ok(target, md5):  # not another process finishing first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _array_digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).data).hexdigest()


def _save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    with atomic_file(path, what="decoded CIFAR-10 cache") as f:
        np.save(f, arr)


def _decoded_paths(cache_dir: Path, md5: str, split: str) -> tuple[Path, Path, Path]:
    stem = cache_dir / f"cifar10-{md5}-{split}"
    return (stem.with_name(stem.name + "-images.npy"), stem.with_name(stem.name + "-labels.npy"),
            stem.with_name(stem.name + ".json"))


def _load_decoded(cache_dir: Path, md5: str, split: str):
    """The split's cached (images, labels), or None when there is no complete cache."""
    img_p, lab_p, mark_p = _decoded_paths(cache_dir, md5, split)
    if not mark_p.is_file():
        return None
    try:
        mark = json.loads(mark_p.read_text())
        images = np.load(img_p)
        labels = np.load(lab_p)
        ok = (mark.get("version") == _CACHE_VERSION and mark.get("archive_md5") == md5
              and images.dtype == np.uint8 and images.shape == (mark["n"], 3, SIDE, SIDE)
              and labels.shape == (mark["n"],)
              and mark["images_sha256"] == _array_digest(images)
              and mark["labels_sha256"] == _array_digest(labels))
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        warnings.warn(f"{img_p}: the decoded CIFAR-10 cache fails its check; decoding the images again",
                      RuntimeWarning, stacklevel=4)
        mark_p.unlink(missing_ok=True)
        return None
    return images, labels.astype(np.int64)


def _store_decoded(cache_dir: Path, md5: str, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    img_p, lab_p, mark_p = _decoded_paths(cache_dir, md5, split)
    _save_npy_atomic(img_p, images)
    _save_npy_atomic(lab_p, labels.astype(np.int64))
    mark = {"version": _CACHE_VERSION, "archive_md5": md5, "split": split, "n": int(len(images)),
            "images_sha256": _array_digest(images), "labels_sha256": _array_digest(labels.astype(np.int64))}
    write_json_atomic(mark_p, mark)  # last: the cache is complete


# --------------------------------------------------------------------------- dataset


def _balanced(labels: np.ndarray, limit: int | None) -> np.ndarray:
    """Indices of the class-balanced prefix (see the module docstring), in the split's order."""
    if limit is None:
        return np.arange(len(labels))
    keep = []
    for c in range(N_CLASSES):
        share = limit // N_CLASSES + (1 if c < limit % N_CLASSES else 0)
        keep.append(np.flatnonzero(labels == c)[:share])
    return np.sort(np.concatenate(keep))


class CIFAR10:
    """CIFAR-10 images and labels (see the module docstring for the layouts read).

    Parameters
    ----------
    root:
        A ``cifar-10-batches-py`` folder, a folder holding one (or ``train/`` and ``test/`` class
        folders, or a known archive), or a known ``.tar.gz`` archive; default
        :func:`default_cifar10_root`.
    train:
        True for the 50,000 training images, False for the 10,000 test images.
    limit:
        Keep a class-balanced prefix of this many images (``limit // 10`` per class).
    cache_dir:
        Where an archive is extracted and decoded (default :func:`default_cache_dir`).

    Attributes
    ----------
    images : float32 [N, 3, 32, 32] in [0, 1] (byte / 255), channels R, G, B.
    labels : int64 [N], 0..9, indices into ``classes``.
    classes : the ten class names in the standard order.
    source : which data this is, e.g. ``"CIFAR-10 (JPEG copy): <archive> (md5 ...)"``.
    layout : "batches", "folder" or "archive".
    n_available : images in the split before ``limit``.
    files : the image files read (image folder and archive), else None.
    """

    classes = CLASSES

    def __init__(self, root=None, train: bool = True, limit: int | None = None, cache_dir=None):
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0:
                raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
            limit = int(limit)
        root = default_cifar10_root() if root is None else Path(root).expanduser()
        self.root = root
        self.train = bool(train)
        self.limit = limit
        self.files = None
        self.published = None  # python batches: whether every file is the published one
        self.archive_md5 = None
        split = "train" if self.train else "test"
        layout, path = _locate(root)
        self.layout = layout
        if layout == "archive":
            cache = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
            md5, info = _check_archive(path)
            self.archive_md5 = md5
            label = info["label"]
            if info["layout"] == "batches":
                folder = _extracted(path, md5, cache) / info["subdir"]
                raw, labels, self.published = _read_batches(folder, self.train)
                self.n_available = len(labels)
                keep = _balanced(labels, limit)
                raw, labels = raw[keep], labels[keep]
            else:
                raw, labels = self._from_archive_folder(path, md5, info, cache, split, limit)
            self.source = f"{label}: {path} (md5 {md5})"
        elif layout == "batches":
            raw, labels, self.published = _read_batches(path, self.train)
            self.n_available = len(labels)
            keep = _balanced(labels, limit)
            raw, labels = raw[keep], labels[keep]
            checked = "the published files" if self.published else "md5 differs from the published files"
            self.source = f"CIFAR-10 (python batches): {path} ({checked})"
        else:
            files, labels = _scan_folder(path / split)
            self.n_available = len(labels)
            keep = _balanced(labels, limit)
            self.files = [files[i] for i in keep]
            labels = labels[keep]
            raw = _decode_images(self.files)
            self.source = f"CIFAR-10 (image folder): {path}"
        self.images = raw.astype(np.float32) / np.float32(255.0)
        self.labels = np.asarray(labels, dtype=np.int64)

    def _from_archive_folder(self, path, md5, info, cache, split, limit):
        folder = _extracted(path, md5, cache) / info["subdir"] / split
        files, labels = _scan_folder(folder)
        want = info["per_class"][split] if info["per_class"] else None
        if want is not None:
            counts = np.bincount(labels, minlength=N_CLASSES)
            if np.any(counts != want):
                c = int(np.flatnonzero(counts != want)[0])
                raise CorruptDataError(
                    f"{folder / CLASSES[c]}: {counts[c]} images, the archive {path.name} holds {want} per "
                    f"class; the extracted copy in {cache} was changed: delete it to extract again"
                )
        self.n_available = len(labels)
        keep = _balanced(labels, limit)
        self.files = [files[i] for i in keep]
        cached = _load_decoded(cache, md5, split)
        if cached is not None and np.array_equal(cached[1], labels):
            return cached[0][keep], labels[keep]
        if limit is not None:  # decode only what is kept; the full split is cached when read whole
            return _decode_images(self.files), labels[keep]
        raw = _decode_images(files)
        _store_decoded(cache, md5, split, raw, labels)
        return raw, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            i = int(index)
            n = len(self.labels)
            if i < -n or i >= n:
                raise IndexError(f"index {i} out of range for CIFAR-10 of {n} examples")
            return self.images[i], int(self.labels[i])
        raise TypeError(f"CIFAR10 indices must be integers, got {type(index).__name__}")

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"CIFAR10({split}, n={len(self)} of {self.n_available}, {self.source})"


def load_cifar10(root=None, train: bool = True, limit: int | None = None, cache_dir=None):
    """``(images float32 [N, 3, 32, 32] in [0, 1], labels int64 [N])``; see :class:`CIFAR10`."""
    ds = CIFAR10(root=root, train=train, limit=limit, cache_dir=cache_dir)
    return ds.images, ds.labels
