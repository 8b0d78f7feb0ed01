"""Cut and damaged data files (issue 17): every reader either returns the data exactly, returns a
prefix of whole records and says how many (a file that simply stops), or raises
:class:`CorruptDataError` naming the file.  It never hands back different data without a word.

Hypothesis cuts and flips bytes of small files written here in the published formats (idx, gzip'ed
idx, N-MNIST ``.bin``) and of a copy of the shared AEDAT4 recording.  Where a format carries no
checksum over its payload (a raw idx body, a ``.bin`` file, AEDAT4's LZ4 packets, the part of a
cut gzip stream before the cut) a flip that keeps every value plausible cannot be detected; those
tests check what can be promised there: structural damage is an error, and whatever is returned
is well formed and the same size (see the readers' module docs).
"""

import gzip
import os
import shutil
import struct
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdsnn_brian.data import MNIST, TruncatedDataWarning
from sdsnn_brian.data import events as events_mod
from sdsnn_brian.data.errors import CorruptDataError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST_DIR = DATA / "mnist"
AEDAT4 = DATA / "events" / "sample.aedat4"
needs_mnist = pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"shared MNIST not at {MNIST_DIR}")

# 40 examples a test keeps the file near 10 s; SDSNN_FUZZ_EXAMPLES=2000 searches harder
FUZZ = settings(max_examples=int(os.environ.get("SDSNN_FUZZ_EXAMPLES", "40")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


# --------------------------------------------------------------------------- idx files written here


def images_idx(pix: np.ndarray) -> bytes:
    return struct.pack(">IIII", 0x803, len(pix), 28, 28) + pix.tobytes()


def labels_idx(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes()


def make_pixels(n: int, seed: int, sparse: bool) -> np.ndarray:
    """Random bytes (deflate stores them) or mostly-zero strokes (deflate codes them)."""
    rng = np.random.default_rng(seed)
    pix = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    if sparse:
        pix[rng.random(pix.shape) < 0.85] = 0
    return pix


def flip(data: bytes, flips) -> bytes:
    b = bytearray(data)
    for pos, mask in flips:
        b[pos % len(b)] ^= mask
    return bytes(b)


def load(d: Path, **kw):
    """``(dataset or None, CorruptDataError or None, TruncatedDataWarning messages)``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds, err = MNIST(d, **kw), None
        except CorruptDataError as e:
            ds, err = None, e
    return ds, err, [str(w.message) for w in caught if issubclass(w.category, TruncatedDataWarning)]


def check_exact_prefix_or_error(d: Path, damaged: str, pix: np.ndarray, labels: np.ndarray) -> str:
    """The property: exact data, or the first n records with a warning that says n, or an error
    naming the damaged file."""
    ds, err, notes = load(d)
    if err is not None:
        assert damaged in str(err)
        return "error"
    n = len(ds)
    np.testing.assert_array_equal(np.round(ds.images * 255).astype(np.uint8), pix[:n].reshape(n, 784))
    np.testing.assert_array_equal(ds.labels, labels[:n])
    if n == len(pix):
        return "exact"
    what = "images" if "images" in damaged else "labels"
    assert ds.truncated and any(f"read {n} of {len(pix)} {what}" in m for m in notes), notes
    return "truncated"


idx_sets = st.fixed_dictionaries({
    "n": st.integers(1, 6),
    "seed": st.integers(0, 2 ** 16),
    "sparse": st.booleans(),
    "level": st.integers(0, 9),
    "target": st.sampled_from([IMAGES, LABELS]),
})
flips_st = st.lists(st.tuples(st.integers(0, 2 ** 20), st.integers(1, 255)), min_size=1, max_size=8)


def write_idx_set(d: Path, spec, gz: bool):
    """Both files of a small set; returns pixels, labels and the bytes (compressed if ``gz``) of the
    target file, which the caller damages and writes."""
    pix = make_pixels(spec["n"], spec["seed"], spec["sparse"])
    labels = np.random.default_rng(spec["seed"]).integers(0, 10, spec["n"]).astype(np.int64)
    files = {IMAGES: images_idx(pix), LABELS: labels_idx(labels)}
    if gz:
        files = {k: gzip.compress(v, compresslevel=spec["level"], mtime=0) for k, v in files.items()}
    suffix = ".gz" if gz else ""
    for name, data in files.items():
        (d / (name + suffix)).write_bytes(data)
    return pix, labels, files[spec["target"]], d / (spec["target"] + suffix)


@FUZZ
@given(spec=idx_sets, cut=st.floats(0, 1))
def test_fuzz_gzip_idx_cut_anywhere_is_exact_prefix_or_error(spec, cut):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pix, labels, data, path = write_idx_set(d, spec, gz=True)
        kept = data[: int(cut * len(data))]
        path.write_bytes(kept)
        if check_exact_prefix_or_error(d, path.name, pix, labels) == "error":
            # a cut is an error only where it leaves less than the idx header to read
            assert len(zlib.decompressobj(31).decompress(kept)) < (16 if spec["target"] == IMAGES else 8)


@FUZZ
@given(spec=idx_sets, flips=flips_st)
def test_fuzz_gzip_idx_byte_flips_are_exact_or_error(spec, flips):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pix, labels, data, path = write_idx_set(d, spec, gz=True)
        path.write_bytes(flip(data, flips))
        check_exact_prefix_or_error(d, path.name, pix, labels)


@FUZZ
@given(spec=idx_sets, cut=st.floats(0, 1), flips=flips_st)
def test_fuzz_gzip_idx_cut_and_flipped_is_never_silent(spec, cut, flips):
    # nothing checksums a cut stream: a flip before the cut can change records zlib decodes without
    # complaint, so the promise is that such a file is never passed off as complete and intact
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pix, labels, data, path = write_idx_set(d, spec, gz=True)
        damaged = flip(data, flips)[: max(1, int(cut * len(data)))]
        path.write_bytes(damaged)
        ds, err, notes = load(d)
        if err is not None:
            assert path.name in str(err)
        elif not notes:
            np.testing.assert_array_equal(np.round(ds.images * 255).astype(np.uint8), pix.reshape(len(pix), -1))
            np.testing.assert_array_equal(ds.labels, labels)


@FUZZ
@given(spec=idx_sets, cut=st.floats(0, 1), header_flips=st.lists(
    st.tuples(st.integers(0, 15), st.integers(1, 255)), min_size=1, max_size=4))
def test_fuzz_raw_idx_cut_or_header_flip_is_exact_prefix_or_error(spec, cut, header_flips):
    # a raw idx file has no checksum over its body; its header (magic, count, dims) and size are checked
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pix, labels, data, path = write_idx_set(d, spec, gz=False)
        head = 16 if spec["target"] == IMAGES else 8
        path.write_bytes(data[: int(cut * len(data))])
        check_exact_prefix_or_error(d, path.name, pix, labels)
        path.write_bytes(flip(data[:head], header_flips) + data[head:])
        check_exact_prefix_or_error(d, path.name, pix, labels)


@needs_mnist
def test_issue17_flipped_bytes_in_t10k_images_are_an_error(tmp_path):
    """The issue's reproduction: 100 bytes flipped in the middle of the real test-image file used to
    load as 'read 9999 of 10000 images' with about half the images garbage."""
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(MNIST_DIR / name, tmp_path / name)
    target = tmp_path / "t10k-images-idx3-ubyte.gz"
    b = bytearray(target.read_bytes())
    mid = len(b) // 2
    for i in range(mid, mid + 100):
        b[i] ^= 0xFF
    target.write_bytes(bytes(b))
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncatedDataWarning)
        with pytest.raises(CorruptDataError, match=r"t10k-images-idx3-ubyte\.gz.*damaged") as ei:
            MNIST(tmp_path, train=False)
    assert str(target) in str(ei.value)
    with pytest.raises(CorruptDataError):  # a limit does not skip the check: the stream is decoded to its end
        MNIST(tmp_path, train=False, limit=10)


@needs_mnist
def test_shared_cut_training_file_still_reads_6309_images_with_a_count():
    with pytest.warns(TruncatedDataWarning, match=r"stops early.*read 6309 of 60000 images") as rec:
        ds = MNIST(MNIST_DIR, train=True)
    assert len(ds) == 6309 and ds.truncated and ds.n_declared == 60000
    assert "no checksum" in str(rec[0].message)
    assert ds.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


# --------------------------------------------------------------------------- idx: each kind of damage


def _one_set(d: Path, images: bytes, n=3):
    (d / (IMAGES + ".gz")).write_bytes(images)
    (d / LABELS).write_bytes(labels_idx(np.arange(n) % 10))


@pytest.mark.parametrize("where, match", [
    (-8, "CRC-32"),  # first byte of the CRC trailer
    (-1, "length check"),  # last byte of ISIZE
])
def test_gzip_trailer_mismatch_is_an_error(tmp_path, where, match):
    pix = make_pixels(3, 0, True)
    _one_set(tmp_path, flip(gzip.compress(images_idx(pix)), [(where, 0x01)]))
    with pytest.raises(CorruptDataError, match=match):
        MNIST(tmp_path)


def test_gzip_trailing_garbage_is_an_error_and_a_second_member_is_read(tmp_path):
    pix = make_pixels(3, 1, True)
    raw = images_idx(pix)
    _one_set(tmp_path, gzip.compress(raw) + b"\x00\x00\x00\x00")
    with pytest.raises(CorruptDataError, match=r"after the end of the gzip stream.*not another gzip member"):
        MNIST(tmp_path)
    _one_set(tmp_path, gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))  # `cat a.gz b.gz`
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = MNIST(tmp_path)
    np.testing.assert_array_equal(np.round(ds.images * 255).astype(np.uint8), pix.reshape(3, -1))


def test_more_data_than_the_header_declares_is_an_error(tmp_path):
    pix = make_pixels(3, 2, False)
    raw = images_idx(pix)
    _one_set(tmp_path, gzip.compress(raw + bytes(784)))
    with pytest.raises(CorruptDataError, match=r"decompresses to .* more than the .* header declares"):
        MNIST(tmp_path)
    (tmp_path / (IMAGES + ".gz")).unlink()
    (tmp_path / IMAGES).write_bytes(raw + b"\x00")
    with pytest.raises(CorruptDataError, match=r"has 2369 bytes, more than the 2368"):
        MNIST(tmp_path)


def test_stream_cut_in_its_trailer_warns_that_nothing_was_verified(tmp_path):
    pix = make_pixels(3, 3, True)
    _one_set(tmp_path, gzip.compress(images_idx(pix))[:-4])  # CRC kept, ISIZE cut: no check ran
    with pytest.warns(TruncatedDataWarning, match=r"stops early.*read 3 of 3 images"):
        ds = MNIST(tmp_path)
    assert len(ds) == 3 and not ds.truncated
    with pytest.warns(TruncatedDataWarning, match=r"read 3 of 3 images"):
        MNIST(tmp_path, limit=5)  # a limit past the end asks for every record
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the first 2 asked for are all there (as for the shared cut file)
        assert len(MNIST(tmp_path, limit=2)) == 2


def test_label_out_of_range_is_a_corrupt_data_error(tmp_path):
    (tmp_path / IMAGES).write_bytes(images_idx(make_pixels(3, 4, True)))
    (tmp_path / LABELS).write_bytes(labels_idx(np.array([1, 2, 11])))
    with pytest.raises(CorruptDataError, match=r"train-labels-idx1-ubyte: label 11 at index 2"):
        MNIST(tmp_path)


# --------------------------------------------------------------------------- N-MNIST .bin

def nmnist_events(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, 34, n), rng.integers(0, 34, n)
    t, p = np.sort(rng.integers(0, 350_000, n)), rng.integers(0, 2, n)
    return x, y, t, p


def assert_nmnist_well_formed(ev):
    assert len(ev) and ev["x"].max() < 34 and ev["y"].max() < 34 and ev["x"].min() >= 0
    assert set(np.unique(ev["p"])) <= {0, 1} and (np.diff(ev["t"]) >= 0).all()


@FUZZ
@given(n=st.integers(1, 40), seed=st.integers(0, 2 ** 16), cut=st.integers(0, 200), flips=st.lists(
    st.tuples(st.integers(0, 2 ** 16), st.integers(1, 255)), max_size=4))
def test_fuzz_nmnist_bin_cut_or_flipped(n, seed, cut, flips):
    x, y, t, p = nmnist_events(n, seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "00001.bin"
        events_mod.write_nmnist_bin(path, x, y, t, p)
        original = events_mod.read_nmnist_bin(path)
        data = path.read_bytes()
        damaged = flip(data, flips) if flips else data[: min(cut, len(data))]
        path.write_bytes(damaged)
        try:
            ev = events_mod.read_nmnist_bin(path)
        except CorruptDataError as e:
            assert str(path) in str(e)
            if not flips:  # a cut is an error exactly when it splits an event or leaves none
                assert len(damaged) % 5 or not damaged
            return
        assert_nmnist_well_formed(ev)
        if not flips:
            # the format has no header: a cut between two events reads as a shorter recording
            assert len(damaged) % 5 == 0
            np.testing.assert_array_equal(ev, original[: len(ev)])
        else:
            # no checksum either: a flip that keeps x, y < 34 and time in order is not detectable
            assert len(ev) == len(original)


@pytest.mark.parametrize("byte, mask, match", [
    (0, 0x40, r"x=\d+, y=\d+ lies outside the 34x34"),  # x moves to 64 or more
    (1, 0xC0, r"lies outside"),  # y near 240, the ATIS overflow marker
    (2, 0x40, r"timestamp of event 1 goes back"),  # event 0's time jumps by 2**22 us
])
def test_nmnist_impossible_values_are_errors(tmp_path, byte, mask, match):
    path = tmp_path / "a.bin"
    events_mod.write_nmnist_bin(path, [1, 2, 3], [4, 5, 6], [10, 20, 30], [0, 1, 0])
    path.write_bytes(flip(path.read_bytes(), [(byte, mask)]))
    with pytest.raises(CorruptDataError, match=match) as ei:
        events_mod.read_events(path)
    assert str(path) in str(ei.value)


def test_nmnist_cut_or_empty_file_is_an_error(tmp_path):
    path = tmp_path / "a.bin"
    events_mod.write_nmnist_bin(path, [1, 2], [4, 5], [10, 20], [0, 1])
    path.write_bytes(path.read_bytes()[:7])
    with pytest.raises(CorruptDataError, match=r"a\.bin: 7 bytes is not a whole number of 5-byte .* \(1 events and 2"):
        events_mod.read_nmnist_bin(path)
    path.write_bytes(b"")
    with pytest.raises(CorruptDataError, match="empty"):
        events_mod.read_nmnist_bin(path)


# --------------------------------------------------------------------------- AEDAT4 (through tonic)

needs_aedat4 = pytest.mark.skipif(not AEDAT4.is_file(), reason=f"shared AEDAT4 sample not at {AEDAT4}")


@pytest.fixture(scope="module")
def aedat4_original():
    pytest.importorskip("tonic")
    pytest.importorskip("aedat")
    return AEDAT4.read_bytes(), events_mod.read_aedat4(AEDAT4)


@needs_aedat4
@FUZZ
@given(cut=st.floats(0, 1), flips=st.lists(st.tuples(st.integers(0, 2 ** 20), st.integers(1, 255)),
                                          max_size=3))
def test_fuzz_aedat4_cut_or_flipped(aedat4_original, cut, flips):
    data, (ev0, size0) = aedat4_original
    damaged = flip(data, flips) if flips else data[: int(cut * len(data))]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rec.aedat4"
        path.write_bytes(damaged)
        try:
            ev, size = events_mod.read_aedat4(path)
        except CorruptDataError as e:
            assert str(path) in str(e)
            return
    W, H, _ = size
    assert len(ev) and ev["x"].max() < W and ev["y"].max() < H and (np.diff(ev["t"]) >= 0).all()
    if not flips:
        # every cut short of the file's closing packet index loses a packet and is an error; a cut
        # inside that index leaves the events whole
        assert size == size0 and np.array_equal(ev, ev0)
    else:
        # AEDAT4's LZ4 packets carry no checksum: a flip that keeps events on the sensor and in time
        # order is not detectable
        assert len(ev) == len(ev0)


@needs_aedat4
def test_aedat4_damage_is_an_error_naming_the_file(tmp_path, aedat4_original):
    data, _ = aedat4_original
    path = tmp_path / "rec.aedat4"
    path.write_bytes(data[:500_000])
    with pytest.raises(CorruptDataError, match=r"rec\.aedat4: cannot be decoded as AEDAT4"):
        events_mod.read_events(path)
    path.write_bytes(b"#!AER-DAT3.1\r\n" + data[14:])
    with pytest.raises(CorruptDataError, match="AEDAT4 signature"):
        events_mod.read_events(path)
