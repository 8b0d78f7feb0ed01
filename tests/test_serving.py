"""One process of the C++ standalone binary serves every minibatch (``Simulator(persistent=True)``,
``main --serve`` from :mod:`sdsnn_brian.codegen`): the results equal one process per minibatch
(Brian2's ``device.run``) bit for bit, whatever ran before, and a binary that dies is replaced
or reported."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_conv import problem as conv_problem  # noqa: E402
from test_vdib import readout_net, readout_noise  # noqa: E402

from sdsnn_brian import Dense, Input, Network  # noqa: E402
from sdsnn_brian.codegen import _serve_main, serving_supported  # noqa: E402
from sdsnn_brian.device import Simulator  # noqa: E402


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("serving_cache"))


def _dense_case(rng):
    net = Network(Input(50), Dense(30, bias=True), Dense(6), steps=8)
    W, b = net.init_params(rng)
    return net, 5, lambda r: ([3 * W[0] * r.uniform(0.8, 1.2), 6 * W[1]], b, None)


def _minibatches(net, batch, params, seed, n=4):
    """Different inputs and weights each time; one minibatch shorter than the build (padding)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        B = batch - 1 if k == 2 else batch
        W, b, noise = params(rng)
        x = (rng.random((net.steps, B, net.input.size)) < 0.3).astype(np.uint8)
        if noise is not None:
            noise = noise[:, :B]
        out.append((x, W, b, noise))
    return out


def _equal(a, b):
    assert len(a.u) == len(b.u)
    for l in range(len(a.u)):
        np.testing.assert_array_equal(a.u[l], b.u[l])
        np.testing.assert_array_equal(a.s[l], b.s[l])


@pytest.mark.parametrize("case", ["dense-compacted", "conv-pool-bias", "stochastic-readout"])
def test_serving_equals_one_process_per_minibatch(case, cache_dir):
    rng = np.random.default_rng(0)
    masks = None
    if case == "dense-compacted":
        net, batch, params = _dense_case(rng)
        masks = [None, (rng.random((6, 30)) < 0.15).astype(float)]  # layer 2 compacted
    elif case == "conv-pool-bias":
        net, W, b, _ = conv_problem(seed=0, steps=6, batch=2)
        batch, params = 2, (lambda r: ([w * r.uniform(0.9, 1.1) for w in W], b, None))
    else:
        net = readout_net()
        W, b = net.init_params(rng)
        batch = 3
        params = (lambda r: ([3 * W[0], 4 * W[1] * r.uniform(0.8, 1.2)], b, readout_noise(r, (7, 3, 5))))
    served = Simulator(net, batch, "cpp_standalone", cache_dir=cache_dir, masks=masks)
    single = Simulator(net, batch, "cpp_standalone", cache_dir=cache_dir, masks=masks, persistent=False)
    assert served.project_dir == single.project_dir  # the same build, run two ways
    pids = set()
    for x, W, b, noise in _minibatches(net, batch, params, seed=1):
        a = served.run(x, W, b, noise=noise)
        pids.add(served._server.proc.pid)
        assert a.u[0].shape[1] == x.shape[1]
        assert sum(s.sum() for s in a.s) > 0
        _equal(a, single.run(x, W, b, noise=noise))
        assert single._server is None
    assert len(pids) == 1  # every minibatch was served by the same process
    assert serving_supported(served.project_dir)
    served.close()


def test_state_is_put_back_between_minibatches(cache_dir):
    """A minibatch gives the same result whatever the server ran before it."""
    rng = np.random.default_rng(2)
    net, batch, params = _dense_case(rng)
    sim = Simulator(net, batch, "cpp_standalone", cache_dir=cache_dir)
    (xa, Wa, ba, _), (xb, Wb, bb, _) = _minibatches(net, batch, params, seed=3, n=2)
    first = sim.run(xa, Wa, ba)
    other = sim.run(xb, Wb, bb)
    assert any((p != q).any() for p, q in zip(first.s, other.s))
    _equal(first, sim.run(xa, Wa, ba))
    sim.close()


def test_a_dead_server_is_replaced_or_reported(cache_dir):
    rng = np.random.default_rng(4)
    net, batch, params = _dense_case(rng)
    sim = Simulator(net, batch, "cpp_standalone", cache_dir=cache_dir)
    (x, W, b, _), = _minibatches(net, batch, params, seed=5, n=1)
    ref = sim.run(x, W, b)
    server = sim._server
    scratch = server.dir
    assert os.path.isdir(scratch)
    server.proc.kill()
    server.proc.wait()
    # talking to the dead process directly: a clear error quoting its exit status
    with pytest.raises(RuntimeError, match="serving binary ended"):
        server.request(["syn1.w=/nonexistent"])
    assert not os.path.exists(scratch)  # its private files are gone with it
    # the simulator notices and starts a new one
    _equal(ref, sim.run(x, W, b))
    assert sim._server is not server and sim._server.alive()
    # close() ends it; a later run starts another
    proc = sim._server.proc
    sim.close()
    assert proc.poll() is not None and sim._server is None
    _equal(ref, sim.run(x, W, b))
    sim.close()


def test_a_request_the_binary_cannot_apply_is_an_error(cache_dir, tmp_path):
    """Brian2's generated code prints a wrongly sized run_args file to stderr and keeps the old
    values; the serving binary's stderr is watched, so that is an error naming the file."""
    rng = np.random.default_rng(6)
    net, batch, params = _dense_case(rng)
    sim = Simulator(net, batch, "cpp_standalone", cache_dir=cache_dir)
    (x, W, b, _), = _minibatches(net, batch, params, seed=7, n=1)
    ref = sim.run(x, W, b)
    short = tmp_path / "short_w"
    np.zeros(7).tofile(short)
    with pytest.raises(RuntimeError, match="could not apply the request.*short_w"):
        sim._server.request([f"syn1.w={short}"])
    _equal(ref, sim.run(x, W, b))  # the next minibatch is served normally
    sim.close()


def test_float32_weights_equal_a_float64_run_with_rounded_weights(cache_dir):
    from reference import numpy_forward

    rng = np.random.default_rng(8)
    net, batch, params = _dense_case(rng)
    masks = [None, (rng.random((6, 30)) < 0.15).astype(float)]  # and a compacted layer
    sim = Simulator(net, batch, "cpp_standalone", cache_dir=cache_dir, weight_dtype="float32", masks=masks)
    assert sim.input_dtype("syn1.w") == "float32" and sim.input_dtype("stim.values") == "float64"
    assert sim.project_dir != Simulator(net, batch, "cpp_standalone", cache_dir=cache_dir, masks=masks).project_dir
    for x, W, b, _ in _minibatches(net, batch, params, seed=9, n=2):
        W = [w * (1 + 1e-7 * rng.standard_normal(w.shape)) for w in W]  # not float32-representable
        rec = sim.run(x, W, b)
        rounded = [w.astype(np.float32).astype(np.float64) * (1 if m is None else m) for w, m in zip(W, masks)]
        u_ref, s_ref = numpy_forward(net.dynamics(), rounded, b, x)
        u_64, _ = numpy_forward(net.dynamics(), [w * (1 if m is None else m) for w, m in zip(W, masks)], b, x)
        for l in range(2):
            np.testing.assert_array_equal(rec.s[l][:, :x.shape[1]], s_ref[l])
            np.testing.assert_allclose(rec.u[l], u_ref[l], rtol=1e-12, atol=1e-12)
        assert np.abs(rec.u[0] - u_64[0]).max() > 1e-12  # the rounding is real
    one_shot = Simulator(net, batch, "cpp_standalone", cache_dir=cache_dir, weight_dtype="float32", masks=masks,
                         persistent=False)
    _equal(rec, one_shot.run(x, W, b))
    with pytest.raises(ValueError, match="weight_dtype"):
        Simulator(net, batch, "cpp_standalone", cache_dir=cache_dir, weight_dtype="float16")
    sim.close()


def test_serving_mode_needs_a_main_it_knows():
    """A main.cpp without the text the serving mode is written for stops the build."""
    from sdsnn_brian.codegen import GeneratedCodeMismatch

    text = "int main(int argc, char **argv)\n{\n    return 0;\n}\n"
    with pytest.raises(GeneratedCodeMismatch, match="main.cpp"):
        _serve_main(text, "", "")


def test_scratch_folder_falls_back_when_shared_memory_is_small(tmp_path, monkeypatch):
    """A container's /dev/shm is often 64 MB: what does not fit twice goes next to the project."""
    from sdsnn_brian import device as devmod

    big = devmod._scratch_dir(str(tmp_path), need_bytes=1 << 60)
    assert big.startswith(str(tmp_path)) and os.path.isdir(big)
    small = devmod._scratch_dir(str(tmp_path), need_bytes=1024)
    assert os.path.isdir(small)
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        assert small.startswith("/dev/shm/")
    for d in (big, small):
        os.rmdir(d)
    net = Network(Input(50), Dense(30), Dense(6), steps=8)
    sim = Simulator(net, 5, "cpp_standalone", cache_dir=str(tmp_path))
    # inputs (25 + 1500 + 180 float64) and per layer 20 bytes per neuron-step plus 8 per step
    assert sim._exchange_bytes() == 8 * (40 * 2 + 1500 + 180) + 40 * (20 * 30 + 8) + 40 * (20 * 6 + 8)


def test_scratch_folders_of_dead_processes_are_swept(tmp_path):
    import subprocess

    from sdsnn_brian import device as devmod

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f"sdsnn_brian-{dead}-abc123"
    mine = tmp_path / f"sdsnn_brian-{os.getpid()}-def456"
    other = tmp_path / "something-else"
    for d in (stale, mine, other):
        d.mkdir()
        (d / "data").write_bytes(b"x" * 10)
    devmod._sweep_scratch(str(tmp_path))
    assert not stale.exists() and mine.exists() and other.exists()
