"""Training through the compiled network: learning, run directories, checkpoints, resume, bad input."""
import json
import os

import numpy as np
import pytest

from sdsnn_brian import MNIST, SGD, Adam, Trainer
from sdsnn_brian.callbacks import RunDirectory, restore_latest
from sdsnn_brian.cli import main as cli_main
from sdsnn_brian.models import mnist_fc

BATCH = 50


@pytest.fixture(scope="module")
def data():
    train = MNIST(train=True, limit=300)
    test = MNIST(train=False, limit=100)
    return (train.images, train.labels), (test.images, test.labels)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("trainer_cache"))


def make_trainer(cache_dir, **kw):
    net = mnist_fc(hidden=(32,), steps=8)
    kw.setdefault("optimizer", Adam(2e-3))
    return Trainer(net, device="cpp_standalone", cache_dir=cache_dir, seed=3, **kw)


def test_training_lowers_the_loss_and_writes_the_run_directory(data, cache_dir, tmp_path):
    train, test = data
    tr = make_trainer(cache_dir)
    before = tr.evaluate(train, BATCH)
    hist = tr.fit(train, epochs=3, batch_size=BATCH, validation=test, run_dir=str(tmp_path), log_every=0)
    after = tr.evaluate(train, BATCH)
    assert after["loss"] < 0.8 * before["loss"]
    assert after["accuracy"] > before["accuracy"] + 0.2
    assert [r["epoch"] for r in hist] == [1, 2, 3]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2, 3]
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["network"]["layers"][0]["size"] == 32 and cfg["loss"] == "rate_mse"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["epochs"] == 3 and "best_val_accuracy" in summary
    split = hist[-1]["time_per_batch"]
    assert {"forward", "backward", "update", "binary"} <= set(split)


def test_checkpoint_reloads_to_identical_predictions(data, cache_dir, tmp_path):
    train, test = data
    tr = make_trainer(cache_dir)
    tr.fit(train, epochs=1, batch_size=BATCH, run_dir=str(tmp_path), log_every=0)
    pred = tr.predict(test[0], BATCH)
    fresh = make_trainer(cache_dir)
    assert not np.array_equal(fresh.weights[0], tr.weights[0])
    restore_latest(fresh, str(tmp_path))
    np.testing.assert_array_equal(fresh.predict(test[0], BATCH), pred)


def test_resume_mid_epoch_equals_uninterrupted(data, cache_dir, tmp_path):
    train, _ = data
    full = make_trainer(cache_dir)
    full.fit(train, epochs=2, batch_size=BATCH, log_every=0)
    part = make_trainer(cache_dir, callbacks=[RunDirectory(str(tmp_path), checkpoint_every=2, keep=100)])
    part.fit(train, epochs=1, batch_size=BATCH, run_dir=str(tmp_path), log_every=0)
    mid = tmp_path / "ckpt-0000-00004.npz"  # taken after batch 4 of epoch 1
    assert mid.exists()
    for f in tmp_path.glob("ckpt-*.npz"):
        if f != mid:
            f.unlink()
    resumed = make_trainer(cache_dir)
    resumed.fit(train, epochs=2, batch_size=BATCH, run_dir=str(tmp_path), resume=True, log_every=0)
    for a, b in zip(resumed.weights, full.weights):
        np.testing.assert_array_equal(a, b)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]


@pytest.mark.parametrize("mutate,exc,match", [
    (lambda x, y: (x[:, :100], y), ValueError, "samples have 100 values"),
    (lambda x, y: (np.where(np.arange(x.shape[1]) == 5, np.nan, x), y), ValueError, "NaN"),
    (lambda x, y: (x, np.where(np.arange(len(y)) == 3, 12, y)), ValueError, "label 12 is out of range"),
    (lambda x, y: (x, y[:-1]), ValueError, "labels"),
    (lambda x, y: (x * 3, y), ValueError, r"must lie in \[0, 1\]"),
])
def test_bad_training_data(data, cache_dir, mutate, exc, match):
    x, y = data[0]
    tr = make_trainer(cache_dir)
    with pytest.raises(exc, match=match):
        tr.fit(mutate(x.copy(), y.copy()), epochs=1, batch_size=BATCH, log_every=0)


@pytest.mark.parametrize("kw,match", [
    (dict(surrogate="triangle"), "triangle"),
    (dict(loss="hinge"), "hinge"),
    (dict(gradient_mode="sparse"), "sparse"),
    (dict(backward_dtype="float16"), "float16"),
    (dict(backward_dtype="double-ish"), "double-ish"),
])
def test_unknown_names_in_trainer(cache_dir, kw, match):
    with pytest.raises(ValueError, match=match):
        make_trainer(cache_dir, **kw)


def test_float32_backward_matches_float64_step(data, cache_dir):
    """One training step with the float32 backward moves the weights as the float64 one does."""
    x, y = data[0]
    steps = {}
    for dt in ("float64", "float32"):
        tr = make_trainer(cache_dir, backward_dtype=dt, optimizer=SGD(0.5))
        w0 = [w.copy() for w in tr.weights]
        tr.train_step(x[:BATCH], y[:BATCH], np.random.default_rng(5), BATCH)
        steps[dt] = [w - v for w, v in zip(tr.weights, w0)]
        assert tr.config()["backward_dtype"] == dt
        assert all(w.dtype == np.float64 for w in tr.weights)
    for d64, d32 in zip(steps["float64"], steps["float32"]):
        assert np.abs(d64).max() > 0
        np.testing.assert_allclose(d32, d64, rtol=0, atol=1e-5 * np.abs(d64).max())


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli_main(["train", "--mnist-dir", str(tmp_path / "nowhere"), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sdsnn: error:") and "nowhere" in err
    assert cli_main(["train", "--surrogate", "boxcar", "--run-dir", str(tmp_path / "r")]) == 2
    assert "boxcar" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["--help"])


def test_resume_with_structure_equals_uninterrupted(data, cache_dir, tmp_path):
    """SD-SNN state (spines, masks, pruned units, rates, event log) survives a checkpoint exactly."""
    from sdsnn_brian.structure import SDSNNConfig, StructureSchedule, fc_layer_specs

    train, _ = data

    def make(**kw):
        net = mnist_fc(hidden=(32,), steps=8)
        sched = StructureSchedule(fc_layer_specs(net.sizes), SDSNNConfig().compressed(6))
        return Trainer(net, device="cpp_standalone", cache_dir=cache_dir, seed=3, optimizer=Adam(2e-3),
                       structure=sched, structure_every=1, **kw)

    full = make()
    full.fit(train, epochs=3, batch_size=BATCH, log_every=0)
    assert full.structure.neurons_pruned()["fc0"] > 0  # pruning happened within the run
    part = make(callbacks=[RunDirectory(str(tmp_path), checkpoint_every=4, keep=100)])
    part.fit(train, epochs=2, batch_size=BATCH, run_dir=str(tmp_path), log_every=0)
    for f in tmp_path.glob("ckpt-*.npz"):
        if f.name != "ckpt-0001-00004.npz":
            f.unlink()
    resumed = make()
    resumed.fit(train, epochs=3, batch_size=BATCH, run_dir=str(tmp_path), resume=True, log_every=0)
    for a, b in zip(resumed.weights + resumed.masks, full.weights + full.masks):
        np.testing.assert_array_equal(a, b)
    assert resumed.structure.log.equals(full.structure.log)
    assert (tmp_path / "structure.jsonl").exists() and (tmp_path / "structure_events.npz").exists()
