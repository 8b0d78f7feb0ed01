"""Convolution and average pooling: declaration, synapse maps, Brian2 forward, BPTT against torch.

The Brian2 forward of a conv/pool/dense network is compared with an independent numpy
re-simulation (tests/reference.py), and the numpy backward with PyTorch autograd on the
same network written with ``F.conv2d`` / ``F.avg_pool2d`` (torch is test-only).
"""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from reference import numpy_conv_forward, torch_conv_forward, torch_loss  # noqa: E402

from sdsnn_brian import AvgPool2d, Conv2d, Dense, Input, Network  # noqa: E402
from sdsnn_brian.gradient import backward  # noqa: E402
from sdsnn_brian.losses import get_loss  # noqa: E402
from sdsnn_brian.neuron import Dynamics  # noqa: E402
from sdsnn_brian.surrogate import get_surrogate  # noqa: E402


def conv_net(steps=5, bias=True):
    """Every layer type: padded conv, pooling, strided rectangular conv, pooling into dense, dense."""
    return Network(Input((2, 10, 12)), Conv2d(3, kernel=3, padding=1, bias=bias), AvgPool2d(2),
                   Conv2d(4, kernel=(2, 3), stride=(1, 2)), AvgPool2d(2), Dense(5, bias=bias), Dense(3),
                   steps=steps)


def specs_of(net):
    """The reference's layer specs, read from the declaration."""
    out, pool = [], None
    for layer in net.layers[1:]:
        if isinstance(layer, AvgPool2d):
            pool = (layer.kernel, layer.stride)
            continue
        if isinstance(layer, Conv2d):
            out.append({"type": "conv", "stride": layer.stride, "padding": layer.padding, "pool": pool})
        else:
            out.append({"type": "dense", "pool": pool})
        pool = None
    return out


def problem(seed=0, steps=5, batch=3, gain=3.0, bias=True):
    net = conv_net(steps, bias)
    rng = np.random.default_rng(seed)
    W, b = net.init_params(rng)
    W = [gain * w for w in W]
    x = (rng.random((steps, batch, net.input.size)) < 0.4).astype(np.uint8)
    return net, W, b, x


def test_declared_shapes():
    net = Network(Input((1, 28, 28)), Conv2d(15), AvgPool2d(2), Conv2d(40), AvgPool2d(2), Dense(300), Dense(10))
    assert net.sizes == [784, 15 * 26 * 26, 40 * 11 * 11, 300, 10]
    assert net.weight_shapes == [(15, 1, 3, 3), (40, 15, 3, 3), (300, 40 * 5 * 5), (10, 300)]
    assert [c.n_synapses() for c in net.connections] == [15 * 26 * 26 * 9, 40 * 11 * 11 * 135, 300000, 3000]
    assert net.describe()["layers"][1] == {"type": "avgpool2d", "kernel": [2, 2], "stride": [2, 2]}
    assert net.structure_key() != Network(Input((1, 28, 28)), Conv2d(15), Conv2d(40), Dense(10)).structure_key()


@pytest.mark.parametrize("layers,match", [
    ([Input(784), Conv2d(4)], "needs a spatial"),
    ([Input((1, 8, 8)), Dense(4), AvgPool2d(2), Dense(2)], "needs a spatial"),
    ([Input((1, 8, 8)), Conv2d(2), AvgPool2d(2), AvgPool2d(2), Dense(2)], "two AvgPool2d"),
    ([Input((1, 8, 8)), Conv2d(2), AvgPool2d(2)], "last layer must be a trained layer"),
    ([Input((1, 4, 4)), Conv2d(2, kernel=5), Dense(2)], "does not fit"),
])
def test_bad_declarations(layers, match):
    with pytest.raises(ValueError, match=match):
        Network(*layers)


def test_synapse_map_is_the_convolution():
    """Summing per-synapse contributions of the map equals the im2col operator; the
    per-synapse gradient summed per kernel entry (np.bincount) equals the im2col gradient."""
    net, W, b, x = problem()
    cn = net.connections[1]  # conv after pooling: operates on the pooled map
    rng = np.random.default_rng(1)
    z = rng.random((4, cn.n_op))
    sm = cn.synapse_map()
    assert len(sm) == cn.n_synapses() and np.all(np.diff(sm.pre) >= 0)  # pre-major
    I = np.zeros((4, cn.n_post))
    for r in range(4):
        np.add.at(I[r], sm.post, z[r, sm.pre] * sm.expand(W[1]))
    x_pool = z  # feed the operator directly (bypass the pooling)
    cols = cn._im2col(x_pool, np.float64)
    C_out, Ho, Wo = cn.out_shape
    ref = (cols @ W[1].reshape(C_out, -1).T).reshape(4, Ho, Wo, C_out).transpose(0, 3, 1, 2).reshape(4, -1)
    np.testing.assert_allclose(I, ref, atol=1e-12)
    G = rng.normal(size=(4, cn.n_post))
    per_syn = (G[:, sm.post] * z[:, sm.pre]).sum(axis=0)
    dK = sm.reduce(per_syn, cn.param_shape)
    Gm = G.reshape(4, C_out, Ho, Wo).transpose(0, 2, 3, 1).reshape(-1, C_out)
    np.testing.assert_allclose(dK, (Gm.T @ cols).reshape(cn.param_shape), atol=1e-12)


@pytest.mark.parametrize("reset", ["hard", "subtract"])
@pytest.mark.parametrize("loss_name", ["rate_mse", "ce_count"])
@pytest.mark.parametrize("sg_name", ["rectangular", "sigmoid"])
def test_conv_backward_matches_torch(sg_name, loss_name, reset):
    torch = pytest.importorskip("torch")
    net, W, b, x = problem(seed=2)
    d = Dynamics(a=0.2, c=0.0, theta=0.5, reset=reset, v_reset=0.0, reset_amount=0.5, u_init=0.0)
    dyn = [d] * 4
    specs = specs_of(net)
    labels = np.array([0, 2, 1])
    sg = get_surrogate(sg_name)
    tW = [torch.tensor(w, requires_grad=True) for w in W]
    tb = [None if v is None else torch.tensor(v, requires_grad=True) for v in b]
    tu, ts = torch_conv_forward(dyn, specs, tW, tb, torch.tensor(x, dtype=torch.float64), net.input.shape,
                                sg.name, sg.param)
    torch_loss(loss_name, tu[-1], ts[-1], labels).backward()
    u, s = numpy_conv_forward(dyn, specs, W, b, x, net.input.shape)
    for l in range(4):
        np.testing.assert_allclose(u[l], tu[l].detach().numpy(), atol=1e-12)
        assert 0 < s[l].mean() < 1  # every layer spikes: the comparison is not vacuous
    res = get_loss(loss_name)(u[-1], s[-1], labels)
    grads = backward(dyn, x, u, s, W, res.grad_s, res.grad_u, sg, connections=net.connections)
    for l in range(4):
        assert grads[l][0].shape == W[l].shape
        np.testing.assert_allclose(grads[l][0], tW[l].grad.numpy(), rtol=1e-9, atol=1e-12)
        assert np.abs(tW[l].grad.numpy()).max() > 0
        if tb[l] is not None:
            np.testing.assert_allclose(grads[l][1], tb[l].grad.numpy(), rtol=1e-9, atol=1e-12)
    # the network's own dynamics carry the connections: no keyword needed
    dyn_net = net.dynamics()
    assert dyn_net.connections is not None and len(dyn_net) == 4


def test_structure_specs_and_a_conv_structural_step():
    """network_layer_specs: conv2 filters and FC300 neurons prunable, conv1 and the output not; a
    structural step on kernel-shaped weights prunes whole filters and keeps shapes."""
    from sdsnn_brian.models import sdsnn_conv
    from sdsnn_brian.structure import SDSNNConfig, StructureSchedule, fc_layer_specs, network_layer_specs

    net = sdsnn_conv((2, 16, 16), 11, channels=(4, 8), hidden=(16,), steps=4)
    specs = network_layer_specs(net)
    assert [(s.name, s.kind, s.prunable, s.regenerates) for s in specs] == [
        ("conv1", "conv", False, False), ("conv2", "conv", True, True), ("fc3", "fc", True, True),
        ("fc4", "fc", False, False)]
    assert specs[1].shape == (8, 4, 3, 3) and specs[2].shape == (16, 8 * 4 * 4)
    dense = Network(Input(20), Dense(7), Dense(3))
    assert network_layer_specs(dense) == fc_layer_specs([20, 7, 3])
    W, b = net.init_params(np.random.default_rng(0))
    M = [np.ones_like(w) for w in W]
    cfg = SDSNNConfig(n_out=11, rho0_conv=0.25).compressed(18)
    sched = StructureSchedule(specs, cfg)
    for _ in range(cfg.structure_after + 2):
        sched.step(W, M, biases=b)
    pruned = sched.pruned[1]
    assert pruned.sum() >= 2
    assert np.all(M[1][pruned] == 0) and np.all(W[1][pruned] == 0) and np.all(b[1][pruned] == 0)
    assert np.all(M[0] == 1)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("conv_cache"))


def test_brian2_forward_equals_numpy(cache_dir):
    """cpp_standalone: conv synapses with tied weights, pooling relays, per-channel biases."""
    from sdsnn_brian.device import Simulator

    net, W, b, x = problem(seed=0, steps=6, batch=2)
    u_ref, s_ref = numpy_conv_forward(net.dynamics(), specs_of(net), W, b, x, net.input.shape)
    sim = Simulator(net, 2, "cpp_standalone", cache_dir=cache_dir)
    rec = sim.run(x, W, b)
    for l in range(4):
        assert 0 < s_ref[l].mean() < 1
        np.testing.assert_array_equal(rec.s[l], s_ref[l])
        np.testing.assert_allclose(rec.u[l], u_ref[l], rtol=1e-12, atol=1e-12)
    # a removed kernel entry transmits nothing (mask applied to the kernel, same build)
    M = [np.ones_like(w) for w in W]
    M[1][:, :, 0, :] = 0
    Wm = [w * m for w, m in zip(W, M)]
    rec = sim.run(x, Wm, b)
    u_ref, s_ref = numpy_conv_forward(net.dynamics(), specs_of(net), Wm, b, x, net.input.shape)
    for l in range(4):
        np.testing.assert_array_equal(rec.s[l], s_ref[l])
        np.testing.assert_allclose(rec.u[l], u_ref[l], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="bias"):
        sim.run(x, W, [np.zeros(7), None, b[2], None])


@pytest.mark.slow
def test_compacted_conv_build_equals_numpy(tmp_path):
    """A build holding only the present kernel entries' synapses (Simulator(masks=...))."""
    from sdsnn_brian.device import Simulator

    net, W, b, x = problem(seed=0, steps=6, batch=2)
    M = [np.ones_like(w) for w in W]
    M[0][1] = 0  # a whole filter of conv1
    M[1][:, :, 1, 1] = 0  # the centre tap of every conv2 kernel
    M[2][:, ::2] = 0
    sim = Simulator(net, 2, "cpp_standalone", cache_dir=str(tmp_path), masks=M)
    assert sim.expected_sizes()["syn2.w"] == (net.connections[1].n_synapses(M[1]),)
    assert net.connections[1].n_synapses(M[1]) < net.connections[1].n_synapses()
    rec = sim.run(x, W, b)  # full kernels: absent entries are not in the build
    Wm = [w * m for w, m in zip(W, M)]
    u_ref, s_ref = numpy_conv_forward(net.dynamics(), specs_of(net), Wm, b, x, net.input.shape)
    for l in range(4):
        np.testing.assert_array_equal(rec.s[l], s_ref[l])
        np.testing.assert_allclose(rec.u[l], u_ref[l], rtol=1e-12, atol=1e-12)


def test_cli_trains_and_resumes_a_conv_network(tmp_path, monkeypatch, capsys):
    """``sdsnn train --architecture conv --sdsnn``: the reference conv layout (small channels), structure
    on conv2 and the hidden FC layer, and a resume that extends the run with the run's own options."""
    import json

    from sdsnn_brian.cli import main as cli_main

    monkeypatch.setenv("SDSNN_CACHE_DIR", str(tmp_path / "cache"))
    run = str(tmp_path / "run")
    args = ["train", "--architecture", "conv", "--channels", "2", "3", "--hidden", "8", "--steps", "4",
            "--epochs", "1", "--train-limit", "40", "--test-limit", "20", "--batch-size", "20", "--sdsnn",
            "--structure-every", "1", "--compress", "20", "--allow-short-structure", "--backward-dtype", "float32",
            "--log-every", "0", "--run-dir", run]
    assert cli_main(args) == 0, capsys.readouterr().err
    cfg = json.loads(open(os.path.join(run, "config.json")).read())
    kinds = [layer["type"] for layer in cfg["network"]["layers"]]
    assert kinds == ["conv2d", "avgpool2d", "conv2d", "avgpool2d", "dense", "dense"]
    assert cfg["backward_dtype"] == "float32" and cfg["cli_args"]["architecture"] == "conv"
    layers = {json.loads(line)["layer"] for line in open(os.path.join(run, "structure.jsonl"))}
    assert layers == {0, 1, 2, 3}  # per-step statistics of every trained layer
    assert cli_main(["train", "--resume", run, "--epochs", "2", "--log-every", "0"]) == 0, capsys.readouterr().err
    epochs = [json.loads(line)["epoch"] for line in open(os.path.join(run, "metrics.jsonl"))]
    assert epochs == [1, 2]
    last = json.loads(open(os.path.join(run, "metrics.jsonl")).read().splitlines()[-1])
    assert len(last["synapses_present"]) == 4 and 0 <= last["compression"] < 1
