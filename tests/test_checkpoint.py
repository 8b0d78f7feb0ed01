"""Checkpoints: round trip, corruption detection, fallback, atomic failure."""

import errno
import os
import tempfile
import zipfile

import numpy as np
import pytest

from sdsnn_brian import checkpoint as ck
from sdsnn_brian.checkpoint import (
    CheckpointWarning,
    CorruptCheckpointError,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)


def sample(seed=0):
    g = np.random.default_rng(seed)
    arrays = {
        "w1": g.normal(size=(4, 3)).astype(np.float32),
        "b1": g.normal(size=3),
        "mask": g.random((4, 3)) > 0.5,
        "step": np.array(7, dtype=np.int64),
        "empty": np.zeros((0, 5)),
        "big_endian": np.arange(5, dtype=">i4"),
        "strided": g.normal(size=(6, 6))[::2, ::3],
    }
    meta = {"epoch": 3, "lr": np.float64(1e-3), "name": "run ü", "nested": {"a": [1, 2]}, "shape": np.array([2, 3])}
    return arrays, meta


def leftovers(d):
    return [p.name for p in d.iterdir() if p.name.endswith(".tmp")]


def test_roundtrip(tmp_path):
    arrays, meta = sample()
    p = save_checkpoint(tmp_path / "ckpt-1.npz", arrays, meta)
    got, m = load_checkpoint(p)
    assert set(got) == set(arrays)
    for k, a in arrays.items():
        assert got[k].dtype == a.dtype and got[k].shape == a.shape
        np.testing.assert_array_equal(got[k], a)
    assert m == {"epoch": 3, "lr": 1e-3, "name": "run ü", "nested": {"a": [1, 2]}, "shape": [2, 3]}
    assert leftovers(tmp_path) == []
    # a standard npz that numpy reads without pickles
    with np.load(p, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["w1"], arrays["w1"])


def test_roundtrip_compressed_and_overwrite(tmp_path):
    arrays, meta = sample()
    p = tmp_path / "ckpt-1.npz"
    save_checkpoint(p, arrays, meta)
    save_checkpoint(p, {"x": np.ones(3)}, {"v": 2}, compress=True)
    got, m = load_checkpoint(p)
    assert list(got) == ["x"] and m == {"v": 2}


def test_bad_inputs_write_nothing(tmp_path):
    p = tmp_path / "ckpt-1.npz"
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(p, {"a": np.ones(2)}, {"f": object()})
    with pytest.raises(TypeError, match="object"):
        save_checkpoint(p, {"a": np.array([None, 1])}, {})
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(p, {"__meta__": np.ones(2)}, {})
    assert list(tmp_path.iterdir()) == []


def _member_data_offset(path, name):
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    raw = path.read_bytes()
    # local header: 30 bytes + name + extra
    n_name = int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little")
    n_extra = int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little")
    return info.header_offset + 30 + n_name + n_extra, info.file_size


@pytest.mark.parametrize("where", ["array_data", "npy_header", "central_dir", "meta"])
def test_flipped_bytes_detected(tmp_path, where):
    arrays, meta = sample()
    p = save_checkpoint(tmp_path / "ckpt-1.npz", arrays, meta)
    raw = bytearray(p.read_bytes())
    if where == "array_data":
        off, size = _member_data_offset(p, "b1.npy")
        i = off + size - 3
    elif where == "npy_header":
        off, _ = _member_data_offset(p, "w1.npy")
        i = off + 20
    elif where == "meta":
        off, size = _member_data_offset(p, "__meta__.npy")
        i = off + size - 8
    else:
        i = len(raw) - 30
    raw[i] ^= 0x5A
    p.write_bytes(bytes(raw))
    with pytest.raises(CorruptCheckpointError, match="ckpt-1.npz") as ei:
        load_checkpoint(p)
    assert ei.value.path == p


def test_checksum_mismatch_detected_even_with_valid_zip(tmp_path):
    """Rewrite one member consistently (valid zip CRCs): only the checksum can tell."""
    arrays, meta = sample()
    p = save_checkpoint(tmp_path / "ckpt-1.npz", arrays, meta)
    with np.load(p) as z:
        content = {k: z[k] for k in z.files}
    content["b1"] = content["b1"] + 1
    with open(p, "wb") as f:
        np.savez(f, **content)
    with pytest.raises(CorruptCheckpointError, match="checksum mismatch"):
        load_checkpoint(p)


@pytest.mark.parametrize("keep", [0, 10, 0.5, 0.99])
def test_truncation_detected(tmp_path, keep):
    arrays, meta = sample()
    p = save_checkpoint(tmp_path / "ckpt-1.npz", arrays, meta)
    raw = p.read_bytes()
    n = int(keep * len(raw)) if isinstance(keep, float) else keep
    p.write_bytes(raw[:n])
    with pytest.raises(CorruptCheckpointError, match=str(p.name)):
        load_checkpoint(p)


def test_missing_file_and_foreign_npz(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.npz")
    np.savez(tmp_path / "plain.npz", a=np.ones(2))
    with pytest.raises(CorruptCheckpointError, match="__meta__"):
        load_checkpoint(tmp_path / "plain.npz")


def _series(d, n):
    paths = []
    for i in range(1, n + 1):
        p = save_checkpoint(d / f"ckpt-{i}.npz", {"x": np.full(2, i)}, {"epoch": i})
        os.utime(p, ns=(i * 10**9, i * 10**9))
        paths.append(p)
    return paths


def test_latest_falls_back_with_warning(tmp_path):
    paths = _series(tmp_path, 3)
    assert latest_checkpoint(tmp_path) == paths[-1]
    raw = bytearray(paths[-1].read_bytes())
    paths[-1].write_bytes(bytes(raw[: len(raw) // 2]))
    os.utime(paths[-1], ns=(3 * 10**9, 3 * 10**9))
    with pytest.warns(CheckpointWarning, match="ckpt-3.npz"):
        best = latest_checkpoint(tmp_path)
    assert best == paths[1]
    assert load_checkpoint(best)[1]["epoch"] == 2
    (tmp_path / "ckpt-2.npz").write_bytes(b"garbage")
    os.utime(paths[1], ns=(2 * 10**9, 2 * 10**9))
    with pytest.warns(CheckpointWarning) as rec:
        assert latest_checkpoint(tmp_path) == paths[0]
    assert [str(w.message).split(":")[0].rsplit("/", 1)[-1] for w in rec] == ["ckpt-3.npz", "ckpt-2.npz"]


def test_latest_none_and_ordering_ties(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / "missing") is None
    for i in (9, 10, 2):
        p = save_checkpoint(tmp_path / f"ckpt-{i}.npz", {"x": np.ones(1)}, {})
        os.utime(p, ns=(10**9, 10**9))  # identical mtimes: the number in the name decides
    assert latest_checkpoint(tmp_path).name == "ckpt-10.npz"


def test_prune(tmp_path):
    paths = _series(tmp_path, 6)
    removed = prune_checkpoints(tmp_path, keep=2)
    assert sorted(removed) == sorted(paths[:4])
    assert sorted(tmp_path.iterdir()) == sorted(paths[4:])
    assert prune_checkpoints(tmp_path, keep=5) == []
    with pytest.raises(ValueError):
        prune_checkpoints(tmp_path, keep=0)


def test_prune_never_counts_corrupt(tmp_path):
    paths = _series(tmp_path, 4)
    paths[-1].write_bytes(b"broken")
    os.utime(paths[-1], ns=(4 * 10**9, 4 * 10**9))
    removed = prune_checkpoints(tmp_path, keep=1)
    assert sorted(removed) == sorted(paths[:2])  # keeps ckpt-3 (good) and leaves ckpt-4 (damaged)
    assert {p.name for p in tmp_path.iterdir()} == {"ckpt-3.npz", "ckpt-4.npz"}


# --------------------------------------------------------------------------- failures while writing


def test_replace_failure_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    p = save_checkpoint(tmp_path / "ckpt-1.npz", {"x": np.ones(3)}, {"v": 1})
    before = p.read_bytes()

    def boom(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", str(dst))

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(PermissionError, match="ckpt-1.npz"):
        save_checkpoint(p, {"x": np.zeros(3)}, {"v": 2})
    assert p.read_bytes() == before
    assert leftovers(tmp_path) == []
    monkeypatch.undo()
    assert load_checkpoint(p)[1] == {"v": 1}


def test_disk_full_leaves_no_partial_file(tmp_path, monkeypatch):
    p = save_checkpoint(tmp_path / "ckpt-1.npz", {"x": np.ones(3)}, {"v": 1})
    before = p.read_bytes()
    real_write = ck.np.lib.format.write_array
    calls = {"n": 0}

    def full(fp, array, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fp, array, **kw)

    monkeypatch.setattr(ck.np.lib.format, "write_array", full)
    with pytest.raises(OSError, match="ckpt-1.npz") as ei:
        save_checkpoint(p, {"x": np.zeros(3), "y": np.zeros(2)}, {"v": 2})
    assert ei.value.errno == errno.ENOSPC
    assert p.read_bytes() == before
    assert sorted(q.name for q in tmp_path.iterdir()) == ["ckpt-1.npz"]


def test_fsync_failure_leaves_no_temp(tmp_path, monkeypatch):
    def bad_fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", bad_fsync)
    with pytest.raises(OSError, match="new.npz"):
        save_checkpoint(tmp_path / "new.npz", {"x": np.ones(1)}, {})
    assert list(tmp_path.iterdir()) == []


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nodir"):
        save_checkpoint(tmp_path / "nodir" / "ckpt-1.npz", {"x": np.ones(1)}, {})


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory_chmod(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    p = save_checkpoint(d / "ckpt-1.npz", {"x": np.ones(2)}, {})
    before = p.read_bytes()
    d.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="ckpt-1.npz"):
            save_checkpoint(p, {"x": np.zeros(2)}, {})
        assert p.read_bytes() == before
        assert leftovers(d) == []
    finally:
        d.chmod(0o755)


def test_unwritable_directory_mkstemp(tmp_path, monkeypatch):
    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path))

    monkeypatch.setattr(tempfile, "mkstemp", denied)  # the temp file: rundir.atomic_file
    with pytest.raises(PermissionError) as ei:
        save_checkpoint(tmp_path / "ckpt-9.npz", {"x": np.ones(2)}, {})
    assert "ckpt-9.npz" in str(ei.value)
    assert list(tmp_path.iterdir()) == []
