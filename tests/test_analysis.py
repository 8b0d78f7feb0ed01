"""Analysis and figures: every figure renders headless from a real run, Kaplan-Meier and SOP/energy
counts against hand-computed values, the report and plot commands, errors for bad run directories."""
import importlib.util
import os
import shutil
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from sdsnn_brian import MNIST, Adam, Trainer  # noqa: E402
from sdsnn_brian import energy as en  # noqa: E402
from sdsnn_brian import lifetimes as lt  # noqa: E402
from sdsnn_brian import plotting as pl  # noqa: E402
from sdsnn_brian import runreport as rr  # noqa: E402
from sdsnn_brian.callbacks import RunDirectory  # noqa: E402
from sdsnn_brian.cli import main as cli_main  # noqa: E402
from sdsnn_brian.models import mnist_fc  # noqa: E402
from sdsnn_brian.report import summarize, write_comparison  # noqa: E402
from sdsnn_brian.structure import (REMOVED, RESTORED, SDSNNConfig, StructureLog,  # noqa: E402
                                   StructureSchedule, fc_layer_specs)

BATCH = 20
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------ a real run
@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("analysis_cache"))


def _train(run_dir, cache_dir, structural, epochs):
    net = mnist_fc(hidden=(24,), steps=6)
    sched = StructureSchedule(fc_layer_specs(net.sizes), SDSNNConfig(n_out=10).compressed(6)) if structural else None
    tr = Trainer(net, optimizer=Adam(2e-3), seed=1, structure=sched, structure_every=1 if structural else None,
                 cache_dir=cache_dir, callbacks=[RunDirectory(run_dir, protocol="tests/test_analysis.py")])
    train, test = MNIST(train=True, limit=200), MNIST(train=False, limit=60)
    tr.fit((train.images, train.labels), epochs=epochs, batch_size=BATCH, validation=(test.images, test.labels),
           run_dir=run_dir, log_every=0)
    return tr


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, cache_dir):
    """A comparison directory as protocols/sdsnn_mnist.py writes it: dense/ and sdsnn-reference/."""
    root = tmp_path_factory.mktemp("cmp")
    rows, trainers = {}, {}
    for name, structural, epochs in (("dense", False, 1), ("sdsnn-reference", True, 2)):
        tr = _train(str(root / name), cache_dir, structural, epochs)
        rows[name], trainers[name] = summarize(tr, label=name), tr
    write_comparison(str(root), rows, "tests/test_analysis.py")
    return root, trainers


@pytest.fixture(scope="module")
def run_dir(comparison):
    root, trainers = comparison
    sched = trainers["sdsnn-reference"].structure
    # the short compressed timeline prunes and regrows within the two epochs
    assert sched.log.n_events(REMOVED) > 0 and sched.log.n_events(RESTORED) > 0
    return str(root / "sdsnn-reference")


@pytest.fixture(scope="module")
def run(run_dir):
    return rr.load_run(run_dir)


def _check_png(path, figsize):
    img = mpimg.imread(path)
    assert img.shape[:2] == (round(figsize[1] * rr.DPI), round(figsize[0] * rr.DPI))
    assert float(img[..., :3].std()) > 0.01  # not blank


def _check_labels(fig):
    titles = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    for ax in fig.axes:
        if not ax.axison:
            continue
        titles.append(ax.get_title())
        assert ax.get_ylabel(), f"axes without y label in {titles}"
        handles, _ = ax.get_legend_handles_labels()
        if len(handles) > 1:
            assert ax.get_legend() is not None, f"several series but no legend: {ax.get_title()}"
    assert any(titles)
    assert any(ax.get_xlabel() for ax in fig.axes)


@pytest.mark.parametrize("name", list(rr.FIGURES))
def test_every_figure_renders_headless(run, cache_dir, tmp_path, name):
    fig = rr.make_figure(run, name, cache_dir=cache_dir)
    _check_labels(fig)
    out = tmp_path / f"{name}.png"
    fig.savefig(out, dpi=rr.DPI)
    _check_png(out, rr.FIGURES[name].figsize(run))


def test_comparison_figure_and_dense_run(comparison, tmp_path):
    root, _ = comparison
    runs = rr.comparison_runs(root)
    assert list(runs) == ["dense", "sdsnn-reference"]
    out = rr.render_figure(str(root), "comparison", str(tmp_path / "c.png"))
    _check_png(out, rr.COMPARISON_FIGURE.figsize(runs))
    assert "dense run" in rr.applicable("lifetimes", runs["dense"])
    assert runs["sdsnn-reference"].dense_sibling().path == runs["dense"].path


# ------------------------------------------------------------------------------------ Kaplan-Meier
def test_kaplan_meier_hand_computed():
    # durations 2,3,3+,5,6,6+,8+ (+ censored)
    km = lt.kaplan_meier([2, 3, 3, 5, 6, 6, 8], [1, 1, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(km.times, [2, 3, 5, 6])
    np.testing.assert_array_equal(km.at_risk, [7, 6, 4, 3])
    np.testing.assert_array_equal(km.events, [1, 1, 1, 1])
    np.testing.assert_allclose(km.survival, [6 / 7, 6 / 7 * 5 / 6, 5 / 7 * 3 / 4, 15 / 28 * 2 / 3])
    np.testing.assert_allclose(km.at([0, 1.9, 2, 4, 100]), [1, 1, 6 / 7, 5 / 7, 5 / 14])
    assert km.n_censored == 3 and km.median() == 6


def test_synapse_lives_and_kaplan_meier_from_an_event_log():
    log = StructureLog(["a", "b"])
    log.record_events(2, 1, [0], REMOVED)          # another layer: ignored
    log.record_events(3, 0, [0, 1], REMOVED)
    log.record_events(5, 0, [1], RESTORED)
    log.record_events(6, 0, [2], REMOVED)
    log.record_events(7, 0, [2], RESTORED)
    log.record_events(8, 0, [1], REMOVED)
    # 5 synapses, steps 0..9: lives 0-3, 0-3, 5-8 (regrown), 0-6, 7-9+ (regrown, censored), 0-9+, 0-9+
    lives = lt.synapse_lives(log, 0, n_synapses=5, n_steps=10)
    got = sorted(zip(lives.index.tolist(), lives.start.tolist(), lives.duration.tolist(), lives.observed.tolist(),
                     lives.regrown.tolist()))
    assert got == [(0, 0, 3, True, False), (1, 0, 3, True, False), (1, 5, 3, True, True), (2, 0, 6, True, False),
                   (2, 7, 2, False, True), (3, 0, 9, False, False), (4, 0, 9, False, False)]
    km = lt.kaplan_meier(lives.duration, lives.observed)
    # t=3: at risk 6 (the life censored at 2 has left), 3 removals; t=6: at risk 3, 1 removal
    np.testing.assert_array_equal(km.times, [3, 6])
    np.testing.assert_array_equal(km.at_risk, [6, 3])
    np.testing.assert_allclose(km.survival, [0.5, 0.5 * 2 / 3])
    summ = lt.regrowth_summary(lives)
    assert summ["restorations"] == 2 and summ["regrown_removed_again"] == 1 and summ["fraction_removed_again"] == 0.5
    edges, removed, censored = lt.lifetime_histogram(lives)
    assert removed[3] == 3 and removed[6] == 1 and censored[2] == 1 and censored[9] == 2
    steps, rem, res = lt.events_per_step(log, 0, 10)
    assert rem.tolist() == [0, 0, 0, 2, 0, 0, 1, 0, 1, 0] and res.tolist() == [0, 0, 0, 0, 0, 1, 0, 1, 0, 0]
    # synapse 4 absent from the start and never restored: no life at all
    lives2 = lt.synapse_lives(log, 0, 5, 10, initially_present=[1, 1, 1, 1, 0])
    assert len(lives2) == len(lives) - 1
    bad = StructureLog(["a"])
    bad.record_events(1, 0, [0], REMOVED)
    bad.record_events(2, 0, [0], REMOVED)
    with pytest.raises(ValueError, match="consecutive"):
        lt.synapse_lives(bad, 0, 3, 5)


def test_lifetimes_of_the_real_run_are_consistent(run):
    from sdsnn_brian.structure.events import RESTORED as RES

    lives = lt.synapse_lives(run.log, 0, run.synapse_counts()[0], run.n_steps)
    # dense start: one life per synapse, and one more per restoration
    assert len(lives) == run.synapse_counts()[0] + run.log.n_events(RES)
    # censored lives are exactly the synapses present at the end
    assert int((~lives.observed).sum()) == int(run.masks[0].sum())


# ------------------------------------------------------------------------------------ SOPs and energy
def test_sops_and_energy_hand_computed():
    x = np.zeros((2, 2, 3), np.uint8)             # [T, B, n_in]
    x[0, 0] = [1, 0, 1]
    x[1, 0] = [1, 1, 0]                           # sample 0 input counts [2, 1, 1]
    x[1, 1] = [0, 0, 1]                           # sample 1 input counts [0, 0, 1]
    h = np.zeros((2, 2, 2), np.uint8)
    h[0, 0] = [1, 0]
    h[1, 0] = [1, 1]                              # sample 0 hidden counts [2, 1]
    h[0, 1] = [0, 1]                              # sample 1 hidden counts [0, 1]
    o = np.ones((2, 2, 1), np.uint8)              # output spikes never count
    m0 = np.array([[1, 0, 1], [1, 1, 0]])         # fan-out [2, 1, 1]
    m1 = np.array([[0, 1]])                       # fan-out [0, 1]
    per = en.sops([x, h], [m0, m1])
    np.testing.assert_array_equal(per, [[2 * 2 + 1 + 1, 1], [1, 1]])

    class Rec:
        s = [h, o]
    np.testing.assert_array_equal(en.sops_from_recording(x, Rec, [m0, m1]), per)
    np.testing.assert_array_equal(en.sops_from_recording(x, Rec, [None, None], [(2, 3), (1, 2)]),
                                  [[8, 2], [3, 1]])
    np.testing.assert_array_equal(en.macs([m0, m1]), [4, 1])
    np.testing.assert_array_equal(en.macs([m0, m1], pruned=False), [6, 2])
    est = en.energy_estimate(x, Rec, [m0, m1])
    assert en.E_AC_PJ == 0.9 and en.E_MAC_PJ == 4.6
    assert est["sops"] == 4.5 and est["sops_dense"] == 7.0
    assert est["E_snn_J"] == pytest.approx(4.5 * 0.9e-12) and est["E_snn_dense_J"] == pytest.approx(7 * 0.9e-12)
    assert est["E_ann_J"] == pytest.approx(5 * 4.6e-12) and est["E_ann_dense_J"] == pytest.approx(8 * 4.6e-12)
    # an analogue first layer: T x present synapses MACs instead of its SOPs
    est = en.energy_estimate(x, Rec, [m0, m1], analog_input=True)
    assert est["analog_macs"] == 8 and est["E_snn_J"] == pytest.approx(1 * 0.9e-12 + 8 * 4.6e-12)
    with pytest.raises(ValueError, match="columns"):
        en.sops([x, h], [m0.T, m1])


def test_sops_match_the_trainers_evaluation(run, comparison, cache_dir):
    _, trainers = comparison
    tr = trainers["sdsnn-reference"]
    sim = run.simulate(cache_dir=cache_dir)
    ev = tr.evaluate((sim_images(len(sim.labels)), sim.labels), batch_size=BATCH)
    assert sim.estimate["sops"] == pytest.approx(ev["sops_per_sample"])
    assert sim.estimate["sops_dense"] >= sim.estimate["sops"]


def test_report_simulation_is_the_trainers_forward_pass(run, cache_dir):
    """The report simulates without a Trainer (Simulator + encoder + the checkpoint's arrays): the
    same input spikes and recording as Trainer.forward with the evaluation encoding."""
    from sdsnn_brian.rundir import EVAL_SEED_OFFSET

    sim = run.simulate(cache_dir=cache_dir)
    assert run.config["seed"] == 1
    tr = Trainer(run.build_network(), loss=run.config.get("loss", "rate_mse"), seed=1, cache_dir=cache_dir)
    tr.weights, tr.masks, tr.biases = run.weights, run.masks, run.biases
    x, rec = tr.forward(sim_images(len(sim.labels)), np.random.default_rng([1, EVAL_SEED_OFFSET, 0]),
                        max(BATCH, len(sim.labels)))
    np.testing.assert_array_equal(x, sim.x)
    for got, want in zip(sim.rec.s + sim.rec.u, rec.s + rec.u):
        np.testing.assert_array_equal(got, want)
    res = tr.loss(rec.u[-1], rec.s[-1], sim.labels)
    np.testing.assert_array_equal(sim.predictions, np.argmax(res.scores, axis=1))


def sim_images(n):
    return MNIST(train=False, limit=n).images


# ------------------------------------------------------------------------------------ raster units
def test_raster_accepts_quantities_seconds_and_steps():
    from brian2 import ms, volt
    from matplotlib.figure import Figure

    axes = Figure().subplots(1, 3)
    pl.plot_raster([0, 2], [1, 3] * ms, ax=axes[0])
    pl.plot_raster([0, 2], [0.001, 0.003], ax=axes[1])
    pl.plot_raster([0, 2], [1, 3], dt=1 * ms, ax=axes[2])
    for a in axes:
        np.testing.assert_allclose(a.lines[0].get_xdata(), [1, 3])
        assert a.get_xlabel() == "time (ms)"
    with pytest.raises(Exception, match="time"):
        pl.plot_raster([0], [1] * volt, ax=axes[0])
    with pytest.raises(ValueError):
        pl.plot_raster([0, 1], [1], ax=axes[0])


# ------------------------------------------------------------------------------------ report, CLI, scripts
def test_report_command_writes_every_figure(comparison, cache_dir, capsys):
    root, _ = comparison
    assert cli_main(["report", str(root), "--cache-dir", cache_dir]) == 0
    md = (root / "report" / "index.md").read_text()
    html = (root / "report" / "index.html").read_text()
    assert "comparison.png" in md and "## Run: dense" in md and "| run | test accuracy |" in md
    for name in rr.FIGURES:
        assert f"sdsnn-reference/{name}.png" in md and f'sdsnn-reference/{name}.png' in html
        assert (root / "report" / "sdsnn-reference" / f"{name}.png").is_file()
    for name in ("training", "raster", "membrane", "connectivity", "energy"):
        assert (root / "report" / "dense" / f"{name}.png").is_file()
    assert "dense/lifetimes" in md and "not drawn" in md
    assert '"gradient_mode": "reference"' in md  # the configuration
    assert "Metrics per epoch" in md and "0.9 pJ" in md


def test_single_run_report_and_plot(run_dir, cache_dir, tmp_path, capsys):
    rep = rr.write_report(run_dir, tmp_path / "rep", simulate=False)
    assert {os.path.basename(p)[:-4] for p in rep.figures} == set(rr.FIGURES) - {"raster", "membrane"}
    assert set(rep.skipped) == {"sdsnn-reference/raster", "sdsnn-reference/membrane"}
    out = tmp_path / "conn.png"
    assert cli_main(["plot", run_dir, "--figure", "connectivity", "--out", str(out)]) == 0
    assert out.is_file()


def _load_script(name):
    sys.path.insert(0, os.path.join(ROOT, "analysis"))
    try:
        spec = importlib.util.spec_from_file_location(f"analysis_{name}", os.path.join(ROOT, "analysis", f"{name}.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.pop(0)


def test_analysis_scripts(run_dir, tmp_path, capsys):
    covered = set()
    for name in ("rasters", "lifetimes", "spines", "structure", "connectivity", "energy"):
        mod = _load_script(name)
        assert set(mod.FIGURES) <= set(rr.FIGURES)
        covered |= set(mod.FIGURES)
    assert covered == set(rr.FIGURES)
    mod = _load_script("spines")
    assert mod.run_family(mod.FIGURES, "", [run_dir, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "spines.png").is_file() and (tmp_path / "weights-ranges.png").is_file()
    assert mod.run_family(mod.FIGURES, "", [str(tmp_path / "nope")]) == 2


def test_errors_for_missing_or_incomplete_run_directories(run_dir, comparison, tmp_path, capsys):
    assert cli_main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["plot", str(empty), "--figure", "training"]) == 2
    assert "config.json is missing" in capsys.readouterr().err
    for drop, what in (("metrics.jsonl", "metrics.jsonl"), ("structure_events.npz", "structure_events.npz"),
                       ("ckpt", "checkpoint")):
        broken = tmp_path / f"broken-{drop}"
        shutil.copytree(run_dir, broken, ignore=shutil.ignore_patterns("report"))
        for f in os.listdir(broken):
            if f.startswith(drop):
                os.remove(broken / f)
        assert cli_main(["report", str(broken)]) == 2
        assert what in capsys.readouterr().err
    (tmp_path / "half").mkdir()
    shutil.copy(os.path.join(run_dir, "config.json"), tmp_path / "half")
    (tmp_path / "half" / "metrics.jsonl").write_text('{"epoch": 1, "train_lo')
    assert cli_main(["plot", str(tmp_path / "half"), "--figure", "training"]) == 2
    assert "metrics.jsonl line 1" in capsys.readouterr().err
    root, _ = comparison
    assert cli_main(["plot", str(root / "dense"), "--figure", "lifetimes"]) == 2
    assert "dense run" in capsys.readouterr().err
    assert cli_main(["plot", run_dir, "--figure", "nonsense"]) == 2
    assert "known figures" in capsys.readouterr().err
    assert cli_main(["plot", str(root), "--figure", "raster"]) == 2
    assert "sub-run" in capsys.readouterr().err


def test_lifetimes_figure_without_events_and_report_without_a_simulator(run, run_dir, tmp_path, monkeypatch):
    import copy

    quiet = copy.copy(run)
    quiet.log = StructureLog(run.layer_names)
    fig = rr.make_figure(quiet, "lifetimes")
    _check_labels(fig)

    def broken(self, *a, **k):
        raise RuntimeError("no compiler here")
    monkeypatch.setattr(rr.Run, "simulate", broken)
    with pytest.warns(UserWarning, match="no compiler here"):
        rep = rr.write_report(run_dir, tmp_path / "rep")
    assert "no compiler here" in rep.skipped["sdsnn-reference/raster"]
    assert any(p.endswith("energy.png") for p in rep.figures)


# ------------------------------------------------------------------------------------ issue 17 (no build)
def test_most_active_neurons_counts_uint8_spikes_without_wrapping():
    s = np.zeros((6, 2, 5), np.uint8)
    s[:, :, 3] = 1  # neuron 3 fires every step of every sample, the others never
    assert pl.most_active_neurons(s, 2)[0] == 3
    assert pl.most_active_neurons(s[:, 0], 1) == [3]
    s[:2, 0, 1] = 1  # ranked by count, then index; ties on count go to the higher peak membrane
    assert pl.most_active_neurons(s, 3) == [3, 1, 0]
    u = np.zeros((6, 2, 5))
    u[2, 1, 4] = 0.4
    assert pl.most_active_neurons(s, 3, u) == [3, 1, 4]


def test_membrane_traces_show_the_firing_neuron():
    from types import SimpleNamespace

    from matplotlib.figure import Figure

    T, B = 8, 1
    s_h = np.zeros((T, B, 6), np.uint8)
    s_h[:, :, 3] = 1
    u_h = np.where(s_h, 1.0, 0.1)
    rec = SimpleNamespace(u=[u_h, np.zeros((T, B, 2))], s=[s_h, np.zeros((T, B, 2), np.uint8)])
    axes = pl.plot_membrane_traces(rec, ax=Figure().subplots(2, 1), n_hidden=1, theta=0.5)
    assert [ln.get_label() for ln in axes[0].lines if ln.get_label().startswith("neuron")] == ["neuron 3"]


def _synthetic_run(path, done, epochs, batch=0, summary=False):
    """A run directory as RunDirectory writes it, without training: ``done`` epochs of metrics and a
    checkpoint after ``done`` epochs and ``batch`` further batches."""
    from sdsnn_brian import Dense, Input, Network
    from sdsnn_brian.callbacks import write_json_atomic
    from sdsnn_brian.checkpoint import save_checkpoint

    net = Network(Input(4), Dense(3), steps=2)
    os.makedirs(path)
    write_json_atomic(os.path.join(path, "config.json"),
                      {"network": net.describe(), "epochs": epochs, "batch_size": 2, "n_train": 8,
                       "structure": None, "loss": "rate_mse", "seed": 0, "protocol": "synthetic"})
    write_json_atomic(os.path.join(path, "metrics.jsonl"),
                      [{"epoch": e + 1, "train_loss": 1.0 / (e + 1), "train_accuracy": 0.5, "lr": 1e-3,
                        "train_samples_per_s": 100.0, "compression": 0.0} for e in range(done)], lines=True)
    w = np.random.default_rng(0).normal(size=(3, 4))
    save_checkpoint(os.path.join(path, f"ckpt-{done:04d}-{batch:05d}.npz"),
                    {"weight_0": w, "mask_0": np.ones_like(w)}, {"epoch": done, "batch": batch})
    if summary:
        write_json_atomic(os.path.join(path, "summary.json"), {"epochs": done})
    return str(path)


def test_report_of_a_run_in_progress_says_so(tmp_path):
    live = _synthetic_run(tmp_path / "live", done=1, epochs=3, batch=2)
    rep = rr.write_report(live, tmp_path / "rep-live", simulate=False)
    md = open(rep.markdown).read()
    head = md.split("## Summary")[0]
    assert "run in progress (or interrupted): 1 of 3 epochs done; the figures show the newest checkpoint " \
           "(epoch 1, batch 2" in head.lower()
    assert "in progress" in open(rep.html).read()
    # summary.json written, every epoch in the metrics: a finished run has no such line
    done = _synthetic_run(tmp_path / "done", done=3, epochs=3, summary=True)
    md = open(rr.write_report(done, tmp_path / "rep-done", simulate=False).markdown).read()
    assert "in progress" not in md
    # a resumed run asked for more epochs: summary.json of the earlier fit, fewer epochs than configured
    more = _synthetic_run(tmp_path / "more", done=2, epochs=5, summary=True)
    md = open(rr.write_report(more, tmp_path / "rep-more", simulate=False).markdown).read()
    assert "run in progress (or interrupted): 2 of 5 epochs done" in md.split("## Summary")[0].lower()
    # a comparison directory names its unfinished sub-runs at the top
    _synthetic_run(tmp_path / "cmp" / "dense", done=2, epochs=2, summary=True)
    _synthetic_run(tmp_path / "cmp" / "sparse", done=1, epochs=2)
    md = open(rr.write_report(tmp_path / "cmp", simulate=False).markdown).read()
    assert "sparse: Run in progress (or interrupted): 1 of 2 epochs done" in md.split("### Runs compared")[0]
    assert "dense: Run in progress" not in md


def test_damaged_config_json_is_named(tmp_path, capsys):
    from sdsnn_brian.export import load_trained_run

    run = _synthetic_run(tmp_path / "run", done=1, epochs=1, summary=True)
    cfg = os.path.join(run, "config.json")
    with open(cfg, "w") as fh:
        fh.write('{"network": {"input": ')  # cut short
    for call in (lambda: rr.load_run(run), lambda: rr.write_report(run, simulate=False),
                 lambda: load_trained_run(run)):
        with pytest.raises((ValueError, OSError)) as info:
            call()
        msg = str(info.value)
        assert cfg in msg and "damaged" in msg.replace(cfg, "")  # the test's own path holds "damaged"
    assert cli_main(["report", run, "--no-simulate"]) == 2
    err = capsys.readouterr().err
    assert cfg in err and "damaged" in err.replace(cfg, "")


def test_old_report_paths_reexport_the_reporting_package_which_needs_no_trainer():
    import ast
    import glob

    from sdsnn_brian import plotting, report, reporting

    assert rr.Run is reporting.Run and rr.write_report is reporting.write_report
    assert report.summarize is reporting.summarize and pl.plot_raster is reporting.plots.plot_raster
    for path in glob.glob(os.path.join(ROOT, "sdsnn_brian", "reporting", "*.py")):
        tree = ast.parse(open(path).read())
        mods = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(m.split(".")[-1] in ("trainer", "callbacks") for m in mods), path
        assert "0.9 pJ" not in open(path).read() and "4.6 pJ" not in open(path).read(), path
    assert plotting.ENERGY_CAPTION == reporting.plots.ENERGY_CAPTION
