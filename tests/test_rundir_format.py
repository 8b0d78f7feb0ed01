"""The run-directory format has one owner, :mod:`sdsnn_brian.rundir`: file and checkpoint names,
checkpoint array keys, the evaluation seed offset and the one atomic write (architecture issue)."""
import ast
import inspect
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from sdsnn_brian import Trainer, rundir
from sdsnn_brian.checkpoint import list_checkpoints
from sdsnn_brian.models import mnist_fc
from sdsnn_brian.rundir import (EVAL_SEED_OFFSET, RUN_FILES, MissingLayerArray, atomic_file, bias_key,
                                checkpoint_name, grad_score_key, layer_arrays, mask_key, parse_checkpoint_name,
                                vdib_bias_key, vdib_weight_key, weight_key, write_atomic, write_json_atomic)

PACKAGE = Path(rundir.__file__).parent


# -- names ----------------------------------------------------------------------------------
def test_file_names_are_the_established_ones():
    assert RUN_FILES == ("config.json", "metrics.jsonl", "summary.json", "structure.jsonl", "structure_events.npz",
                         "ckpt-*.npz", "params.npz", "results.json", "report")
    assert rundir.CHECKPOINT_PATTERN in RUN_FILES and rundir.REPORT_DIR in RUN_FILES
    assert checkpoint_name(3, 12) == "ckpt-0003-00012.npz"
    assert checkpoint_name(2) == "ckpt-0002.npz"  # VDIB's epoch-only checkpoints
    assert EVAL_SEED_OFFSET == 10 ** 6


@pytest.mark.parametrize("epoch,batch", [(0, 0), (1, 40), (12, 3), (9999, 99999), (12345, 123456), (7, None)])
def test_checkpoint_name_round_trip(epoch, batch):
    name = checkpoint_name(epoch, batch)
    assert parse_checkpoint_name(name) == (epoch, batch)
    assert parse_checkpoint_name(os.path.join("some", "run", name)) == (epoch, batch)
    assert Path(name).match(rundir.CHECKPOINT_PATTERN)


@pytest.mark.parametrize("name", ["params.npz", "ckpt-.npz", "ckpt-a-b.npz", "ckpt-0001-00002.npz.tmp",
                                  ".ckpt-0001-00002.npz.x1y2z3.tmp", "xckpt-0001-00002.npz", "ckpt-1-2-3.npz"])
def test_parse_rejects_other_names(name):
    assert parse_checkpoint_name(name) is None


def test_checkpoint_names_order_like_their_positions(tmp_path):
    positions = [(0, 5), (1, 0), (1, 40), (2, 0), (10, 0), (10, 7), (123, 4567)]
    shuffled = [positions[i] for i in np.random.default_rng(0).permutation(len(positions))]
    for e, b in shuffled:
        (tmp_path / checkpoint_name(e, b)).write_bytes(b"")
    assert sorted(checkpoint_name(e, b) for e, b in shuffled) == [checkpoint_name(e, b) for e, b in positions]
    assert [parse_checkpoint_name(p) for p in list_checkpoints(tmp_path)] == positions


# -- checkpoint keys ------------------------------------------------------------------------
def test_keys_are_the_established_ones():
    assert (weight_key(0), mask_key(1), bias_key(2), grad_score_key(3)) == ("weight_0", "mask_1", "bias_2",
                                                                             "grad_score_3")
    assert (vdib_weight_key(0), vdib_bias_key(1)) == ("W0", "b1")
    assert (rundir.OPTIMIZER_PREFIX, rundir.SCHEDULE_PREFIX, rundir.STRUCTURE_PREFIX) == ("optim/", "sched/",
                                                                                          "structure/")


def test_trainer_state_dict_keys_and_layer_arrays():
    tr = Trainer(mnist_fc(hidden=(4,), steps=3), seed=1)  # constructing does not compile
    arrays, meta = tr.state_dict()
    n = len(tr.weights)
    assert n == 2
    for k in range(n):
        assert arrays[weight_key(k)] is tr.weights[k]
        assert arrays[mask_key(k)] is tr.masks[k]
        assert arrays[grad_score_key(k)] is tr.grad_score[k]
        assert (bias_key(k) in arrays) == (tr.biases[k] is not None)
    weights, masks, biases = layer_arrays(arrays)  # layers counted from the keys
    assert len(weights) == len(masks) == len(biases) == n
    for k in range(n):
        np.testing.assert_array_equal(weights[k], tr.weights[k])
        np.testing.assert_array_equal(masks[k], tr.masks[k])
        assert (biases[k] is None) == (tr.biases[k] is None)
        if biases[k] is not None:
            np.testing.assert_array_equal(biases[k], tr.biases[k])
    assert layer_arrays(arrays, bias=[False] * n)[2] == [None] * n

    other = Trainer(mnist_fc(hidden=(4,), steps=3), seed=2)
    assert not np.array_equal(other.weights[0], tr.weights[0])
    other.load_state_dict(arrays, meta)
    for k in range(n):
        np.testing.assert_array_equal(other.weights[k], tr.weights[k])
        assert not np.shares_memory(other.weights[k], tr.weights[k])  # loaded as copies


def test_missing_layer_array_is_named_and_loads_nothing():
    tr = Trainer(mnist_fc(hidden=(4,), steps=3), seed=1)
    arrays, meta = tr.state_dict()
    del arrays[mask_key(1)]
    with pytest.raises(MissingLayerArray) as ei:
        layer_arrays(arrays, 2)
    assert ei.value.key == "mask_1" and isinstance(ei.value, KeyError)
    other = Trainer(mnist_fc(hidden=(4,), steps=3), seed=2)
    before = [w.copy() for w in other.weights]
    with pytest.raises(KeyError, match="mask_1"):
        other.load_state_dict(arrays, meta)
    for w, b in zip(other.weights, before):
        np.testing.assert_array_equal(w, b)


def test_eval_seed_offset_is_everyones_default():
    from sdsnn_brian import export

    assert export.EVAL_SEED_OFFSET is EVAL_SEED_OFFSET
    for fn in (Trainer.evaluate, Trainer.predict, export.encode_inputs):
        assert inspect.signature(fn).parameters["seed_offset"].default == EVAL_SEED_OFFSET


# -- atomic writes --------------------------------------------------------------------------
def _old_write_json_atomic(path, obj, lines=False):
    """What callbacks.write_json_atomic wrote before it moved (the bytes must not change)."""
    with open(path, "w") as fh:
        if lines:
            for item in obj:
                fh.write(json.dumps(rundir.jsonable(item)) + "\n")
        else:
            json.dump(rundir.jsonable(obj), fh, indent=2)


def test_write_json_atomic_bytes_unchanged(tmp_path):
    from sdsnn_brian import callbacks

    assert callbacks.write_json_atomic is write_json_atomic  # still importable from callbacks
    obj = {"a": np.float64(0.5), 3: [np.int64(2), np.arange(3)], "s": "ü", "nested": {"t": (1, 2)}}
    rows = [{"epoch": 1, "loss": np.float32(0.25)}, {"epoch": 2, "x": np.ones(2)}]
    for value, lines in ((obj, False), (rows, True), ([], True)):
        write_json_atomic(tmp_path / "new.json", value, lines=lines)
        _old_write_json_atomic(tmp_path / "old.json", value, lines=lines)
        assert (tmp_path / "new.json").read_bytes() == (tmp_path / "old.json").read_bytes()


def test_write_atomic_text_bytes_and_mode(tmp_path):
    write_atomic(tmp_path / "a.md", "± text\n")
    write_atomic(tmp_path / "b.bin", b"\x00\x01")
    with open(tmp_path / "plain.md", "w") as fh:
        fh.write("x")
    assert (tmp_path / "a.md").read_bytes() == "± text\n".encode("utf-8")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    plain = os.stat(tmp_path / "plain.md").st_mode & 0o777
    assert os.stat(tmp_path / "a.md").st_mode & 0o777 == plain  # the mode open() gives, not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.md", "b.bin", "plain.md"]


def test_write_atomic_replace_failure_leaves_target_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    write_atomic(target, "old\n")

    def boom(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(PermissionError, match="summary.json"):
        write_atomic(target, "new content\n")
    with pytest.raises(PermissionError):
        write_json_atomic(tmp_path / "fresh.json", {"a": 1})
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_atomic_file_failure_midway_never_half_writes(tmp_path):
    target = tmp_path / "metrics.jsonl"
    write_atomic(target, "a\n")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as fh:
            fh.write(b"half of it")
            raise RuntimeError("interrupted")
    with pytest.raises(TypeError):  # not JSON-able: fails before anything is written
        write_json_atomic(target, {"x": object()})
    assert target.read_text() == "a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


def test_write_atomic_missing_directory_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        write_atomic(tmp_path / "nodir" / "config.json", "{}")


# -- nobody else owns the format ------------------------------------------------------------
def _sources():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), path.read_text(encoding="utf-8")


def _offenders(pattern, allowed=()):
    rx = re.compile(pattern)
    return [f"{name}:{i}: {line.strip()}" for name, text in _sources() if name not in allowed
            for i, line in enumerate(text.splitlines(), 1) if rx.search(line)]


def test_one_atomic_write():
    # cuda.py replaces a symlink (not a file write); data/events.py and data/cifar10.py rename a finished
    # cache directory
    assert _offenders(r"os\.(replace|rename)\(", {"rundir.py", "cuda.py", "data/events.py",
                                                       "data/cifar10.py"}) == []
    assert _offenders(r"\.tmp\{", {"cuda.py", "data/events.py"}) == []
    assert _offenders(r"\bmkstemp\(|\bfsync\(", {"rundir.py"}) == []


def test_one_eval_seed_offset():
    assert _offenders(r"10\s*\*\*\s*6\b", {"rundir.py"}) == []


def test_one_owner_of_names_and_keys():
    keys = r"""f["'](weight|mask|bias|grad_score)_\{|f["']ckpt-\{|f["'][Wb]\{k\}"""
    assert _offenders(keys, {"rundir.py"}) == []


def test_rundir_imports_nothing_from_the_package():
    tree = ast.parse((PACKAGE / "rundir.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("sdsnn_brian"), ast.dump(node)
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("sdsnn_brian") for a in node.names)
