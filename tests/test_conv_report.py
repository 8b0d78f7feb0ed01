"""Reports of convolutional runs: a tiny conv run trained with the CLI gets its full report, networks
round-trip through their descriptions, and conv/pooled SOPs and MACs match hand counts."""
import os

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from sdsnn_brian import AvgPool2d, Conv2d, Dense, Input, Network  # noqa: E402
from sdsnn_brian import energy as en  # noqa: E402
from sdsnn_brian import runreport as rr  # noqa: E402
from sdsnn_brian.cli import main as cli_main  # noqa: E402
from sdsnn_brian.export import load_trained_run, network_from_config  # noqa: E402
from sdsnn_brian.structure import network_layer_specs  # noqa: E402

BATCH = 10


# ------------------------------------------------------------------------------------ a tiny conv run
@pytest.fixture(scope="module")
def conv_run(tmp_path_factory):
    """``sdsnn train --architecture conv`` with a structural schedule: 2C3-AP2-3C3-AP2-FC6-FC10."""
    root = tmp_path_factory.mktemp("conv_report")
    cache, run_dir = str(root / "cache"), str(root / "run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SDSNN_CACHE_DIR", cache)
        rc = cli_main(["train", "--architecture", "conv", "--channels", "2", "3", "--hidden", "6", "--steps", "3",
                       "--epochs", "2", "--train-limit", str(2 * BATCH), "--test-limit", str(BATCH),
                       "--batch-size", str(BATCH), "--sdsnn", "--structure-every", "1", "--compress", "20",
                       "--log-every", "0", "--run-dir", run_dir])
    assert rc == 0
    return run_dir, cache


def test_conv_run_layers_shapes_and_names(conv_run):
    run_dir, _ = conv_run
    run = rr.load_run(run_dir)
    net = run.network()
    assert run.is_conv and run.n_layers == 4 == len(net.trained)
    assert run.weight_shapes() == [(2, 1, 3, 3), (3, 2, 3, 3), (6, 147), (10, 6)] == list(net.weight_shapes)
    assert [m.shape for m in run.masks] == run.weight_shapes()
    assert run.layer_names == ["conv1", "conv2", "fc3", "fc4"]
    assert run.population_names == ["input, 784", "conv1, 1568", "conv2, 588", "fc3, 6", "fc4 (output), 10"]
    # synapses built: one per kernel entry and linked position pair (padding 1 drops the border ones)
    assert run.synapse_counts() == [c.n_synapses() for c in net.connections]
    assert run.synapse_counts()[0] == 2 * (9 * 28 * 28 - 4 * 3 * 28 + 4)
    assert run.synapse_counts()[2:] == [6 * 147, 60]
    present = run.synapse_counts(present=True)
    assert present == [c.n_synapses(m) for c, m in zip(net.connections, run.masks)]
    assert all(p <= b for p, b in zip(present, run.synapse_counts()))
    # without a structural schedule the names are network_layer_specs'
    plain = rr.load_run(run_dir)
    plain.config = dict(plain.config, structure=None)
    assert plain.layer_names == [s.name for s in network_layer_specs(net)]


def test_conv_report_writes_every_figure(conv_run, capsys):
    run_dir, cache = conv_run
    assert cli_main(["report", run_dir, "--cache-dir", cache]) == 0
    out = os.path.join(run_dir, "report")
    md = open(os.path.join(out, "index.md")).read()
    html = open(os.path.join(out, "index.html")).read()
    for name in rr.FIGURES:
        assert os.path.isfile(os.path.join(out, f"{name}.png")), name
        assert f"({name}.png)" in md and f'src="{name}.png"' in html
    assert "not drawn" not in md
    assert "synapses present / built (final masks)" in md and "conv2:" in md
    # the report's SOPs (energy through the conv and pooling synapse maps) are the trainer's
    run = rr.load_run(run_dir)
    sim = run.simulate(cache_dir=cache)
    assert sim.estimate["sops"] == pytest.approx(run.metrics[-1]["sops_per_sample"])
    assert sim.estimate["sops_dense"] >= sim.estimate["sops"] > 0
    macs_dense = 2 * 9 * 28 * 28 + 3 * 18 * 14 * 14 + 6 * 147 + 60
    assert sim.estimate["macs_dense"] == macs_dense


def test_conv_run_is_refused_by_the_export_with_its_message(conv_run):
    run_dir, _ = conv_run
    with pytest.raises(ValueError, match="fully connected"):
        load_trained_run(run_dir)


# ------------------------------------------------------------------------------------ descriptions
def _nets():
    from sdsnn_brian.models import mnist_fc, sdsnn_conv, stochastic_readout

    return {"fc": mnist_fc(hidden=(12,), steps=5, bias=True),
            "conv": sdsnn_conv(channels=(2, 3), hidden=(5,), steps=4),
            "strided": Network(Input((2, 9, 8), encoding="latency"), Conv2d(3, kernel=(3, 2), stride=2, padding=(1, 0),
                                                                            bias=False, init_gain=1.5),
                               AvgPool2d(2, stride=1), Dense(4), steps=3, name="strided"),
            "stochastic": Network(Input(6), Dense(5), Dense(3, neuron=stochastic_readout, bias=True, stochastic=True),
                                  steps=4)}


@pytest.mark.parametrize("kind", ["fc", "conv", "strided", "stochastic"])
def test_network_round_trips_through_its_description(kind):
    net = _nets()[kind]
    back = Network.from_description(net.describe())
    assert back.structure_key() == net.structure_key()
    assert back.describe() == net.describe()
    assert list(back.weight_shapes) == list(net.weight_shapes)
    assert network_from_config(net.describe()).structure_key() == net.structure_key()
    if kind == "stochastic":
        assert back.stochastic == [False, True]


def test_unrebuildable_descriptions_raise_value_errors():
    desc = _nets()["conv"].describe()
    bad_type = dict(desc, layers=desc["layers"][:1] + [{"type": "maxpool2d", "kernel": [2, 2]}] + desc["layers"][2:])
    with pytest.raises(ValueError, match="maxpool2d"):
        Network.from_description(bad_type)
    with pytest.raises(ValueError, match="rebuild"):
        Network.from_description({k: v for k, v in desc.items() if k != "input"})
    wrong = [dict(l) for l in desc["layers"]]
    wrong[0]["output_shape"] = [2, 27, 27]
    with pytest.raises(ValueError, match="output shape"):
        Network.from_description(dict(desc, layers=wrong))
    with pytest.raises(ValueError, match="rebuild"):
        network_from_config(dict(desc, layers=[dict(desc["layers"][0], neuron="no_such_neuron")]))


# ------------------------------------------------------------------------------------ SOPs and MACs
def test_conv_and_pooled_sops_and_macs_hand_counted():
    # input 1x3x3 -> conv 2 filters 2x2 (no padding) -> 2x2x2 -> avgpool 2 -> 2x1x1 -> dense 2
    net = Network(Input((1, 3, 3)), Conv2d(2, kernel=2), AvgPool2d(2), Dense(2), steps=2)
    k = np.zeros((2, 1, 2, 2))
    k[0] = 1                                   # filter 0: every entry
    k[1, 0, 0, 0] = 1                          # filter 1: entry (0, 0) only
    m2 = np.array([[1, 0], [1, 1]])            # dense over the pooled channels: fan-out [2, 1]
    conv, dense = net.connections
    # pixel (y, x) reaches filter 0 at every output position whose window covers it, filter 1 only as
    # the top-left entry of a window (positions y, x <= 1)
    hand0 = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) + np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(conv.fanout(k).reshape(3, 3), hand0)
    # each conv neuron feeds its pooling window's relay, which reaches the present dense synapses
    hand1 = np.array([2, 2, 2, 2, 1, 1, 1, 1])
    np.testing.assert_array_equal(dense.fanout(m2), hand1)

    x = np.zeros((2, 2, 9), np.uint8)          # [T, B, 9]
    x[0, 0, [0, 4]] = 1
    x[1, 0, [4, 8, 5]] = 1                     # sample 0: pixel counts 0:1, 4:2, 5:1, 8:1
    x[1, 1, 2] = 1                             # sample 1: pixel 2 once
    h = np.zeros((2, 2, 8), np.uint8)
    h[0, 0, [0, 5]] = 1
    h[1, 0, 5] = 1                             # sample 0: neuron 0 once, neuron 5 twice
    h[1, 1, [3, 7, 6]] = 1                     # sample 1: neurons 3, 6, 7 once
    o = np.ones((2, 2, 2), np.uint8)           # output spikes never count

    class Rec:
        s = [h, o]
    f0 = hand0.ravel()
    want = [[f0[0] + 2 * f0[4] + f0[5] + f0[8], f0[2]], [2 + 2 * 1, 2 + 1 + 1]]
    assert want == [[2 + 10 + 2 + 1, 1], [4, 4]]
    per = en.sops_from_recording(x, Rec, [k, m2], connections=net.connections)
    np.testing.assert_array_equal(per, want)
    # every synapse present: twice filter 0's fan-out, and fan-out 2 for every conv neuron
    full0 = 2 * np.array([1, 2, 1, 2, 4, 2, 1, 2, 1])
    dense_sops = en.sops_from_recording(x, Rec, [None, None], connections=net.connections)
    np.testing.assert_array_equal(dense_sops, [[full0[0] + 2 * full0[4] + full0[5] + full0[8], full0[2]],
                                               [2 * 3, 2 * 3]])
    # equivalent ANN: conv = output positions (2x2) x present kernel entries, dense = present entries
    np.testing.assert_array_equal(en.macs([k, m2], connections=net.connections), [4 * 5, 3])
    np.testing.assert_array_equal(en.macs([k, m2], pruned=False, connections=net.connections), [4 * 8, 4])
    est = en.energy_estimate(x, Rec, [k, m2], connections=net.connections)
    assert est["sops"] == (15 + 4 + 1 + 4) / 2 and est["macs"] == 23 and est["macs_dense"] == 36
    assert est["E_snn_J"] == pytest.approx(12 * 0.9e-12) and est["E_ann_dense_J"] == pytest.approx(36 * 4.6e-12)
    est = en.energy_estimate(x, Rec, [k, m2], analog_input=True, connections=net.connections)
    assert est["analog_macs"] == 2 * 20 and est["sops_per_layer"][0] == 0
    with pytest.raises(ValueError, match="parameter shape"):
        en.sops_from_recording(x, Rec, [k[:1], m2], connections=net.connections)


def test_fc_energy_is_unchanged_with_connections():
    x = np.zeros((2, 2, 3), np.uint8)
    x[0, 0] = [1, 0, 1]
    x[1, 0] = [1, 1, 0]
    x[1, 1] = [0, 0, 1]
    h = np.zeros((2, 2, 2), np.uint8)
    h[0, 0] = [1, 0]
    h[1, 0] = [1, 1]
    h[0, 1] = [0, 1]

    class Rec:
        s = [h, np.ones((2, 2, 1), np.uint8)]
    masks = [np.array([[1, 0, 1], [1, 1, 0]]), np.array([[0, 1]])]
    net = Network(Input(3), Dense(2), Dense(1), steps=2)
    for analog in (False, True):
        assert en.energy_estimate(x, Rec, masks, analog_input=analog) == \
            en.energy_estimate(x, Rec, masks, analog_input=analog, connections=net.connections)
    np.testing.assert_array_equal(en.macs(masks), en.macs(masks, connections=net.connections))
    assert en.energy_estimate(x, Rec, masks)["sops"] == 4.5
