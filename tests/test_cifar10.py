"""CIFAR-10 loader (sdsnn_brian.data.cifar10): python batches written here in the published format
(Python 3 pickles with bytes keys, and a Python 2 pickle built opcode by opcode), image folders
written with Pillow, and the shared JPEG archive (md5, safe and atomic extraction, decoded cache).
Every reader returns the data exactly or raises CorruptDataError naming the file."""

import io
import os
import pickle
import shutil
import struct
import tarfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from sdsnn_brian.data import CIFAR10
from sdsnn_brian.data import cifar10 as cifar_mod
from sdsnn_brian.data.errors import CorruptDataError

Image = pytest.importorskip("PIL.Image")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
ARCHIVE = SHARED / "cifar10-jpeg.tar.gz"
needs_archive = pytest.mark.skipif(not ARCHIVE.is_file(), reason=f"shared CIFAR-10 archive not at {ARCHIVE}")
PER_BATCH = 20


# --------------------------------------------------------------------------- python batches


def make_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random CHW pixels and labels 0..9 (every class present)."""
    rng = np.random.default_rng(seed)
    pix = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = rng.permutation(np.arange(n) % 10)
    return pix, labels


def batch_dict(pix, labels, i):
    # the format: 1024 red, then 1024 green, then 1024 blue bytes per row
    rows = np.concatenate([pix[:, c].reshape(len(pix), 1024) for c in range(3)], axis=1)
    return {b"batch_label": f"training batch {i} of 5".encode(), b"labels": [int(v) for v in labels],
            b"data": rows, b"filenames": [f"img_{i}_{k}.png".encode() for k in range(len(pix))]}


META = {b"num_cases_per_batch": PER_BATCH, b"label_names": [c.encode() for c in cifar_mod.CLASSES],
        b"num_vis": 3072}


def write_batches(folder: Path, seed=0, dump=None) -> dict:
    """Five training batches, a test batch and batches.meta; returns the pixels and labels written."""
    dump = dump or (lambda obj, f: pickle.dump(obj, f, protocol=2))
    folder.mkdir(parents=True, exist_ok=True)
    train_pix, train_lab = make_split(5 * PER_BATCH, seed)
    test_pix, test_lab = make_split(PER_BATCH, seed + 1)
    for i in range(5):
        s = slice(i * PER_BATCH, (i + 1) * PER_BATCH)
        with open(folder / f"data_batch_{i + 1}", "wb") as f:
            dump(batch_dict(train_pix[s], train_lab[s], i + 1), f)
    with open(folder / "test_batch", "wb") as f:
        dump(batch_dict(test_pix, test_lab, 0), f)
    with open(folder / "batches.meta", "wb") as f:
        dump(META, f)
    return {"train": (train_pix, train_lab), "test": (test_pix, test_lab)}


def load(*args, **kw):
    """CIFAR10(...) with the 'not the published md5' warning of hand-made batches silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not that of the published file")
        return CIFAR10(*args, **kw)


def check_exact(ds, pix, labels):
    assert ds.images.dtype == np.float32 and ds.images.shape == pix.shape
    np.testing.assert_array_equal(ds.images, pix.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(np.rint(ds.images * 255).astype(np.uint8), pix)
    assert ds.labels.dtype == np.int64
    np.testing.assert_array_equal(ds.labels, labels)


def py2_pickle(obj) -> bytes:
    """What Python 2's cPickle (protocol 2) writes for the batches: str as BINSTRING, numpy arrays
    through numpy.core.multiarray._reconstruct (the real files were made this way)."""
    out = bytearray(b"\x80\x02")

    def s(b: bytes):
        out.extend(b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b)

    def i(v: int):
        out.extend(b"K" + bytes([v]) if 0 <= v < 256 else b"J" + struct.pack("<i", v))

    def emit(o):
        if isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                emit(k)
                emit(v)
            out.extend(b"u")
        elif isinstance(o, list):
            out.extend(b"](")
            for v in o:
                emit(v)
            out.extend(b"e")
        elif isinstance(o, bytes):
            s(o)
        elif isinstance(o, int):
            i(o)
        elif isinstance(o, np.ndarray):
            assert o.dtype == np.uint8 and o.ndim == 2
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            i(0)
            out.extend(b"\x85")
            s(b"b")
            out.extend(b"\x87R(")
            i(1)
            i(o.shape[0])
            i(o.shape[1])
            out.extend(b"\x86cnumpy\ndtype\n")
            s(b"u1")
            i(0)
            i(1)
            out.extend(b"\x87R(")
            i(3)
            s(b"|")
            out.extend(b"NNN")
            i(-1)
            i(-1)
            i(0)
            out.extend(b"tb\x89")
            s(o.tobytes())
            out.extend(b"tb")
        else:
            raise TypeError(type(o))

    emit(obj)
    out.extend(b".")
    return bytes(out)


@pytest.mark.parametrize("style", ["py3-protocol2", "py3-protocol5", "py2"])
def test_batches_load_exactly(tmp_path, style):
    dumps = {"py3-protocol2": lambda o, f: pickle.dump(o, f, protocol=2),
             "py3-protocol5": lambda o, f: pickle.dump(o, f, protocol=5),
             "py2": lambda o, f: f.write(py2_pickle(o))}
    folder = tmp_path / "cifar-10-batches-py"
    written = write_batches(folder, dump=dumps[style])
    with pytest.warns(UserWarning, match="not that of the published file"):
        train = CIFAR10(tmp_path, train=True)  # the folder holding cifar-10-batches-py
    check_exact(train, *written["train"])
    assert train.layout == "batches" and train.published is False
    assert "python batches" in train.source and train.classes == cifar_mod.CLASSES
    test = load(folder, train=False)  # the batches folder itself
    check_exact(test, *written["test"])
    img, lab = test[3]
    assert img.shape == (3, 32, 32) and lab == written["test"][1][3]
    # channel order: the first 1024 bytes of a row are the red plane
    row = batch_dict(*written["test"], 0)[b"data"][0]
    np.testing.assert_array_equal(np.rint(test.images[0, 0] * 255).astype(np.uint8).ravel(), row[:1024])
    np.testing.assert_array_equal(np.rint(test.images[0, 2] * 255).astype(np.uint8).ravel(), row[2048:])


def test_limit_is_class_balanced_prefix(tmp_path):
    written = write_batches(tmp_path)
    pix, labels = written["train"]
    ds = load(tmp_path, limit=23)
    assert len(ds) == 23 and ds.n_available == 100
    counts = np.bincount(ds.labels, minlength=10)
    np.testing.assert_array_equal(counts, [3, 3, 3] + [2] * 7)
    keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:counts[c]] for c in range(10)]))
    check_exact(ds, pix[keep], labels[keep])
    assert len(load(tmp_path, limit=0)) == 0
    with pytest.raises(ValueError, match="limit"):
        CIFAR10(tmp_path, limit=-1)


def test_damaged_pickles_name_the_file(tmp_path):
    folder = tmp_path / "b"
    write_batches(folder)
    good = (folder / "data_batch_2").read_bytes()

    (folder / "data_batch_2").write_bytes(good[: len(good) // 2])  # cut
    with pytest.raises(CorruptDataError, match=r"data_batch_2: not a readable pickle"):
        load(folder)
    (folder / "data_batch_2").write_bytes(b"\x00\xff" + good[2:])  # damaged opcodes
    with pytest.raises(CorruptDataError, match=r"data_batch_2: not a readable pickle"):
        load(folder)
    (folder / "data_batch_2").write_bytes(good + b"junk")  # bytes after STOP
    with pytest.raises(CorruptDataError, match=r"data_batch_2: 4 bytes after the end"):
        load(folder)
    (folder / "data_batch_2").write_bytes(good)
    load(folder)  # restored

    (folder / "data_batch_3").unlink()
    with pytest.raises(CorruptDataError, match=r"data_batch_3: missing"):
        load(folder)
    assert len(load(folder, train=False)) == PER_BATCH  # the test split does not need it


def test_batch_contents_are_validated(tmp_path):
    folder = tmp_path / "b"
    written = write_batches(folder)
    pix, lab = written["train"]

    def rewrite(name, d):
        with open(folder / name, "wb") as f:
            pickle.dump(d, f, protocol=2)

    bad = batch_dict(pix[:PER_BATCH], lab[:PER_BATCH], 1)
    bad[b"labels"][7] = 10
    rewrite("data_batch_1", bad)
    with pytest.raises(CorruptDataError, match=r"data_batch_1: label 10 at index 7 is out of range"):
        load(folder)
    bad = batch_dict(pix[:PER_BATCH - 1], lab[:PER_BATCH - 1], 1)  # 19 rows, meta says 20
    rewrite("data_batch_1", bad)
    with pytest.raises(CorruptDataError, match=r"data_batch_1: holds 19 images, but batches.meta"):
        load(folder)
    bad = batch_dict(pix[:PER_BATCH], lab[:PER_BATCH], 1)
    bad[b"data"] = bad[b"data"].astype(np.int16)
    rewrite("data_batch_1", bad)
    with pytest.raises(CorruptDataError, match=r"data_batch_1: 'data' is a int16 array"):
        load(folder)
    bad[b"data"] = bad[b"data"].astype(np.uint8)[:, :3000]
    rewrite("data_batch_1", bad)
    with pytest.raises(CorruptDataError, match=r"data_batch_1: 'data' is a uint8 array of shape \(20, 3000\)"):
        load(folder)
    rewrite("data_batch_1", batch_dict(pix[:PER_BATCH], lab[:PER_BATCH], 1))
    rewrite("data_batch_6", batch_dict(pix[:PER_BATCH], lab[:PER_BATCH], 6))
    with pytest.raises(CorruptDataError, match=r"data_batch_6: CIFAR-10 has five training batches"):
        load(folder)
    (folder / "data_batch_6").unlink()
    rewrite("batches.meta", {**META, b"label_names": [b"apple"] * 10})
    with pytest.raises(CorruptDataError, match=r"batches.meta: label_names are"):
        load(folder)
    (folder / "batches.meta").unlink()
    with pytest.raises(CorruptDataError, match=r"batches.meta: missing"):
        load(folder, train=False)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_forbidden_global_is_refused_without_running(tmp_path, protocol):
    folder = tmp_path / "b"
    write_batches(folder)
    marker = tmp_path / "pwned"
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": _Evil(marker), b"labels": []}, f, protocol=protocol)
    with pytest.raises(CorruptDataError, match=r"test_batch: the pickle asks for (posix|os|nt)\.system.*refused"):
        load(folder, train=False)
    assert not marker.exists()
    # a handwritten one, and a numpy constructor asked for a foreign subtype
    (folder / "test_batch").write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(CorruptDataError, match=r"builtins\.eval"):
        load(folder, train=False)
    (folder / "test_batch").write_bytes(
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\ndtype\nK\x00\x85U\x01b\x87R.")
    with pytest.raises(CorruptDataError, match=r"test_batch: the pickle asks for an array of type"):
        load(folder, train=False)


# --------------------------------------------------------------------------- image folders


def write_folder(root: Path, per_class: int, seed: int = 0, split: str = "train", fmt="PNG") -> tuple:
    rng = np.random.default_rng(seed)
    pix = rng.integers(0, 256, size=(10 * per_class, 3, 32, 32), dtype=np.uint8)
    labels = np.repeat(np.arange(10), per_class)
    for k, (p, c) in enumerate(zip(pix, labels)):
        d = root / split / cifar_mod.CLASSES[c]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(p.transpose(1, 2, 0), "RGB").save(d / f"{k % per_class:04d}.{fmt.lower()}", fmt)
    return pix, labels


def test_image_folder_loads_exactly(tmp_path):
    pix, labels = write_folder(tmp_path, 3)
    tpix, tlabels = write_folder(tmp_path, 2, seed=1, split="test")
    ds = CIFAR10(tmp_path, train=True)
    check_exact(ds, pix, labels)
    assert ds.layout == "folder" and "image folder" in ds.source
    assert [f.relative_to(tmp_path).as_posix() for f in ds.files[:4]] == [
        "train/airplane/0000.png", "train/airplane/0001.png", "train/airplane/0002.png",
        "train/automobile/0000.png"]
    check_exact(CIFAR10(tmp_path, train=False), tpix, tlabels)
    small = CIFAR10(tmp_path, limit=12)  # two classes get a second image
    keep = np.array([0, 1, 3, 4] + [3 * c for c in range(2, 10)])
    check_exact(small, pix[keep], labels[keep])


def test_trainer_takes_it_channel_major(tmp_path):
    from sdsnn_brian.trainer import as_arrays

    pix, labels = write_folder(tmp_path, 1)
    x, y = as_arrays(CIFAR10(tmp_path), n_in=3072, n_classes=10)
    assert x.shape == (10, 3072)  # flattened c*H*W + y*W + x, as the conv layers index their input
    np.testing.assert_array_equal(np.rint(x * 255).astype(np.uint8), pix.reshape(10, -1))
    np.testing.assert_array_equal(y, labels)


def test_image_folder_errors_name_the_file(tmp_path):
    write_folder(tmp_path, 2)
    bird = tmp_path / "train" / "bird"
    good = (bird / "0001.png").read_bytes()

    (bird / "0001.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(CorruptDataError, match=r"bird/0001.png: cannot be decoded"):
        CIFAR10(tmp_path)
    (bird / "0001.png").write_bytes(b"not an image at all")
    with pytest.raises(CorruptDataError, match=r"bird/0001.png: cannot be decoded"):
        CIFAR10(tmp_path)
    Image.new("RGB", (33, 32)).save(bird / "0001.png")
    with pytest.raises(CorruptDataError, match=r"bird/0001.png: a 33x32 RGB image"):
        CIFAR10(tmp_path)
    Image.new("L", (32, 32)).save(bird / "0001.png")
    with pytest.raises(CorruptDataError, match=r"bird/0001.png: a 32x32 L image"):
        CIFAR10(tmp_path)
    (bird / "0001.png").write_bytes(good)
    (bird / "notes.txt").write_text("x")
    with pytest.raises(CorruptDataError, match=r"bird/notes.txt: not an image file"):
        CIFAR10(tmp_path)
    (bird / "notes.txt").unlink()
    CIFAR10(tmp_path)

    (tmp_path / "train" / "ship").rename(tmp_path / "train" / "boat")
    with pytest.raises(CorruptDataError, match=r"train/boat: 'boat' is not a CIFAR-10 class"):
        CIFAR10(tmp_path)
    shutil.rmtree(tmp_path / "train" / "boat")
    with pytest.raises(CorruptDataError, match=r"no folder for class ship"):
        CIFAR10(tmp_path)
    (tmp_path / "train" / "ship").mkdir()
    with pytest.raises(CorruptDataError, match=r"train/ship: holds no images"):
        CIFAR10(tmp_path)


def test_truncated_jpeg_is_an_error_even_if_pillow_pads(tmp_path):
    from PIL import ImageFile

    write_folder(tmp_path, 1, fmt="JPEG")
    f = tmp_path / "train" / "cat" / "0000.jpeg"
    f.write_bytes(f.read_bytes()[:-200])
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with pytest.raises(CorruptDataError, match=r"cat/0000.jpeg: cannot be decoded"):
            CIFAR10(tmp_path)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


# --------------------------------------------------------------------------- archives


def make_tar(path: Path, members: dict, extra=()) -> str:
    """A .tar.gz of ``{name: bytes}`` (plus raw TarInfo entries); returns its md5."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        for ti in extra:
            tf.addfile(ti)
    return cifar_mod._file_hash(path)


def folder_members(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_wrong_md5_is_refused(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    make_tar(d / "cifar10-jpeg.tar.gz", {"train/airplane/0000.png": b"x"})
    with pytest.raises(CorruptDataError, match=r"cifar10-jpeg.tar.gz: md5 [0-9a-f]{32} is not that of a known "
                                               r"CIFAR-10 archive \(expected 9b9cb15fbd7d0a9e20935109c58d1911\)"):
        CIFAR10(d, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("bad", ["../evil.txt", "/tmp/sdsnn-cifar-evil.txt", "train/../../evil.txt", "link"])
def test_unsafe_tar_member_is_refused(tmp_path, monkeypatch, bad):
    src = tmp_path / "src"
    write_folder(src, 1)
    members = folder_members(src)
    extra = ()
    if bad == "link":
        ti = tarfile.TarInfo("train/airplane/0001.png")
        ti.type, ti.linkname = tarfile.SYMTYPE, "/etc/passwd"
        extra = (ti,)
    else:
        members[bad] = b"evil"
    arc = tmp_path / "arc.tar.gz"
    md5 = make_tar(arc, members, extra)
    monkeypatch.setitem(cifar_mod.KNOWN_ARCHIVES, md5, {"name": "x.tar.gz", "layout": "folder", "subdir": "",
                                                        "label": "test archive", "per_class": None})
    cache = tmp_path / "deep" / "cache"
    what = "link or special file" if bad == "link" else "outside the extraction folder"
    with pytest.raises(CorruptDataError, match=rf"arc.tar.gz: member .* {what}"):
        CIFAR10(arc, cache_dir=cache)
    assert not (tmp_path / "deep" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/sdsnn-cifar-evil.txt").exists()
    assert os.listdir(cache) == []  # the temporary folder is gone, no cache folder was made


def test_archive_extraction_is_atomic_and_cached(tmp_path, monkeypatch):
    src = tmp_path / "src"
    pix, labels = write_folder(src, 2, split="test")
    arc = tmp_path / "small.tar.gz"
    md5 = make_tar(arc, folder_members(src))
    monkeypatch.setitem(cifar_mod.KNOWN_ARCHIVES, md5, {"name": "small.tar.gz", "layout": "folder", "subdir": "",
                                                        "label": "CIFAR-10 (test copy)",
                                                        "per_class": {"train": 2, "test": 2}})
    cache = tmp_path / "cache"
    # a half-extracted folder (no completion marker) is never taken for complete
    half = cache / f"cifar10-{md5}" / "test" / "airplane"
    half.mkdir(parents=True)
    (half / "0000.png").write_bytes(b"half")
    ds = CIFAR10(tmp_path / "small.tar.gz", train=False, cache_dir=cache)
    check_exact(ds, pix, labels)
    assert ds.source == f"CIFAR-10 (test copy): {arc} (md5 {md5})"
    assert (cache / f"cifar10-{md5}" / ".complete").read_text().strip() == md5
    assert sorted(p.name for p in cache.iterdir()) == [
        f"cifar10-{md5}", f"cifar10-{md5}-test-images.npy", f"cifar10-{md5}-test-labels.npy",
        f"cifar10-{md5}-test.json"]
    # served from the decoded cache; a damaged cache is decoded again, with a warning
    img_p = cache / f"cifar10-{md5}-test-images.npy"
    np.testing.assert_array_equal(np.load(img_p), pix)
    raw = bytearray(img_p.read_bytes())
    raw[-5] ^= 0xFF
    img_p.write_bytes(bytes(raw))
    with pytest.warns(RuntimeWarning, match="fails its check"):
        check_exact(CIFAR10(arc, train=False, cache_dir=cache), pix, labels)
    check_exact(CIFAR10(arc, train=False, cache_dir=cache), pix, labels)
    # an extracted copy that lost a file is an error, not a shorter split
    (cache / f"cifar10-{md5}" / "test" / "dog" / "0001.png").unlink()
    with pytest.raises(CorruptDataError, match=r"test/dog: 1 images, the archive small.tar.gz holds 2"):
        CIFAR10(arc, train=False, cache_dir=cache)


def test_batches_archive(tmp_path, monkeypatch):
    written = write_batches(tmp_path / "src" / "cifar-10-batches-py")
    arc = tmp_path / "py.tar.gz"
    md5 = make_tar(arc, folder_members(tmp_path / "src"))
    monkeypatch.setitem(cifar_mod.KNOWN_ARCHIVES, md5, {**cifar_mod.KNOWN_ARCHIVES[
        "c58f30108f718f92721af3b95e74349a"]})
    check_exact(load(arc, train=False, cache_dir=tmp_path / "c"), *written["test"])


def test_default_root_from_environment(tmp_path, monkeypatch):
    written = write_batches(tmp_path / "cifar-10-batches-py")
    monkeypatch.setenv("SDSNN_CIFAR10_DIR", str(tmp_path))
    check_exact(load(train=False), *written["test"])
    monkeypatch.setenv("SDSNN_CIFAR10_DIR", str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="nothing does not exist"):
        CIFAR10()
    monkeypatch.setenv("SDSNN_CACHE_DIR", str(tmp_path / "c"))
    assert cifar_mod.default_cache_dir() == tmp_path / "c" / "data"


# --------------------------------------------------------------------------- the shared JPEG copy


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cifar-cache")


@needs_archive
def test_shared_archive_limit(shared_cache):
    t0 = time.perf_counter()
    ds = CIFAR10(SHARED, train=False, limit=100, cache_dir=shared_cache)
    elapsed = time.perf_counter() - t0
    print(f"CIFAR-10 (JPEG copy): md5 + extraction + 100 test images decoded in {elapsed:.1f} s")
    assert ds.layout == "archive" and ds.archive_md5 == "9b9cb15fbd7d0a9e20935109c58d1911"
    assert "CIFAR-10 (JPEG copy)" in ds.source
    assert ds.images.shape == (100, 3, 32, 32) and ds.images.dtype == np.float32
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0 and ds.images.std() > 0.1
    np.testing.assert_array_equal(np.bincount(ds.labels, minlength=10), [10] * 10)
    assert ds.n_available == 10000
    assert [f.relative_to(shared_cache / f"cifar10-{ds.archive_md5}").as_posix() for f in ds.files[:2]] == [
        "test/airplane/0000.jpg", "test/airplane/0001.jpg"]
    assert (shared_cache / f"cifar10-{ds.archive_md5}" / ".complete").is_file()


@needs_archive
def test_shared_archive_full_test_split_cached(shared_cache):
    limited = CIFAR10(SHARED, train=False, limit=100, cache_dir=shared_cache)  # extracted by now
    t0 = time.perf_counter()
    full = CIFAR10(SHARED, train=False, cache_dir=shared_cache)
    t1 = time.perf_counter()
    again = CIFAR10(SHARED, train=False, limit=100, cache_dir=shared_cache)
    t2 = time.perf_counter()
    print(f"CIFAR-10 (JPEG copy): 10,000 test images decoded in {t1 - t0:.1f} s, read from the cache in "
          f"{t2 - t1:.1f} s")
    assert len(full) == 10000 and full.images.shape == (10000, 3, 32, 32)
    np.testing.assert_array_equal(np.bincount(full.labels, minlength=10), [1000] * 10)
    # the decoded cache and direct decoding give the same images
    np.testing.assert_array_equal(again.images, limited.images)
    np.testing.assert_array_equal(again.labels, limited.labels)
    idx = [full.files.index(f) for f in limited.files]
    np.testing.assert_array_equal(full.images[idx], limited.images)
