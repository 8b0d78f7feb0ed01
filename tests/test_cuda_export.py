"""Export of trained (and pruned) networks to standalone projects; brian2cuda settings."""
import glob
import os
import shutil

import numpy as np
import pytest

from sdsnn_brian import MNIST, Adam, Trainer
from sdsnn_brian.callbacks import restore_latest
from sdsnn_brian.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from sdsnn_brian.cli import main as cli_main
from sdsnn_brian.cuda import ToolchainError, check_toolchain
from sdsnn_brian.export import export_network, load_export_results, reduce_network, run_export
from sdsnn_brian.models import mnist_fc

BATCH = 50
N_TEST = 100
SEED = 3


def make_trainer(cache_dir):
    return Trainer(mnist_fc(hidden=(32,), steps=8), device="cpp_standalone", cache_dir=cache_dir, seed=SEED,
                   optimizer=Adam(2e-3))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("export_cache"))


@pytest.fixture(scope="module")
def test_images():
    test = MNIST(train=False, limit=N_TEST)
    return test.images, test.labels


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, cache_dir):
    """A 784-32-10 network trained one epoch on 200 images (C++ standalone)."""
    train = MNIST(train=True, limit=200)
    path = tmp_path_factory.mktemp("run")
    tr = make_trainer(cache_dir)
    tr.fit((train.images, train.labels), epochs=1, batch_size=BATCH, run_dir=str(path), log_every=0)
    return str(path)


def _derived_run(src, dst, edit):
    """A copy of run directory ``src`` whose newest checkpoint's masks are changed by ``edit(masks)``."""
    shutil.copytree(src, dst)
    ckpt = latest_checkpoint(dst)
    arrays, meta = load_checkpoint(ckpt)
    masks = [arrays["mask_0"].copy(), arrays["mask_1"].copy()]
    edit(masks)
    for k, m in enumerate(masks):
        arrays[f"mask_{k}"] = m
        arrays[f"weight_{k}"] = arrays[f"weight_{k}"] * m
    save_checkpoint(ckpt, arrays, meta)
    return str(dst), masks


@pytest.fixture(scope="module")
def sparse_run(run_dir, tmp_path_factory):
    """30% of the synapses removed, no neuron loses all its inputs or outputs."""
    def edit(masks):
        rng = np.random.default_rng(0)
        for m in masks:
            m *= rng.random(m.shape) > 0.3
    return _derived_run(run_dir, tmp_path_factory.mktemp("sparse") / "run", edit)


@pytest.fixture(scope="module")
def pruned_run(run_dir, tmp_path_factory):
    """Synapses removed, hidden neurons 0-7 without inputs (pruned), 8-11 without outputs, inputs 0-99 unused."""
    def edit(masks):
        rng = np.random.default_rng(1)
        masks[0] *= rng.random(masks[0].shape) > 0.3
        masks[0][:8, :] = 0
        masks[0][:, :100] = 0
        masks[1][:, 8:12] = 0
    return _derived_run(run_dir, tmp_path_factory.mktemp("pruned") / "run", edit)


def _static_count(out_dir, syn):
    return os.path.getsize(os.path.join(out_dir, syn["sources_file"])) // 4  # int32 indices


# -- (a) CUDA code generation -----------------------------------------------------------------
def test_cuda_code_generation_has_only_present_synapses(sparse_run, tmp_path, capsys):
    path, masks = sparse_run
    out = tmp_path / "cuda"
    assert cli_main(["build-cuda", path, "--out", str(out), "--no-compile", "--samples", "20"]) == 0
    assert "not compiled" in capsys.readouterr().out
    project = out / "project"
    for f in ("main.cu", "objects.cu", "network.cu", "makefile", "code_objects/syn1_pre_codeobject.cu",
              "code_objects/syn2_pre_codeobject.cu"):
        assert (project / f).is_file(), f
    assert not (project / "main").exists()
    for f in ("README.md", "run.sh", "manifest.json", "inputs.npz"):
        assert (out / f).is_file()
    assert os.access(out / "run.sh", os.X_OK)
    from sdsnn_brian.export import read_manifest

    m = read_manifest(out)
    assert m["device"] == "cuda_standalone" and m["samples"] == 20 and not m["compiled"]
    for syn, mask in zip(m["synapses"], masks):
        present = int(mask.sum())
        assert syn["count"] == present == syn["present_in_mask"]
        assert _static_count(out, syn) == present
    assert [l["kept"] for l in m["layers"]] == [784, 32, 10]
    makefile = (project / "makefile").read_text()
    assert "-arch=sm_90" in makefile and "-std=c++17" in makefile and "-march=native" not in makefile
    assert "NVCC_BIN ?=" in makefile and "CURAND_INC ?=" in makefile
    for name in ("layer1", "layer2"):
        assert set(m["outputs"][name]["spikes"]) == {"i", "t", "count"}
        assert m["outputs"][name]["spikes"]["i"]["dtype"] == "int32"
        assert m["outputs"][name]["spikes"]["t"]["dtype"] == "float64"
    assert "membrane" in m["outputs"]["layer2"] and "membrane" not in m["outputs"]["layer1"]


# -- (b) the C++ export reproduces the trainer ----------------------------------------------------
def test_cpp_export_of_pruned_network_reproduces_predictions(pruned_run, cache_dir, test_images, tmp_path):
    path, masks = pruned_run
    images, labels = test_images
    out = tmp_path / "cpp"
    m = export_network(path, out, device="cpp_standalone", samples=N_TEST, compile=True)
    assert m["compiled"] and (out / "project" / "main").is_file()
    # pruned neurons and removed synapses are gone
    kept = [np.asarray(l["original_index"]) for l in m["layers"]]
    np.testing.assert_array_equal(kept[0], np.arange(100, 784))
    np.testing.assert_array_equal(kept[1], np.arange(12, 32))
    np.testing.assert_array_equal(kept[2], np.arange(10))
    expected = [int(masks[0][12:, :].sum()), int(masks[1][:, 12:].sum())]
    assert [s["count"] for s in m["synapses"]] == expected
    assert [_static_count(out, s) for s in m["synapses"]] == expected
    assert m["neurons_dropped"]["silent"] == {"layer1": 8}

    run_export(out)
    res = load_export_results(out)

    tr = make_trainer(cache_dir)
    restore_latest(tr, path)
    np.testing.assert_array_equal(tr.masks[0], masks[0])
    counts_out, counts_hidden = [], []
    for k in range(N_TEST // BATCH):
        xb = images[k * BATCH:(k + 1) * BATCH]
        _, rec = tr.forward(xb, np.random.default_rng([SEED, 10**6, k]), BATCH)
        counts_hidden.append(rec.s[0].sum(axis=0))
        counts_out.append(rec.s[1].sum(axis=0))
    counts_out, counts_hidden = np.concatenate(counts_out), np.concatenate(counts_hidden)
    np.testing.assert_array_equal(res["output_counts"], counts_out)
    np.testing.assert_array_equal(res["spike_counts"]["layer1"][:, 12:], counts_hidden[:, 12:])
    assert counts_hidden[:, :8].sum() == 0  # the pruned neurons were silent in the trainer too
    np.testing.assert_array_equal(res["predictions"], tr.predict(images, BATCH))
    np.testing.assert_array_equal(res["labels"], labels)
    assert res["output_membrane"].shape == (8, N_TEST, 10)
    assert res["accuracy"] == pytest.approx(np.mean(res["predictions"] == labels))


# -- (c) compiling the CUDA project --------------------------------------------------------------
@pytest.mark.slow
def test_cuda_project_of_784_400_10_network_compiles_with_nvcc(tmp_path):
    """nvcc builds the exported 784-400-10 project (needs nvcc and cuRAND: `pip install nvidia-curand`)."""
    from sdsnn_brian.callbacks import RunDirectory

    try:
        check_toolchain()
    except ToolchainError as exc:
        pytest.skip(f"no CUDA toolchain: {exc}")
    tr = Trainer(mnist_fc(hidden=(400,)), seed=SEED)  # initial weights: nothing to simulate here
    rng = np.random.default_rng(2)
    for w, m in zip(tr.weights, tr.masks):
        m *= rng.random(m.shape) > 0.2
        w *= m
    tr.batch_size = BATCH
    run = RunDirectory(str(tmp_path / "run"))
    run.on_fit_start(tr)
    run.checkpoint(tr)
    out = tmp_path / "cuda_bin"
    m = export_network(str(tmp_path / "run"), out, device="cuda_standalone", samples=10, compile=True)
    binary = out / "project" / "main"
    assert m["compiled"] and binary.is_file() and os.access(binary, os.X_OK)
    with open(binary, "rb") as fh:
        assert fh.read(4) == b"\x7fELF"
    assert [s["count"] for s in m["synapses"]] == [int(mk.sum()) for mk in tr.masks]
    print(f"784-400-10 CUDA project: generated in {m['timings']['generate_seconds']:.1f} s, "
          f"compiled in {m['timings']['compile_seconds']:.1f} s")


# -- (d) errors --------------------------------------------------------------------------------
def test_missing_run_directory_is_a_clean_error(tmp_path, capsys):
    assert cli_main(["build-cuda", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--no-compile"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sdsnn: error:") and "does not exist" in err


def test_run_directory_without_config_or_checkpoint(run_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["build-cuda", str(empty), "--out", str(tmp_path / "o"), "--no-compile"]) == 2
    assert "no config.json" in capsys.readouterr().err
    no_ckpt = tmp_path / "no_ckpt"
    no_ckpt.mkdir()
    shutil.copy(os.path.join(run_dir, "config.json"), no_ckpt / "config.json")
    assert cli_main(["build-cuda", str(no_ckpt), "--out", str(tmp_path / "o"), "--no-compile"]) == 2
    assert "no valid checkpoint" in capsys.readouterr().err
    (no_ckpt / "ckpt-0001-00000.npz").write_bytes(b"not a zip")  # damaged: skipped with a warning
    with pytest.warns(UserWarning):
        assert cli_main(["build-cuda", str(no_ckpt), "--out", str(tmp_path / "o"), "--no-compile"]) == 2
    assert "no valid checkpoint" in capsys.readouterr().err


def test_bad_output_directory_and_options(run_dir, tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert cli_main(["build-cuda", run_dir, "--out", str(busy), "--no-compile"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (busy / "notes.txt").exists()
    assert cli_main(["build-cuda", run_dir, "--out", str(tmp_path / "o"), "--no-compile", "--samples", "0"]) == 2
    assert "samples" in capsys.readouterr().err
    assert cli_main(["build-cuda", run_dir, "--out", str(tmp_path / "o"), "--no-compile",
                     "--compute-capability", "1.0"]) == 2
    assert "compute capability" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["build-cuda", run_dir])  # --out is required
    with pytest.raises(FileNotFoundError, match="run.sh first"):
        out = tmp_path / "gen"
        export_network(run_dir, out, device="cpp_standalone", samples=5, compile=False)
        load_export_results(out)


def test_toolchain_errors_say_what_to_install(tmp_path):
    with pytest.raises(ToolchainError, match="CUDA toolkit"):
        check_toolchain(nvcc=str(tmp_path / "nvcc"), need_curand=False)
    with pytest.raises(ToolchainError, match="pip install nvidia-curand"):
        check_toolchain(curand_dir=str(tmp_path), need_nvcc=False)


def test_configure_cuda_sets_and_restores_preferences():
    import brian2cuda  # noqa: F401
    from brian2 import prefs

    from sdsnn_brian.cuda import configure_cuda, restore_cpp_prefs

    before = list(prefs["codegen.cpp.extra_compile_args_gcc"])
    try:
        info = configure_cuda(compute_capability=8.0, gpu_id=1, compile=False, extra_nvcc=["--fmad=false"])
        gcc = prefs["codegen.cpp.extra_compile_args_gcc"]
        assert "-std=c++17" in gcc and "-std=c++11" not in gcc and not any(f.startswith("-march") for f in gcc)
        backend = prefs.devices.cuda_standalone.cuda_backend
        assert backend.compute_capability == 8.0 and backend.gpu_id == 1 and backend.detect_gpus is False
        assert "-std=c++17" in backend.extra_compile_args_nvcc and "--fmad=false" in backend.extra_compile_args_nvcc
        assert info["compute_capability"] == 8.0
        with pytest.raises(ValueError, match="compute_capability"):
            configure_cuda(compute_capability="sm_90", compile=False)
    finally:
        restore_cpp_prefs()
    assert prefs["codegen.cpp.extra_compile_args_gcc"] == before


def test_reduce_network_keeps_neurons_that_spike_without_input():
    from sdsnn_brian import Dense, Input, Network

    net = Network(Input(3), Dense(3, bias=True), Dense(2), steps=5)
    w = [np.ones((3, 3)), np.ones((2, 3))]
    m = [np.array([[1, 1, 0], [0, 0, 0], [0, 0, 0]]), np.ones((2, 3))]
    b = [np.array([0.0, 0.6, 0.1]), None]  # neuron 1 fires from its bias alone; neuron 2 (0.1/step) never does
    red = reduce_network(net, w, m, b)
    np.testing.assert_array_equal(red.keep[1], [0, 1])
    np.testing.assert_array_equal(red.keep[0], [0, 1])  # input 2 reaches no neuron
    assert red.n_synapses == [2, 4]
    np.testing.assert_array_equal(red.biases[0], [0.0, 0.6])


# -- the trainer's cuda_standalone device ---------------------------------------------------------
def test_simulator_generates_cuda_code_then_cpp_still_runs(cache_dir, test_images):
    from brian2 import prefs

    from sdsnn_brian.device import Simulator

    gcc = list(prefs["codegen.cpp.extra_compile_args_gcc"])
    net = mnist_fc(hidden=(32,), steps=8)
    sim = Simulator(net, BATCH, device="cuda_standalone", cache_dir=cache_dir, cuda_options={"compile": False})
    sim.build()
    for f in ("main.cu", "makefile"):
        assert os.path.isfile(os.path.join(sim.project_dir, f))
    # code objects get a suffix (_1, ...) when objects of an earlier build are still alive
    assert glob.glob(os.path.join(sim.project_dir, "code_objects", "syn1_pre_codeobject*.cu"))
    with open(os.path.join(sim.project_dir, "makefile")) as fh:
        assert "-arch=sm_90" in fh.read()
    # back on C++ standalone in the same process: the host flags are Brian2's again
    tr = make_trainer(cache_dir)
    assert len(tr.predict(test_images[0][:BATCH], BATCH)) == BATCH
    assert prefs["codegen.cpp.extra_compile_args_gcc"] == gcc
