"""Time decoding (VDIB): the stochastic readout in Brian2 against numpy, the KL sample, the
score-function estimator against exact enumeration, the drifting blob, bad input, the protocol."""
import itertools
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from sdsnn_brian import Dense, Input, Network, models
from sdsnn_brian.data import DriftingBlob
from sdsnn_brian.data.blobs import n_segments, segment_id
from sdsnn_brian.decoders import Window, distortion, make_decoder
from sdsnn_brian.device import Simulator
from sdsnn_brian.gradient import backward
from sdsnn_brian.vdib import (ParameterBaseline, VDIBTrainer, bernoulli_kl, kl_sample, readout_noise,
                              score_function_gradient, score_grad_u, sigmoid, straight_through_grad_u)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("vdib_cache"))


def readout_net(n_in=30, hidden=12, n_out=5, steps=7):
    return Network(Input(n_in), Dense(hidden, bias=True),
                   Dense(n_out, neuron=models.stochastic_readout, bias=True, stochastic=True), steps=steps)


def numpy_encoder(net, W, b, x, U):
    """Independent re-simulation: SD-SNN hidden layer (u = 0.2 u (1 - s) + W x + b, spike u > 0.5, reset 0),
    then the leaky readout u = 0.2 u + W s + b without reset, spiking when U < sigmoid(u)."""
    T, B, _ = x.shape
    d = net.dynamics()
    uh, sh = np.zeros((T, B, W[0].shape[0])), np.zeros((T, B, W[0].shape[0]))
    ur, sr = np.zeros((T, B, W[1].shape[0])), np.zeros((T, B, W[1].shape[0]))
    p, q = np.zeros((B, W[0].shape[0])), np.zeros((B, W[1].shape[0]))
    for t in range(T):
        uh[t] = 0.2 * p + x[t] @ W[0].T + b[0]
        sh[t] = uh[t] > 0.5
        p = np.where(sh[t] > 0, 0.0, uh[t])
        ur[t] = 0.2 * q + sh[t] @ W[1].T + b[1]
        sr[t] = U[t] < 1.0 / (1.0 + np.exp(-ur[t]))
        q = ur[t]
    assert d[0].a == pytest.approx(0.2) and d[1].a == pytest.approx(0.2) and d[1].reset_amount == 0.0
    return [uh, ur], [sh, sr]


@pytest.mark.parametrize("device", ["cpp_standalone", "runtime"])
def test_stochastic_readout_equals_numpy(device, cache_dir):
    net = readout_net()
    rng = np.random.default_rng(3)
    W, b = net.init_params(rng)
    W = [3 * W[0], 4 * W[1]]
    x = (rng.random((7, 3, 30)) < 0.3).astype(np.uint8)
    U = readout_noise(rng, (7, 3, 5))
    rec = Simulator(net, 3, device, cache_dir=cache_dir).run(x, W, b, noise=U)
    u_ref, s_ref = numpy_encoder(net, W, b, x, U)
    for l in range(2):
        np.testing.assert_array_equal(rec.s[l], s_ref[l])
        np.testing.assert_allclose(rec.u[l], u_ref[l], rtol=1e-12, atol=1e-12)
        assert 0 < s_ref[l].mean() < 1
    # the same noise gives the same spikes; other noise, other spikes
    again = Simulator(net, 3, device, cache_dir=cache_dir).run(x, W, b, noise=U)
    np.testing.assert_array_equal(again.s[1], rec.s[1])
    if device == "cpp_standalone":
        other = Simulator(net, 3, device, cache_dir=cache_dir).run(x, W, b, noise=readout_noise(rng, U.shape))
        np.testing.assert_array_equal(other.u[1], rec.u[1])
        assert (other.s[1] != rec.s[1]).any()


def test_stochastic_readout_noise_errors(cache_dir):
    net = readout_net()
    W, b = net.init_params(np.random.default_rng(0))
    x = np.zeros((7, 3, 30), np.uint8)
    sim = Simulator(net, 3, "cpp_standalone", cache_dir=cache_dir)
    with pytest.raises(ValueError, match="needs its uniform noise"):
        sim.run(x, W, b)
    with pytest.raises(ValueError, match=r"must have shape \(7, 3, 5\)"):
        sim.run(x, W, b, noise=np.full((7, 3, 4), 0.5))
    bad = np.full((7, 3, 5), 0.5)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"inside \(0, 1\)"):
        sim.run(x, W, b, noise=bad)
    with pytest.raises(ValueError, match=r"inside \(0, 1\)"):
        sim.run(x, W, b, noise=np.ones((7, 3, 5)))
    det = Network(Input(4), Dense(3), steps=2)
    with pytest.raises(ValueError, match="no stochastic layer"):
        Simulator(det, 1, "runtime").run(np.zeros((2, 1, 4)), det.init_params(np.random.default_rng(0))[0],
                                         noise=np.full((2, 1, 3), 0.5))
    with pytest.raises(ValueError, match="dimensionless membrane"):
        Dense(3, neuron="lif", stochastic=True)


# -- the KL sample -------------------------------------------------------------------------
def test_kl_sample_expectation_is_bernoulli_kl():
    rng = np.random.default_rng(0)
    u = rng.normal(0, 2, 50)
    r = 0.3
    p = sigmoid(u)
    exact = p * kl_sample(np.ones(50), u, r) + (1 - p) * kl_sample(np.zeros(50), u, r)
    np.testing.assert_allclose(exact, bernoulli_kl(p, r), rtol=1e-12, atol=1e-14)
    # Monte Carlo: 40,000 draws per entry, within 5 standard errors
    M = 40_000
    z = (rng.random((M, 50)) < p).astype(float)
    k = kl_sample(z, np.broadcast_to(u, z.shape), r)
    se = k.std(axis=0) / math.sqrt(M)
    assert np.all(np.abs(k.mean(axis=0) - bernoulli_kl(p, r)) < 5 * se + 1e-12)
    assert bernoulli_kl(np.array([0.0, 1.0, r]), r)[2] == 0.0 and np.all(np.isfinite(bernoulli_kl(np.array([0.0, 1.0]), r)))


# -- the score-function estimator against exact enumeration ----------------------------------
def _tiny_problem():
    rng = np.random.default_rng(7)
    T, n, N, C = 3, 3, 2, 3
    x = (rng.random((T, 2, n)) < 0.6).astype(float)  # two fixed input samples
    W, b = rng.normal(0, 0.8, (N, n)), rng.normal(0, 0.5, N)
    dec = make_decoder("linear", N, T, C, rng=rng)
    dec.layers[1].W *= 3
    labels = np.array([0, 2])
    return x, W, b, dec, labels, 0.2, 0.1, 0.3  # ..., a, beta, r


def _readout_u(x, W, b, a):
    u = np.zeros(x.shape[:2] + (W.shape[0],))
    prev = 0.0
    for t in range(x.shape[0]):
        u[t] = a * prev + x[t] @ W.T + b
        prev = u[t]
    return u


def _exact_loss(x, W, b, dec, labels, a, beta, r):
    """E_z[D + beta KL-sample], averaged over the two samples, by enumerating all 2^(T*N) rasters."""
    u = _readout_u(x, W, b, a)
    T, B, N = u.shape
    total = 0.0
    for bits in itertools.product([0.0, 1.0], repeat=T * N):
        z = np.array(bits).reshape(T, 1, N).repeat(B, axis=1)
        p = np.prod(np.where(z > 0, sigmoid(u), 1 - sigmoid(u)), axis=(0, 2))  # [B]
        D, _ = distortion("ce", dec.forward(z.transpose(1, 0, 2)), labels)
        l = D + beta * kl_sample(z, u, r).sum(axis=(0, 2))
        total += float((p * l).sum())
    return total / B


def test_score_function_matches_exact_enumeration():
    x, W, b, dec, labels, a, beta, r = _tiny_problem()
    h = 1e-6
    gW, gb = np.zeros_like(W), np.zeros_like(b)
    for arr, g in ((W, gW), (b, gb)):
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + h
            fp = _exact_loss(x, W, b, dec, labels, a, beta, r)
            arr[i] = old - h
            fm = _exact_loss(x, W, b, dec, labels, a, beta, r)
            arr[i] = old
            g[i] = (fp - fm) / (2 * h)
    # the estimator: minibatches of 2 x 200 copies, per-parameter baselines carried across them
    rng = np.random.default_rng(11)
    reps, chunks = 200, 150
    xs = np.repeat(x, reps, axis=1)
    ys = np.repeat(labels, reps)
    u = _readout_u(xs, W, b, a)
    baselines = (ParameterBaseline(W.shape), ParameterBaseline(b.shape))
    estW, estb = [], []
    for _ in range(chunks):
        z = (readout_noise(rng, u.shape) < sigmoid(u)).astype(float)
        D, _ = distortion("ce", dec.forward(z.transpose(1, 0, 2)), ys)
        l = D + beta * kl_sample(z, u, r).sum(axis=(0, 2))
        dW, db = score_function_gradient(xs, z, u, l, a, beta, baselines)
        estW.append(dW)
        estb.append(db)
    for est, exact in ((np.array(estW), gW), (np.array(estb), gb)):
        mean, se = est.mean(axis=0), est.std(axis=0, ddof=1) / math.sqrt(chunks)
        assert np.all(np.abs(mean - exact) < 5 * se + 1e-3), (mean, exact, se)
        assert np.abs(exact).max() > 20 * se.max()  # the comparison is not vacuous


def test_score_gradient_through_bptt_equals_eligibility():
    """Without baselines, dL/du injected into gradient.backward gives the eligibility estimate."""
    rng = np.random.default_rng(2)
    net = Network(Input(6), Dense(4, neuron=models.stochastic_readout, bias=True, stochastic=True), steps=5)
    d = net.dynamics()
    x = (rng.random((5, 8, 6)) < 0.5).astype(float)
    W, b = rng.normal(0, 1, (4, 6)), rng.normal(0, 1, 4)
    u = _readout_u(x, W, b, d[0].a)
    z = (rng.random(u.shape) < sigmoid(u)).astype(float)
    l = rng.normal(3, 1, 8)
    (dW, db), = backward(d, x, [u], [z], [W], None, score_grad_u(z, u, l, 0.0, 0.4), "rectangular")
    eW, eb = score_function_gradient(x, z, u, l, d[0].a, 0.4, None)
    np.testing.assert_allclose(dW, eW, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, eb, rtol=1e-12, atol=1e-12)


def test_straight_through_kl_term_is_unbiased_for_the_analytic_kl():
    rng = np.random.default_rng(4)
    u = rng.normal(0, 1.5, (1, 1, 20))
    r = 0.2
    M = 50_000
    z = (rng.random((M, 1, 20)) < sigmoid(u)).astype(float)
    g = straight_through_grad_u(np.zeros_like(z), z, np.broadcast_to(u, z.shape), 1.0, r).mean(axis=0)
    h = 1e-6
    analytic = (bernoulli_kl(sigmoid(u + h), r) - bernoulli_kl(sigmoid(u - h), r)) / (2 * h)
    np.testing.assert_allclose(g, analytic[0], atol=0.02)


# -- the drifting blob -------------------------------------------------------------------------
def test_drifting_blob():
    n = 20
    ids = {int(segment_id(lo, hi, n)) for lo in range(n) for hi in range(lo, n)}
    assert ids == set(range(n_segments(n))) and n_segments(n) == 210
    d = DriftingBlob(50, n=n, steps=12, delta=3, p_on=1.0, p_off=0.0, seed=1)
    assert d.frames.shape == (50, 12, 20) and d.targets(4).shape == (50, 9)
    # noise-free frames are the blob itself; the target of the window ending at t is the blob at t + 3
    lo = np.argmax(d.frames, axis=2)
    hi = n - 1 - np.argmax(d.frames[:, :, ::-1], axis=2)
    np.testing.assert_array_equal(segment_id(lo, hi, n), d.patterns[:, :12])
    np.testing.assert_array_equal(d.targets(4)[:, 0], d.patterns[:, 3 + 3])
    past = DriftingBlob(5, n=n, steps=12, delta=-2, seed=1)
    np.testing.assert_array_equal(past.targets(1)[:, 2], past.patterns[:, 2])  # 2 steps before frame step 2
    with pytest.raises(ValueError, match="widths"):
        DriftingBlob(5, n=4, widths=(5,))


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("call,match", [
    (lambda: kl_sample(np.zeros(3), np.zeros(3), 1.0), "strictly between 0 and 1"),
    (lambda: bernoulli_kl(np.full(3, 0.5), 0.0), "strictly between 0 and 1"),
    (lambda: kl_sample(np.zeros(3), np.array([0.0, np.nan, 1.0]), 0.3), "NaN"),
    (lambda: kl_sample(np.zeros(4), np.zeros(3), 0.3), "shape"),
    (lambda: make_decoder("transformer", 4, 5, 3), "unknown decoder 'transformer'"),
    (lambda: make_decoder("mlp", 4, 0, 3), "length must be a positive integer"),
    (lambda: make_decoder("mlp", 4, 5, 3).forward(np.zeros((2, 4, 5))), r"shape \[M, 5, 4\]"),
    (lambda: Window(0), "tau must be"),
    (lambda: Window(9)(np.zeros((5, 2, 3))), "longer than the sample"),
    (lambda: distortion("mse", np.zeros((2, 3)), np.zeros(2, int)), "unknown distortion"),
    (lambda: distortion("ce", np.array([[np.nan, 0.0]]), np.zeros(1, int)), "NaN"),
    (lambda: distortion("ce", np.zeros((2, 3)), np.array([0, 3])), "labels must lie in 0..2"),
    (lambda: distortion("bce", np.zeros((2, 3)), np.full((2, 3), 1.5)), r"in \[0, 1\]"),
    (lambda: score_function_gradient(np.zeros((2, 1, 3)), np.zeros((2, 1, 2)), np.zeros((2, 1, 2)),
                                     np.array([np.nan])), "NaN"),
])
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_trainer_rejects_bad_configuration(cache_dir):
    with pytest.raises(ValueError, match="stochastic readout"):
        VDIBTrainer(Network(Input(4), Dense(3), steps=2), cache_dir=cache_dir)
    net = readout_net()
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        VDIBTrainer(net, r=1.5, cache_dir=cache_dir)
    with pytest.raises(ValueError, match="unknown estimator"):
        VDIBTrainer(net, estimator="reinforce++", cache_dir=cache_dir)
    with pytest.raises(ValueError, match="unknown decoder"):
        VDIBTrainer(net, "rnn", cache_dir=cache_dir)
    tr = VDIBTrainer(net, "mlp", n_out=3, batch_size=3, device="runtime", cache_dir=cache_dir)
    x = np.random.default_rng(0).random((6, 30))
    with pytest.raises(ValueError, match="NaN"):
        tr.fit(np.where(x > 0.5, np.nan, x), np.zeros(6, int))
    with pytest.raises(ValueError, match="6 inputs but 5 targets"):
        tr.fit(x, np.zeros(5, int))


def test_interrupted_training_resumes_identically(cache_dir, tmp_path):
    """Two epochs straight equal one epoch, a fresh trainer, and a resumed second epoch."""
    rng = np.random.default_rng(3)
    x, y = rng.random((12, 30)), rng.integers(0, 3, 12)

    def trainer():
        return VDIBTrainer(readout_net(), "mlp", n_out=3, batch_size=4, cache_dir=cache_dir, seed=5,
                           decoder_options={"hidden": (6,)})

    straight = trainer()
    straight.fit(x, y, epochs=2, run_dir=str(tmp_path / "a"), log_every=0)
    first = trainer()
    first.fit(x, y, epochs=1, run_dir=str(tmp_path / "b"), log_every=0)
    resumed = trainer()
    resumed.fit(x, y, epochs=2, run_dir=str(tmp_path / "b"), log_every=0, resume=True)
    assert resumed.epoch == 2 and [h["epoch"] for h in resumed.history] == [1, 2]
    for a, b in zip(straight.W + straight.decoder.params(), resumed.W + resumed.decoder.params()):
        np.testing.assert_array_equal(a, b)
    assert straight.history[-1]["train_loss"] == resumed.history[-1]["train_loss"]
    assert not np.array_equal(first.W[-1], resumed.W[-1])  # the second epoch did train
    assert sorted(os.listdir(tmp_path / "b")).count("ckpt-0002.npz") == 1
    with pytest.raises(ValueError, match="run_dir"):
        trainer().fit(x, y, epochs=1, resume=True)


# -- the protocol, end to end ------------------------------------------------------------------
def _run_protocol(script, tmp_path, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, os.path.join(REPO, "protocols", script), "--smoke", "--run-dir",
                          str(tmp_path / "run"), *extra], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "Command: `python " in report and "--smoke" in report
    return report


def test_mnist_protocol_smoke(tmp_path):
    import json

    report = _run_protocol("vdib_mnist.py", tmp_path, "--beta-sweep", "0.1")
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(res["summary"]) == {"classify/time", "classify/rate", "reconstruct/time", "reconstruct/rate"}
    assert len(res["beta_sweep"]) == 2 and "beta sweep" in report
    for run in res["runs"]:
        assert 0 < run["test"]["rate"] < 1 and os.path.exists(os.path.join(run["run_dir"], "params.npz"))


@pytest.mark.slow
def test_predictive_protocol_smoke(tmp_path):
    report = _run_protocol("vdib_predictive.py", tmp_path)
    assert "| time |" in report and "| rate |" in report
