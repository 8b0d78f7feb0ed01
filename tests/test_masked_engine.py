"""Removed synapses transmit nothing: masked and compacted Brian2 runs against the numpy re-simulation."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from reference import numpy_forward  # noqa: E402

from sdsnn_brian import Dense, Input, Network  # noqa: E402
from sdsnn_brian.device import Simulator  # noqa: E402


@pytest.fixture(scope="module")
def problem():
    net = Network(Input(30), Dense(20, bias=True), Dense(5), steps=7)
    rng = np.random.default_rng(5)
    W, b = net.init_params(rng)
    W = [3 * W[0], 6 * W[1]]
    masks = [(rng.random(w.shape) < 0.4).astype(float) for w in W]
    masks[0][[2, 7, 11]] = 0  # pruned hidden neurons: whole rows gone
    x = (rng.random((7, 4, 30)) < 0.35).astype(np.uint8)
    return net, W, b, masks, x


@pytest.mark.parametrize("compacted,compact_below,event_code", [
    (False, 0.2, "sdsnn"),
    (True, 1.01, "sdsnn"),  # every masked layer compacted (about 40 % present)
    (True, 0.2, "sdsnn"),  # kept all-to-all (40 % >= 20 %): run() applies the masks
    (True, 0.2, "brian2"),  # Brian2's own event code: always compacted
])
def test_masked_spikes_equal_numpy_with_zeroed_synapses(problem, compacted, compact_below, event_code,
                                                       tmp_path_factory):
    net, W, b, masks, x = problem
    cache = str(tmp_path_factory.mktemp("masked"))
    sim = Simulator(net, 4, "cpp_standalone", cache_dir=cache, masks=masks if compacted else None,
                    compact_below=compact_below, event_code=event_code)
    Wm = [w * m for w, m in zip(W, masks)]
    # With masks, the simulator ignores what the full matrix holds at removed positions.
    rec = sim.run(x, W if compacted else Wm, b)
    u_ref, s_ref = numpy_forward(net.dynamics(), Wm, b, x)
    u_dense, s_dense = numpy_forward(net.dynamics(), W, b, x)
    assert not np.array_equal(s_dense[1], s_ref[1])  # the mask matters here
    for l in range(2):
        np.testing.assert_array_equal(rec.s[l], s_ref[l])
        np.testing.assert_allclose(rec.u[l], u_ref[l], rtol=1e-12, atol=1e-12)
    whole = not compacted or (compact_below <= 0.4 and event_code == "sdsnn")
    n_syn = [int(np.size(m)) if whole else int(m.sum()) for m in masks]
    if compacted and whole:  # rows onto the living targets only: the 3 pruned neurons' rows are not built
        n_syn = [int(m.any(axis=1).sum()) * m.shape[1] for m in masks]
        assert n_syn[0] == 17 * 30
    assert sim.expected_sizes()["syn1.w"] == (n_syn[0],)
    assert sim.expected_sizes()["syn2.w"] == (n_syn[1],)


def test_compacted_mask_shape_checked(problem, tmp_path):
    net, W, b, masks, x = problem
    with pytest.raises(ValueError, match="mask of layer 2 has shape"):
        Simulator(net, 4, "cpp_standalone", cache_dir=str(tmp_path), masks=[masks[0], masks[1][:, :3]])
