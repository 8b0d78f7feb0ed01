"""Export a trained (and pruned) network to a self-contained C++ or CUDA standalone project.

>>> from sdsnn_brian.export import export_network, run_export, load_export_results
>>> info = export_network('runs/mnist_dense', 'build/mnist_cuda', device='cuda_standalone',
...                       samples=100, compile=False)
>>> # elsewhere, on a machine with a GPU:  build/mnist_cuda/run.sh
>>> res = load_export_results('build/mnist_cuda')
>>> res['predictions'], res['output_counts']          # [N], [N, 10]

What is exported
----------------
The newest valid checkpoint of the run directory (``ckpt-*.npz``) with the network
declared in its ``config.json``:

* Removed synapses do not exist in the generated code: every layer is built with
  explicit connectivity from its mask (:func:`~sdsnn_brian.builder.present_synapses`).
* Pruned neurons do not exist either.  A hidden neuron with no present incoming
  synapse and no (or a zero) bias follows the same trajectory in every sample;
  when that trajectory never reaches the threshold (checked on the layer's
  per-step map) the neuron never spikes: it and its outgoing synapses are
  dropped.  With ``drop_dead_ends`` (default) hidden and input neurons without a
  present outgoing synapse are dropped as well (they cannot affect the output).
  Indices are remapped; ``manifest.json`` keeps each layer's original indices.
  Output neurons are always kept.  A layer left with no neuron keeps one silent one.
* Weights and biases are baked into the project (static arrays), as is the input:
  the first ``samples`` images (by default of the MNIST test set) encoded exactly as
  :meth:`Trainer.evaluate`/:meth:`Trainer.predict` encode them (batch ``k`` of
  ``batch_size`` images with ``default_rng([seed, EVAL_SEED_OFFSET, k])``,
  :data:`sdsnn_brian.rundir.EVAL_SEED_OFFSET`), so the exported project reproduces the
  trained network's predictions on them.

Output directory::

    manifest.json   what was exported and where every recorded output lives (file, dtype, shape)
    README.md       how to build and run, and how to read the results
    run.sh          builds the binary if needed (make) and runs it; results in project/results/
    inputs.npz      the images, labels and encoded input spikes that are baked in
    project/        the Brian2 standalone project (sources, makefile, static_arrays/, main)

Brian2's standalone device is a global singleton of the process: code generation
runs in a child Python process (``python -m sdsnn_brian.export``), so exporting
never disturbs a :class:`~sdsnn_brian.device.Simulator` (or a trainer) of the
calling process.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from .builder import pack_input, present_synapses
from .rundir import CONFIG_FILE, EVAL_SEED_OFFSET, MissingLayerArray, layer_arrays, write_atomic

__all__ = ["export_network", "run_export", "load_export_results", "load_trained_run", "reduce_network",
           "encode_inputs", "network_from_config", "TrainedRun", "ReducedNetwork", "EXPORT_FORMAT"]

EXPORT_FORMAT = "sdsnn-export-1"
EXPORT_DEVICES = ("cuda_standalone", "cpp_standalone")


# -- reading a run directory ---------------------------------------------------------------
@dataclass
class TrainedRun:
    """A run directory's network and its newest valid checkpoint."""

    run_dir: str
    net: object
    config: dict
    checkpoint: str
    meta: dict
    weights: list  # raw (post, pre) weights
    masks: list
    biases: list  # per layer, None without bias

    def effective_weights(self):
        return [w * m for w, m in zip(self.weights, self.masks)]


def network_from_config(desc: dict):
    """The :class:`~sdsnn_brian.network.Network` a ``config.json`` ``'network'`` entry describes.

    Rebuilt by :meth:`~sdsnn_brian.network.Network.from_description` (conv and pooling layers
    included); :func:`load_trained_run` then refuses what the export cannot write (anything but
    fully connected Dense layers).  Raises ``ValueError`` for a description it cannot rebuild.
    """
    from .network import Network

    try:
        return Network.from_description(desc)
    except ValueError as exc:
        raise ValueError(f"config.json does not describe a network this version can rebuild ({exc})") from None


def load_trained_run(run_dir, net=None) -> TrainedRun:
    """Read ``config.json`` and the newest valid checkpoint of ``run_dir``.

    ``net``: the network declaration, when it cannot be rebuilt from ``config.json``
    (a neuron model that is not one of the named models).  Raises
    ``FileNotFoundError``/``ValueError`` with a message naming what is missing.
    """
    from .checkpoint import latest_checkpoint, load_checkpoint

    run_dir = os.fspath(run_dir)
    if not os.path.exists(run_dir):
        raise FileNotFoundError(f"run directory {run_dir!r} does not exist")
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"run directory {run_dir!r} is not a directory")
    cfg_path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"{run_dir!r} has no config.json: not a run directory (train first, e.g. "
                                f"`sdsnn train --run-dir {run_dir}`)")
    try:
        with open(cfg_path) as fh:
            cfg = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"damaged file {cfg_path}: not valid JSON ({exc})") from None
    if not isinstance(cfg, dict) or "network" not in cfg:
        raise ValueError(f"{cfg_path} has no 'network' entry: not a run directory's configuration")
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir!r} has no valid checkpoint (ckpt-*.npz): the run has not finished an "
                                "epoch yet, or every checkpoint is damaged")
    arrays, meta = load_checkpoint(ckpt)
    if net is None:
        net = network_from_config(cfg["network"])
    if not getattr(net, "is_dense", True):
        raise ValueError("the export supports fully connected (Dense) networks only, not Conv2d/AvgPool2d layers")
    key = meta.get("structure_key")
    if key is not None and key != net.structure_key():
        raise ValueError(f"the network rebuilt from {cfg_path} does not match checkpoint {ckpt.name} "
                         "(a neuron model with changed parameters?); pass the declaration (net=...)")
    shapes = list(net.weight_shapes)
    try:
        weights, masks, biases = layer_arrays(arrays, len(shapes), bias=[layer.bias for layer in net.trained])
    except MissingLayerArray as exc:
        raise ValueError(f"checkpoint {ckpt} lacks {exc.key!r}") from None
    for k, (shape, w, m) in enumerate(zip(shapes, weights, masks)):
        if w.shape != shape or m.shape != shape:
            raise ValueError(f"checkpoint {ckpt}: layer {k + 1} arrays have shapes {w.shape}/{m.shape}, "
                             f"the network needs {shape}")
    return TrainedRun(run_dir, net, cfg, str(ckpt), meta, weights, masks, biases)


# -- pruning the declaration ---------------------------------------------------------------
@dataclass
class ReducedNetwork:
    """A network without removed synapses and silent neurons.

    ``keep[l]``: original indices kept in layer ``l`` (0 = input); ``weights[k]``:
    (post, pre) masked weights among kept neurons; ``connectivity[k]``: ``(pre, post)``
    reduced index arrays of the present synapses; ``biases[k]``: kept neurons' biases.
    """

    net: object
    keep: list
    weights: list
    biases: list
    connectivity: list
    dropped: dict = field(default_factory=dict)

    @property
    def n_synapses(self):
        return [int(len(c[0])) for c in self.connectivity]


def _silent_without_input(dyn, bias, steps, margin=1e-9):
    """True when a neuron with no synaptic input (constant drive ``c + bias``) never spikes in ``steps`` steps."""
    u = dyn.u_init
    theta = dyn.theta - margin * (1.0 + abs(dyn.theta))  # a near miss counts as a spike: keep the neuron
    for _ in range(int(steps)):
        u = dyn.a * u + dyn.c + bias
        if u >= theta:
            return False
        u = dyn.after_reset(u, 0)
    return True


def reduce_network(net, weights, masks, biases, drop_dead_ends=True) -> ReducedNetwork:
    """Drop removed synapses and neurons that never spike or reach nothing (see the module doc)."""
    from .network import Dense, Input, Network

    L = len(net.trained)
    present = [np.asarray(m) != 0 for m in masks]
    alive = [np.ones(net.input.size, bool)] + [np.ones(l.size, bool) for l in net.trained]
    dyns = net.dynamics()
    silent = {}
    for k in range(L - 1):  # hidden layers: no live input, no bias, trajectory below threshold
        layer, dyn = net.trained[k], dyns[k]
        fed = (present[k] & alive[k][None, :]).any(axis=1)
        b = biases[k] if layer.bias and biases[k] is not None else np.zeros(layer.size)
        for j in np.flatnonzero(~fed):
            if _silent_without_input(dyn, float(b[j]), net.steps):
                alive[k + 1][j] = False
        silent[f"layer{k + 1}"] = int((~alive[k + 1]).sum())
    dead_end = {}
    if drop_dead_ends:
        for l in range(L - 1, -1, -1):  # hidden and input neurons reaching no live neuron
            reach = (present[l] & alive[l + 1][:, None]).any(axis=0)
            before = int(alive[l].sum())
            alive[l] &= reach
            dead_end[f"layer{l}"] = before - int(alive[l].sum())
    keep = []
    for l, a in enumerate(alive):
        idx = np.flatnonzero(a)
        if idx.size == 0:  # keep one (silent, unconnected) neuron: a layer cannot be empty
            idx = np.array([0])
        keep.append(idx.astype(np.int64))
    keep[-1] = np.arange(net.trained[-1].size)  # output neurons: always all
    red_w, red_b, conn = [], [], []
    for k in range(L):
        rows, cols = keep[k + 1], keep[k]
        m = present[k][np.ix_(rows, cols)]
        if not alive[k + 1][rows].all():  # the placeholder neuron of an emptied layer has no synapses
            m = m & alive[k + 1][rows][:, None]
        w = np.where(m, np.asarray(weights[k], float)[np.ix_(rows, cols)], 0.0)
        red_w.append(w)
        conn.append(present_synapses(m))
        red_b.append(None if biases[k] is None else np.asarray(biases[k], float)[rows])
    layers = [Input(int(len(keep[0])), encoding=net.input.encoding)]
    layers += [Dense(int(len(keep[k + 1])), neuron=l.neuron, bias=l.bias, init_gain=l.init_gain)
               for k, l in enumerate(net.trained)]
    red = Network(*layers, steps=net.steps, dt=net.dt, name=net.name + "_export")
    return ReducedNetwork(red, keep, red_w, red_b, conn,
                          dropped={"silent": silent, "dead_end": dead_end,
                                   "synapses_present": [int(p.sum()) for p in present]})


# -- input ------------------------------------------------------------------------------------
def encode_inputs(encoder, images, steps, seed, batch_size, seed_offset=EVAL_SEED_OFFSET) -> np.ndarray:
    """[T, N, n] uint8 spikes: batch ``k`` of ``batch_size`` images encoded with ``default_rng([seed, offset, k])``."""
    images = np.asarray(images)
    images = images.reshape(len(images), -1)
    out = []
    for k, start in enumerate(range(0, len(images), batch_size)):
        out.append(encoder(images[start:start + batch_size], steps, np.random.default_rng([seed, seed_offset, k])))
    return np.concatenate(out, axis=1)


def _positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


# -- export -----------------------------------------------------------------------------------
def export_network(run_dir, out_dir, *, device="cuda_standalone", samples=100, images=None, labels=None,
                   mnist_dir=None, batch_size=None, compile=True, compute_capability=9.0, gpu_id=0,
                   cuda_options=None, drop_dead_ends=True, record_membrane="output", net=None, jobs=None,
                   overwrite=True, timeout=None) -> dict:
    """Export the newest checkpoint of ``run_dir`` to a standalone project in ``out_dir``.

    Parameters
    ----------
    device : ``'cuda_standalone'`` or ``'cpp_standalone'``
    samples : int
        Number of inputs baked in (the first ones of ``images`` or of the MNIST test set).
    images, labels : array, optional
        Inputs ``[N, n_in]`` in [0, 1] (default: MNIST test images from ``mnist_dir``).
    batch_size : int, optional
        Batch size of the evaluation encoding (default: the run's ``batch_size``, else 100).
    compile : bool
        Run ``make`` after generating the code (needs nvcc and cuRAND for CUDA).
    compute_capability, gpu_id, cuda_options :
        CUDA target (see :func:`sdsnn_brian.cuda.configure_cuda`; ``cuda_options`` adds
        ``curand_dir``, ``extra_nvcc``, ``nvcc``).
    drop_dead_ends : bool
        Also drop neurons without a present outgoing synapse.
    record_membrane : ``'output'``, ``'all'`` or ``'none'``
        Membrane monitors kept (the output membrane gives the ``ce_max_membrane`` scores).
    net : Network, optional
        The declaration, when ``config.json`` cannot rebuild it.
    jobs : int, optional
        Parallel ``make`` jobs (default: the CPU count).
    overwrite : bool
        Replace a previous export in ``out_dir`` (a directory holding other files is refused).

    Returns the manifest (also written to ``out_dir/manifest.json``).
    """
    from .cuda import check_target, check_toolchain
    from .encoding import get_encoder

    if device not in EXPORT_DEVICES:
        raise ValueError(f"unknown export device {device!r}; use one of {list(EXPORT_DEVICES)}")
    if record_membrane not in ("output", "all", "none"):
        raise ValueError(f"record_membrane must be 'output', 'all' or 'none', got {record_membrane!r}")
    samples = _positive_int(samples, "samples")
    cuda_options = dict(cuda_options or {})
    unknown = set(cuda_options) - {"curand_dir", "extra_nvcc", "nvcc", "march_native"}
    if unknown:
        raise ValueError(f"unknown cuda_options {sorted(unknown)}; known: curand_dir, extra_nvcc, nvcc, march_native")
    compute_capability, gpu_id = check_target(compute_capability, gpu_id)
    cuda_options.update(compute_capability=compute_capability, gpu_id=gpu_id)
    run = load_trained_run(run_dir, net=net)
    cfg = run.config
    if batch_size is None:
        batch_size = cfg.get("batch_size") or 100
    batch_size = _positive_int(batch_size, "batch_size")
    toolchain = None
    if device == "cuda_standalone":
        toolchain = check_toolchain(cuda_options.get("nvcc"), cuda_options.get("curand_dir"),
                                    need_nvcc=compile, need_curand=compile)

    # inputs
    n_in = run.net.input.size
    if images is None:
        from .data import MNIST

        data = MNIST(mnist_dir, train=False, limit=samples)
        images, labels = data.images, data.labels
        source = {"dataset": "mnist-test", "files": {k: str(v) for k, v in data.source.items()}}
    else:
        source = {"dataset": "user"}
    images = np.asarray(images)
    images = images.reshape(len(images), -1)
    if images.shape[1] != n_in:
        raise ValueError(f"images have {images.shape[1]} values per sample, the network's input has {n_in}")
    if len(images) < samples:
        raise ValueError(f"{samples} samples requested but only {len(images)} images are available")
    images = images[:samples]
    if labels is not None:
        labels = np.asarray(labels)[:samples].astype(np.int64)
    seed = int(cfg.get("seed", 0))
    encoder = get_encoder(run.net.input.encoding)
    spikes = encode_inputs(encoder, images, run.net.steps, seed, batch_size)

    red = reduce_network(run.net, run.weights, run.masks, run.biases, drop_dead_ends=drop_dead_ends)
    stim = pack_input(spikes[:, :, red.keep[0]])

    out_dir = os.path.abspath(os.fspath(out_dir))
    _prepare_out_dir(out_dir, overwrite)
    project = os.path.join(out_dir, "project")
    spec = {"device": device, "net": red.net, "samples": samples, "stim": stim, "weights": red.weights,
            "biases": red.biases, "connectivity": red.connectivity, "project": project,
            "record_membrane": record_membrane,
            "cuda_options": dict(cuda_options, compile=False) if device == "cuda_standalone" else None}
    t0 = time.perf_counter()
    worker = _generate(spec, timeout)
    t_generate = time.perf_counter() - t0
    makevars = _relocatable_makefile(project, worker) if device == "cuda_standalone" else {}

    np.savez(os.path.join(out_dir, "inputs.npz"), images=images, labels=labels if labels is not None else
             np.zeros(0, np.int64), spikes=np.packbits(spikes, axis=-1), spikes_shape=np.array(spikes.shape))
    layers = []
    names = ["layer0"] + [f"layer{k}" for k in range(1, len(run.net.trained) + 1)]
    sizes = run.net.sizes
    for l, name in enumerate(names):
        layers.append({"name": name, "size": int(sizes[l]), "kept": int(len(red.keep[l])),
                       "original_index": red.keep[l].tolist()})
    manifest = {
        "format": EXPORT_FORMAT,
        "device": device,
        "project": "project",
        "binary": "project/main",
        "results_dir": "project/results",
        "run_command": "./run.sh",
        "source": {"run_dir": os.path.abspath(run.run_dir), "checkpoint": os.path.abspath(run.checkpoint),
                   "epoch": run.meta.get("epoch"), "batch": run.meta.get("batch"),
                   "structure_key": run.net.structure_key()},
        "network": run.net.describe(),
        "loss": cfg.get("loss", "rate_mse"),
        "steps": int(run.net.steps),
        "dt_seconds": float(run.net.dt),
        "samples": samples,
        "input": {"file": "inputs.npz", "seed": seed, "seed_offset": EVAL_SEED_OFFSET, "batch_size": batch_size,
                  "encoding": encoder.config() if hasattr(encoder, "config") else repr(encoder), **source,
                  "labels": labels is not None},
        "layers": layers,
        "synapses": [{"name": f"syn{k + 1}", "pre": names[k], "post": names[k + 1], "count": n,
                      "present_in_mask": red.dropped["synapses_present"][k],
                      "sources_file": worker["synapses"][k]["sources_file"]}
                     for k, n in enumerate(red.n_synapses)],
        "neurons_dropped": red.dropped,
        "units": worker["units"],
        "outputs": worker["outputs"],
        "cuda": ({"compute_capability": float(compute_capability), "gpu_id": int(gpu_id),
                  "nvcc": toolchain["nvcc"] if toolchain else None,
                  "makefile_variables": makevars} if device == "cuda_standalone" else None),
        "versions": worker["versions"],
        "timings": {"generate_seconds": t_generate, "generate_in_worker_seconds": worker["seconds"]},
        "compiled": False,
    }
    _write_json(os.path.join(out_dir, "manifest.json"), manifest)
    _write_run_script(out_dir, manifest)
    _write_readme(out_dir, manifest)
    if compile:
        manifest["timings"]["compile_seconds"] = compile_export(out_dir, jobs=jobs, timeout=timeout)
        manifest["compiled"] = True
        _write_json(os.path.join(out_dir, "manifest.json"), manifest)
    return manifest


def _prepare_out_dir(out_dir, overwrite):
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            raise ValueError(f"output path {out_dir!r} exists and is not a directory")
        entries = set(os.listdir(out_dir))
        ours = {"manifest.json", "README.md", "run.sh", "inputs.npz", "project"}
        if entries and not (entries <= ours and "manifest.json" in entries):
            raise ValueError(f"output directory {out_dir!r} is not empty and holds no previous export; "
                             "choose a new or empty directory")
        if entries and not overwrite:
            raise ValueError(f"output directory {out_dir!r} holds a previous export (overwrite=False)")
        for name in entries:
            p = os.path.join(out_dir, name)
            shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)
    os.makedirs(out_dir, exist_ok=True)


def _write_json(path, obj):
    write_atomic(path, json.dumps(obj, indent=2) + "\n")


def _child_env():
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _generate(spec, timeout=None) -> dict:
    """Run code generation in a child process; returns what the worker reports."""
    with tempfile.TemporaryDirectory(prefix="sdsnn_export_") as tmp:
        spec_path = os.path.join(tmp, "spec.pkl")
        report = os.path.join(tmp, "report.json")
        with open(spec_path, "wb") as fh:
            pickle.dump(dict(spec, report=report), fh)
        proc = subprocess.run([sys.executable, "-m", "sdsnn_brian.export", spec_path], capture_output=True,
                              text=True, env=_child_env(), timeout=timeout)
        if proc.returncode != 0 or not os.path.exists(report):
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-25:]
            raise RuntimeError(f"code generation for {spec['device']} failed (exit {proc.returncode}):\n"
                               + "\n".join(tail))
        with open(report) as fh:
            return json.load(fh)


def _worker(spec_path):
    """Child process: build the Brian2 objects with everything baked in and generate the project."""
    t0 = time.perf_counter()
    with open(spec_path, "rb") as fh:
        spec = pickle.load(fh)
    import brian2 as b2
    from brian2.utils.logger import BrianLogger

    from .builder import build_objects

    BrianLogger.log_level_warn()
    device = spec["device"]
    versions = {"brian2": b2.__version__}
    if device == "cuda_standalone":
        import brian2cuda

        versions["brian2cuda"] = getattr(brian2cuda, "__version__", "?")
    b2.set_device(device, build_on_run=False)
    cuda = None
    if device == "cuda_standalone":
        from .cuda import configure_cuda

        cuda = configure_cuda(**spec["cuda_options"])
    net = spec["net"]
    b2.defaultclock.dt = net.dt
    objs = build_objects(net, spec["samples"], stim_values=spec["stim"], weights=spec["weights"],
                         biases=spec["biases"], connectivity=spec["connectivity"])
    L = len(objs.groups)
    keep_mem = {"all": set(range(L)), "output": {L - 1}, "none": set()}[spec["record_membrane"]]
    for k, sm in enumerate(objs.state_monitors):
        if k not in keep_mem:
            objs.network.remove(sm)
    objs.network.run(objs.duration)
    project = spec["project"]
    b2.device.build(directory=project, compile=False, run=False, with_output=False)

    def entry(var, **extra):
        return {"file": "project/results/" + b2.device.get_array_filename(var), "dtype": np.dtype(var.dtype).name,
                **extra}

    outputs = {}
    for k, (G, spm, sm, m) in enumerate(zip(objs.groups, objs.spike_monitors, objs.state_monitors, objs.membranes)):
        rec = {"spikes": {"i": entry(spm.variables["i"], meaning="reduced neuron index (see layers[].original_index)"),
                          "t": entry(spm.variables["t"], unit="second"),
                          "count": entry(spm.variables["count"], shape=[int(G.N)],
                                         meaning="spikes per reduced neuron over all samples")}}
        if k in keep_mem:
            rec["membrane"] = entry(sm.variables[m], shape=[-1, int(G.N)], order="C",
                                    meaning="membrane before reset per step (rows: global steps, model unit "
                                            "times units[layer])")
        outputs[G.name] = rec
    synapses = []
    static = os.path.join(project, "static_arrays")
    for S in objs.synapses:
        fname = f"_static_array__array_{S.name}_sources"
        synapses.append({"sources_file": f"project/static_arrays/{fname}"
                         if os.path.exists(os.path.join(static, fname)) else None})
    report = {"outputs": outputs, "synapses": synapses, "versions": versions,
              "units": {G.name: u for G, u in zip(objs.groups, objs.units)},
              "cuda": cuda, "seconds": time.perf_counter() - t0}
    with open(spec["report"], "w") as fh:
        json.dump(report, fh, default=str)


# -- the CUDA makefile -------------------------------------------------------------------------
_MAKE_HEADER = """\
# Tool locations (written by sdsnn_brian.export). Override them on the command line or in the
# environment, e.g.  make NVCC_BIN=/usr/local/cuda/bin/nvcc CURAND_INC=... CURAND_LIB=...
# CURAND_LIB must hold libcurand.so (run.sh makes a link to the wheel's libcurand.so.N when needed).
NVCC_BIN ?= {nvcc}
CURAND_INC ?= {inc}
CURAND_LIB ?= {lib}
CURAND_RPATH ?= {rpath}
"""


def _relocatable_makefile(project, worker) -> dict:
    """Replace the absolute nvcc and cuRAND paths of brian2cuda's makefile by overridable variables."""
    path = os.path.join(project, "makefile")
    with open(path) as fh:
        text = fh.read()
    cuda = worker.get("cuda") or {}
    cur = cuda.get("curand") or {}
    inc = cur.get("include_dir", "")
    lib_dir = cur.get("library_dir", "")
    lines = text.splitlines()
    nvcc = ""
    out = []
    for line in lines:
        if line.startswith("NVCC = "):
            rest = line[len("NVCC = "):]
            at = rest.startswith("@")
            tokens = rest.lstrip("@").split(" ", 1)
            nvcc = tokens[0]
            line = "NVCC = " + ("@" if at else "") + "$(NVCC_BIN)" + (" " + tokens[1] if len(tokens) > 1 else "")
        elif line.startswith("NVCCFLAGS = ") or line.startswith("LFLAGS = "):
            toks = line.split(" ")
            keep, skip = [], 0
            for i, t in enumerate(toks):
                if skip:
                    skip -= 1
                    continue
                if inc and t in (f"-I{inc}", f'"-I{inc}'):
                    keep.append('"' if t.startswith('"') else "")
                    continue
                if t == "-std=c++11" and "-std=c++17" in toks:  # nvcc warns about the redefinition
                    continue
                if t.startswith("-L") and (t[2:] == lib_dir or "curand-link-" in t):
                    continue
                if t == "-Xlinker" and i + 3 < len(toks) and toks[i + 1] == "--enable-new-dtags" \
                        and toks[i + 2] == "-Xlinker" and lib_dir and toks[i + 3] == f"-rpath,{lib_dir}":
                    skip = 3
                    continue
                keep.append(t)
            line = " ".join(keep).replace('-Xcompiler " ', '-Xcompiler "')
            if line.startswith("NVCCFLAGS = "):
                line = line.replace("NVCCFLAGS = -I.", "NVCCFLAGS = -I. $(if $(CURAND_INC),-I$(CURAND_INC))", 1)
            else:
                line += (" $(if $(CURAND_LIB),-L$(CURAND_LIB))"
                         " $(if $(CURAND_RPATH),-Xlinker -rpath -Xlinker $(CURAND_RPATH))")
        out.append(line)
    link_dir = lib_dir
    if cur and os.path.basename(cur.get("library", "")) != "libcurand.so":
        # the wheel ships libcurand.so.N only: link it as libcurand.so inside the project
        link_dir = ".curand-link"  # relative to project/, where make runs
        os.makedirs(os.path.join(project, link_dir), exist_ok=True)
        os.symlink(os.path.realpath(cur["library"]), os.path.join(project, link_dir, "libcurand.so"))
    values = {"nvcc": nvcc or "/usr/local/cuda/bin/nvcc", "inc": inc, "lib": link_dir, "rpath": lib_dir}
    with open(path, "w") as fh:
        fh.write(_MAKE_HEADER.format(**values) + "\n".join(out) + "\n")
    return {"NVCC_BIN": values["nvcc"], "CURAND_INC": inc, "CURAND_LIB": link_dir, "CURAND_RPATH": lib_dir}


def compile_export(out_dir, jobs=None, timeout=None) -> float:
    """Run ``make`` in the exported project; returns the seconds it took (``RuntimeError`` with the log on failure)."""
    project = os.path.join(os.path.abspath(out_dir), "project")
    jobs = jobs or os.cpu_count() or 1
    t0 = time.perf_counter()
    proc = subprocess.run(["make", f"-j{int(jobs)}"], cwd=project, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-30:]
        raise RuntimeError(f"compiling {project} failed (make exit {proc.returncode}):\n" + "\n".join(tail))
    return seconds


# -- run script and README -------------------------------------------------------------------
_RUN_SH = r"""#!/usr/bin/env bash
# Build (if needed) and run the exported {device} project; results go to project/results/.
# Extra arguments go to the binary, e.g.  ./run.sh syn1.w=/abs/path/w.bin  (raw float64, same length).
set -euo pipefail
HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
cd "$HERE/project"
{cuda_setup}
if [ ! -x main ]; then
    make -j"${{JOBS:-$(nproc 2>/dev/null || echo 2)}}"
fi
mkdir -p results
exec ./main --results_dir results/ "$@"
"""

_CUDA_SETUP = r"""# cuRAND: from the environment (CURAND_INC, CURAND_LIB), else from the makefile's defaults when they
# exist on this machine, else from the nvidia-curand wheel of `python3`, else from the CUDA toolkit.
mk_default() { sed -n "s/^$1 ?= //p" makefile; }
if [ -z "${CURAND_INC:-}" ] || [ -z "${CURAND_LIB:-}" ]; then
    if [ ! -f "$(mk_default CURAND_INC)/curand.h" ]; then
        found="$(${PYTHON:-python3} - <<'EOF' 2>/dev/null || true
import glob, importlib.util, os
spec = importlib.util.find_spec("nvidia")
for base in (spec.submodule_search_locations if spec else []):
    for root in sorted(glob.glob(os.path.join(base, "*"))):
        libs = sorted(glob.glob(os.path.join(root, "lib", "libcurand.so*")))
        if os.path.isfile(os.path.join(root, "include", "curand.h")) and libs:
            print(os.path.join(root, "include"), os.path.join(root, "lib"), libs[-1])
            raise SystemExit
EOF
)"
        if [ -n "$found" ]; then
            read -r inc libdir libfile <<<"$found"
            mkdir -p .curand-link
            ln -sf "$libfile" .curand-link/libcurand.so
            export CURAND_INC="$inc" CURAND_LIB="$HERE/project/.curand-link" CURAND_RPATH="$libdir"
        else  # rely on the CUDA toolkit's own cuRAND
            export CURAND_INC="" CURAND_LIB="" CURAND_RPATH=""
        fi
    fi
fi
if [ -z "${NVCC_BIN:-}" ] && [ ! -x "$(mk_default NVCC_BIN)" ] && command -v nvcc >/dev/null; then
    export NVCC_BIN="$(command -v nvcc)"
fi
rpath="${CURAND_RPATH:-$(mk_default CURAND_RPATH)}"
if [ -n "$rpath" ]; then export LD_LIBRARY_PATH="$rpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi"""


def _write_run_script(out_dir, manifest):
    setup = _CUDA_SETUP if manifest["device"] == "cuda_standalone" else ""
    path = os.path.join(out_dir, "run.sh")
    with open(path, "w") as fh:
        fh.write(_RUN_SH.format(device=manifest["device"], cuda_setup=setup))
    os.chmod(path, 0o755)


def _write_readme(out_dir, m):
    sizes = " -> ".join(f"{l['kept']}" + (f" (of {l['size']})" if l["kept"] != l["size"] else "")
                        for l in m["layers"])
    syn = ", ".join(f"{s['name']}: {s['count']}" for s in m["synapses"])
    cuda = ""
    if m["device"] == "cuda_standalone":
        c = m["cuda"]
        cuda = (f"\nCUDA target: compute capability {c['compute_capability']} (`-arch=sm_"
                f"{str(c['compute_capability']).replace('.', '')}`), GPU {c['gpu_id']}. Building needs nvcc (CUDA "
                "toolkit) and cuRAND: `run.sh` takes them from `NVCC_BIN`, `CURAND_INC`, `CURAND_LIB` (a directory "
                "with `libcurand.so`), the makefile's defaults, or the `nvidia-curand` wheel (`pip install "
                "nvidia-curand`) of `python3`. Running needs an NVIDIA GPU.\n")
    text = f"""# Exported spiking network ({m['device']})

Generated by `sdsnn_brian.export` from `{m['source']['checkpoint']}` (epoch {m['source']['epoch']}).

Network: {sizes} neurons, {m['steps']} steps of {m['dt_seconds'] * 1e3:g} ms per sample; present synapses
{syn}. Removed synapses and silent neurons are not part of the code; weights, biases and the
input ({m['samples']} samples, {m['input']['dataset']}, encoding {m['input']['encoding']}, seed {m['input']['seed']},
batch size {m['input']['batch_size']}) are baked into `project/static_arrays/`.
{cuda}
## Build and run

    ./run.sh            # runs `make` in project/ if there is no binary yet, then project/main

Results land in `project/results/`; `manifest.json` lists every recorded output (file, dtype,
shape). Layers are renumbered: `layers[l].original_index[j]` is the original index of neuron `j`.

## Read the results

    from sdsnn_brian.export import load_export_results
    res = load_export_results('.')
    res['predictions'], res['output_counts'], res['spikes']['layer1']

Without Python packages: spike monitors write `i` (int32, reduced index) and `t` (float64,
seconds) as raw arrays; sample = round(t / dt) // steps.
"""
    with open(os.path.join(out_dir, "README.md"), "w") as fh:
        fh.write(text)


# -- running and reading back -----------------------------------------------------------------
def run_export(out_dir, timeout=None, args=()) -> float:
    """Run ``run.sh`` of an export (building first if needed); returns the wall seconds."""
    out_dir = os.path.abspath(os.fspath(out_dir))
    script = os.path.join(out_dir, "run.sh")
    if not os.path.isfile(script):
        raise FileNotFoundError(f"{out_dir!r} has no run.sh: not an export directory")
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", script, *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-20:]
        raise RuntimeError(f"{script} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    return time.perf_counter() - t0


def read_manifest(out_dir) -> dict:
    path = os.path.join(os.fspath(out_dir), "manifest.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{os.fspath(out_dir)!r} has no manifest.json: not an export directory")
    with open(path) as fh:
        m = json.load(fh)
    if m.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{path}: unknown export format {m.get('format')!r}")
    return m


def load_export_results(out_dir) -> dict:
    """The recorded outputs of a run of an exported project, in the original neuron indexing.

    Returns a dict with ``'spikes'`` (per layer name: ``i`` original indices, ``t``
    seconds, ``sample``, ``step`` within the sample), ``'spike_counts'`` (per layer
    ``[N, size]``), ``'output_counts'`` ``[N, C]``, ``'output_spikes'`` ``[T, N, C]``
    uint8, ``'output_membrane'`` ``[T, N, C]`` (None if not recorded), ``'predictions'``
    (argmax of the run's loss scores, as :meth:`Trainer.predict`), ``'labels'`` (or
    None), ``'accuracy'`` (or None), ``'simulation_seconds'`` and ``'manifest'``.
    """
    from .losses import get_loss

    out_dir = os.fspath(out_dir)
    m = read_manifest(out_dir)
    T, N, dt = m["steps"], m["samples"], m["dt_seconds"]

    def read(entry):
        path = os.path.join(out_dir, entry["file"])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} does not exist: run {os.path.join(out_dir, 'run.sh')} first")
        a = np.fromfile(path, dtype=np.dtype(entry["dtype"]))
        if "shape" in entry:
            a = a.reshape(entry["shape"])
        return a

    layers = {l["name"]: np.asarray(l["original_index"], np.int64) for l in m["layers"]}
    sizes = {l["name"]: l["size"] for l in m["layers"]}
    spikes, counts = {}, {}
    out_name = m["layers"][-1]["name"]
    out_u = None
    for name, rec in m["outputs"].items():
        i = read(rec["spikes"]["i"]).astype(np.int64)
        t = read(rec["spikes"]["t"])
        step = np.rint(t / dt).astype(np.int64)
        orig = layers[name][i]
        spikes[name] = {"i": orig, "t": t, "sample": step // T, "step": step % T}
        c = np.zeros((N, sizes[name]), np.int64)
        np.add.at(c, (step // T, orig), 1)
        counts[name] = c
        if "membrane" in rec:
            raw = read(rec["membrane"])
            if raw.shape[0] != N * T:
                raise ValueError(f"membrane recording of {name} has {raw.shape[0]} rows, expected {N * T}")
            u = raw.reshape(N, T, -1).transpose(1, 0, 2) / float(m["units"][name])
            full = np.zeros((T, N, sizes[name]))
            full[:, :, layers[name]] = u
            if name == out_name:
                out_u = full
    sp = spikes[out_name]
    C = sizes[out_name]
    s_out = np.zeros((T, N, C), np.uint8)
    s_out[sp["step"], sp["sample"], sp["i"]] = 1
    loss = get_loss(m["loss"])
    if out_u is None and loss.uses_membrane:
        raise ValueError(f"loss {m['loss']!r} needs the output membrane, which this export did not record")
    scores = loss(out_u, s_out, np.zeros(N, np.int64)).scores
    predictions = np.argmax(scores, axis=1)
    labels = None
    if m["input"].get("labels"):
        with np.load(os.path.join(out_dir, m["input"]["file"])) as z:
            labels = z["labels"]
    sim_seconds = None
    info = os.path.join(out_dir, m["results_dir"], "last_run_info.txt")
    if os.path.isfile(info):
        with open(info) as fh:
            try:
                sim_seconds = float(fh.read().split()[0])
            except (ValueError, IndexError):
                pass
    return {"manifest": m, "spikes": spikes, "spike_counts": counts, "output_counts": counts[out_name],
            "output_spikes": s_out, "output_membrane": out_u, "predictions": predictions, "labels": labels,
            "accuracy": None if labels is None else float(np.mean(predictions == labels)),
            "simulation_seconds": sim_seconds}


if __name__ == "__main__":  # the code-generation worker (see _generate)
    if len(sys.argv) != 2:
        sys.exit("usage: python -m sdsnn_brian.export SPEC.pkl  (internal: called by export_network)")
    _worker(sys.argv[1])
