"""Trainer(compact=True): once SD-SNN has pruned enough, evaluation and strict-mode training run
on a build without the removed synapses; the numbers are those of the full build, and the build
follows the structure (kept while it is a small enough superset, rebuilt after regrowth)."""
import numpy as np
import pytest

from sdsnn_brian import Adam, Dense, Input, Network, Trainer


def _trainer(cache_dir, compact, mode="strict"):
    net = Network(Input(30, encoding="rate"), Dense(20), Dense(5), steps=6)
    tr = Trainer(net, device="cpp_standalone", optimizer=Adam(1e-2), gradient_mode=mode, seed=3,
                 cache_dir=cache_dir, compact=compact)
    tr.COMPACT_SWITCH_EVERY = 0  # change builds at once (test_build_changes_are_rationed: the default)
    tr.weights = [3 * w for w in tr.weights]
    return tr


def _prune(tr, living):
    """SD-SNN's neuronal pruning of the hidden layer: whole rows of the first mask, and the
    pruned neurons' outgoing synapses."""
    masks = [np.zeros((20, 30)), np.zeros((5, 20))]
    masks[0][living] = 1
    masks[1][:, living] = 1
    tr.masks = masks
    for w, m in zip(tr.weights, masks):
        w *= m


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("compaction"))


def _data(seed=0, n=8):
    rng = np.random.default_rng(seed)
    return rng.random((n, 30)).astype(np.float32), rng.integers(0, 5, n)


def test_compacted_training_equals_the_full_build(cache_dir):
    trainers = [_trainer(cache_dir, compact) for compact in (True, False)]
    for tr in trainers:
        _prune(tr, np.arange(0, 20, 3))  # 7 of 20 hidden neurons live
    images, labels = _data()
    for k in range(3):
        out = [tr.train_step(images[:4], labels[:4], np.random.default_rng([1, k]), 4) for tr in trainers]
        assert out[0]["loss"] == out[1]["loss"] and out[0]["correct"] == out[1]["correct"]
        for a, b in zip(trainers[0].weights, trainers[1].weights):
            np.testing.assert_array_equal(a, b)
    compacted, full = trainers
    assert compacted._compact_sim is not None and compacted._sim is None  # trained on the compacted build
    assert len(compacted._compact_sim.connectivity[0][0]) == 7 * 30  # rows onto the living neurons only
    assert full._compact_sim is None and full._sim.connectivity is None
    ev = [tr.evaluate((images, labels), batch_size=4) for tr in trainers]
    assert ev[0] == ev[1]


def test_build_follows_the_structure(cache_dir):
    tr = _trainer(cache_dir, True, mode="reference")
    images, labels = _data(1)
    tr.train_step(images[:4], labels[:4], np.random.default_rng(0), 4)
    assert tr.simulator(4, masked=True) is tr._sim  # nothing pruned: the full build
    living = np.arange(10)
    _prune(tr, living)  # half the synapses
    first = tr.simulator(4, masked=True)
    assert first is not tr._sim and first.connectivity[0] is not None
    # reference mode trains every weight: the training forward keeps the full build
    tr.train_step(images[:4], labels[:4], np.random.default_rng(1), 4)
    assert tr._sim is not None and tr._sim.connectivity is None
    for w, m in zip(tr.weights, tr.masks):
        w *= m
    # a little more pruned (9 of the 10 neurons): the build still serves
    tr.masks[0][9] = 0
    tr.masks[1][:, 9] = 0
    tr._mask_changes += 1
    assert tr.simulator(4, masked=True) is first
    # much more pruned (5 neurons left, half of the build): a new, smaller build
    _prune(tr, np.arange(5))
    second = tr.simulator(4, masked=True)
    assert second is not first and len(second.connectivity[0][0]) == 5 * 30
    assert first._server is None  # the old build's process was ended
    # a removed synapse grows back: the build no longer holds it, so it is replaced
    tr.masks[0][12, 3] = 1
    tr._mask_changes += 1
    third = tr.simulator(4, masked=True)
    assert third is not second
    x, rec = tr.forward(images[:4], np.random.default_rng(5), 4)
    tr.compact = False
    x2, rec2 = tr.forward(images[:4], np.random.default_rng(5), 4)
    for a, b in zip(rec.u + rec.s, rec2.u + rec2.s):
        np.testing.assert_array_equal(a, b)


def test_regrowth_inside_a_living_row_reaches_the_simulation(cache_dir):
    """A synapse regrown onto a living neuron is in the rows build, but the build zeroes the
    synapses that were removed when it was made: the trainer switches to a build of the same
    project (nothing to compile) that lets it transmit, and the results match the full build."""
    tr = _trainer(cache_dir, True)
    living = np.arange(8)
    _prune(tr, living)
    tr.masks[0][:, 5] = 0  # input 5 removed from every living neuron
    for w, m in zip(tr.weights, tr.masks):
        w *= m
    images, labels = _data(2)
    first = tr.simulator(4, masked=True)
    tr.masks[0][2, 5] = 1  # regeneration
    tr.weights[0][2, 5] = 2.0
    tr._mask_changes += 1
    second = tr.simulator(4, masked=True)
    assert second is not first and second.project_dir == first.project_dir
    assert second.holds(tr.masks) and not first.holds(tr.masks)
    x, rec = tr.forward(images[:4], np.random.default_rng(3), 4)
    tr.compact = False
    _, ref = tr.forward(images[:4], np.random.default_rng(3), 4)
    for a, b in zip(rec.u + rec.s, ref.u + ref.s):
        np.testing.assert_array_equal(a, b)
    assert x[:, :, 5].sum() > 0
    stale = first.run(x, tr.effective_weights())  # the old build would have dropped the regrown synapse
    assert not np.array_equal(stale.u[0][:, :, 2], rec.u[0][:, :, 2])


def test_build_changes_are_rationed(tmp_path):
    """A compacted build takes over only once enough minibatches ran on the masked path to repay
    its code generation and compilation; until then the full build, or a build that still runs
    the structure, serves."""
    tr = _trainer(str(tmp_path), True)
    assert Trainer.COMPACT_SWITCH_EVERY == 500
    tr.COMPACT_SWITCH_EVERY = 4
    _prune(tr, np.arange(6))
    for _ in range(3):  # fewer than 4 masked minibatches: the full build
        assert tr.simulator(4, masked=True) is tr._sim
    assert tr._compact_sim is None
    sim = tr.simulator(4, masked=True)  # the fourth: the compacted build takes over
    assert sim is tr._compact_sim and sim.connectivity[0] is not None
    images, labels = _data(4)
    tr.train_step(images[:4], labels[:4], np.random.default_rng(0), 4)
    assert sim.compiled
    _prune(tr, np.arange(3))  # a much smaller structure, soon after: the build that holds it stays
    assert tr.simulator(4, masked=True) is sim
    tr.masks[0][10, 0] = 1  # a synapse it does not hold: the full build until the next change is due
    tr._mask_changes += 1
    assert tr.simulator(4, masked=True) is tr._sim
    smaller = tr.simulator(4, masked=True)  # four masked minibatches since the last change
    assert smaller is tr._compact_sim and smaller is not sim and smaller.holds(tr.masks)
