"""Tests of the surrogates, the losses and the BPTT backward pass.

The backward pass is checked against torch autograd on an independent torch
implementation of the forward model (tests/reference.py), and against central
finite differences on a case where the loss is smooth.
"""
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import numpy_forward, torch_forward, torch_loss  # noqa: E402

from sdsnn_brian.gradient import backward
from sdsnn_brian.losses import LossResult, get_loss
from sdsnn_brian.neuron import Dynamics
from sdsnn_brian.surrogate import SURROGATES, Surrogate, get_surrogate

SURROGATE_NAMES = ["rectangular", "sigmoid", "fast_sigmoid", "arctan"]
LOSS_NAMES = ["rate_mse", "ce_count", "ce_max_membrane"]


# ---------------------------------------------------------------------------
# a small random network
# ---------------------------------------------------------------------------
def make_network(reset, seed=0, theta_scale=1.0):
    rng = np.random.default_rng(seed)
    T, B, N0, N1, N2 = 7, 5, 12, 9, 4
    d1 = Dynamics(a=0.8, c=0.05, theta=1.0 * theta_scale, reset=reset, v_reset=0.1,
                  reset_amount=0.9, u_init=0.2)
    d2 = Dynamics(a=0.7, c=-0.02, theta=0.6 * theta_scale, reset=reset, v_reset=-0.1,
                  reset_amount=0.6, u_init=0.0, inclusive=True)
    x = (rng.random((T, B, N0)) < 0.4).astype(np.float64)
    W1 = rng.normal(0.1, 0.35, (N1, N0))
    b1 = rng.normal(0.0, 0.1, N1)
    W2 = rng.normal(0.1, 0.45, (N2, N1))
    b2 = rng.normal(0.0, 0.1, N2)
    labels = rng.integers(0, N2, B)
    return [d1, d2], x, [W1, W2], [b1, b2], labels


def test_numpy_forward_hand_example():
    # one neuron, one input, T=4: checks the map itself (leak, reset, same-step input)
    d = Dynamics(a=0.5, c=0.1, theta=1.0, reset="hard", v_reset=0.2, u_init=0.4)
    x = np.array([1, 0, 1, 1], float).reshape(4, 1, 1)
    u, s = numpy_forward([d], [np.array([[0.8]])], [np.array([0.05])], x)
    # u0 = .5*.4+.1+.8+.05 = 1.15 spike -> .2; u1 = .1+.1+.05 = .25; u2 = .125+.95 = 1.075 spike;
    # u3 = .1 + .95 = 1.05 spike
    np.testing.assert_allclose(u[0].ravel(), [1.15, 0.25, 1.075, 1.05])
    np.testing.assert_array_equal(s[0].ravel(), [1, 0, 1, 1])
    d2 = Dynamics(a=0.5, c=0.1, theta=1.0, reset="subtract", reset_amount=1.0, u_init=0.4)
    u, s = numpy_forward([d2], [np.array([[0.8]])], [np.array([0.05])], x)
    np.testing.assert_allclose(u[0].ravel(), [1.15, 0.225, 1.0625, 0.98125])
    np.testing.assert_array_equal(s[0].ravel(), [1, 0, 1, 0])


@pytest.mark.parametrize("reset", ["hard", "subtract"])
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("loss_name", LOSS_NAMES)
@pytest.mark.parametrize("sg_name", SURROGATE_NAMES)
def test_backward_matches_torch(sg_name, loss_name, detach, reset):
    torch = pytest.importorskip("torch")
    dyn, x, Ws, bs, labels = make_network(reset)
    sg = get_surrogate(sg_name)

    tW = [torch.tensor(W, dtype=torch.float64, requires_grad=True) for W in Ws]
    tb = [torch.tensor(b, dtype=torch.float64, requires_grad=True) for b in bs]
    tu, ts = torch_forward(dyn, tW, tb, torch.tensor(x), sg.name, sg.param, detach_reset=detach)
    tl = torch_loss(loss_name, tu[-1], ts[-1], labels)
    tl.backward()

    u = [t.detach().numpy() for t in tu]
    s = [t.detach().numpy() for t in ts]
    nu, ns = numpy_forward(dyn, Ws, bs, x)
    for l in range(2):
        np.testing.assert_array_equal(s[l], ns[l])
        np.testing.assert_allclose(u[l], nu[l], rtol=1e-12, atol=1e-12)
        # the network is in an interesting regime: neurons spike sometimes, not always
        assert 0.05 < s[l].mean() < 0.95, (l, s[l].mean())
        assert 0 < (s[l].sum(axis=(0, 1)) > 0).sum()

    res = get_loss(loss_name)(u[-1], s[-1], labels)
    assert res.value == pytest.approx(tl.item(), rel=1e-12)
    grads = backward(dyn, x, u, s, Ws, res.grad_s, res.grad_u, sg, detach_reset=detach)
    for l, (dW, db) in enumerate(grads):
        refW = tW[l].grad.numpy()
        refb = tb[l].grad.numpy()
        assert dW.shape == Ws[l].shape and db.shape == bs[l].shape
        assert np.abs(refW).max() > 0, "degenerate case: reference gradient is zero"
        np.testing.assert_allclose(dW, refW, rtol=1e-5, atol=1e-9 * np.abs(refW).max())
        np.testing.assert_allclose(db, refb, rtol=1e-5, atol=1e-9 * np.abs(refb).max())


@pytest.mark.parametrize("reset", ["hard", "subtract"])
def test_backward_skips_neurons_without_outgoing_synapses_exactly(reset):
    """Hidden neurons whose outgoing weights are all zero (pruned with their synapses) are
    skipped: against torch autograd on the same weights, and their rows are exactly zero."""
    torch = pytest.importorskip("torch")
    dyn, x, Ws, bs, labels = make_network(reset, seed=1)
    Ws = [Ws[0].copy(), Ws[1].copy()]
    dead = np.array([0, 2, 3, 5, 6, 8])  # 6 of 9 hidden neurons: more than a quarter
    Ws[1][:, dead] = 0.0
    sg = get_surrogate("rectangular")
    tW = [torch.tensor(W, dtype=torch.float64, requires_grad=True) for W in Ws]
    tb = [torch.tensor(b, dtype=torch.float64, requires_grad=True) for b in bs]
    tu, ts = torch_forward(dyn, tW, tb, torch.tensor(x), sg.name, sg.param)
    torch_loss("rate_mse", tu[-1], ts[-1], labels).backward()
    u = [t.detach().numpy() for t in tu]
    s = [t.detach().numpy() for t in ts]
    assert s[0][:, :, dead].sum() > 0  # the skipped neurons do spike
    res = get_loss("rate_mse")(u[-1], s[-1], labels)
    for dtype, rtol in ((np.float64, 1e-9), (np.float32, 2e-4)):
        grads = backward(dyn, x, u, s, Ws, res.grad_s, res.grad_u, sg, dtype=dtype)
        for l, (dW, db) in enumerate(grads):
            assert dW.dtype == dtype and dW.shape == Ws[l].shape and db.shape == bs[l].shape
            refW, refb = tW[l].grad.numpy(), tb[l].grad.numpy()
            np.testing.assert_allclose(dW, refW, rtol=rtol, atol=rtol * np.abs(refW).max())
            np.testing.assert_allclose(db, refb, rtol=rtol, atol=rtol * np.abs(refb).max())
        assert np.all(grads[0][0][dead] == 0) and np.all(grads[0][1][dead] == 0)
        assert np.abs(grads[0][0]).max() > 0


def test_backward_detach_changes_result():
    # a check that the detach switch does something on this network (else the
    # parametrised test above could not tell the two formulas apart)
    dyn, x, Ws, bs, labels = make_network("hard")
    u, s = numpy_forward(dyn, Ws, bs, x)
    res = get_loss("rate_mse")(u[-1], s[-1], labels)
    g0 = backward(dyn, x, u, s, Ws, res.grad_s, res.grad_u, "sigmoid", detach_reset=False)
    g1 = backward(dyn, x, u, s, Ws, res.grad_s, res.grad_u, "sigmoid", detach_reset=True)
    assert not np.allclose(g0[0][0], g1[0][0])


def test_backward_float32_and_options():
    dyn, x, Ws, bs, labels = make_network("subtract", seed=1)
    u, s = numpy_forward(dyn, Ws, bs, x)
    res = get_loss("ce_count")(u[-1], s[-1], labels)
    ref = backward(dyn, x, u, s, Ws, res.grad_s, res.grad_u, {"name": "arctan", "alpha": 3.0})
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    got = backward(dyn, x.astype(bool), [f32(a) for a in u], [f32(a) for a in s], [f32(W) for W in Ws],
                   f32(res.grad_s), None, get_surrogate("arctan", alpha=3.0))
    for (dW, db), (rW, rb) in zip(got, ref):
        assert dW.dtype == np.float64
        np.testing.assert_allclose(dW, rW, rtol=1e-4, atol=1e-5 * np.abs(rW).max())
    got32 = backward(dyn, x, u, s, Ws, res.grad_s, None, "arctan", need_bias=False, dtype=np.float32)
    ref3 = backward(dyn, x, u, s, Ws, res.grad_s, None, "arctan")
    for (dW, db), (rW, _) in zip(got32, ref3):
        assert db is None and dW.dtype == np.float32
        np.testing.assert_allclose(dW, rW, rtol=1e-3, atol=1e-5 * np.abs(rW).max())
    with pytest.raises(ValueError, match="layer 1"):
        backward(dyn, x, u, s, [Ws[0], Ws[1][:, :3]], res.grad_s, None, "arctan")
    with pytest.raises(ValueError, match="grad_s_out"):
        backward(dyn, x, u, s, Ws, res.grad_s[:, :2], None, "arctan")


@pytest.mark.parametrize("reset", ["hard", "subtract"])
def test_backward_finite_differences_smooth_case(reset):
    # The output threshold is far out of reach: the output never spikes, its
    # membrane is linear in W2, b2 and ce_max_membrane is smooth there (away from
    # argmax switches).  The hidden layer spikes, but its spikes are locally
    # constant in W1, b1: with a rectangular surrogate narrower than the closest
    # approach to threshold the backward gives exactly 0 there, as do finite
    # differences.  So central differences must match everything.
    dyn, x, Ws, bs, labels = make_network(reset, seed=3)
    dyn = [dyn[0], dataclasses.replace(dyn[1], theta=1e6)]
    loss = get_loss("ce_max_membrane")
    u, s = numpy_forward(dyn, Ws, bs, x)
    assert s[1].sum() == 0 and 0 < s[0].mean() < 1
    gap = np.abs(u[0] - dyn[0].theta).min()
    assert gap > 1e-4
    sg = get_surrogate("rectangular", width=gap)

    def value():
        u_, s_ = numpy_forward(dyn, Ws, bs, x)
        assert np.array_equal(s_[0], s[0])
        return loss(u_[-1], s_[-1], labels).value

    res = loss(u[-1], s[-1], labels)
    assert res.grad_s is None
    grads = backward(dyn, x, u, s, Ws, res.grad_s, res.grad_u, sg)
    eps = 1e-6
    for l in range(2):
        for k, P in enumerate((Ws[l], bs[l])):
            num = np.zeros_like(P)
            for idx in np.ndindex(P.shape):
                old = P[idx]
                P[idx] = old + eps
                fp = value()
                P[idx] = old - eps
                fm = value()
                P[idx] = old
                num[idx] = (fp - fm) / (2 * eps)
            np.testing.assert_allclose(grads[l][k], num, rtol=1e-5, atol=1e-8)
    assert np.abs(grads[1][0]).max() > 1e-3 and np.abs(grads[1][1]).max() > 1e-3
    assert not grads[0][0].any()


# ---------------------------------------------------------------------------
# surrogates
# ---------------------------------------------------------------------------
def test_rectangular_width_one_is_sdsnn_box():
    sg = get_surrogate("rectangular")
    inside = np.array([-0.4999999, -0.25, 0.0, 0.3, 0.4999999])
    outside = np.array([-3.0, -0.5, 0.5, 0.5000001, 2.0])
    assert np.array_equal(sg.derivative(inside), np.ones(5))
    assert np.array_equal(sg.derivative(outside), np.zeros(5))
    # SD-SNN form: 1 where |u - 0.5| < 0.5 with theta = 0.5
    u = np.linspace(-1, 2, 301)
    np.testing.assert_array_equal(sg(u - 0.5), (np.abs(u - 0.5) < 0.5).astype(float))
    np.testing.assert_array_equal(get_surrogate("rectangular", width=0.5)(np.array([0.2, 0.3])), [2.0, 0.0])


def _integral(sg):
    f = sg.derivative
    edges = sorted({-50.0, -0.5 * sg.param, 0.0, 0.5 * sg.param, 50.0}) if sg.name == "rectangular" \
        else [-50.0, 0.0, 50.0]
    total = integrate.quad(lambda t: float(f(t)), -np.inf, edges[0], limit=200)[0]
    for lo, hi in zip(edges[:-1], edges[1:]):
        total += integrate.quad(lambda t: float(f(t)), lo, hi, limit=200)[0]
    total += integrate.quad(lambda t: float(f(t)), edges[-1], np.inf, limit=200)[0]
    return total


@pytest.mark.parametrize("name,param", [
    ("rectangular", 1.0), ("rectangular", 0.3), ("rectangular", 2.5),
    ("sigmoid", 5.0), ("sigmoid", 1.0), ("sigmoid", 40.0),
    ("arctan", 2.0), ("arctan", 0.5), ("arctan", 10.0),
    ("fast_sigmoid", 25.0), ("fast_sigmoid", 4.0),
])
def test_surrogate_integral(name, param):
    sg = Surrogate(name, param)
    # rectangular, sigmoid and arctan are normalised (integral 1, a smoothed delta);
    # SuperSpike's fast sigmoid 1/(1+k|x|)^2 is not: its integral is 2/k.
    expected = 2.0 / param if name == "fast_sigmoid" else 1.0
    assert _integral(sg) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", SURROGATE_NAMES)
def test_surrogate_shape_and_values(name):
    sg = get_surrogate(name)
    x = np.linspace(-3, 3, 60).reshape(3, 1, 20)
    d = sg.derivative(x)
    assert d.shape == x.shape and d.dtype == np.float64
    np.testing.assert_allclose(d.ravel(), d.ravel()[::-1], rtol=1e-14)  # even function
    assert sg.derivative(x.astype(np.float32)).dtype == np.float32
    assert np.all(d >= 0) and sg.derivative(np.array(0.0)) >= d.max()
    assert np.all(np.isfinite(sg.derivative(np.array([-1e300, 1e300]))))
    # closed forms at a point
    p = sg.param
    xv = 0.13
    expected = {
        "rectangular": 1.0 / p,
        "sigmoid": p * math.exp(-p * xv) / (1 + math.exp(-p * xv)) ** 2,
        "fast_sigmoid": 1 / (1 + p * xv) ** 2,
        "arctan": p / 2 / (1 + (math.pi / 2 * p * xv) ** 2),
    }[name]
    assert float(sg.derivative(xv)) == pytest.approx(expected, rel=1e-12)


def test_surrogate_specs_and_errors():
    assert get_surrogate("sigmoid").param == 5.0
    assert get_surrogate("fast_sigmoid").param == 25.0
    assert get_surrogate("arctan").param == 2.0
    assert get_surrogate("rectangular").param == 1.0
    sg = get_surrogate("Fast-Sigmoid", slope=10)
    assert sg == Surrogate("fast_sigmoid", 10.0)
    assert repr(sg) == "Surrogate('fast_sigmoid', slope=10.0)"
    assert sg.config() == {"name": "fast_sigmoid", "slope": 10.0}
    assert get_surrogate(sg.config()) == sg
    assert get_surrogate(sg) is sg
    assert get_surrogate(sg, slope=3.0).param == 3.0
    assert get_surrogate({"name": "arctan"}, alpha=4).param == 4.0
    with pytest.raises(ValueError, match="'gaussian'") as exc:
        get_surrogate("gaussian")
    for known in SURROGATES:
        assert known in str(exc.value)
    with pytest.raises(ValueError, match="'boxcar'"):
        get_surrogate({"name": "boxcar", "width": 1})
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="width"):
            get_surrogate("rectangular", width=bad)
    with pytest.raises(ValueError, match="scale"):
        Surrogate("sigmoid", -2)
    with pytest.raises(ValueError, match="alpha"):
        get_surrogate("arctan", width=1.0)
    with pytest.raises(TypeError):
        get_surrogate(3)


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------
def test_loss_values_by_hand():
    # T=2, B=2, C=2
    s = np.array([[[1, 0], [0, 0]],
                  [[1, 1], [0, 1]]], float)
    u = np.array([[[0.5, 0.2], [0.1, 0.3]],
                  [[0.4, 0.9], [0.7, 0.3]]])
    labels = np.array([0, 1])

    r = get_loss("rate_mse")(u, s, labels)
    # rates [[1, .5], [0, .5]] vs one-hot [[1, 0], [0, 1]] -> (0 + .25 + 0 + .25)/4
    assert r.value == pytest.approx(0.125)
    np.testing.assert_allclose(r.scores, [[1, 0.5], [0, 0.5]])
    # dL/ds_t = 2 (r - y) / (T B C)
    np.testing.assert_allclose(r.grad_s[0], [[0, 0.125], [0, -0.125]])
    np.testing.assert_allclose(r.grad_s[1], r.grad_s[0])
    assert r.grad_u is None
    assert isinstance(r, LossResult) and list(r.predictions) == [0, 1]

    c = get_loss("ce_count")(u, s, labels)
    # counts [[2, 1], [0, 1]]; CE0 = log(1 + e^-1), CE1 = log(1 + e^-1)
    assert c.value == pytest.approx(math.log(1 + math.exp(-1)))
    np.testing.assert_allclose(c.scores, [[2, 1], [0, 1]])
    p = 1 / (1 + math.exp(-1))
    np.testing.assert_allclose(c.grad_s[0], np.array([[p - 1, 1 - p], [1 - p, p - 1]]) / 2)
    assert c.grad_u is None

    m = get_loss("ce_max_membrane")(u, None, labels)
    # max membranes [[.5, .9], [.7, .3]]; CE0 = log(1+e^.4), CE1 = log(1+e^.4)
    assert m.value == pytest.approx(math.log(1 + math.exp(0.4)))
    np.testing.assert_allclose(m.scores, [[0.5, 0.9], [0.7, 0.3]])
    q = 1 / (1 + math.exp(0.4))  # softmax of the label class
    g = np.zeros((2, 2, 2))
    g[0, 0, 0] = (q - 1) / 2
    g[1, 0, 1] = (1 - q) / 2
    g[1, 1, 0] = (1 - q) / 2
    g[0, 1, 1] = (q - 1) / 2
    np.testing.assert_allclose(m.grad_u, g)
    assert m.grad_s is None


def test_ce_max_membrane_ties_and_stability():
    u = np.zeros((3, 1, 2))
    u[:, 0, 0] = [1.0, 1.0, 0.2]  # tie between t=0 and t=1: first wins
    m = get_loss("ce_max_membrane")(u, None, [0])
    assert m.grad_u[0, 0, 0] != 0 and m.grad_u[1, 0, 0] == 0
    big = np.zeros((2, 1, 3))
    big[:, 0, 0] = 1000.0
    c = get_loss("ce_count")(None, big, [1])
    assert c.value == pytest.approx(2000.0) and np.all(np.isfinite(c.grad_s))


def test_loss_errors():
    s = np.zeros((3, 2, 4))
    with pytest.raises(ValueError, match="'hinge'") as exc:
        get_loss("hinge")
    for known in LOSS_NAMES:
        assert known in str(exc.value)
    loss = get_loss("ce_count")
    with pytest.raises(ValueError, match="label 4"):
        loss(s, s, [0, 4])
    with pytest.raises(ValueError, match="label -1"):
        loss(s, s, np.array([-1, 0]))
    with pytest.raises(ValueError, match="integer"):
        loss(s, s, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        loss(s, s, [0, 1, 2])
    with pytest.raises(ValueError, match="shape"):
        loss(s[:, :1], s, [0, 1])
    with pytest.raises(ValueError, match="u_out"):
        get_loss("ce_max_membrane")(None, s, [0, 1])
    with pytest.raises(ValueError, match=r"\[T, B, C\]"):
        loss(None, s[0], [0, 1])
