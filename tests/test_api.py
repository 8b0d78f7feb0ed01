"""The public API a user needs without reading modules: ``Trainer.gradients`` (loss and gradients
without an update, exactly what ``train_step`` applies), initial weights, biases and masks as
constructor arguments, and ``Simulator`` / ``backward`` exported from the package.

One tiny network (20 -> 8 with a bias -> 4, T=5) and one batch size, so every test shares one
compiled build."""
import copy

import numpy as np
import pytest

import sdsnn_brian
from sdsnn_brian import SGD, Adam, Dense, Gradients, Input, Network, Simulator, Trainer, backward
from sdsnn_brian.losses import get_loss

B = 6


def _net():
    return Network(Input(20, encoding="rate"), Dense(8, bias=True), Dense(4), steps=5)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((B, 20)), rng.integers(0, 4, B)


def _params(seed=1):
    """Weights large enough that both layers spike, a bias for the hidden layer, masks with holes."""
    rng = np.random.default_rng(seed)
    weights = [rng.uniform(-0.4, 0.9, (8, 20)), rng.uniform(-0.5, 1.2, (4, 8))]
    biases = [rng.uniform(-0.1, 0.1, 8), None]
    masks = [(rng.random((8, 20)) < 0.7).astype(float), (rng.random((4, 8)) < 0.8).astype(float)]
    return weights, biases, masks


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("api_cache"))


def _trainer(cache_dir, **kw):
    weights, biases, masks = _params()
    kw.setdefault("weights", weights)
    kw.setdefault("biases", biases)
    kw.setdefault("masks", masks)
    kw.setdefault("optimizer", Adam(1e-2))
    return Trainer(_net(), device="cpp_standalone", cache_dir=cache_dir, seed=2, **kw)


def _state(tr):
    arrays, meta = tr.state_dict()
    return copy.deepcopy({k: np.array(v) for k, v in arrays.items()}), copy.deepcopy(meta)


# -- exports ---------------------------------------------------------------------------------------
def test_simulator_and_backward_are_exported_and_documented():
    from sdsnn_brian.device import Recording, Simulator as DeviceSimulator
    from sdsnn_brian.gradient import backward as gradient_backward
    from sdsnn_brian.trainer import Gradients as TrainerGradients

    assert Simulator is DeviceSimulator and backward is gradient_backward and Gradients is TrainerGradients
    assert sdsnn_brian.Recording is Recording
    for name in ("Simulator", "backward", "Gradients", "Recording", "Trainer"):
        assert name in sdsnn_brian.__all__
    assert all(hasattr(sdsnn_brian, name) for name in sdsnn_brian.__all__)
    doc = sdsnn_brian.__doc__
    assert "Simulator(net, batch_size)" in doc and "backward(" in doc and "trainer.gradients(" in doc


# -- Trainer.gradients -----------------------------------------------------------------------------
def test_gradients_equal_the_pieces_run_by_hand(cache_dir):
    tr = _trainer(cache_dir, gradient_mode="reference")
    x, y = _data()
    g = tr.gradients(x, y, rng=7)
    assert isinstance(g, Gradients)
    assert len(g.dW) == 2 and len(g.db) == 1 and g.db[0].shape == (8,)  # only the hidden layer has a bias
    assert all(np.abs(d).sum() > 0 for d in g.dW + g.db), "the test network must spike and learn"
    assert [a.shape for a in g.grads] == [p.shape for p in tr.params]

    # the encoding, the simulation, the loss and BPTT by hand
    spikes = tr.encoder(x, tr.net.steps, np.random.default_rng(7))
    np.testing.assert_array_equal(g.spikes, spikes)
    sim = Simulator(tr.net, B, cache_dir=cache_dir)
    try:
        rec = sim.run(spikes, tr.weights, tr.biases)  # reference mode: the raw weights
    finally:
        sim.close()
    for a, b in zip(g.recording.u + g.recording.s, rec.u + rec.s):
        np.testing.assert_array_equal(a, b)
    res = get_loss("rate_mse")(rec.u[-1], rec.s[-1], y)
    grads = backward(tr.net.dynamics(), spikes, rec.u, rec.s, tr.weights, res.grad_s, res.grad_u,
                     "rectangular")
    assert g.loss == res.value
    np.testing.assert_array_equal(g.scores, res.scores)
    assert g.correct == int(np.sum(res.scores.argmax(1) == y))
    for k in range(2):
        np.testing.assert_array_equal(g.dW[k], grads[k][0])
    np.testing.assert_array_equal(g.db[0], grads[0][1])
    # backward called on the recording gradients() returns gives the same
    again = backward(tr.net.dynamics(), g.spikes, g.recording.u, g.recording.s, tr.weights, res.grad_s,
                     res.grad_u, "rectangular")
    assert all(np.array_equal(a[0], d) for a, d in zip(again, g.dW))


@pytest.mark.parametrize("mode", ["reference", "strict"])
def test_gradients_are_what_train_step_applies(cache_dir, mode):
    lr = 0.05
    tr = _trainer(cache_dir, gradient_mode=mode, optimizer=SGD(lr, momentum=0))
    x, y = _data(1)
    g = tr.gradients(x, y, rng=np.random.default_rng(11))
    before = [p.copy() for p in tr.params]
    m = tr.train_step(x, y, np.random.default_rng(11), B)
    assert m["loss"] == g.loss and m["correct"] == g.correct
    for p, p0, d in zip(tr.params, before, g.grads):
        np.testing.assert_array_equal(p, p0 - lr * d)  # SGD without momentum: p -= lr * grad
        np.testing.assert_allclose(p - p0, -lr * d, rtol=1e-9, atol=1e-15)
    removed = [mask == 0 for mask in tr.masks]
    if mode == "strict":  # removed synapses get no gradient, no update, and their scores accumulate
        assert all(not d[r].any() for d, r in zip(g.dW, removed))
        assert all(not p[r].any() for p, r in zip(tr.weights, removed))
        assert any(np.abs(gs).sum() > 0 for gs in tr.grad_score)
        for gs, d, r in zip(tr.grad_score, g.dW_unmasked, removed):
            np.testing.assert_array_equal(gs, -lr * d * r)
    else:  # reference: the raw weights train densely between structural steps
        assert any(d[r].any() for d, r in zip(g.dW, removed))
        assert all(not gs.any() for gs in tr.grad_score)


def test_gradients_leave_the_training_state_untouched(cache_dir):
    tr = _trainer(cache_dir, gradient_mode="strict")  # Adam: moments and a step count
    x, y = _data(2)
    tr.train_step(x, y, 3, B)  # non-empty optimiser state and gradient scores
    arrays, meta = _state(tr)
    first = tr.gradients(x, y, rng=4)
    second = tr.gradients(x, y, rng=4)
    arrays_after, meta_after = _state(tr)
    assert set(arrays) == set(arrays_after) and meta == meta_after
    for k in arrays:
        np.testing.assert_array_equal(arrays_after[k], arrays[k], err_msg=k)
    assert tr.optimizer.step_count == 1
    assert first.loss == second.loss
    assert all(np.array_equal(a, b) for a, b in zip(first.grads, second.grads))
    # rng=None: the encoding fit would draw for the minibatch at the trainer's position
    tr.batch = 3
    default = tr.gradients(x, y)
    explicit = tr.gradients(x, y, rng=np.random.default_rng([tr.seed, tr.epoch, 3]))
    np.testing.assert_array_equal(default.spikes, explicit.spikes)
    assert all(np.array_equal(a, b) for a, b in zip(default.grads, explicit.grads))


def test_gradients_checks_its_arguments(cache_dir):
    tr = _trainer(cache_dir)
    x, y = _data()
    with pytest.raises(ValueError, match="minibatch: label 7 is out of range for 4 output neurons"):
        tr.gradients(x, np.full(B, 7))
    with pytest.raises(ValueError, match="minibatch: samples have 19 values"):
        tr.gradients(x[:, :19], y)
    with pytest.raises(TypeError, match="rng must be None, an integer seed or a numpy Generator"):
        tr.gradients(x, y, rng="seven")


# -- initial parameters ----------------------------------------------------------------------------
def test_given_weights_biases_and_masks_are_used_and_copied(cache_dir):
    weights, biases, masks = _params()
    tr = _trainer(cache_dir, weights=weights, biases=biases, masks=masks)
    for k in range(2):
        np.testing.assert_array_equal(tr.masks[k], masks[k])
        np.testing.assert_array_equal(tr.weights[k], weights[k] * masks[k])  # removed synapses have no weight
        np.testing.assert_array_equal(tr.effective_weights()[k], weights[k] * masks[k])
        assert tr.weights[k] is not weights[k] and not np.shares_memory(tr.weights[k], weights[k])
        assert not np.shares_memory(tr.masks[k], masks[k])
    np.testing.assert_array_equal(tr.biases[0], biases[0])
    assert tr.biases[1] is None and not np.shares_memory(tr.biases[0], biases[0])
    assert tr.structure_summary()["synapses_present"] == [float(m.mean()) for m in masks]
    saved = [w.copy() for w in weights]
    weights[0][:] = 99.0  # the caller's arrays are not the trainer's
    masks[0][:] = 0.0
    np.testing.assert_array_equal(tr.weights[0], saved[0] * tr.masks[0])
    assert tr.masks[0].any()

    # the simulation runs with them: another seed (other initial weights) gives the same gradients
    x, y = _data()
    weights, biases, masks = _params()
    other = Trainer(_net(), cache_dir=cache_dir, seed=99, weights=weights, biases=biases, masks=masks)
    a = tr.gradients(x, y, rng=5)
    b = other.gradients(x, y, rng=5)
    assert a.loss == b.loss and all(np.array_equal(p, q) for p, q in zip(a.grads, b.grads))
    default = Trainer(_net(), cache_dir=cache_dir, seed=2)
    assert all(m.all() for m in default.masks) and not np.array_equal(default.weights[0], tr.weights[0])


def test_partial_initial_parameters_keep_the_seeded_rest():
    seeded = Trainer(_net(), seed=5)
    _, _, masks = _params()
    tr = Trainer(_net(), seed=5, masks=masks)
    for k in range(2):
        np.testing.assert_array_equal(tr.weights[k], seeded.weights[k] * masks[k])
    np.testing.assert_array_equal(tr.biases[0], seeded.biases[0])
    weights, _, _ = _params()
    tr = Trainer(_net(), seed=5, weights=[w.astype(np.float32) for w in weights])
    assert all(w.dtype == np.float64 for w in tr.weights) and all(m.all() for m in tr.masks)


def _bad(what, k, value):
    weights, biases, masks = _params()
    given = {"weights": weights, "biases": biases, "masks": masks}
    given[what] = list(given[what])
    given[what][k] = value
    return given


@pytest.mark.parametrize("given, exc, match", [
    (_bad("weights", 1, np.zeros((4, 9))), ValueError,
     r"weights of layer 2 \(Dense, 4 neurons\) have shape \(4, 9\), the network needs \(4, 8\)"),
    (_bad("weights", 0, np.full((8, 20), np.nan)), ValueError,
     r"weights of layer 1 \(Dense, 8 neurons\) contain NaN or infinite values"),
    (_bad("weights", 0, [["a"] * 20] * 8), TypeError, r"weights of layer 1 \(Dense, 8 neurons\): not an array"),
    (_bad("biases", 0, np.zeros(7)), ValueError, r"biases of layer 1 \(Dense, 8 neurons\) have shape \(7,\)"),
    (_bad("biases", 0, None), ValueError, r"biases of layer 1 \(Dense, 8 neurons\): missing"),
    (_bad("biases", 1, np.zeros(4)), ValueError, r"biases of layer 2 \(Dense, 4 neurons\): the layer has no bias"),
    (_bad("biases", 0, np.array([np.inf] * 8)), ValueError, r"biases of layer 1 .* NaN or infinite"),
    (_bad("masks", 1, np.full((4, 8), 0.5)), ValueError,
     r"masks of layer 2 \(Dense, 4 neurons\) must hold only 0 and 1, found 0.5"),
    (_bad("masks", 0, np.ones((20, 8))), ValueError, r"masks of layer 1 \(Dense, 8 neurons\) have shape \(20, 8\)"),
    ({"weights": [np.zeros((8, 20))]}, ValueError, r"weights: 1 entries for the network's 2 trained layers"),
    ({"masks": np.ones((8, 20))}, TypeError, r"masks must be a list with one entry per trained layer \(2\)"),
])
def test_bad_initial_parameters_are_refused_naming_the_layer(given, exc, match):
    with pytest.raises(exc, match=match):
        Trainer(_net(), **given)
