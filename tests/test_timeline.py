"""SD-SNN never silently does nothing: the structural timeline fitted to the run (issue 24)."""
import json
import os

import pytest

from sdsnn_brian import Adam, Trainer
from sdsnn_brian.cli import main
from sdsnn_brian.data import MNIST
from sdsnn_brian.models import mnist_fc
from sdsnn_brian.report import comparison_markdown
from sdsnn_brian.structure import SDSNNConfig, StructureSchedule, fc_layer_specs, regeneration_percentile
from sdsnn_brian.structure.timeline import (ShortTimelineError, check_timeline, fit_timeline, structural_steps,
                                            timeline_needs)


def test_reference_timeline_needs_hand_computed():
    # first pruning at t = 2*18 + 1 = 37 (the 38th step); p(t) = min(99, 60 + 1.1**(t - 37)) first
    # reaches 99 at t = 76 (1.1**39 = 41.1 > 39 > 1.1**38 = 37.4): the 77th step
    assert timeline_needs(SDSNNConfig()) == {"prune": 38, "fade": 77, "complete": 77}
    assert regeneration_percentile(76, 60.0, 36) == 99.0 > regeneration_percentile(75, 60.0, 36)
    assert timeline_needs(SDSNNConfig(freeze_after=90))["complete"] == 91


def test_steps_counted_as_the_trainer_takes_them():
    assert structural_steps(6309, 100, 25, 8) == 25 * 8  # 64 minibatches: steps after 8, 16, ..., 64
    assert structural_steps(1000, 100, 15, 60) == 0  # the N-MNIST subset: no step at all
    assert structural_steps(1000, 100, 3, None) == 3  # once per epoch


def test_default_timeline_scales_with_the_data_size():
    cfg = SDSNNConfig(n_out=10, rho0_fc=0.45)
    big, plan_big = fit_timeline(cfg, 60000, 100, 15, steps_per_epoch=10)
    small, plan_small = fit_timeline(cfg, 1000, 100, 15, steps_per_epoch=10)
    assert (plan_big.structure_every, plan_small.structure_every) == (60, 1)
    assert plan_big.steps == plan_small.steps == 150
    assert big == small == cfg and plan_big.compress == plan_small.compress == 1.0


def test_default_keeps_the_mnist_protocols_timeline_bit_for_bit():
    cfg = SDSNNConfig(n_out=10, rho0_fc=0.2, freeze_after=90)
    fitted, plan = fit_timeline(cfg, 6309, 100, 25, steps_per_epoch=8)
    assert fitted is cfg and plan.structure_every == 8 and plan.compress == 1.0 and plan.steps == 200
    conv, plan = fit_timeline(SDSNNConfig(n_out=10), 6309, 100, 15)
    assert plan.structure_every == 8 and plan.compress == 1.0


def test_a_run_too_short_for_the_whole_timeline_gets_the_smallest_compression_that_fits():
    cfg = SDSNNConfig()
    fitted, plan = fit_timeline(cfg, 1000, 100, 3)  # 10 minibatches per epoch, a step after each: 30
    assert plan.structure_every == 1 and plan.steps == 30
    assert plan.needs["complete"] <= 30 and plan.compress > 1
    assert timeline_needs(cfg.compressed(plan.compress - 0.25))["complete"] > 30
    assert fitted == cfg.compressed(plan.compress) and "compressed" in plan.chosen
    # explicit choices win
    fitted, plan = fit_timeline(cfg, 1000, 100, 3, structure_every=5, compress=1.0)
    assert (plan.structure_every, plan.compress, plan.steps, plan.chosen) == (5, 1.0, 6, "given")


def test_a_run_that_cannot_prune_is_refused_with_the_numbers():
    with pytest.raises(ShortTimelineError, match=r"takes 0 structural steps .* needs 38 to prune .* 77 to complete"):
        check_timeline(SDSNNConfig(), 0)
    check_timeline(SDSNNConfig(), 38)
    check_timeline(SDSNNConfig(), 3, allow_short=True)


def test_trainer_refuses_a_short_sdsnn_run_before_any_work(tmp_path):
    net = mnist_fc(hidden=(8,), steps=4)
    sched = StructureSchedule(fc_layer_specs(net.sizes), SDSNNConfig())
    tr = Trainer(net, optimizer=Adam(1e-3), structure=sched, structure_every=60)
    data = MNIST(train=True, limit=100)
    with pytest.raises(ShortTimelineError, match="takes 0 structural steps"):
        tr.fit(data, epochs=15, batch_size=10, run_dir=str(tmp_path / "run"), log_every=0)
    assert tr._sim is None and not os.path.exists(tmp_path / "run")
    ok = Trainer(net, optimizer=Adam(1e-3), structure=StructureSchedule(fc_layer_specs(net.sizes), SDSNNConfig()),
                 structure_every=60, allow_short_structure=True)
    assert ok.fit(data, epochs=0, batch_size=10, log_every=0) == []
    assert ok.config()["structural_steps_planned"] == 0


def test_cli_refuses_and_names_the_options(tmp_path, capsys):
    args = ["train", "--hidden", "8", "--steps", "4", "--train-limit", "100", "--test-limit", "20",
            "--batch-size", "10", "--epochs", "2", "--sdsnn", "--structure-every", "60", "--compress", "1",
            "--log-every", "0", "--run-dir", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "takes 0 structural steps" in err and "--allow-short-structure" in err
    assert not os.path.exists(tmp_path / "run" / "config.json")


def test_cli_default_timeline_prunes_on_a_small_data_set(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "--hidden", "12", "--steps", "5", "--train-limit", "200", "--test-limit", "50",
                 "--batch-size", "20", "--epochs", "4", "--sdsnn", "--log-every", "0", "--run-dir", run]) == 0
    out = capsys.readouterr().out
    assert "structure: 40 structural steps (one every 1 minibatches" in out
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["structure_every"] == 1 and cfg["cli_args"]["compress"] > 1
    assert cfg["structural_steps_planned"] == 40
    last = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))][-1]
    assert last["structural_steps"] == 40
    assert last["compression"] > 0 and sum(last["neurons_pruned"].values()) > 0


def test_comparison_flags_an_sdsnn_run_that_changed_no_mask():
    rows = {"dense": {"test_accuracy": 0.9},
            "sdsnn-reference": {"test_accuracy": 0.9, "structure": {"last_change_step": -1, "steps": 0}},
            "sdsnn-strict": {"test_accuracy": 0.9, "structure": {"last_change_step": 40, "steps": 150}}}
    text = comparison_markdown(rows, "protocol")
    assert "| 0 | **never: no mask changed** |" in text and "| 150 | step 40 |" in text
    assert "Warning: sdsnn-reference changed no mask" in text and "sdsnn-strict changed" not in text


def test_cli_structural_steps_per_epoch_sets_the_step_interval(tmp_path, capsys):
    from sdsnn_brian.cli import _prepare_train, build_parser

    args = build_parser().parse_args(["train", "--hidden", "8", "--steps", "4", "--train-limit", "200",
                                      "--test-limit", "20", "--batch-size", "10", "--epochs", "5", "--sdsnn",
                                      "--structural-steps-per-epoch", "4", "--run-dir", str(tmp_path / "r")])
    trainer, _ = _prepare_train(args)  # nothing is built or trained
    assert trainer.structure_every == 5  # 20 minibatches per epoch, 4 steps each
    assert "structure: 20 structural steps (one every 5 minibatches" in capsys.readouterr().out
