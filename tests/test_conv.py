"""Convolution and average pooling: declaration, synapse maps, Brian2 forward, BPTT against torch.

The Brian2 forward of a conv/pool/dense network is compared with an independent numpy
re-simulation (tests/reference.py), and the numpy backward with PyTorch autograd on the
same network written with ``F.conv2d`` / ``F.avg_pool2d`` (torch is test-only).
"""
import os
import re
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


def strided_net(steps=6):
    """Stride 2 with padding 1, an overlapping 2x2 pool (stride 1), a conv with stride (1, 2) and
    padding (0, 1), an overlapping 3x3 pool (1/9 per spike, stride 1), dense readout."""
    return Network(Input((2, 13, 15)), Conv2d(4, kernel=3, stride=2, padding=1, bias=True), AvgPool2d(2, stride=1),
                   Conv2d(5, kernel=3, stride=(1, 2), padding=(0, 1)), AvgPool2d(3, stride=1), Dense(3),
                   steps=steps)


def strided_problem(steps=6, batch=2):
    net, W, b, x = problem(seed=0, steps=steps, batch=batch, net=strided_net(steps))
    W[2] = 0.5 * W[2]  # the readout spikes, but not at every step
    return net, W, b, x


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


def problem(seed=0, steps=5, batch=3, gain=3.0, bias=True, net=None):
    net = conv_net(steps, bias) if net is None else net
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


@pytest.mark.parametrize("layers", [
    [Input((2, 10, 12)), Conv2d(3, kernel=3, padding=1), Dense(2)],
    [Input((2, 13, 15)), Conv2d(4, kernel=3, stride=2, padding=1), Dense(2)],
    [Input((3, 7, 9)), Conv2d(2, kernel=(3, 2), stride=(2, 3), padding=(2, 1)), Dense(2)],
    [Input((1, 8, 8)), Conv2d(2, kernel=3, stride=2), Dense(2)],
])
def test_kernel_map_and_synapse_count(layers):
    """One synapse per kernel entry (tap-major) in the kernel layout; the per-synapse layout's count,
    computed without building its map, equals the map's length, with and without a mask."""
    cn = Network(*layers).connections[0]
    km, sm = cn.kernel_map(), cn.synapse_map()
    n = int(np.prod(cn.param_shape))
    assert len(km) == n and sorted(km.kidx) == list(range(n))
    C_out, C_in, kh, kw = cn.param_shape
    co, rest = np.divmod(km.kidx, C_in * kh * kw)
    assert np.all(np.diff(rest) >= 0)  # tap-major: (c, ky, kx), then the output channel
    np.testing.assert_array_equal(km.pre, (rest // (kh * kw)) * cn.op_shape[1] * cn.op_shape[2])
    np.testing.assert_array_equal(km.post, co * cn.out_shape[1] * cn.out_shape[2])
    assert cn.n_synapses() == len(sm)
    mask = np.random.default_rng(0).random(cn.param_shape) < 0.4
    mask[0] = 0
    assert cn.n_synapses(mask) == len(sm.select(mask))
    per_op = np.bincount(sm.pre, weights=(mask.ravel()[sm.kidx] != 0).astype(np.float64), minlength=cn.n_op)
    np.testing.assert_array_equal(cn.fanout(mask), per_op)  # computed without the map
    kept = km.select(mask)
    assert len(kept) == int(mask.sum()) and mask.ravel()[kept.kidx].all() and np.all(np.diff(kept.kidx % (n // C_out)) >= 0)


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


def assert_forward(rec, u_ref, s_ref, spiking=True):
    """Identical spikes, membranes to 1e-12 (every layer spiking, so the comparison is not vacuous)."""
    assert len(rec.u) == len(u_ref)
    for l in range(len(u_ref)):
        if spiking:
            assert 0 < s_ref[l].mean() < 1
        np.testing.assert_array_equal(rec.s[l], s_ref[l])
        np.testing.assert_allclose(rec.u[l], u_ref[l], rtol=1e-12, atol=1e-12)


def removed_entries(W):
    """Masks removing kernel entries and whole filters of both conv layers of :func:`strided_net`
    (or :func:`conv_net`), and every other input of the first dense layer."""
    M = [np.ones_like(w) for w in W]
    M[0][1] = 0  # a whole filter of conv1
    M[0][:, 0, 0, :] = 0  # the top row of conv1's kernels on input channel 0
    M[1][:, :, 1, 1] = 0  # the centre tap of every conv2 kernel
    M[1][2] = 0  # a whole filter of conv2
    M[1][:, -1, -1, 0] = 0
    M[2][:, ::2] = 0
    return M


def conv_code(project_dir, k):
    """The generated source of layer k's pathway (Brian2 appends _1, _2 to names already used)."""
    folder = os.path.join(project_dir, "code_objects")
    found = [f for f in os.listdir(folder) if re.fullmatch(rf"syn{k}_pre_codeobject(_\d+)?\.cpp", f)]
    assert len(found) == 1, found
    with open(os.path.join(folder, found[0])) as fh:
        return fh.read()


def static_entries(project_dir, name):
    """int32 entries of a static array of the generated project (e.g. the indices ``connect`` takes)."""
    return os.path.getsize(os.path.join(project_dir, "static_arrays", f"_static_array__array_{name}")) // 4


def test_kernel_build_equals_numpy_and_the_per_synapse_build(cache_dir):
    """Stride 2, padding 0 and 1, overlapping pools (1/4 and 1/9 per spike), removed kernel entries
    and whole filters: the kernel build (C++ standalone's default) equals the numpy re-simulation
    and the per-synapse build bit for bit; its conv pathways hold one synapse per kernel entry and
    their generated code is the kernel loop (the change is in the build)."""
    from sdsnn_brian.codegen import CONV_MARKER
    from sdsnn_brian.device import Simulator

    net, W, b, x = strided_problem()
    kernel = Simulator(net, 2, "cpp_standalone", cache_dir=cache_dir)
    per_synapse = Simulator(net, 2, "cpp_standalone", cache_dir=cache_dir, conv_layout="synapses")
    assert kernel.conv_layout == "kernel" and per_synapse.conv_layout == "synapses"
    conv = net.connections[:2]
    assert [kernel.expected_sizes()[f"syn{k}.w"] for k in (1, 2)] == [(4 * 2 * 9,), (5 * 4 * 9,)]
    assert [per_synapse.expected_sizes()[f"syn{k}.w"] for k in (1, 2)] == [(c.n_synapses(),) for c in conv]
    assert kernel.synapses_built < per_synapse.synapses_built
    Wm = [w * m for w, m in zip(W, removed_entries(W))]
    for weights in (W, Wm):
        u_ref, s_ref = numpy_conv_forward(net.dynamics(), specs_of(net), weights, b, x, net.input.shape)
        rec = kernel.run(x, weights, b)
        assert_forward(rec, u_ref, s_ref)
        old = per_synapse.run(x, weights, b)
        for l in range(3):
            np.testing.assert_array_equal(rec.u[l], old.u[l])
            np.testing.assert_array_equal(rec.s[l], old.s[l])
    # few events per step: the kernel loop adds into the targets directly (many: channel-last, above)
    sparse = (np.random.default_rng(9).random(x.shape) < 0.02).astype(np.uint8)
    u_ref, s_ref = numpy_conv_forward(net.dynamics(), specs_of(net), W, b, sparse, net.input.shape)
    rec, old = kernel.run(sparse, W, b), per_synapse.run(sparse, W, b)
    assert_forward(rec, u_ref, s_ref, spiking=False)
    assert s_ref[0].sum() > 0
    for l in range(3):
        np.testing.assert_array_equal(rec.u[l], old.u[l])
    # the change is in the build: the kernel loop, with each layer's geometry, and kernel-sized synapses
    for k, (cn, geometry) in enumerate(zip(conv, ["C_in=2 H=13 W=15 -> C_out=4 Ho=7 Wo=8, kernel 3x3, stride 2x2, "
                                                  "padding 1x1",
                                                  "C_in=4 H=6 W=7 -> C_out=5 Ho=4 Wo=4, kernel 3x3, stride 1x2, "
                                                  "padding 0x1"]), start=1):
        code = conv_code(kernel.project_dir, k)
        assert f"{CONV_MARKER}: {geometry}" in code
        assert CONV_MARKER not in conv_code(per_synapse.project_dir, k)
        n = int(np.prod(cn.param_shape))
        assert static_entries(kernel.project_dir, f"syn{k}_sources") == n
        assert static_entries(per_synapse.project_dir, f"syn{k}_sources") == cn.n_synapses() > 10 * n
    assert CONV_MARKER not in conv_code(kernel.project_dir, 3)  # the dense readout keeps its rows


def test_conv_layout_needs_the_event_code(cache_dir):
    from sdsnn_brian.device import Simulator

    net = strided_net()
    assert Simulator(net, 2, "runtime").conv_layout == "synapses"
    assert Simulator(net, 2, "cpp_standalone", cache_dir=cache_dir, event_code="brian2").conv_layout == "synapses"
    assert Simulator(net, 2, "cuda_standalone", cache_dir=cache_dir).conv_layout == "synapses"
    for kw in ({"device": "cuda_standalone"}, {"device": "runtime"}, {"event_code": "brian2"}):
        with pytest.raises(ValueError, match="conv_layout='kernel' needs"):
            Simulator(net, 2, cache_dir=cache_dir, conv_layout="kernel", **kw)
    with pytest.raises(ValueError, match="unknown conv_layout"):
        Simulator(net, 2, cache_dir=cache_dir, conv_layout="im2col")


def test_cuda_build_keeps_the_per_synapse_layout(cache_dir):
    """brian2cuda has no kernel loop: its conv pathways are generated with one synapse per (input
    position, output position, kernel entry), as before (code generation only; the slow tests
    compile CUDA projects with nvcc)."""
    import glob

    from sdsnn_brian.codegen import CONV_MARKER
    from sdsnn_brian.device import Simulator

    net = strided_net()
    sim = Simulator(net, 2, "cuda_standalone", cache_dir=cache_dir, cuda_options={"compile": False})
    assert sim.conv_layout == "synapses"
    assert sim.expected_sizes()["syn1.w"] == (net.connections[0].n_synapses(),)
    sim.build()
    for k, cn in enumerate(net.connections[:2], start=1):
        found = glob.glob(os.path.join(sim.project_dir, "code_objects", f"syn{k}_pre_codeobject*.cu"))
        assert len(found) == 1
        assert CONV_MARKER not in open(found[0]).read()
        assert static_entries(sim.project_dir, f"syn{k}_sources") == cn.n_synapses()


def test_conv_template_refuses_statements_it_was_not_written_for(tmp_path):
    """A pathway whose statements do not add to their target cannot take the kernel loop: code
    generation stops with GeneratedCodeMismatch instead of rendering other code."""
    import brian2 as b2

    from sdsnn_brian import device as devmod
    from sdsnn_brian.codegen import GeneratedCodeMismatch, conv_codeobj_class

    b2.device.reinit()
    devmod._ACTIVE.update(key=None, objects=None)
    try:
        b2.set_device("cpp_standalone", directory=str(tmp_path / "project"), build_on_run=False)
        src = b2.NeuronGroup(8, "v : 1", threshold="v > 1", name="conv_src")
        tgt = b2.NeuronGroup(4, "v : 1", name="conv_tgt")
        geometry = dict(C_in=2, H=2, W=2, C_out=1, Ho=2, Wo=2, kh=1, kw=1, sh=1, sw=1, ph=0, pw=0)
        S = b2.Synapses(src, tgt, "w : 1\nkernel_entry : integer (constant)", on_pre="w += 1", delay=0 * b2.ms,
                        name="conv_bad", codeobj_class=conv_codeobj_class(geometry))
        S.connect(i=[0, 4], j=[0, 0])
        S.kernel_entry = [0, 1]
        with pytest.raises(b2.core.base.BrianObjectException) as info:
            b2.Network(src, tgt, S).run(1 * b2.ms)
        assert isinstance(info.value.__cause__, GeneratedCodeMismatch)
        assert "statements of conv_bad do not load their target" in str(info.value.__cause__)
    finally:
        b2.device.reinit()
        b2.set_device("runtime")


def _peak_rss(pid) -> int:
    """Peak resident memory of a process (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def test_dvs_gesture_sized_conv_build_holds_kernels(tmp_path):
    """The convolutional part of the DVS-Gesture reference network (2x128x128 -> 15C3 -> AP2 -> 40C3,
    padding 1): its conv pathways hold 270 and 5,400 synapses (the kernels) instead of 4.4 M and
    22 M, its serving binary stays small, and its forward equals the numpy re-simulation."""
    from sdsnn_brian.device import Simulator

    net = Network(Input((2, 128, 128)), Conv2d(15, padding=1, bias=True), AvgPool2d(2), Conv2d(40, padding=1),
                  steps=3)
    rng = np.random.default_rng(5)
    W, b = net.init_params(rng)
    W = [3 * w for w in W]
    x = (rng.random((3, 1, net.input.size)) < 0.1).astype(np.uint8)
    sim = Simulator(net, 1, "cpp_standalone", cache_dir=str(tmp_path))
    sizes = sim.expected_sizes()
    assert sizes["syn1.w"] == (15 * 2 * 9,) and sizes["syn2.w"] == (40 * 15 * 9,)
    per_synapse = [c.n_synapses() for c in net.connections]
    assert per_synapse == [2 * 15 * 9 * 128 * 128 - 2 * 15 * 2 * (3 * 128 + 3 * 128 - 2),
                           15 * 40 * 9 * 64 * 64 - 15 * 40 * 2 * (3 * 64 + 3 * 64 - 2)]
    from sdsnn_brian.device import memory_estimate

    assert sim.memory_estimate().total < 256 * 2 ** 20
    assert memory_estimate(net, 1, conv_layout="synapses").total > 2 * 2 ** 30
    rec = sim.run(x, W, b)
    peak = _peak_rss(sim._server.proc.pid)
    print(f"DVS-Gesture-sized conv build: serving binary peak RSS {peak / 2 ** 20:.1f} MiB, "
          f"built in {sim.build_seconds:.0f} s")
    assert peak < 200 * 2 ** 20  # 26 M per-synapse entries alone took more than 1 GiB
    u_ref, s_ref = numpy_conv_forward(net.dynamics(), specs_of(net), W, b, x, net.input.shape)
    assert_forward(rec, u_ref, s_ref)
    sim.close()


def test_declaration_errors_come_out_unwrapped():
    """A GeneratedCodeMismatch raised while Brian2 prepares an object reaches the caller as itself."""
    from sdsnn_brian.codegen import GeneratedCodeMismatch
    from sdsnn_brian.device import _run_declaration

    class Failing:
        duration = None

        def run(self, duration):
            try:
                raise GeneratedCodeMismatch("the template does not apply")
            except GeneratedCodeMismatch as exc:
                raise RuntimeError("An error occurred when preparing an object.") from exc  # as Brian2 does

    class Objs:
        network = Failing()
        duration = None

    with pytest.raises(GeneratedCodeMismatch, match="does not apply"):
        _run_declaration(Objs())


@pytest.mark.slow
@pytest.mark.parametrize("strided", [False, True])
def test_compacted_conv_build_equals_numpy(tmp_path, strided):
    """A build holding only the present kernel entries (Simulator(masks=...)): removed entries and
    whole filters are not in the generated project at all."""
    from sdsnn_brian.device import Simulator

    net, W, b, x = strided_problem() if strided else problem(seed=0, steps=6, batch=2)
    M = removed_entries(W)
    sim = Simulator(net, 2, "cpp_standalone", cache_dir=str(tmp_path), masks=M)
    assert sim.conv_layout == "kernel"
    assert [sim.expected_sizes()[f"syn{k}.w"] for k in (1, 2)] == [(int(M[0].sum()),), (int(M[1].sum()),)]
    assert int(M[1].sum()) < M[1].size
    rec = sim.run(x, W, b)  # full kernels: absent entries are not in the build
    for k in (1, 2):
        assert static_entries(sim.project_dir, f"syn{k}_sources") == int(M[k - 1].sum())
    Wm = [w * m for w, m in zip(W, M)]
    u_ref, s_ref = numpy_conv_forward(net.dynamics(), specs_of(net), Wm, b, x, net.input.shape)
    assert_forward(rec, u_ref, s_ref)


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
