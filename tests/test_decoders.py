"""The numpy decoders of time decoding: gradients against finite differences (and torch), windows."""
import numpy as np
import pytest

from sdsnn_brian.decoders import Window, distortion, make_decoder


def _loss(dec, x, kind, y):
    return distortion(kind, dec.forward(x), y)[0].sum()


@pytest.mark.parametrize("kind", ["mlp", "conv1d", "linear"])
@pytest.mark.parametrize("dist", ["ce", "bce"])
def test_decoder_gradients_equal_finite_differences(kind, dist):
    rng = np.random.default_rng(0)
    M, L, N, C = 4, 6, 5, 7
    dec = make_decoder(kind, N, L, C, hidden=(9, 8), channels=3, kernel=3, rng=rng)
    x = rng.random((M, L, N))
    y = rng.integers(0, C, M) if dist == "ce" else rng.random((M, C))
    _, g = distortion(dist, dec.forward(x), y)
    dx = dec.backward(g)
    grads = dec.grads()
    h = 1e-6
    for p, gp in zip(dec.params() + [x], grads + [dx]):
        assert gp.shape == p.shape
        for i in list(np.ndindex(p.shape))[:: max(1, p.size // 25)]:
            old = p[i]
            p[i] = old + h
            fp = _loss(dec, x, dist, y)
            p[i] = old - h
            fm = _loss(dec, x, dist, y)
            p[i] = old
            assert gp[i] == pytest.approx((fp - fm) / (2 * h), rel=1e-5, abs=1e-7)


def test_conv1d_decoder_equals_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    dec = make_decoder("conv1d", 5, 8, 4, channels=3, kernel=3, rng=rng)
    x = rng.random((2, 8, 5))
    conv, lin = dec.layers[1], dec.layers[4]
    xt = torch.tensor(x.transpose(0, 2, 1), requires_grad=True)
    h = torch.relu(torch.nn.functional.conv1d(xt, torch.tensor(conv.K), torch.tensor(conv.b)))
    out = h.reshape(2, -1) @ torch.tensor(lin.W).T + torch.tensor(lin.b)
    np.testing.assert_allclose(dec.forward(x), out.detach().numpy(), rtol=1e-12)
    out.sum().backward()
    dx = dec.backward(np.ones((2, 4)))
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 1), rtol=1e-12)


def test_windows_and_their_backward():
    rng = np.random.default_rng(2)
    z = (rng.random((9, 3, 4)) < 0.4).astype(float)
    whole, slide, rate, srate = Window("whole"), Window(4), Window("whole", rate=True), Window(4, rate=True)
    np.testing.assert_array_equal(whole(z)[0], z.transpose(1, 0, 2))
    w = slide(z)
    assert w.shape == (6, 3, 4, 4) and slide.positions(9) == 6
    np.testing.assert_array_equal(w[2, 1], z[2:6, 1])
    np.testing.assert_allclose(rate(z)[0, :, 0], z.mean(axis=0))
    np.testing.assert_allclose(srate(z)[5, :, 0], z[5:9].sum(axis=0) / 4)
    assert rate.length(9) == 1 and slide.length(9) == 4
    for win in (whole, slide, rate, srate):  # backward is the adjoint of the window map
        g = rng.normal(size=win(z).shape)
        np.testing.assert_allclose((win(z) * g).sum(), (z * win.backward(g, 9)).sum(), rtol=1e-12)


def test_distortions_match_their_definitions():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(5, 4))
    y = rng.integers(0, 4, 5)
    loss, _ = distortion("ce", logits, y)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(loss, -np.log(p[np.arange(5), y]), rtol=1e-12)
    t = rng.random((5, 4))
    loss, _ = distortion("bce", logits, t)
    s = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(loss, -(t * np.log(s) + (1 - t) * np.log(1 - s)).sum(axis=1), rtol=1e-10)
