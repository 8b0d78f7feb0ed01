"""MNIST idx loader: the shared real data, synthetic files, and every error case."""

import gzip
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from sdsnn_brian.data import MNIST, TruncatedDataWarning, load_mnist
from sdsnn_brian.data.errors import CorruptDataError
from sdsnn_brian.data import mnist as mnist_mod

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared MNIST not at {SHARED}")


# --------------------------------------------------------------------------- synthetic files


def idx_images(n, rows=28, cols=28, magic=0x803, seed=0, declared=None):
    rng = np.random.default_rng(seed)
    pix = rng.integers(0, 256, size=(n, rows, cols), dtype=np.uint8)
    head = struct.pack(">IIII", magic, n if declared is None else declared, rows, cols)
    return head + pix.tobytes(), pix


def idx_labels(labels, magic=0x801, declared=None):
    labels = np.asarray(labels, dtype=np.uint8)
    head = struct.pack(">II", magic, len(labels) if declared is None else declared)
    return head + labels.tobytes()


def write_set(d: Path, prefix="train", n=12, img_suffix=".gz", lab_suffix=".gz", labels=None, seed=0):
    raw, pix = idx_images(n, seed=seed)
    labels = np.arange(n) % 10 if labels is None else np.asarray(labels)
    lab = idx_labels(labels)
    for name, data, suf in ((f"{prefix}-images-idx3-ubyte", raw, img_suffix), (f"{prefix}-labels-idx1-ubyte", lab, lab_suffix)):
        (d / (name + suf)).write_bytes(gzip.compress(data) if suf.endswith(".gz") else data)
    return pix, labels


def sync_flushed_prefix(raw: bytes, keep: int) -> bytes:
    """Compressed bytes that decompress to exactly raw[:keep] and then stop (a cut stream)."""
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(raw[:keep]) + c.flush(zlib.Z_SYNC_FLUSH)


# --------------------------------------------------------------------------- shared real data


@needs_shared
def test_shared_train_partial_reads_6309_with_warning():
    with pytest.warns(TruncatedDataWarning, match=r"6309 of 60000"):
        ds = MNIST(SHARED, train=True)
    assert len(ds) == ds.n_read == 6309
    assert ds.truncated and ds.n_declared == 60000
    assert ds.source["images"].name == "train-images-idx3-ubyte.partial.gz"
    assert ds.images.shape == (6309, 784) and ds.images.dtype == np.float32
    assert ds.labels.shape == (6309,) and ds.labels.dtype == np.int64
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    assert set(np.unique(ds.labels)) == set(range(10))
    assert ds.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the well-known first digits
    x, y = ds[0]
    assert x.shape == (784,) and x.dtype == np.float32 and isinstance(y, int) and y == 5
    # every image has some ink, and values are multiples of 1/255
    assert (ds.images.sum(1) > 0).all()
    assert np.allclose(np.round(ds.images[:50] * 255), ds.images[:50] * 255, atol=1e-4)


@needs_shared
def test_shared_test_set_complete_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = MNIST(SHARED, train=False)
    assert len(ds) == 10000 and not ds.truncated
    assert ds.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert ds.labels.min() == 0 and ds.labels.max() == 9
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    assert np.bincount(ds.labels, minlength=10).min() > 800


@needs_shared
def test_shared_limit_stops_early_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, y = load_mnist(SHARED, train=True, limit=100)
    assert x.shape == (100, 784) and y.shape == (100,)
    with pytest.warns(TruncatedDataWarning):
        full = MNIST(SHARED, train=True)
    np.testing.assert_array_equal(x, full.images[:100])


@needs_shared
def test_env_var_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("SDSNN_MNIST_DIR", str(tmp_path))
    pix, labels = write_set(tmp_path, "t10k", n=3)
    ds = MNIST(train=False)
    assert ds.root == tmp_path and len(ds) == 3
    monkeypatch.delenv("SDSNN_MNIST_DIR")
    assert mnist_mod.default_mnist_root().resolve() == SHARED.resolve()


# --------------------------------------------------------------------------- synthetic complete / truncated


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_synthetic_complete_roundtrip(tmp_path, suffix):
    pix, labels = write_set(tmp_path, n=12, img_suffix=suffix, lab_suffix=suffix)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = MNIST(tmp_path, train=True)
    assert not ds.truncated and len(ds) == 12
    np.testing.assert_array_equal(ds.images, pix.reshape(12, 784).astype(np.float32) / 255)
    np.testing.assert_array_equal(np.round(ds.images * 255).astype(np.uint8), pix.reshape(12, -1))
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds[-1][1] == int(labels[-1])
    with pytest.raises(IndexError):
        ds[12]


def test_plain_file_preferred_over_gz(tmp_path):
    write_set(tmp_path, n=4, img_suffix="", lab_suffix="")
    write_set(tmp_path, n=6, img_suffix=".gz", lab_suffix=".gz", seed=1)
    ds = MNIST(tmp_path)
    assert len(ds) == 4 and ds.source["images"].name == "train-images-idx3-ubyte"


def test_truncated_gzip_keeps_whole_images(tmp_path):
    raw, pix = idx_images(10)
    cut = 16 + 5 * 784 + 300  # five whole images and part of the sixth
    (tmp_path / "train-images-idx3-ubyte.partial.gz").write_bytes(sync_flushed_prefix(raw, cut))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_labels(np.arange(10) % 10)))
    with pytest.warns(TruncatedDataWarning, match=r"read 5 of 10 images"):
        ds = MNIST(tmp_path)
    assert len(ds) == 5 and ds.truncated and ds.n_declared == 10
    np.testing.assert_array_equal(np.round(ds.images * 255).astype(np.uint8), pix[:5].reshape(5, -1))
    np.testing.assert_array_equal(ds.labels, np.arange(5))


def test_truncated_gzip_with_limit_inside_available_is_silent(tmp_path):
    raw, pix = idx_images(10)
    (tmp_path / "train-images-idx3-ubyte.partial.gz").write_bytes(sync_flushed_prefix(raw, 16 + 5 * 784 + 1))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_labels(np.arange(10) % 10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = MNIST(tmp_path, limit=3)
    assert len(ds) == 3 and not ds.truncated
    with pytest.warns(TruncatedDataWarning, match=r"read 5 of 8 images"):
        assert len(MNIST(tmp_path, limit=8)) == 5


def test_truncated_plain_file(tmp_path):
    raw, pix = idx_images(6)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw[: 16 + 4 * 784 + 10])
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_labels(np.arange(6)))
    with pytest.warns(TruncatedDataWarning, match=r"4 of 6"):
        ds = MNIST(tmp_path)
    assert len(ds) == 4


def test_truncated_labels_pair_to_smaller(tmp_path):
    raw, pix = idx_images(8)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw)
    lab = idx_labels(np.arange(8) % 10)
    (tmp_path / "train-labels-idx1-ubyte.partial.gz").write_bytes(sync_flushed_prefix(lab, 8 + 3))
    with pytest.warns(TruncatedDataWarning, match=r"3 of 8 labels"):
        ds = MNIST(tmp_path)
    assert len(ds) == 3 and ds.truncated
    np.testing.assert_array_equal(ds.labels, [0, 1, 2])


def test_damaged_gzip_stream_is_an_error_not_a_truncation(tmp_path):
    raw, pix = idx_images(20)
    good = sync_flushed_prefix(raw, 16 + 7 * 784)
    bad = good + b"\xff" * 64  # garbage after a valid prefix: an invalid deflate block
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(bad)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_labels(np.arange(20) % 10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no TruncatedDataWarning: a damaged stream is not a cut one
        with pytest.raises(CorruptDataError, match=r"train-images-idx3-ubyte.gz.*invalid deflate data"):
            MNIST(tmp_path)


# --------------------------------------------------------------------------- errors


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MNIST(tmp_path / "nope")


def test_missing_file_names_candidates_and_source(tmp_path):
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_labels([1, 2]))
    with pytest.raises(FileNotFoundError) as ei:
        MNIST(tmp_path)
    msg = str(ei.value)
    for name in ("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte.partial.gz"):
        assert name in msg
    assert str(tmp_path) in msg and "SDSNN_MNIST_DIR" in msg and "mnist" in msg.lower()


def test_no_default_root(monkeypatch, tmp_path):
    monkeypatch.delenv("SDSNN_MNIST_DIR", raising=False)
    monkeypatch.setattr(mnist_mod, "_default_candidates", lambda: [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(FileNotFoundError, match="SDSNN_MNIST_DIR"):
        MNIST()


def test_bad_magic(tmp_path):
    raw, _ = idx_images(2, magic=0x801)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_labels([1, 2]))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*magic"):
        MNIST(tmp_path)


def test_bad_label_magic(tmp_path):
    raw, _ = idx_images(2)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_labels([1, 2], magic=0x803)))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz.*magic"):
        MNIST(tmp_path)


def test_wrong_dims(tmp_path):
    raw, _ = idx_images(2, rows=32, cols=32)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(raw)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_labels([1, 2]))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.*32x32.*28x28"):
        MNIST(tmp_path, train=False)


def test_too_short_header(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(struct.pack(">II", 0x803, 5))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_labels([1]))
    with pytest.raises(ValueError, match="header"):
        MNIST(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00")
    with pytest.raises(ValueError, match="too short"):
        MNIST(tmp_path)


def test_fewer_labels_in_complete_file(tmp_path):
    raw, _ = idx_images(5)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_labels([1, 2, 3]))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.*3 labels.*5 images"):
        MNIST(tmp_path)


def test_fewer_labels_than_read_from_truncated_images(tmp_path):
    raw, _ = idx_images(10)
    (tmp_path / "train-images-idx3-ubyte.partial.gz").write_bytes(sync_flushed_prefix(raw, 16 + 6 * 784))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_labels([1, 2, 3]))
    with pytest.raises(ValueError, match="labels"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TruncatedDataWarning)
            MNIST(tmp_path)


def test_label_out_of_range(tmp_path):
    write_set(tmp_path, n=4, labels=[1, 2, 10, 3])
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz.*label 10 at index 2"):
        MNIST(tmp_path)


def test_bad_limit(tmp_path):
    write_set(tmp_path, n=2)
    with pytest.raises(ValueError, match="limit"):
        MNIST(tmp_path, limit=-1)
    assert len(MNIST(tmp_path, limit=0)) == 0


def test_complete_stream_with_bad_crc_is_an_error(tmp_path):
    raw, _ = idx_images(3)
    gz = bytearray(gzip.compress(raw))
    gz[-8] ^= 0xFF  # the CRC-32 in the gzip trailer
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(bytes(gz))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_labels([0, 1, 2]))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz.*damaged"):
        MNIST(tmp_path)
