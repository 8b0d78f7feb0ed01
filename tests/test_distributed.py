"""Data-parallel training and sweeps over MPI: 2 ranks equal 1 rank, failures, resume with other rank counts.

The MPI tests start ``mpiexec -n 2`` (from the virtual environment's ``bin/``, where the ``mpich`` wheel puts
it) on the command line, like a user would; they are skipped when mpi4py or mpiexec is missing
(``pip install -e '.[test,mpi]'``).  Each rank runs one C++ standalone process at a time, so two ranks use
the machine's two cores.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sdsnn_brian.checkpoint import latest_checkpoint, load_checkpoint
from sdsnn_brian.distributed import SingleProcess, get_communicator, mpi_available, share

ARGS = ["--hidden", "16", "--steps", "6", "--train-limit", "400", "--test-limit", "100", "--batch-size", "50",
        "--epochs", "2", "--log-every", "4", "--lr", "0.003", "--sdsnn", "--structure-every", "1", "--compress", "6"]
BATCHES_PER_EPOCH = 8  # 400 / 50


def _mpiexec():
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(not (mpi_available() and MPIEXEC),
                               reason="needs mpi4py and mpiexec: pip install -e '.[test,mpi]' (mpi4py + mpich)")


def sdsnn(args, cache, ranks=None, extra_env=None, timeout=600):
    """Run ``sdsnn ARGS`` (under ``mpiexec -n ranks`` when given); returns (returncode, output)."""
    env = dict(os.environ, SDSNN_CACHE_DIR=str(cache), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1",
               **(extra_env or {}))
    for key in ("SDSNN_FAIL_RANK", "SDSNN_FAIL_AT_BATCH", "SDSNN_FAIL_HOW"):
        if key not in (extra_env or {}):
            env.pop(key, None)
    cmd = [sys.executable, "-m", "sdsnn_brian.cli", *args]
    if ranks is not None:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return p.returncode, p.stdout


def final_state(run_dir):
    arrays, meta = load_checkpoint(latest_checkpoint(run_dir))
    metrics = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    return arrays, meta, metrics


def assert_equivalent(run_a, run_b):
    """Same weights up to summation order, identical masks and pruned neurons, same metrics."""
    a, meta_a, metrics_a = final_state(run_a)
    b, meta_b, metrics_b = final_state(run_b)
    assert (meta_a["epoch"], meta_a["batch"]) == (meta_b["epoch"], meta_b["batch"])
    weights = [k for k in a if k.startswith(("weight_", "bias_"))]
    masks = [k for k in a if k.startswith("mask_") or k.endswith(".pruned")]
    assert weights and masks
    for k in weights:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-10, atol=1e-12, err_msg=k)
    for k in masks:
        np.testing.assert_array_equal(b[k], a[k], err_msg=k)
    assert int(a["structure/schedule.t"]) == int(b["structure/schedule.t"]) > 0
    assert len(metrics_a) == len(metrics_b)
    for ra, rb in zip(metrics_a, metrics_b):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "sops_per_sample", "compression"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-9), key


# -- without MPI ---------------------------------------------------------------------------------------------------
def test_share_splits_contiguously():
    for n in (0, 1, 5, 50, 51):
        for size in (1, 2, 3, 7):
            parts = [share(n, r, size) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(hi0 == lo1 for (_, hi0), (lo1, _) in zip(parts, parts[1:]))
            sizes = [hi - lo for lo, hi in parts]
            assert max(sizes) - min(sizes) <= 1


def test_single_process_collectives_are_identities():
    comm = get_communicator(False)
    assert isinstance(comm, SingleProcess) and (comm.rank, comm.size, comm.is_root) == (0, 1, True)
    a = [np.arange(6.0).reshape(2, 3), np.array([1.5])]
    out = comm.allreduce_sum(a)
    assert all(np.array_equal(x, y) for x, y in zip(out, a))
    assert comm.bcast({"x": 1}) == {"x": 1} and comm.gather(3) == [3] and comm.allgather(4) == [4]


def test_distributed_without_mpi4py_is_a_clear_error(monkeypatch, capsys):
    from sdsnn_brian.cli import main

    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    with pytest.raises(RuntimeError, match=r"pip install '\.\[mpi\]'"):
        get_communicator(True)
    assert main(["train", "--distributed", "--train-limit", "10", "--test-limit", "10"]) == 2
    assert "mpi4py is not installed: pip install '.[mpi]'" in capsys.readouterr().err


# -- with MPI --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("distributed_cache")


@pytest.fixture(scope="module")
def one_rank(cache, tmp_path_factory):
    run = tmp_path_factory.mktemp("one_rank")
    rc, out = sdsnn(["train", *ARGS, "--run-dir", str(run)], cache)
    assert rc == 0, out
    return run


@pytest.fixture(scope="module")
def two_ranks(cache, tmp_path_factory):
    if not (mpi_available() and MPIEXEC):
        pytest.skip("needs mpi4py and mpiexec")
    run = tmp_path_factory.mktemp("two_ranks")
    rc, out = sdsnn(["train", *ARGS, "--distributed", "--run-dir", str(run)], cache, ranks=2)
    assert rc == 0, out
    return run, out


@needs_mpi
def test_two_ranks_give_the_one_rank_weights_and_masks(one_rank, two_ranks):
    run, out = two_ranks
    assert_equivalent(one_rank, run)
    assert json.loads((run / "config.json").read_text())["ranks"] == 2
    # rank 0 alone prints and writes
    assert out.count("data: ") == 1 and out.count("epoch 2/2 train_loss") == 1
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in one_rank.iterdir())


@pytest.fixture(scope="module")
def failed_run(cache, tmp_path_factory):
    if not (mpi_available() and MPIEXEC):
        pytest.skip("needs mpi4py and mpiexec")
    run = tmp_path_factory.mktemp("failed")
    step = BATCHES_PER_EPOCH + 3  # epoch 2, batch 4: after the end-of-epoch-1 checkpoint
    rc, out = sdsnn(["train", *ARGS, "--distributed", "--run-dir", str(run)], cache, ranks=2,
                    extra_env={"SDSNN_FAIL_RANK": "1", "SDSNN_FAIL_AT_BATCH": str(step)})
    return run, rc, out


@needs_mpi
def test_a_failing_rank_stops_the_job_and_keeps_the_checkpoint(failed_run):
    run, rc, out = failed_run
    assert rc == 2, out
    assert "sdsnn: error: stopped at epoch 2, batch 4: rank 1 failed: RuntimeError: injected failure" in out
    assert "ckpt-0001-00000.npz" in out and "--resume" in out
    assert out.count("sdsnn: error:") == 1  # printed once, by rank 0
    assert latest_checkpoint(run).name == "ckpt-0001-00000.npz"
    arrays, meta = load_checkpoint(latest_checkpoint(run))
    assert (meta["epoch"], meta["batch"]) == (1, 0)
    assert not (run / "summary.json").exists()


@needs_mpi
def test_resume_on_one_rank_after_two_continues_identically(failed_run, one_rank, cache):
    run, _, _ = failed_run
    rc, out = sdsnn(["train", "--resume", str(run)], cache)
    assert rc == 0, out
    assert (run / "summary.json").exists()
    assert_equivalent(one_rank, run)


@needs_mpi
def test_a_crashing_rank_stops_the_job_and_keeps_the_checkpoint(cache, tmp_path):
    run = tmp_path / "crashed"
    rc, out = sdsnn(["train", *ARGS, "--distributed", "--run-dir", str(run), "--checkpoint-every", "2"], cache,
                    ranks=2, extra_env={"SDSNN_FAIL_RANK": "1", "SDSNN_FAIL_AT_BATCH": "3", "SDSNN_FAIL_HOW": "exit"},
                    timeout=300)
    assert rc != 0, out
    assert "rank 1: injected crash" in out
    last = latest_checkpoint(run)
    assert last.name == "ckpt-0000-00002.npz"
    load_checkpoint(last)
    assert not (run / "summary.json").exists()


@needs_mpi
def test_sweep_spreads_runs_over_ranks_into_one_table(cache, tmp_path):
    out_dir = tmp_path / "sweep"
    rc, out = sdsnn(["sweep", "--distributed", "--out", str(out_dir), "--seeds", "0", "1", "--",
                     "--hidden", "16", "--steps", "6", "--train-limit", "100", "--test-limit", "50",
                     "--batch-size", "50", "--epochs", "1", "--log-every", "0"], cache, ranks=2)
    assert rc == 0, out
    table = json.loads((out_dir / "comparison.json").read_text())["runs"]
    assert list(table) == ["seed0", "seed1"]
    assert [table[k]["rank"] for k in table] == [0, 1]
    assert all(0 <= table[k]["test_accuracy"] <= 1 for k in table)
    md = (out_dir / "comparison.md").read_text()
    assert "| seed0 |" in md and "| seed1 |" in md
    assert (out_dir / "seed1" / "summary.json").exists()
