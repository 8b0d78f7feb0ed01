"""Input encoders: statistics, ordering, determinism and validation."""

import numpy as np
import pytest

from sdsnn_brian.encoding import Direct, Latency, Rate, get_encoder


def rng(seed=0):
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- Rate


def test_rate_matches_probability():
    p = np.linspace(0, 1, 11)
    x = np.tile(p, (20, 1))  # [B=20, n=11]
    s = Rate()(x, 500, rng(1))
    assert s.shape == (500, 20, 11) and s.dtype == np.uint8
    assert set(np.unique(s)) <= {0, 1}
    freq = s.mean(axis=(0, 1))
    # 10,000 Bernoulli trials per pixel value: std <= 0.005; allow 5 sigma
    np.testing.assert_allclose(freq, p, atol=0.025)
    assert freq[0] == 0.0 and freq[-1] == 1.0  # exact at the ends


def test_rate_gain_clips():
    x = np.array([[0.1, 0.3, 0.6]])
    s = Rate(gain=2.0)(x, 4000, rng(2))
    np.testing.assert_allclose(s.mean(axis=(0, 1)), [0.2, 0.6, 1.0], atol=0.03)
    assert s[:, 0, 2].all()


def test_rate_deterministic_given_rng():
    x = rng(5).random((3, 7))
    a = Rate()(x, 9, rng(42))
    b = Rate()(x, 9, rng(42))
    c = Rate()(x, 9, rng(43))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_rate_reference_rule():
    # spike exactly where x > u, u drawn step by step from the same generator
    x = rng(3).random((2, 5))
    s = Rate()(x, 6, rng(9))
    g = rng(9)
    ref = np.stack([(x > g.random(x.shape)) for _ in range(6)]).astype(np.uint8)
    np.testing.assert_array_equal(s, ref)


# --------------------------------------------------------------------------- Latency


def test_latency_linear_times_and_ordering():
    x = np.array([[1.0, 0.75, 0.5, 0.25, 0.005, 0.0, 0.01]])
    T = 5
    s = Latency()(x, T, rng())
    assert s.shape == (T, 1, 7) and s.dtype == np.uint8
    counts = s.sum(axis=0)[0]
    np.testing.assert_array_equal(counts, [1, 1, 1, 1, 0, 0, 0])  # <= threshold never spikes
    first = s[:, 0, :4].argmax(axis=0)
    np.testing.assert_array_equal(first, np.rint((1 - x[0, :4]) * (T - 1)))
    assert first[0] == 0 and list(first) == sorted(first)  # brighter = earlier


def test_latency_at_most_one_spike_random_images():
    x = rng(4).random((8, 50))
    for enc in (Latency(), Latency(linear=False, tau=3.0, threshold=0.2)):
        s = enc(x, 20, rng())
        assert s.sum(axis=0).max() <= 1
        t = enc.spike_times(x, 20)
        fired = np.isfinite(t)
        # ordering: brighter pixels never spike later
        xs, ts = x[fired], t[fired]
        order = np.argsort(-xs, kind="stable")
        assert np.all(np.diff(ts[order]) >= 0)
        np.testing.assert_array_equal(s.sum(axis=0).astype(bool), fired)


def test_latency_rc_formula_and_window():
    enc = Latency(tau=5.0, threshold=0.2, linear=False)
    x = np.array([[1.0, 0.5, 0.21, 0.2]])
    t = enc.spike_times(x, 10)
    assert t[0, 0] == np.rint(5 * np.log(1 / 0.8))
    assert t[0, 1] == np.rint(5 * np.log(0.5 / 0.3))
    assert np.isinf(t[0, 2])  # 5*ln(21) ~ 15 > T-1: outside the window
    assert np.isinf(t[0, 3])


def test_latency_single_step_and_determinism():
    x = np.array([[0.9, 0.5, 0.0]])
    np.testing.assert_array_equal(Latency()(x, 1, rng()), [[[1, 1, 0]]])
    np.testing.assert_array_equal(Latency()(x, 7, rng(1)), Latency()(x, 7, rng(2)))


# --------------------------------------------------------------------------- Direct


def test_direct_passthrough_and_layout():
    f = (rng(6).random((4, 3, 5)) > 0.5).astype(np.float32)  # [T, B, n]
    out = Direct()(f, 4, rng())
    assert out.dtype == np.uint8 and out.shape == (4, 3, 5)
    np.testing.assert_array_equal(out, f)
    bt = f.transpose(1, 0, 2)  # [B, T, n]
    np.testing.assert_array_equal(Direct(time_first=False)(bt), f)
    np.testing.assert_array_equal(Direct()(f.astype(bool)), f)


def test_direct_validation():
    f = np.zeros((4, 2, 3))
    with pytest.raises(ValueError, match="binary"):
        Direct()(f + 2)
    with pytest.raises(ValueError, match=r"\[T, B, n\]"):
        Direct()(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"\[B, T, n\]"):
        Direct(time_first=False)(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="steps"):
        Direct()(f, 5)
    g = f.copy()
    g[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="contains NaN"):
        Direct()(g)


# --------------------------------------------------------------------------- validation and registry


@pytest.mark.parametrize("enc", [Rate(), Latency()])
def test_image_validation(enc):
    good = np.full((2, 3), 0.5)
    bad = good.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="contains NaN"):
        enc(bad, 3, rng())
    bad[1, 1] = np.inf
    with pytest.raises(ValueError, match="contains NaN or inf"):
        enc(bad, 3, rng())
    with pytest.raises(ValueError, match=r"\[B, n\]"):
        enc(np.full((2, 3, 4), 0.5), 3, rng())
    with pytest.raises(ValueError, match=r"\[B, n\]"):
        enc(np.full(3, 0.5), 3, rng())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        enc(good * 3, 3, rng())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        enc(good - 1, 3, rng())
    with pytest.raises(ValueError, match="steps"):
        enc(good, 0, rng())


def test_rate_requires_generator():
    with pytest.raises(TypeError, match="Generator"):
        Rate()(np.zeros((1, 2)), 3, 123)


def test_get_encoder_and_config():
    assert isinstance(get_encoder("rate"), Rate)
    assert get_encoder("Latency", tau=2.0).tau == 2.0
    assert isinstance(get_encoder("direct"), Direct)
    for enc in (Rate(gain=0.5), Latency(tau=3.0, threshold=0.1, linear=False), Direct(time_first=False)):
        cfg = enc.config()
        assert cfg["name"] in ("rate", "latency", "direct")
        assert get_encoder(cfg) == enc
    obj = Rate()
    assert get_encoder(obj) is obj
    with pytest.raises(ValueError, match="rate.*latency|direct.*latency.*rate|known"):
        get_encoder("poisson-ish")
    with pytest.raises(ValueError, match="direct, latency, rate"):
        get_encoder("nope")
