"""sdsnn_brian's generated C++ (sdsnn_brian/codegen.py): the queue-free event code gives Brian2's
results bit for bit, on our layouts and on layouts it was not written for, and the trims of the
generated project keep ``make`` incremental."""
import os
import re
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from reference import numpy_forward  # noqa: E402

from sdsnn_brian import Dense, Input, Network  # noqa: E402
from sdsnn_brian.codegen import event_codeobj_class, tune_generated_code, uses_event_code  # noqa: E402
from sdsnn_brian.device import Simulator  # noqa: E402


def _problem(seed=3):
    net = Network(Input(50), Dense(30, bias=True), Dense(6), steps=8)
    rng = np.random.default_rng(seed)
    W, b = net.init_params(rng)
    W = [3 * W[0], 6 * W[1]]
    x = (rng.random((8, 5, 50)) < 0.3).astype(np.uint8)
    return net, W, b, x


def _generated(project_dir, name):
    """The source of a code object (Brian2 appends _1, _2 to names already used in the process)."""
    folder = os.path.join(project_dir, "code_objects")
    found = [f for f in os.listdir(folder) if re.fullmatch(name + r"(_\d+)?\.cpp", f)]
    assert len(found) == 1, found
    return open(os.path.join(folder, found[0])).read()


def test_event_code_equals_brian2_code_bit_for_bit(tmp_path):
    """Dense rows, a compacted layer and Brian2's own queue: identical membranes and spikes,
    and equal to the numpy re-simulation."""
    net, W, b, x = _problem()
    rng = np.random.default_rng(0)
    masks = [None, (rng.random(W[1].shape) < 0.1).astype(float)]  # layer 2 compacted (< 20 %)
    runs = {}
    for code in ("sdsnn", "brian2"):
        for m in (None, masks):
            sim = Simulator(net, 5, "cpp_standalone", cache_dir=str(tmp_path), masks=m, event_code=code)
            runs[code, m is None] = sim.run(x, W, b)
            src = _generated(sim.project_dir, "syn1_pre_codeobject")
            push = _generated(sim.project_dir, "syn1_pre_push_spikes")
            assert ("if (_dense)" in src) == (code == "sdsnn")  # layer 1 is all-to-all in both builds
            assert (".push(" in push) == (code == "brian2")
            # the sdsnn build adds the rows of 4 spiking sources per pass, thresholds 8 neurons at
            # a time and keeps its monitors' rows; the brian2 build is Brian2's templates throughout
            assert ("_row3" in src) == (code == "sdsnn")
            assert ("_any" in _generated(sim.project_dir, "layer1_spike_thresholder_codeobject")) == (code == "sdsnn")
            assert ("rows kept" in _generated(sim.project_dir, "layer1_membrane_codeobject")) == (code == "sdsnn")
    Wm = [W[0], W[1] * masks[1]]
    for whole in (True, False):
        u_ref, s_ref = numpy_forward(net.dynamics(), W if whole else Wm, b, x)
        for l in range(2):
            assert 0 < s_ref[l].sum()
            np.testing.assert_array_equal(runs["sdsnn", whole].u[l], runs["brian2", whole].u[l])
            np.testing.assert_array_equal(runs["sdsnn", whole].s[l], runs["brian2", whole].s[l])
            np.testing.assert_array_equal(runs["sdsnn", whole].s[l], s_ref[l])
            np.testing.assert_allclose(runs["sdsnn", whole].u[l], u_ref[l], rtol=1e-12, atol=1e-12)


def test_event_code_on_layouts_it_was_not_written_for(tmp_path):
    """Plain Brian2 synapses in shuffled order, with several synapses per pair, given either
    sdsnn_brian code object class: the same result as Brian2's spike queue, bit for bit."""
    import brian2 as b2

    from sdsnn_brian import device as devmod

    b2.device.reinit()
    devmod._ACTIVE.update(key=None, objects=None)
    try:
        b2.set_device("cpp_standalone", directory=str(tmp_path / "project"), build_on_run=False)
        assert uses_event_code("sdsnn") and not uses_event_code("brian2")
        b2.defaultclock.dt = 1 * b2.ms
        rng = np.random.default_rng(1)
        n_pre, n_post = 40, 25
        events = rng.choice(n_pre * 30, 300, replace=False)  # (source, step) pairs, each once
        src = b2.SpikeGeneratorGroup(n_pre, events % n_pre, (events // n_pre) * b2.ms)
        pre = np.concatenate([rng.integers(0, n_pre, 500), np.repeat(np.arange(n_pre), n_post)])
        post = np.concatenate([rng.integers(0, n_post, 500), np.tile(np.arange(n_post), n_pre)])
        order = rng.permutation(len(pre))  # not source-major
        w = rng.normal(size=len(pre))
        full_i, full_j = np.repeat(np.arange(n_pre), n_post), np.tile(np.arange(n_post), n_pre)
        w_full = rng.normal(size=n_pre * n_post)
        monitors, objects = [], [src]
        for name, cls, (i, j, ww) in [
            ("queue", None, (pre[order], post[order], w[order])),
            ("rows", event_codeobj_class(False), (pre[order], post[order], w[order])),
            ("dense_fallback", event_codeobj_class(True), (pre[order], post[order], w[order])),
            ("queue_full", None, (full_i, full_j, w_full)),
            ("dense_full", event_codeobj_class(True), (full_i, full_j, w_full)),
        ]:
            G = b2.NeuronGroup(n_post, "v : 1", name=f"g_{name}")
            S = b2.Synapses(src, G, "w : 1", on_pre="v_post += w", delay=0 * b2.ms, name=f"s_{name}",
                            codeobj_class=cls)
            S.connect(i=i, j=j)
            S.w = ww
            monitors.append(b2.StateMonitor(G, "v", record=True, name=f"m_{name}"))
            objects += [G, S, monitors[-1]]
        net = b2.Network(*objects)
        net.run(30 * b2.ms)
        b2.device.build(directory=str(tmp_path / "project"), compile=True, run=True, with_output=False)
        v = [np.asarray(m.v[:]) for m in monitors]
        gen = _generated(str(tmp_path / "project"), "s_dense_full_pre_codeobject")
    finally:
        b2.device.reinit()
        b2.set_device("runtime")
    assert gen.count("if (_dense)") == 1
    assert np.abs(v[0]).max() > 0 and np.abs(v[3]).max() > 0
    np.testing.assert_array_equal(v[1], v[0])
    np.testing.assert_array_equal(v[2], v[0])
    np.testing.assert_array_equal(v[4], v[3])


_BUILD = """
import sys
sys.path.insert(0, {tests!r})
from test_codegen import _problem
from sdsnn_brian.device import Simulator
net, W, b, x = _problem(seed=4)
print(Simulator(net, 5, "cpp_standalone", cache_dir={cache!r}).build().project_dir)
"""


def test_tuning_keeps_make_incremental(tmp_path):
    """The generated project is tuned once; a second process generating the same project edits the
    same text back in with the old modification times, so the tuned files are not recompiled."""
    import subprocess

    code = _BUILD.format(tests=os.path.dirname(os.path.abspath(__file__)), cache=str(tmp_path))

    def build():
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return out.stdout.strip().splitlines()[-1]

    project_dir = build()
    objects = os.path.join(project_dir, "objects.cpp")
    network = os.path.join(project_dir, "network.cpp")
    text = open(objects).read()
    assert "_array_syn1_w" not in text[text.find("void _write_arrays()"):]  # synaptic arrays not written
    assert "in one write" in text
    run_loop = open(network).read().split("void Network::run")[1].split("\n}\n")[0]
    assert "once, not after every step" in run_loop
    assert run_loop.count("elapsed_realtime = ") == 1
    # (Brian2 itself rewrites main.cpp on every build, so main.o and main are remade anyway)
    files = [objects, network, os.path.join(project_dir, "objects.o"), os.path.join(project_dir, "network.o")]
    stamps = [os.stat(p).st_mtime_ns for p in files]
    assert tune_generated_code(project_dir) == 0  # already tuned: nothing left to edit
    assert build() == project_dir
    assert [os.stat(p).st_mtime_ns for p in files] == stamps


def test_compact_below_chooses_per_layer(tmp_path):
    net = Network(Input(50), Dense(30), Dense(6), steps=4)
    rng = np.random.default_rng(0)
    masks = [(rng.random((30, 50)) < 0.5).astype(float), (rng.random((6, 30)) < 0.1).astype(float)]
    sim = Simulator(net, 2, "cpp_standalone", cache_dir=str(tmp_path), masks=masks)
    assert sim.connectivity[0] is None and sim.connectivity[1] is not None
    assert sim.expected_sizes()["syn1.w"] == (1500,)
    assert sim.expected_sizes()["syn2.w"] == (int(masks[1].sum()),)
    assert Simulator(net, 2, "cpp_standalone", cache_dir=str(tmp_path), masks=masks,
                     compact_below=1.01).expected_sizes()["syn1.w"] == (int(masks[0].sum()),)
    assert Simulator(net, 2, "runtime", masks=masks).connectivity[0] is not None  # no vector rows there
    whole = Simulator(net, 2, "cpp_standalone", cache_dir=str(tmp_path), masks=[masks[0], None])
    assert whole.connectivity is None and whole.project_dir == Simulator(
        net, 2, "cpp_standalone", cache_dir=str(tmp_path)).project_dir  # shares the dense build
    with pytest.raises(ValueError, match="compact_below"):
        Simulator(net, 2, "cpp_standalone", cache_dir=str(tmp_path), masks=masks, compact_below=-1)
    with pytest.raises(ValueError, match="event_code"):
        Simulator(net, 2, "cpp_standalone", cache_dir=str(tmp_path), event_code="fast")


def _pruned_neurons_masks(rng, n_in=50, n_hidden=30, n_out=6, alive=0.4, inside=0.8):
    """SD-SNN's neuronal pruning: whole rows of the hidden layer's mask removed (with a few more
    synapses inside the living rows), and the pruned neurons' outgoing synapses with them."""
    living = rng.random(n_hidden) < alive
    m1 = np.zeros((n_hidden, n_in))
    m1[living] = rng.random((living.sum(), n_in)) < inside
    m2 = np.repeat(living[None, :], n_out, axis=0).astype(float)
    return living, [m1, m2]


def test_rows_over_living_targets_equal_brian2_code(tmp_path):
    """A layer whose neurons were pruned is built as rows onto the living targets only: the same
    membranes and spikes as Brian2's queue, bit for bit, and as the numpy re-simulation."""
    net, W, b, x = _problem(seed=5)
    living, masks = _pruned_neurons_masks(np.random.default_rng(6))
    sim = Simulator(net, 5, "cpp_standalone", cache_dir=str(tmp_path), masks=masks)
    pre, post = sim.connectivity[0]
    n_in = W[0].shape[1]
    assert len(pre) == living.sum() * n_in  # every source to every living target, nothing else
    np.testing.assert_array_equal(post[:living.sum()], np.flatnonzero(living))
    np.testing.assert_array_equal(pre, np.repeat(np.arange(n_in), living.sum()))
    assert sim.connectivity[1] is None  # every output neuron lives: all-to-all, dead sources never spike
    assert sim.expected_sizes()["syn1.w"] == (living.sum() * n_in,)
    rec = sim.run(x, W, b)
    queue = Simulator(net, 5, "cpp_standalone", cache_dir=str(tmp_path), masks=masks, event_code="brian2")
    assert queue.connectivity[0] is not None and len(queue.connectivity[0][0]) == masks[0].sum()
    ref = queue.run(x, W, b)
    Wm = [w * m for w, m in zip(W, masks)]
    u_ref, s_ref = numpy_forward(net.dynamics(), Wm, b, x)
    assert rec.s[0][:, :, ~living].sum() == 0 and rec.s[0].sum() > 0
    for l in range(2):
        np.testing.assert_array_equal(rec.u[l], ref.u[l])
        np.testing.assert_array_equal(rec.s[l], ref.s[l])
        np.testing.assert_array_equal(rec.s[l], s_ref[l])
        np.testing.assert_allclose(rec.u[l], u_ref[l], rtol=1e-12, atol=1e-12)
    # the build depends on which neurons live, not on the synapses removed inside their rows
    again = [masks[0] * (np.random.default_rng(7).random(masks[0].shape) < 0.9), masks[1]]
    again[0][np.flatnonzero(living)[:, None], np.arange(2)] = 1  # no living row emptied
    assert Simulator(net, 5, "cpp_standalone", cache_dir=str(tmp_path), masks=again).project_dir == sim.project_dir
    # below compact_below of the living block present: compacted synapse by synapse
    sparse = [masks[0] * (np.random.default_rng(8).random(masks[0].shape) < 0.15), masks[1]]
    sim2 = Simulator(net, 5, "cpp_standalone", cache_dir=str(tmp_path), masks=sparse)
    assert len(sim2.connectivity[0][0]) == np.count_nonzero(sparse[0])


def test_other_devices_keep_their_own_code():
    import brian2 as b2

    b2.set_device("runtime")
    assert not uses_event_code("sdsnn")
    with pytest.raises(ValueError, match="unknown event_code"):
        uses_event_code("queue")


def test_binary_environment_is_set_for_the_run_only(monkeypatch):
    from sdsnn_brian.device import RUN_ENVIRONMENT, _run_environment, keep_freed_memory

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    with _run_environment(RUN_ENVIRONMENT):
        assert os.environ["GLIBC_TUNABLES"] == RUN_ENVIRONMENT["GLIBC_TUNABLES"]
    assert "GLIBC_TUNABLES" not in os.environ
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.check=0")  # the user's own setting wins
    with _run_environment(RUN_ENVIRONMENT):
        assert os.environ["GLIBC_TUNABLES"] == "glibc.malloc.check=0"
    assert os.environ["GLIBC_TUNABLES"] == "glibc.malloc.check=0"
    import platform

    if platform.libc_ver()[0] == "glibc" and os.environ.get("SDSNN_KEEP_FREED_MEMORY", "1") != "0":
        assert keep_freed_memory() is True  # mallopt accepted both settings


def test_rows_in_blocks_of_sources_for_every_count_of_spiking_sources(tmp_path):
    """The rows path adds the rows of 4 spiking sources per pass over the targets and the rest
    one by one: with 0 to 12 sources spiking in a step (every remainder), all-to-all and onto
    the living targets of a pruned layer, the sums are Brian2's, bit for bit."""
    net = Network(Input(12), Dense(9), Dense(3), steps=13)
    rng = np.random.default_rng(11)
    W, b = net.init_params(rng)
    W = [4 * W[0], 6 * W[1]]
    x = np.zeros((13, 3, 12), np.uint8)
    for t in range(13):
        for s in range(3):
            x[t, s, rng.permutation(12)[:t]] = 1  # t sources spike at step t
    living = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0], bool)
    pruned = [np.repeat(living[:, None], 12, axis=1).astype(float), np.ones((3, 9))]
    for masks in (None, pruned):
        ours = Simulator(net, 3, "cpp_standalone", cache_dir=str(tmp_path), masks=masks).run(x, W, b)
        queue = Simulator(net, 3, "cpp_standalone", cache_dir=str(tmp_path), masks=masks,
                          event_code="brian2").run(x, W, b)
        Wm = W if masks is None else [w * m for w, m in zip(W, masks)]
        u_ref, s_ref = numpy_forward(net.dynamics(), Wm, b, x)
        assert ours.s[0].sum() > 0
        for l in range(2):
            np.testing.assert_array_equal(ours.u[l], queue.u[l])
            np.testing.assert_array_equal(ours.s[l], queue.s[l])
            np.testing.assert_array_equal(ours.s[l], s_ref[l])
            np.testing.assert_allclose(ours.u[l], u_ref[l], rtol=1e-12, atol=1e-12)


def test_pruned_neurons_left_out_of_the_build(tmp_path):
    """Hidden neurons with no synapse onto them and none from them (SD-SNN's neuronal pruning)
    are left out of the C++ standalone build but one, whose recording they all take: with a
    resting potential above threshold they spike on their own, and still every membrane and
    spike equals the full build with Brian2's own code, bit for bit, and the numpy re-simulation."""
    from brian2 import mV

    from sdsnn_brian.models import lif

    driven = lif.with_params(v_rest=-55 * mV)  # rests above threshold: spikes without input
    net = Network(Input(20), Dense(12, neuron=driven), Dense(4, neuron=lif), steps=9)
    rng = np.random.default_rng(12)
    W, b = net.init_params(rng)
    W = [30 * W[0], 20 * W[1]]
    x = (rng.random((9, 3, 20)) < 0.4).astype(np.uint8)
    inc = np.array([1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1], bool)  # neurons with synapses onto them
    out = np.array([1, 1, 0, 1, 1, 0, 1, 0, 0, 0, 0, 1], bool)  # neurons 3 (no input) and 9 (no output) stay
    masks = [np.repeat(inc[:, None], 20, axis=1) * (rng.random((12, 20)) < 0.9),
             np.repeat(out[None, :], 4, axis=0).astype(float)]
    masks[0][inc, 0] = 1  # no incoming row left empty
    sim = Simulator(net, 3, "cpp_standalone", cache_dir=str(tmp_path), masks=masks)
    pruned = np.flatnonzero(~inc & ~out)  # 2, 5, 7, 8, 10
    np.testing.assert_array_equal(sim.neurons_built[0], np.sort(np.r_[np.flatnonzero(inc | out), pruned[0]]))
    assert sim.neurons_built[1] is None
    pre1, _ = sim.connectivity[1]
    assert set(pre1) == set(sim.neurons_built[0])  # the left-out neurons' synapses are not built
    rec = sim.run(x, W, b)
    full = Simulator(net, 3, "cpp_standalone", cache_dir=str(tmp_path), masks=masks, event_code="brian2")
    assert all(k is None for k in full.neurons_built)
    ref = full.run(x, W, b)
    Wm = [w * m for w, m in zip(W, masks)]
    u_ref, s_ref = numpy_forward(net.dynamics(), Wm, b, x)
    assert rec.s[0][:, :, pruned].sum() > 0  # the left-out neurons spike (as their representative does)
    for l in range(2):
        np.testing.assert_array_equal(rec.u[l], ref.u[l])
        np.testing.assert_array_equal(rec.s[l], ref.s[l])
        np.testing.assert_array_equal(rec.s[l], s_ref[l])
        np.testing.assert_allclose(rec.u[l], u_ref[l], rtol=1e-9, atol=1e-9)
    # a layer with a bias keeps every neuron (each pruned neuron has its own trajectory)
    biased = Network(Input(20), Dense(12, neuron=driven, bias=True), Dense(4, neuron=lif), steps=9)
    assert Simulator(biased, 3, "cpp_standalone", cache_dir=str(tmp_path), masks=masks).neurons_built == [None, None]
    # and so would a model whose neurons differ without input (NeuronModel itself rejects most)
    from types import SimpleNamespace

    from sdsnn_brian.device import _same_without_input

    assert _same_without_input(driven)
    for change in ({"init": "0.1 * i"}, {"threshold": "v > v_th + rand() * mV"},
                   {"equations": "dv/dt = (v_rest - v) / tau : volt\ntau : second (constant)"}):
        fields = {f: getattr(driven, f) for f in ("equations", "init", "threshold", "reset")}
        assert not _same_without_input(SimpleNamespace(**{**fields, **change}))


def test_packed_input_decoding_equals_brian2_threshold(tmp_path):
    """The input group's thresholder turns packed bits into spikes (with AVX-512, 16 at a time;
    else, and where the stores would not fit, one by one): with inputs firing from never to
    always, layer 1 receives exactly what Brian2's own threshold expression gives it."""
    net = Network(Input(100), Dense(7), Dense(3), steps=6)
    rng = np.random.default_rng(13)
    W, b = net.init_params(rng)
    W = [3 * W[0], 6 * W[1]]
    rates = np.linspace(0, 1, 100)  # input i fires with probability i / 99
    x = (rng.random((6, 4, 100)) < rates).astype(np.uint8)
    ours = Simulator(net, 4, "cpp_standalone", cache_dir=str(tmp_path)).run(x, W, b)
    queue = Simulator(net, 4, "cpp_standalone", cache_dir=str(tmp_path), event_code="brian2").run(x, W, b)
    u_ref, s_ref = numpy_forward(net.dynamics(), W, b, x)
    assert ours.s[0].sum() > 0
    for l in range(2):
        np.testing.assert_array_equal(ours.u[l], queue.u[l])
        np.testing.assert_array_equal(ours.s[l], s_ref[l])
        np.testing.assert_allclose(ours.u[l], u_ref[l], rtol=1e-12, atol=1e-12)


def test_openmp_build_equals_single_threaded(tmp_path):
    """``threads=2`` (``sdsnn train --threads 2``): the OpenMP build compiles with the scheduler
    trims in network.cpp and network.h alike, serves minibatches (and runs one process per
    minibatch), and gives the single-threaded build's spikes and membranes bit for bit (OpenMP
    splits only Brian2's per-neuron loops; the synaptic events are added in one thread, in order)."""
    import shutil

    from sdsnn_brian.codegen import GeneratedCodeMismatch

    net = Network(Input(20), Dense(10), Dense(3), steps=8)
    rng = np.random.default_rng(5)
    W, b = net.init_params(rng)
    W = [3 * W[0], 6 * W[1]]
    xs = [(rng.random((8, 4, 20)) < 0.3).astype(np.uint8) for _ in range(2)]
    runs = {}
    for threads in (0, 2):
        sim = Simulator(net, 4, "cpp_standalone", threads=threads, cache_dir=str(tmp_path))
        runs[threads] = [sim.run(x, W, b) for x in xs]
        assert sim._server is not None  # the serving mode
        cpp = open(os.path.join(sim.project_dir, "network.cpp")).read()
        h = open(os.path.join(sim.project_dir, "network.h")).read()
        assert ("omp_get_wtime" in cpp) == (threads > 0)
        assert ("-fopenmp" in open(os.path.join(sim.project_dir, "makefile")).read()) == (threads > 0)
        assert "sdsnn_brian: no set search" in cpp and "once, not after every step" in cpp
        assert "sdsnn_brian: a vector" in h
        sim.close()
    runs["one process"] = [Simulator(net, 4, "cpp_standalone", threads=2, cache_dir=str(tmp_path),
                                     persistent=False).run(xs[0], W, b)]
    for name in (2, "one process"):
        for got, want in zip(runs[name], runs[0]):
            for l in range(2):
                assert want.s[l].sum() > 0
                np.testing.assert_array_equal(got.s[l], want.s[l])
                np.testing.assert_array_equal(got.u[l], want.u[l])
    # a project whose network.h has Brian2's set of current clocks and whose network.cpp was
    # tuned: an error, and no file is touched
    project = str(tmp_path / "mangled")
    shutil.copytree(sim.project_dir, project, ignore=shutil.ignore_patterns("*.o", "main", "results*"))
    with open(os.path.join(project, "network.h")) as fh:
        h = fh.read()
    with open(os.path.join(project, "network.h"), "w") as fh:
        fh.write(re.sub(r"std::set<Clock\*> clocks;\n\s*std::vector<Clock\*> curclocks;[^\n]*",
                        "std::set<Clock*> clocks, curclocks;", h))
    stamps = {f: os.stat(os.path.join(project, f)).st_mtime_ns for f in os.listdir(project)}
    with pytest.raises(GeneratedCodeMismatch, match="network.cpp/network.h"):
        tune_generated_code(project)
    assert {f: os.stat(os.path.join(project, f)).st_mtime_ns for f in os.listdir(project)} == stamps


@pytest.mark.parametrize("threads", [0, 2])
def test_scheduler_trims_apply_to_both_files_or_raise(threads):
    """Brian2's network.cpp/network.h, with and without OpenMP: both trims in both files, nothing
    left to do the second time; text they were not written for is an error, not half a change."""
    from brian2 import prefs
    from brian2.devices.cpp_standalone.codeobject import CPPStandaloneCodeObject

    from sdsnn_brian.codegen import GeneratedCodeMismatch, _network_files

    saved = prefs.devices.cpp_standalone.openmp_threads
    prefs.devices.cpp_standalone.openmp_threads = threads
    try:
        def network(maximum_run_time=None):
            src = CPPStandaloneCodeObject.templater.network(None, None, maximum_run_time=maximum_run_time)
            return src.cpp_file, src.h_file

        cpp, h = network()
        tuned_cpp, tuned_h, n = _network_files(cpp, h)
        assert n == 2 and "curclocks.find" not in tuned_cpp and "std::vector<Clock*> curclocks;" in tuned_h
        run = tuned_cpp.split("void Network::run")[1].split("\n}\n")[0]
        assert run.count("elapsed_realtime = ") == 1 and "once, not after every step" in run
        assert _network_files(tuned_cpp, tuned_h) == (tuned_cpp, tuned_h, 0)
        with pytest.raises(GeneratedCodeMismatch, match="network.cpp/network.h"):
            _network_files(cpp, h.replace("std::set<Clock*> clocks, curclocks;", "std::set<Clock*> curclocks, clocks;"))
        with pytest.raises(GeneratedCodeMismatch, match="network.cpp/network.h"):
            _network_files(cpp, tuned_h)  # the header tuned, the source not: the bug of issue 17
        with pytest.raises(GeneratedCodeMismatch, match="maximum_run_time"):
            _network_files(*network(maximum_run_time=1.0))
    finally:
        prefs.devices.cpp_standalone.openmp_threads = saved


def test_cli_trains_with_openmp_threads(tmp_path, monkeypatch, capsys):
    """``sdsnn train --threads 2`` on a tiny run compiles, trains and evaluates."""
    from sdsnn_brian.cli import main

    monkeypatch.setenv("SDSNN_CACHE_DIR", str(tmp_path / "cache"))
    rc = main(["train", "--threads", "2", "--hidden", "10", "--epochs", "1", "--train-limit", "50",
               "--test-limit", "50", "--batch-size", "25", "--log-every", "0", "--run-dir", str(tmp_path / "run")])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "summary.json").exists()
