"""Event-camera data: the shared real recordings, synthetic datasets in the published layouts,
frames through tonic, the disk cache and its key, and the errors when data is missing."""
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tonic")

from sdsnn_brian.data.events import (DatasetNotFound, DVSGesture, FrameSettings, NMNIST,  # noqa: E402
                                     read_events, write_dvsgesture_npy, write_nmnist_bin, write_synthetic_dvsgesture,
                                     write_synthetic_nmnist)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "events"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared event recordings not present")


@needs_shared
def test_real_nmnist_recording():
    ev, size = read_events(SHARED / "sample_nmnist.bin")
    assert size == (34, 34, 2)
    assert len(ev) == 4325
    assert ev["x"].max() <= 33 and ev["y"].max() <= 33 and set(np.unique(ev["p"])) == {0, 1}
    span_ms = (ev["t"].max() - ev["t"].min()) / 1000
    assert 300 < span_ms < 320  # about 311 ms
    frames = FrameSettings(n_time_bins=20)(ev, size)
    assert frames.shape == (20, 2, 34, 34) and frames.dtype == np.uint8 and frames.max() == 1
    fast = FrameSettings(n_time_bins=20, spatial_factor=0.5, denoise=10000)(ev, size)
    assert fast.shape == (20, 2, 17, 17) and 0 < fast.sum() < frames.sum()


@needs_shared
def test_real_aedat4_recording():
    pytest.importorskip("aedat")
    ev, size = read_events(SHARED / "sample.aedat4")
    assert len(ev) == 111954
    assert size == (320, 240, 2)
    assert ev["x"].max() < 320 and ev["y"].max() < 240
    assert 580 < (ev["t"].max() - ev["t"].min()) / 1000 < 600  # microseconds -> about 590 ms
    frames = FrameSettings(n_time_bins=None, time_window=50e3, steps=8)(ev, size)
    assert frames.shape == (8, 2, 240, 320) and frames.any(axis=(1, 2, 3)).all()


def test_nmnist_format_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 34, 500), rng.integers(0, 34, 500)
    t = np.sort(rng.integers(0, 2 ** 23, 500))
    p = rng.integers(0, 2, 500)
    write_nmnist_bin(tmp_path / "a.bin", x, y, t, p)
    assert (tmp_path / "a.bin").stat().st_size == 5 * 500
    ev, _ = read_events(tmp_path / "a.bin")
    np.testing.assert_array_equal(ev["x"], x)
    np.testing.assert_array_equal(ev["y"], y)
    np.testing.assert_array_equal(ev["t"], t)
    np.testing.assert_array_equal(ev["p"], p)
    write_dvsgesture_npy(tmp_path / "3.npy", x, y, p, t // 1000)
    ev, size = read_events(tmp_path / "3.npy")
    assert size == (128, 128, 2)
    np.testing.assert_array_equal(ev["t"], (t // 1000) * 1000)  # ms on disk, us in memory


def test_synthetic_nmnist_through_the_dataset_class(tmp_path):
    write_synthetic_nmnist(tmp_path / "data", n_train_per_class=2, n_test_per_class=1)
    assert sorted(os.listdir(tmp_path / "data" / "NMNIST")) == ["Test", "Train"]
    frames = FrameSettings(n_time_bins=6, spatial_factor=0.5)
    ds = NMNIST(tmp_path / "data", train=True, frames=frames, cache_dir=tmp_path / "cache")
    assert len(ds) == 20 and ds.labels.tolist() == sorted(list(range(10)) * 2)
    x, label = ds[3]
    assert x.shape == (6, 2, 17, 17) and label == 1
    images = ds.images  # builds the cache
    assert images.shape == (20, 6, 2 * 17 * 17) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[3].reshape(6, 2, 17, 17), x)
    # the folder itself also works as data_dir; the same settings reuse the cache
    again = NMNIST(tmp_path / "data" / "NMNIST", train=True, frames=frames, cache_dir=tmp_path / "cache")
    assert again.cache_path() == ds.cache_path()
    assert len(list((tmp_path / "cache").iterdir())) == 1
    # other transform parameters: another cache entry
    other = NMNIST(tmp_path / "data", train=True, frames=FrameSettings(n_time_bins=6), cache_dir=tmp_path / "cache")
    assert other.cache_path() != ds.cache_path()
    assert other.images.shape == (20, 6, 2 * 34 * 34)
    test = NMNIST(tmp_path / "data", train=False, frames=frames, cache_dir=tmp_path / "cache", limit=5)
    assert len(test) == 5 and len(set(test.labels.tolist())) == 5  # spread over the classes


def test_splits_build_both_caches(tmp_path, capsys):
    write_synthetic_nmnist(tmp_path / "data", n_train_per_class=2, n_test_per_class=1)
    frames = FrameSettings(n_time_bins=4)
    train, test = NMNIST.splits(tmp_path / "data", frames, test_limit=5, cache_dir=tmp_path / "cache")
    assert (len(train), len(test)) == (20, 5) and train.train and not test.train
    assert (train.cache_path() / "complete").exists() and (test.cache_path() / "complete").exists()
    assert "20 training and 5 test recordings, frames (2, 34, 34) x 4" in capsys.readouterr().out
    with pytest.raises(DatasetNotFound):
        NMNIST.splits(tmp_path / "nowhere", frames, cache_dir=tmp_path / "cache")


def test_synthetic_dvsgesture_through_the_dataset_class(tmp_path):
    write_synthetic_dvsgesture(tmp_path, users_train=(1,), users_test=(24, 25), events=800)
    frames = FrameSettings(n_time_bins=None, time_window=100e3, steps=10, spatial_factor=0.25)
    ds = DVSGesture(tmp_path, train=False, frames=frames, cache_dir=tmp_path / "cache")
    assert len(ds) == 22 and sorted(set(ds.labels.tolist())) == list(range(11))
    assert ds.frame_shape == (2, 32, 32)
    assert ds.images.shape == (22, 10, 2048)
    assert ds.images[:, :5].any() and ds.images.max() == 1


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("SDSNN_NMNIST_DIR", raising=False)
    with pytest.raises(DatasetNotFound, match=r"No download is attempted.*n-mnist.*NMNIST/Train/<digit>"):
        NMNIST(tmp_path)
    with pytest.raises(DatasetNotFound, match="ibmGestureTest"):
        DVSGesture(tmp_path, train=False)
    (tmp_path / "NMNIST" / "Train").mkdir(parents=True)
    with pytest.raises(DatasetNotFound, match="no recordings"):
        NMNIST(tmp_path)


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_time_bins=None), "exactly one"),
    (dict(n_time_bins=None, time_window=1000.0), "needs steps"),
    (dict(spatial_factor=2.0), "spatial_factor"),
])
def test_bad_frame_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FrameSettings(**kwargs)
