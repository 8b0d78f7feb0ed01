"""The Brian2 forward pass against an independent numpy re-simulation, and the engine's errors."""
import os
import re
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from reference import numpy_forward  # noqa: E402

from sdsnn_brian import Dense, Input, Network, NeuronModel, UnsupportedModelError, models  # noqa: E402
from sdsnn_brian.builder import pack_input  # noqa: E402
from sdsnn_brian.device import Simulator  # noqa: E402

DEVICES = ["cpp_standalone", "runtime"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("brian_cache"))


def small_problem(neuron, bias, seed=0, n_in=40, steps=6, batch=3):
    net = Network(Input(n_in), Dense(15, neuron=neuron, bias=bias), Dense(4, neuron=neuron), steps=steps)
    rng = np.random.default_rng(seed)
    W, b = net.init_params(rng)
    W = [3 * W[0], 6 * W[1]]  # strong enough that both layers spike
    if bias:
        dyn = net.dynamics()[0]
        b[0] = rng.uniform(-0.1, 0.3, 15) * abs(dyn.theta - dyn.u_init)
    x = (rng.random((steps, batch, n_in)) < 0.3).astype(np.uint8)
    return net, W, b, x


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("neuron,bias", [("sdsnn_lif", True), ("lif", False), ("lif_subtract", True), ("sdsnn_lif", False)])
def test_forward_equals_numpy(device, neuron, bias, cache_dir):
    for seed in range(10):  # the first problem in which every layer spikes (and is not saturated)
        net, W, b, x = small_problem(models.get_neuron(neuron), bias, seed=seed)
        u_ref, s_ref = numpy_forward(net.dynamics(), W, b, x)
        if all(0 < s.mean() < 1 for s in s_ref):
            break
    rec = Simulator(net, 3, device, cache_dir=cache_dir).run(x, W, b)
    for l in range(2):
        assert rec.u[l].shape == u_ref[l].shape == (6, 3, W[l].shape[0])
        np.testing.assert_array_equal(rec.s[l], s_ref[l])
        np.testing.assert_allclose(rec.u[l], u_ref[l], rtol=1e-12, atol=1e-10)
        assert 0 < s_ref[l].sum() < s_ref[l].size  # the comparison is not vacuous


def test_short_minibatch_is_padded_and_trimmed(cache_dir):
    net, W, b, x = small_problem(models.sdsnn_lif, True)
    sim = Simulator(net, 3, "cpp_standalone", cache_dir=cache_dir)
    full = sim.run(x, W, b)
    part = sim.run(x[:, :2], W, b)
    assert part.u[0].shape == (6, 2, 15)
    np.testing.assert_array_equal(part.s[1], full.s[1][:, :2])


def test_pack_input_round_trip():
    rng = np.random.default_rng(1)
    x = (rng.random((5, 4, 70)) < 0.5).astype(np.uint8)
    packed = pack_input(x)
    assert packed.shape == (20, 3)
    i = np.arange(70)
    decoded = np.floor(packed[:, i // 32] * 2.0 ** -(i % 32)) % 2
    np.testing.assert_array_equal(decoded.reshape(4, 5, 70).transpose(1, 0, 2), x)


@pytest.mark.parametrize("bad,match", [
    (lambda W, b, x: (W, b, x[:, :, :30]), r"shape \[T=6, B, 40\]"),
    (lambda W, b, x: ([W[0][:, :10], W[1]], b, x), r"layer 1 have shape"),
    (lambda W, b, x: ([W[0] * np.nan, W[1]], b, x), "NaN"),
    (lambda W, b, x: (W, [None, None], x), "has a bias"),
    (lambda W, b, x: (W, b, np.concatenate([x, x], axis=1)), "minibatch of 6"),
])
def test_bad_input_is_a_clear_error(bad, match, cache_dir):
    net, W, b, x = small_problem(models.sdsnn_lif, True)
    sim = Simulator(net, 3, "cpp_standalone", cache_dir=cache_dir)
    W2, b2, x2 = bad(W, b, x)
    with pytest.raises(ValueError, match=match):
        sim.run(x2, W2, b2)


def test_run_args_sizes_checked(cache_dir):
    net, W, b, x = small_problem(models.sdsnn_lif, True)
    sim = Simulator(net, 3, "cpp_standalone", cache_dir=cache_dir)
    with pytest.raises(ValueError, match=r"syn1.w: shape \(10,\), the build has \(600,\)"):
        sim.check_run_args({"syn1.w": np.zeros(10)})
    with pytest.raises(ValueError, match="does not have"):
        sim.check_run_args({"syn9.w": np.zeros(10)})
    sim.check_run_args({"syn1.w": np.zeros(600), "stim.values": np.zeros((18, 2))})


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown neuron model 'izhikevich'"):
        Dense(10, neuron="izhikevich")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        Simulator(Network(Input(3), Dense(2)), 1, "gpu")


@pytest.mark.parametrize("kwargs,match", [
    (dict(equations="dv/dt = -v/tau + w/tau : 1\ndw/dt = -w/tau : 1"), "exactly one differential equation"),
    (dict(equations="dv/dt = -v**2/tau : 1"), "not linear"),
    (dict(equations="dv/dt = (I - v)/tau : 1\nI : 1"), "depends on the variable 'I'"),
    (dict(threshold="rand() < 0.1"), "threshold"),
    (dict(reset="v = 0; x = 1"), "one statement"),
    (dict(reset="v = v*0.5"), "neither a hard reset nor a subtraction"),
    (dict(method="rk4"), "integration method"),
])
def test_unsupported_models_rejected(kwargs, match):
    from brian2 import ms, second

    base = dict(name="custom", equations="dv/dt = -v/tau : 1", membrane="v", threshold="v > 1", reset="v = 0",
                namespace={"tau": 10 * ms})
    base.update(kwargs)
    with pytest.raises(UnsupportedModelError, match=match):
        NeuronModel(**base).dynamics(1 * ms)


@pytest.mark.parametrize("field,text", [
    ("equations", "dv/dt = -v / (tau : 1"),           # Python syntax of the right-hand side
    ("equations", "dv/dt -v/tau : 1"),                # Brian2 equation syntax
    ("threshold", "v >> 1"),
    ("threshold", "v > (1"),
    ("reset", "v = = 0"),
    ("reset", "v -= 0.5)"),
    ("init", "0 +"),
])
def test_syntax_errors_name_the_field(field, text):
    from brian2 import ms

    base = dict(name="mymodel", equations="dv/dt = -v/tau : 1", membrane="v", threshold="v > 1", reset="v = 0",
                namespace={"tau": 10 * ms})
    base[field] = text
    with pytest.raises(ValueError) as info:  # what the CLI reports as "sdsnn: error: ..."
        NeuronModel(**base).dynamics(1 * ms)
    msg = str(info.value)
    assert re.search(rf"NeuronModel 'mymodel': {field} {re.escape(repr(text))} is not (a )?valid", msg), msg
    assert isinstance(info.value, UnsupportedModelError)


def test_custom_model_dynamics():
    from brian2 import mV, ms

    m = NeuronModel("custom", "dv/dt = (v0 - v)/(20*ms) : volt", "v", "v >= -50*mV", "v -= 5*mV",
                    namespace={"v0": -60 * mV}, unit=mV, init="v0", method="euler")
    d = m.dynamics(1 * ms)
    assert d.a == pytest.approx(0.95) and d.c == pytest.approx(-3.0)
    assert d.theta == pytest.approx(-50.0) and d.inclusive
    assert d.reset == "subtract" and d.reset_amount == pytest.approx(5.0) and d.u_init == pytest.approx(-60.0)


def test_memory_estimate_by_hand():
    """Synapses x (80 + 2 x weight bytes), neurons x 64, T x B x trained neurons x 49 for the
    recordings, every other input value x 8 x 3; compacted builds count their own synapses."""
    from sdsnn_brian.device import memory_estimate

    net = Network(Input(20), Dense(10), Dense(3), steps=8)
    est = Simulator(net, 4, "cpp_standalone").memory_estimate()
    assert est.parts == {"synapses": (20 * 10 + 10 * 3) * (80 + 16), "neurons": (20 + 10 + 3) * 64,
                         "recordings": 8 * 4 * (10 + 3) * 49, "inputs": 8 * 4 * 1 * 8 * 3}
    assert est.total == 22080 + 2112 + 20384 + 768
    assert "20x10 + 10x3 synapses" in est.what["synapses"]
    f32 = Simulator(net, 4, "cpp_standalone", weight_dtype="float32").memory_estimate()
    assert f32.parts["synapses"] == 230 * (80 + 8)
    mask = np.zeros((10, 20))
    mask[:, :2] = 1  # 20 of 200 synapses: compacted synapse by synapse
    masked = Simulator(net, 4, "cpp_standalone", masks=[mask, None]).memory_estimate()
    assert masked.parts["synapses"] == (20 + 30) * 96
    trained = memory_estimate(net, 4, training_arrays=8)
    assert trained.parts["training arrays"] == 230 * 8 * 8


def test_build_refused_without_memory(monkeypatch, tmp_path):
    """A build that does not fit stops before any code is generated, with the estimate, what
    dominates and the memory available; ``memory_check=False`` or SDSNN_MEMORY_CHECK=0 let it go."""
    from sdsnn_brian import device as devmod

    monkeypatch.setattr(devmod, "available_memory", lambda: 32 << 20)  # 32 MiB
    net = Network(Input(784), Dense(400), Dense(10), steps=20)  # about 0.07 GiB at 100 samples
    sim = Simulator(net, 100, "cpp_standalone", cache_dir=str(tmp_path))
    with pytest.raises(devmod.NotEnoughMemoryError, match=r"needs about 0\.07 GiB.*0\.03 GiB is available") as err:
        sim.build()
    assert isinstance(err.value, MemoryError)
    assert "784x400 + 400x10 synapses" in str(err.value) and "SDSNN_MEMORY_CHECK=0" in str(err.value)
    assert not os.path.exists(sim.project_dir)
    Simulator(net, 100, "cpp_standalone", memory_check=False)._check_memory()
    monkeypatch.setenv("SDSNN_MEMORY_CHECK", "0")
    sim._check_memory()


def test_no_only_threshold_warning_for_the_input_group(cache_dir):
    """The input group has a threshold and no reset on purpose: building says nothing about it,
    while a user's own group without a reset still gets Brian2's warning."""
    import gc

    import brian2 as b2
    from brian2.utils.logger import catch_logs

    net, W, b, x = small_problem("sdsnn_lif", False)
    with catch_logs() as logs:
        Simulator(net, 3, "cpp_standalone", cache_dir=cache_dir).run(x, W, b)
    assert not [m for m in logs if m[1].endswith("only_threshold")], logs
    with catch_logs() as logs:
        group = b2.NeuronGroup(1, "v : 1", threshold="v > 1", name="layer0_of_a_user")
        del group  # (and its warning about an object never run, caught here too)
        gc.collect()
    assert [m for m in logs if m[1].endswith("only_threshold")]
