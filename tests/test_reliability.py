"""Runs survive: SIGKILL and resume, concurrent processes, NaN stops, bad configuration."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sdsnn_brian.checkpoint import latest_checkpoint, load_checkpoint

ARGS = ["--hidden", "16", "--steps", "6", "--train-limit", "400", "--test-limit", "100", "--batch-size", "50",
        "--epochs", "3", "--log-every", "1", "--lr", "0.003"]
SDSNN = ["--sdsnn", "--structure-every", "1", "--compress", "6"]


def sdsnn(args, cache, **kw):
    env = dict(os.environ, SDSNN_CACHE_DIR=str(cache), PYTHONWARNINGS="ignore")
    return subprocess.Popen([sys.executable, "-m", "sdsnn_brian.cli", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def final_state(run_dir):
    arrays, meta = load_checkpoint(latest_checkpoint(run_dir))
    metrics = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
    keep = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "sops_per_sample", "compression")
    return arrays, [{k: m.get(k) for k in keep} for m in metrics]


def assert_same_run(a, b):
    arrays_a, metrics_a = final_state(a)
    arrays_b, metrics_b = final_state(b)
    names = [k for k in arrays_a if k.startswith(("weight_", "mask_"))]
    assert names
    for k in names:
        np.testing.assert_array_equal(arrays_a[k], arrays_b[k], err_msg=k)
    assert metrics_a == metrics_b


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("reliability_cache")


@pytest.fixture(scope="module")
def reference_run(cache, tmp_path_factory):
    run = tmp_path_factory.mktemp("uninterrupted")
    p = sdsnn([*ARGS, *SDSNN, "--run-dir", str(run)], cache)
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    return run


def test_sigkill_mid_epoch_then_resume_is_identical(reference_run, cache, tmp_path):
    run = tmp_path / "killed"
    p = sdsnn([*ARGS, *SDSNN, "--run-dir", str(run), "--checkpoint-every", "3"], cache)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait for a checkpoint taken inside epoch 2
        if any(f.name.startswith("ckpt-0001-") and not f.name.endswith("-00000.npz") for f in run.glob("ckpt-*.npz")):
            break
        assert p.poll() is None, p.stdout.read()
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    assert not (run / "summary.json").exists()  # it really died mid-run
    r = sdsnn(["--resume", str(run)], cache)
    out, _ = r.communicate(timeout=600)
    assert r.returncode == 0, out
    assert_same_run(run, reference_run)
    structure = [json.loads(l) for l in open(run / "structure.jsonl")]
    assert max(s["neurons_pruned"] for s in structure) > 0  # structure was part of what survived


def test_two_processes_at_once_do_not_interfere(reference_run, cache, tmp_path):
    """Same network twice (same compiled project, same weights) and a different network, concurrently."""
    runs = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    procs = [sdsnn([*ARGS, *SDSNN, "--run-dir", str(runs[0])], cache),
             sdsnn([*ARGS, *SDSNN, "--run-dir", str(runs[1])], cache),
             sdsnn([*ARGS, "--hidden", "12", "--run-dir", str(runs[2])], cache)]
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out
    assert_same_run(runs[0], reference_run)
    assert_same_run(runs[1], reference_run)
    assert (runs[2] / "summary.json").exists()


def test_nan_update_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from sdsnn_brian import Adam, MNIST, Trainer
    from sdsnn_brian import trainer as trainer_mod
    from sdsnn_brian.models import mnist_fc

    train = MNIST(train=True, limit=100)
    tr = Trainer(mnist_fc(hidden=(16,), steps=6), optimizer=Adam(1e-3), cache_dir=str(tmp_path / "cache"))
    tr.fit(train, epochs=1, batch_size=50, run_dir=str(tmp_path / "run"), log_every=0)
    good = latest_checkpoint(str(tmp_path / "run"))
    real = trainer_mod.backward
    monkeypatch.setattr(trainer_mod, "backward", lambda *a, **k: [(g[0] * np.nan, g[1]) for g in real(*a, **k)])
    with pytest.raises(FloatingPointError, match="last good checkpoint is .*ckpt-0001-00000.npz"):
        tr.fit(train, epochs=2, batch_size=50, run_dir=str(tmp_path / "run"), log_every=0)
    assert latest_checkpoint(str(tmp_path / "run")) == good
    load_checkpoint(good)  # still intact


@pytest.mark.parametrize("args,match", [
    (["--epochs", "-1"], "--epochs must not be negative"),
    (["--batch-size", "0"], "--batch-size must be positive"),
    (["--lr", "nan"], "--lr must be a finite positive"),
    (["--hidden", "0"], "--hidden sizes must be positive"),
    (["--structure-every", "0"], "--structure-every must be positive"),
    (["--resume", "/nonexistent/run"], "cannot resume"),
    (["--loss", "hinge"], "hinge"),
])
def test_malformed_configuration_values(args, match, capsys):
    from sdsnn_brian.cli import main

    assert main(["train", *args]) == 2
    assert match in capsys.readouterr().err


def test_unwritable_run_directory(tmp_path, capsys):
    from sdsnn_brian.cli import main

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["train", "--run-dir", str(blocker / "run"), "--train-limit", "10", "--test-limit", "10"]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_network_without_memory_for_it_is_refused_at_once(tmp_path):
    """``--hidden 10000000`` needs terabytes: one line naming the estimate, exit status 2, in
    seconds, without allocating it and without Brian2's 'please report this bug' banner."""
    t0 = time.monotonic()
    p = sdsnn(["--hidden", "10000000", "--epochs", "1", "--train-limit", "10", "--run-dir", str(tmp_path / "run")],
              tmp_path / "cache")
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 2, out
    assert time.monotonic() - t0 < 60
    lines = [l for l in out.splitlines() if l.startswith("sdsnn: error:")]
    assert len(lines) == 1 and "not enough memory" in lines[0], out
    assert "784x10000000" in lines[0] and "GiB is available" in lines[0]
    assert "Brian 2 encountered an unexpected error" not in out and "Traceback" not in out
