"""Run directories: never overwritten without being asked, one writer at a time, checkpoints by name,
resume with changed options, a first run that talks, Ctrl-C that says how to resume (issue 17)."""
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np
import pytest

from sdsnn_brian import Adam, Trainer
from sdsnn_brian.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from sdsnn_brian.cli import build_parser, command_line, main
from sdsnn_brian.data import MNIST
from sdsnn_brian.models import mnist_fc
from sdsnn_brian.rundir import RunDirectoryBusy, RunDirectoryExists, RunLock, open_run_directory, run_files

TINY = ["--hidden", "8", "--steps", "4", "--train-limit", "40", "--test-limit", "20", "--batch-size", "20",
        "--epochs", "1", "--log-every", "0"]


def _a_run(path):
    os.makedirs(path, exist_ok=True)
    for name in ("config.json", "metrics.jsonl", "summary.json"):
        with open(os.path.join(path, name), "w") as fh:
            fh.write("{}\n")
    save_checkpoint(os.path.join(path, "ckpt-0001-00000.npz"), {"x": np.zeros(2)}, {})


def test_a_directory_holding_a_run_is_refused_unless_resumed_or_overwritten(tmp_path):
    run = str(tmp_path / "run")
    _a_run(run)
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(RunDirectoryExists, match=r"already holds a run \(config.json.*1 checkpoint\).*--overwrite"):
        open_run_directory(run)
    open_run_directory(run, resume=True).release()  # resuming keeps everything
    assert len(run_files(run)) == 4
    open_run_directory(run, overwrite=True).release()
    assert run_files(run) == []  # the earlier run's files are gone ...
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"  # ... and nothing else


def test_trainer_refuses_before_any_work(tmp_path):
    run = str(tmp_path / "run")
    _a_run(run)
    before = {f: os.path.getmtime(f) for f in run_files(run)}
    tr = Trainer(mnist_fc(hidden=(8,), steps=4), optimizer=Adam(1e-3))
    with pytest.raises(RunDirectoryExists):
        tr.fit(MNIST(train=True, limit=20), epochs=1, batch_size=20, run_dir=run, log_every=0)
    assert {f: os.path.getmtime(f) for f in run_files(run)} == before
    assert tr._sim is None  # nothing was built


def test_the_lock_refuses_a_second_process_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    code = ("import sys, time; from sdsnn_brian.rundir import RunLock; l = RunLock(sys.argv[1], 'holder-cmd'); "
            "print('held', flush=True); time.sleep(30)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunDirectoryBusy, match=rf"in use by process {proc.pid} .*holder-cmd"):
            open_run_directory(str(run))
    finally:
        proc.kill()
        proc.wait()
    open_run_directory(str(run)).release()  # a killed holder leaves no stale lock


def test_the_lock_refuses_a_second_trainer_in_the_same_process(tmp_path):
    lock = RunLock(str(tmp_path))
    with pytest.raises(RunDirectoryBusy, match=str(os.getpid())):
        RunLock(str(tmp_path))
    lock.release()
    RunLock(str(tmp_path)).release()


def test_checkpoints_are_ordered_by_epoch_and_batch_not_file_time(tmp_path):
    names = ["ckpt-0001-00000.npz", "ckpt-0001-00040.npz", "ckpt-0002-00000.npz", "ckpt-0010-00000.npz"]
    for k, name in enumerate(names):
        p = save_checkpoint(tmp_path / name, {"x": np.full(1, k)}, {"k": k})
        t = 10**9 * (100 - k)  # newest name, oldest time: what `cp -r` without -p can leave
        os.utime(p, ns=(t, t))
    assert [p.name for p in list_checkpoints(tmp_path)] == names
    assert load_checkpoint(latest_checkpoint(tmp_path))[1]["k"] == 3


def test_cli_refuses_a_second_run_and_overwrite_replaces_it(tmp_path, capsys):
    run = str(tmp_path / "run")
    args = ["train", *TINY, "--run-dir", run]
    assert main(args) == 0
    first = open(os.path.join(run, "config.json")).read()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert open(os.path.join(run, "config.json")).read() == first
    assert main(args + ["--overwrite", "--seed", "3"]) == 0
    assert json.load(open(os.path.join(run, "config.json")))["seed"] == 3
    assert [p.name for p in list_checkpoints(run)] == ["ckpt-0001-00000.npz"]


def test_resume_honours_lr_and_epochs_refuses_other_changes(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", *TINY, "--run-dir", run]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", run, "--optimizer", "sgd", "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--optimizer sgd (the run has adam)" in err and "--lr" not in err.split("only")[0]
    assert main(["train", "--resume", run, "--overwrite"]) == 2
    assert "give one of them" in capsys.readouterr().err
    assert main(["train", "--resume", run, "--epochs", "2", "--lr", "0.0005", "--log-every", "0"]) == 0
    out = capsys.readouterr().out
    assert "--lr 0.001 -> 0.0005" in out
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["optimizer"]["lr"] == pytest.approx(0.0005)
    assert cfg["resumes"][-1]["changed"] == {"epochs": [1, 2], "lr": [0.001, 0.0005]}
    assert cfg["resumes"][-1]["from_checkpoint"] == "ckpt-0001-00000.npz"
    metrics = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
    assert [m["epoch"] for m in metrics] == [1, 2] and metrics[-1]["lr"] == pytest.approx(0.0005)
    assert cfg["cli_args"]["lr"] == 0.0005 and cfg["cli_args"]["epochs"] == 2


def test_resume_with_a_damaged_config_takes_the_options_from_the_checkpoint(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", *TINY, "--run-dir", run, "--seed", "5"]) == 0
    with open(os.path.join(run, "config.json"), "w") as fh:
        fh.write('{"cli_args": {"hidden": [8')  # cut short
    with pytest.warns(UserWarning, match=r"config.json is damaged.*taken from .*ckpt-0001-00000.npz"):
        assert main(["train", "--resume", run, "--epochs", "2"]) == 0
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["seed"] == 5 and cfg["cli_args"]["hidden"] == [8]
    for ckpt in list_checkpoints(run):
        os.remove(ckpt)
    with open(os.path.join(run, "config.json"), "w") as fh:
        fh.write("{")
    capsys.readouterr()
    assert main(["train", "--resume", run]) == 2
    assert os.path.join(run, "config.json") in capsys.readouterr().err


def test_protocol_line_can_be_pasted_back(tmp_path):
    run = str(tmp_path / "run")
    assert main(["train", *TINY, "--run-dir", run, "--bias", "--hidden", "8", "6", "--surrogate", "sigmoid"]) == 0
    cfg = json.load(open(os.path.join(run, "config.json")))
    words = shlex.split(cfg["protocol"])
    assert words[:2] == ["sdsnn", "train"] and "--bias" in words and "False" not in words
    again = build_parser().parse_args(words[1:])
    stored = cfg["cli_args"]
    assert {k: v for k, v in vars(again).items() if k in stored} == stored
    assert command_line(stored) == cfg["protocol"]


def test_ctrl_c_during_training_says_how_to_resume(tmp_path, monkeypatch, capsys):
    run = str(tmp_path / "run")

    def interrupted(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    assert main(["train", *TINY, "--run-dir", run]) == 130
    err = capsys.readouterr().err
    assert f"no checkpoint was written yet (it restarts from the beginning); resume with: sdsnn train --resume {run}" in err
    monkeypatch.undo()
    assert main(["train", "--resume", run]) == 0  # and it does


def test_first_run_announces_the_compilation_and_keeps_it_out_of_samples_per_second(tmp_path, capsys):
    from sdsnn_brian.device import Simulator

    net = mnist_fc(hidden=(7,), steps=4)
    tr = Trainer(net, optimizer=Adam(1e-3), cache_dir=str(tmp_path / "cache"))
    real = Simulator.build

    def slow_build(self):  # a compilation that takes a known extra time
        time.sleep(2.0)
        return real(self)

    Simulator.build = slow_build
    try:
        hist = tr.fit(MNIST(train=True, limit=40), epochs=1, batch_size=20, log_every=0)
    finally:
        Simulator.build = real
    out = capsys.readouterr().out
    assert "compiling the network for cpp_standalone (about" in out and str(tmp_path / "cache") in out
    assert "compiled in" in out
    rec = hist[0]
    assert rec["build_seconds"] >= 2.0
    assert rec["train_seconds"] < rec["build_seconds"]  # two tiny minibatches take far less than the build
    assert os.path.exists(tmp_path / "cache" / "build_seconds.json")


def test_progress_bar_redraws_one_line_with_time_left(capsys):
    import io

    from sdsnn_brian.callbacks import ProgressLogger

    class Tr:
        rank, epoch, epochs, batch_size, build_seconds = 0, 0, 2, 10, 0.0
        _epoch_acc = {"loss": 1.0, "correct": 3, "n": 10}

    out = io.StringIO()
    bar = ProgressLogger(bar=True, stream=out)
    tr = Tr()
    bar.on_fit_start(tr)
    for k in range(4):
        bar._drawn = 0.0
        bar.on_batch_end(tr, k, 4, {"n": 10})
    text = out.getvalue()
    assert text.count("\r") == 4 and "\n" not in text and "left" in text and "4/4" in text
    bar.on_fit_end(tr)
    assert out.getvalue().endswith("\n")
    plain = io.StringIO()
    assert ProgressLogger(bar=None, stream=plain)._use_bar() is False  # not a terminal: lines


def test_ctrl_c_during_compilation_is_an_interruption_not_a_failure():
    from sdsnn_brian.device import _interrupted_compilation

    with pytest.raises(KeyboardInterrupt):  # make killed by SIGINT: os.system's wait status is 2
        with _interrupted_compilation():
            raise RuntimeError("Project compilation failed (error code: 2).")
    with pytest.raises(RuntimeError, match="error code: 512"):  # make exited with status 2: a real failure
        with _interrupted_compilation():
            raise RuntimeError("Project compilation failed (error code: 512).")


def test_ctrl_c_in_a_real_make_is_reported_as_interrupted(tmp_path):
    """A real make of a fresh project, sent SIGINT like a terminal's Ctrl-C (to its process group)."""
    import signal

    env = dict(os.environ, SDSNN_CACHE_DIR=str(tmp_path / "cache"), PYTHONWARNINGS="ignore")
    run = str(tmp_path / "run")
    proc = subprocess.Popen([sys.executable, "-m", "sdsnn_brian.cli", "train", *TINY, "--hidden", "9",
                             "--run-dir", run], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    line = ""
    while time.time() < deadline and "compiling the network" not in line:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
    assert "compiling the network" in line
    time.sleep(3)  # make is running now
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "compilation failed" not in err and "resume with: sdsnn train --resume" in err


def test_nan_in_the_validation_set_is_found_before_training(tmp_path):
    train = MNIST(train=True, limit=20)
    test = MNIST(train=False, limit=20)
    images = np.array(test.images, dtype=float)
    images[3, 100] = np.nan
    tr = Trainer(mnist_fc(hidden=(8,), steps=4), optimizer=Adam(1e-3))
    with pytest.raises(ValueError, match="validation set: the samples contain NaN"):
        tr.fit(train, epochs=1, batch_size=20, validation=(images, test.labels), run_dir=str(tmp_path / "r"),
               log_every=0)
    assert tr._sim is None and tr.history == [] and not os.path.exists(tmp_path / "r")
