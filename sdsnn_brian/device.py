"""Devices: run a declared network on a Brian2 back end, minibatch after minibatch.

``Simulator(net, batch_size, device=...)`` hides Brian2's devices:

``'cpp_standalone'`` (default)
    Generate and compile the C++ project once (``device.build(run=False)``), then run
    every minibatch with the current weights and that minibatch's input as ``run_args``.
    By default (``persistent=True``) one process of the binary serves all minibatches
    (``main --serve``, see :mod:`sdsnn_brian.codegen`): it builds the synapses once, and
    for every minibatch puts its state back to what it was after set-up, reads the
    ``run_args`` files named on one line of its standard input, runs, writes its results
    and answers one line.  ``persistent=False`` starts the binary for every minibatch
    through Brian2's ``device.run``; both give identical results.  The project lives in a
    cache directory keyed by the network's structure, the batch size, the device and the
    Brian2 version, so a second process finds it compiled (``make`` has nothing to do).  A
    lock file serialises builds of the same project (exclusive) against runs of its binary
    (shared); every process reads results from its own results directory.
``'cuda_standalone'``
    The same through brian2cuda (see :mod:`sdsnn_brian.cuda`); needs a GPU to run.
``'runtime'``
    Brian2's runtime mode, rebuilt for every minibatch: slow, for debugging.

Every array passed to the binary is checked against the built sizes before the
run: Brian2 itself silently keeps the build-time values when a synaptic array
has the wrong length.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
import weakref
from dataclasses import dataclass, field

import numpy as np

from .codegen import EVENT_CODES, SERVE_DONE, serving_supported, tune_generated_code
from .builder import (CONV_LAYOUTS, build_objects, conv_layout_for, noise_table, pack_input, present_synapses,
                      synapse_order, target_rows)

__all__ = ["Simulator", "Recording", "DEVICES", "cache_root", "keep_freed_memory", "MemoryEstimate",
           "memory_estimate", "check_memory", "available_memory", "NotEnoughMemoryError"]

DEVICES = ("cpp_standalone", "cuda_standalone", "runtime")


@dataclass
class Recording:
    """What one minibatch left behind: per trained layer, [T, B, N] arrays.

    ``u[l]``: membrane before reset (model unit); ``s[l]``: spikes (0/1 uint8).
    ``timings``: seconds spent writing inputs, in the binary, and reading results.
    """

    u: list
    s: list
    timings: dict = field(default_factory=dict)


def cache_root() -> str:
    """Where compiled projects are kept (``$SDSNN_CACHE_DIR`` or ``~/.cache/sdsnn_brian``)."""
    root = os.environ.get("SDSNN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "sdsnn_brian")
    os.makedirs(root, exist_ok=True)
    return root


def _builder_version() -> str:
    """A hash of the builder's and the code generation's sources: a change in how objects or
    their code are built means a new project."""
    from . import builder, codegen

    with open(builder.__file__, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:12] + codegen.source_version()


@contextlib.contextmanager
def _file_lock(path, shared=False):
    """An flock on ``path``: exclusive for builds, shared for runs of the binary."""
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


#: Environment of the C++ standalone binary: glibc's allocator serves every allocation from
#: its heap (no fresh ``mmap`` per large array) and asks for transparent huge pages there.  A
#: new process touches every page it uses once; for 784-400-10 this cuts the page faults of a
#: minibatch from about 7,000 to 800 and the binary's wall time by about a third.  It changes
#: where memory comes from, not any value computed.  glibc versions without these tunables
#: ignore them; a ``GLIBC_TUNABLES`` already set by the user is left alone.
RUN_ENVIRONMENT = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=4294967296"}


_ALLOCATOR = {"tuned": None}


def keep_freed_memory() -> bool:
    """Tell glibc's allocator in this process to keep freed memory for reuse (once per process).

    Every minibatch allocates and frees the same large numpy arrays (recordings, the
    backward's temporaries).  By default glibc returns each of them to the system and the next
    minibatch faults the pages in again: on 784-400-10 that doubles the float32 backward
    (15-16 ms instead of 8 ms).  With ``M_MMAP_THRESHOLD`` = 1 GiB and ``M_TRIM_THRESHOLD`` =
    2 GiB the process keeps its peak heap instead.  Called by every :class:`Simulator`;
    ``SDSNN_KEEP_FREED_MEMORY=0`` in the environment turns it off.  Returns whether it applies
    (glibc only).
    """
    if _ALLOCATOR["tuned"] is None:
        ok = False
        if os.environ.get("SDSNN_KEEP_FREED_MEMORY", "1") != "0":
            try:
                import ctypes

                libc = ctypes.CDLL("libc.so.6")
                M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
                ok = bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 31))
            except (OSError, AttributeError):
                ok = False
        _ALLOCATOR["tuned"] = ok
    return _ALLOCATOR["tuned"]


@contextlib.contextmanager
def _run_environment(env):
    """Set ``env`` (where not already set) for the binary, and restore the environment after."""
    added = [k for k in env if k not in os.environ]
    for k in added:
        os.environ[k] = env[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


# ---------------------------------------------------------------------------------------------
# memory needed by a build, checked before it is generated
# ---------------------------------------------------------------------------------------------
#: Bytes per synapse besides its weight: in the binary, 8 int32 (Brian2's ``_synaptic_pre``,
#: ``_synaptic_post``, ``N_incoming``, ``N_outgoing``, and the source and target arrays of
#: ``connect`` with their static copies: 32); in Python, while the build is declared, the
#: builder's int64 index arrays (24) and Brian2's int32 copies of them (16), then the weights put
#: in synapse order for a run (8).  The weight itself counts twice: in the binary and in its
#: input file in shared memory.  (784-5000-10, 100 samples of 20 steps, measured here: 0.85 GiB
#: allocated by Python, the binary and shared memory together; estimated 0.81 GiB.)
SYNAPSE_BYTES = 80
#: Bytes per neuron of any group (input, pooling relays, trained layers): its state variables and
#: Brian2's index, spike space and monitor arrays.
NEURON_BYTES = 64
#: Bytes per neuron and step of a trained layer's recordings: the membrane (8 bytes) in the binary,
#: in its results file and in Python (24); at most one spike, 12 bytes (index and time) in the
#: binary and in its results file, and 1 in Python's 0/1 array (25).
RECORDING_BYTES = 49
#: Every other input of a run (the packed spikes, a stochastic readout's noise, biases), 8 bytes a
#: value: in Python, in its file in shared memory and in the binary.
INPUT_COPIES = 3
#: ``SDSNN_MEMORY_CHECK=0`` in the environment turns :func:`check_memory` off.
MEMORY_CHECK_VARIABLE = "SDSNN_MEMORY_CHECK"

_GIB = float(1 << 30)


def _gib(n) -> str:
    return f"{n / _GIB:.1f} GiB" if n >= _GIB else f"{n / _GIB:.2f} GiB"


class NotEnoughMemoryError(MemoryError):
    """A build whose estimated memory (:func:`memory_estimate`) exceeds what the machine has."""


@dataclass
class MemoryEstimate:
    """Bytes a simulator needs, by part (``'synapses'``, ``'neurons'``, ``'recordings'``, ``'inputs'``,
    and ``'training arrays'`` when asked for), each with a line saying what it counts."""

    parts: dict
    what: dict

    @property
    def total(self) -> int:
        return int(sum(self.parts.values()))

    @property
    def dominant(self) -> str:
        return max(self.parts, key=self.parts.get)

    def describe(self) -> str:
        """The parts of at least 1 % of the total, largest first."""
        return ", ".join(f"{name} {self.parts[name] / _GIB:.2f} GiB ({self.what[name]})"
                         for name in sorted(self.parts, key=self.parts.get, reverse=True)
                         if self.parts[name] >= 0.01 * self.total)


def memory_estimate(net, batch_size: int, *, weight_dtype: str = "float64", sizes: dict | None = None,
                    training_arrays: int = 0, conv_layout: str = "kernel") -> MemoryEstimate:
    """What simulating ``net`` in minibatches of ``batch_size`` takes, in the binary and in Python.

    * synapses: every synapse of the build (``sizes``: :meth:`Simulator.expected_sizes`, default the
      full build with ``conv_layout``, by default conv layers as their kernels; pooling relays'
      synapses included) x (:data:`SYNAPSE_BYTES` + 2 x the weight's bytes);
    * neurons: every neuron x :data:`NEURON_BYTES`;
    * recordings: steps x batch x neurons of every trained layer x :data:`RECORDING_BYTES`;
    * inputs: every other ``run_args`` value x 8 x :data:`INPUT_COPIES`;
    * training arrays (``training_arrays`` > 0): that many float64 arrays the size of the
      parameters (the trainer's weights, masks, gradients, optimiser state).
    """
    T, B = net.steps, int(batch_size)
    if sizes is None:
        sizes = _expected_sizes(net, B, None, conv_layout)
    weight_bytes = np.dtype(weight_dtype).itemsize
    layers = []  # per connection: (what, synapses)
    for k, cn in enumerate(net.connections, start=1):
        n = int(np.prod(sizes.get(f"syn{k}.w", (0,))))
        full = cn.kind == "dense" and n == cn.n_op * cn.n_post
        layers.append((f"{cn.n_op}x{cn.n_post}" if full else f"{n}", n))
        if cn.pool is not None:
            layers.append((f"{cn.n_pre} pooling", cn.n_pre))
    n_syn = sum(n for _, n in layers)
    neurons = net.input.size + sum(cn.n_op for cn in net.connections if cn.pool is not None) \
        + sum(layer.size for layer in net.trained)
    trained = sum(layer.size for layer in net.trained)
    inputs = sum(int(np.prod(shape)) for name, shape in sizes.items() if not name.endswith(".w"))
    parts = {"synapses": n_syn * (SYNAPSE_BYTES + 2 * weight_bytes),
             "neurons": neurons * NEURON_BYTES,
             "recordings": T * B * trained * RECORDING_BYTES,
             "inputs": inputs * 8 * INPUT_COPIES}
    per_synapse = SYNAPSE_BYTES + 2 * weight_bytes
    what = {"synapses": " + ".join(w for w, _ in layers) + f" synapses, {per_synapse} bytes each",
            "neurons": f"{neurons} neurons, {NEURON_BYTES} bytes each",
            "recordings": f"{B} samples x {T} steps x {trained} neurons, {RECORDING_BYTES} bytes each",
            "inputs": f"{inputs} values, 8 bytes x {INPUT_COPIES}"}
    if training_arrays:
        n_params = sum(int(np.prod(s)) for s in net.weight_shapes) \
            + sum(int(np.prod(cn.bias_shape)) for cn, layer in zip(net.connections, net.trained) if layer.bias)
        parts["training arrays"] = n_params * 8 * int(training_arrays)
        what["training arrays"] = f"{training_arrays} arrays of {n_params} parameters, 8 bytes each"
    return MemoryEstimate(parts, what)


_ADVICE = {"synapses": "fewer or smaller layers", "training arrays": "fewer or smaller layers",
           "neurons": "fewer or smaller layers", "recordings": "a smaller batch size, fewer time steps or smaller layers",
           "inputs": "a smaller batch size or fewer time steps"}


def available_memory() -> int | None:
    """Bytes of memory available now: ``MemAvailable`` of ``/proc/meminfo`` (else free physical
    pages), and no more than a cgroup (v2) memory limit leaves.  None when unknown."""
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            pass
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            limit = fh.read().strip()
        with open("/sys/fs/cgroup/memory.current") as fh:
            used = int(fh.read().strip())
        if limit != "max":
            left = max(int(limit) - used, 0)
            avail = left if avail is None else min(avail, left)
    except (OSError, ValueError):
        pass
    return avail


def check_memory(estimate: MemoryEstimate, available: int | None = None) -> None:
    """Raise :class:`NotEnoughMemoryError` when ``estimate`` exceeds the memory available
    (:func:`available_memory` unless given); silent otherwise, when the amount is unknown, or
    with ``SDSNN_MEMORY_CHECK=0`` in the environment."""
    if os.environ.get(MEMORY_CHECK_VARIABLE, "1") == "0":
        return
    if available is None:
        available = available_memory()
    if available is None or estimate.total <= available:
        return
    raise NotEnoughMemoryError(
        f"not enough memory: this network needs about {_gib(estimate.total)}, mostly "
        f"{estimate.dominant} ({estimate.what[estimate.dominant]}), and {_gib(available)} is available "
        f"(estimate: {estimate.describe()}). Use {_ADVICE[estimate.dominant]}, or set "
        f"{MEMORY_CHECK_VARIABLE}=0 to try anyway")


_ACTIVE = {"key": None, "objects": None}  # the standalone project Brian2's global device holds


class Simulator:
    """A network compiled for one device and batch size, run once per minibatch.

    Parameters
    ----------
    net : Network
    batch_size : int
        Samples per simulation; shorter minibatches are padded (padding is dropped
        from the recording).
    device : str
        ``'cpp_standalone'``, ``'cuda_standalone'`` or ``'runtime'``.
    threads : int
        OpenMP threads for C++ standalone (0 = Brian2's default, no OpenMP).
    cache_dir : str, optional
        Directory for compiled projects (default :func:`cache_root`).
    masks : list, optional
        Compaction: per layer a parameter-shaped 0/1 mask ((post, pre), or a conv layer's
        (C_out, C_in, kh, kw): absent kernel entries drop all their synapses), or None.  The
        build then holds only the present synapses, so the simulation does less
        work; :meth:`run` still takes full weight matrices.  A different mask means
        a different build (``make`` recompiles only what changed).
    compact_below : float
        With ``masks``, on C++ standalone with ``event_code='sdsnn'``: a fully connected
        layer is compacted synapse by synapse only when fewer than this fraction of the
        synapses onto its *living* targets (those with at least one synapse left) are
        present (default 0.2).  Above it, the layer is built as rows: every source to every
        living target, which the event code adds as vectorised rows, about 5x cheaper per
        synaptic event than walking a compacted layer's synapses (``benchmarks/throughput.py``
        puts the break-even near 20 %); :meth:`run` multiplies its weights by the mask.  So a
        layer whose neurons were pruned (SD-SNN's neuronal pruning removes whole rows of the
        mask) costs in proportion to the neurons left, and a layer with every target alive
        keeps the all-to-all build.  Either way removed synapses transmit nothing.
        ``compact_below=1.01`` compacts every masked layer synapse by synapse; conv layers
        and other devices always do.  On C++ standalone with ``event_code='sdsnn'``, the
        pruned neurons of a bias-free hidden layer (no synapse onto them, none from them)
        are left out of the build but one, whose recording they all take (their trajectories
        are identical, bit for bit): the layer's state updates, thresholds and recordings then
        cost in proportion to the neurons left too.  :attr:`neurons_built` says which neurons
        are in the build; :meth:`run` still returns every neuron's recording.
    event_code : str
        How C++ standalone propagates synaptic events: ``'sdsnn'`` (default) walks each
        spiking source's synapses without Brian2's spike queue, all-to-all layers as one
        vectorised row (:mod:`sdsnn_brian.codegen`); ``'brian2'`` keeps Brian2's own code.
        Both give the same results; other devices always use their own code.
    persistent : bool
        C++ standalone: one process of the binary serves every minibatch (default), instead
        of one process per minibatch through Brian2's ``device.run``.  Same results; the
        process start, the synapse creation and Brian2's checks are paid once.  :meth:`close`
        (or the end of the Python process) ends the binary.
    weight_dtype : str
        How the build stores the synaptic weights: ``'float64'`` (default) or ``'float32'``.
        With float32 an all-to-all row moves half the bytes (the event-driven inner loop is
        bound by memory traffic); every other variable and all arithmetic stay float64, so the
        run equals a float64 run with the weights rounded to float32 (tested against the numpy
        re-simulation with rounded weights).  :meth:`run` still takes float64 weights.
    conv_layout : str, optional
        How conv layers are built: ``'kernel'`` (the default on ``cpp_standalone`` with
        ``event_code='sdsnn'``): ``syn{k}`` holds one synapse per kernel entry and the generated
        code adds, for each spiking source, the kernel slice to its output window
        (:func:`sdsnn_brian.codegen.conv_codeobj_class`), so the build's memory is O(kernel +
        neurons) and only the kernel is uploaded per minibatch; ``'synapses'``: one Brian2
        synapse per (input position, output position, kernel entry), each given its kernel value
        at every run (the default, and the only layout, on ``cuda_standalone`` and ``runtime``, and
        with ``event_code='brian2'``; asking for ``'kernel'`` there is a ``ValueError``).  Both give
        the same spikes and membranes, bit for bit.  :attr:`conv_layout` is the layout in use.
    memory_check : bool
        Before generating code, compare :meth:`memory_estimate` (synapses, neurons, recordings and
        inputs, in the binary and in Python) with the memory available and raise
        :class:`NotEnoughMemoryError` (a ``MemoryError``) naming both when it does not fit
        (default).  ``False``, or ``SDSNN_MEMORY_CHECK=0`` in the environment, skips the check.
    """

    def __init__(self, net, batch_size: int, device: str = "cpp_standalone", *, threads: int = 0,
                 cache_dir: str | None = None, cuda_options: dict | None = None, masks=None,
                 compact_below: float = 0.2, event_code: str = "sdsnn", persistent: bool = True,
                 weight_dtype: str = "float64", memory_check: bool = True, conv_layout: str | None = None):
        if device not in DEVICES:
            raise ValueError(f"unknown device {device!r}; known: {list(DEVICES)}")
        if event_code not in EVENT_CODES:
            raise ValueError(f"unknown event_code {event_code!r}; known: {list(EVENT_CODES)}")
        self.event_code = event_code
        supported = conv_layout_for(device, event_code)
        if conv_layout is None:
            conv_layout = supported
        if conv_layout not in CONV_LAYOUTS:
            raise ValueError(f"unknown conv_layout {conv_layout!r}; known: {list(CONV_LAYOUTS)}")
        if conv_layout == "kernel" and supported != "kernel":
            raise ValueError(f"conv_layout='kernel' needs device='cpp_standalone' with event_code='sdsnn' "
                             f"(got {device!r}, {event_code!r}); this device builds conv_layout='synapses'")
        #: ``'kernel'`` or ``'synapses'``: how this simulator builds its conv layers.
        self.conv_layout = conv_layout
        if weight_dtype not in ("float64", "float32"):
            raise ValueError(f"weight_dtype must be 'float64' or 'float32', got {weight_dtype!r}")
        self.weight_dtype = weight_dtype
        self.persistent = bool(persistent) and device == "cpp_standalone"
        self.memory_check = bool(memory_check)
        self._memory_checked = False
        self._server = None
        keep_freed_memory()
        if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.net = net
        self.batch_size = int(batch_size)
        self.device = device
        self.threads = int(threads)
        self.cuda_options = dict(cuda_options or {})
        self.dynamics = net.dynamics()
        self.shapes = net.weight_shapes
        if not (isinstance(compact_below, (int, float)) and 0 <= compact_below):
            raise ValueError(f"compact_below must be a fraction >= 0, got {compact_below!r}")
        self.connectivity = None
        self.run_masks = [None] * len(self.shapes)  # masks applied to the weights of layers kept whole
        # per layer: None (every synapse is in the build and transmits) or the parameters that do
        self.capacity = [None] * len(self.shapes)
        # per layer: None (every neuron is in the build) or the neurons that are (see _leave_out)
        self.neurons_built = [None] * len(self.shapes)
        self._build_connectivity = None  # connectivity in the numbering of the built groups
        self._columns = [None] * len(self.shapes)  # per layer: built column of every neuron's recording
        conn_key = "all-to-all"
        if masks is not None:
            if len(masks) != len(self.shapes):
                raise ValueError(f"expected {len(self.shapes)} masks, got {len(masks)}")
            # fully connected layers run as vectorised rows with this device and event code: compacting
            # one synapse by synapse pays only when few of its living targets' synapses are left
            rows = device == "cpp_standalone" and event_code == "sdsnn"
            connectivity = []
            h = hashlib.sha256()
            for k, (m, shape) in enumerate(zip(masks, self.shapes)):
                if m is not None and np.shape(m) != shape:
                    raise ValueError(f"mask of layer {k + 1} has shape {np.shape(m)}, the network needs {shape}")
                if m is not None and net.connections[k].kind != "conv" and rows:
                    present = np.asarray(m) != 0
                    living = np.flatnonzero(present.any(axis=1))  # targets with a synapse left
                    if present.sum() >= compact_below * len(living) * shape[1]:
                        # rows over the living targets: every source to each of them, the removed
                        # synapses' weights zeroed at every run (all-to-all when every target lives)
                        self.run_masks[k] = present.astype(np.float64)
                        self.capacity[k] = present
                        if len(living) == shape[0]:
                            connectivity.append(None)
                            h.update(b"all")
                        else:
                            connectivity.append(target_rows(living, shape[1]))
                            h.update(b"rows" + np.packbits(present.any(axis=1)).tobytes())
                        continue
                if m is None:
                    connectivity.append(None)
                    h.update(b"all")
                    continue
                if net.connections[k].kind == "conv":  # the kernel entries present
                    cn = net.connections[k]
                    conn = (cn.kernel_map() if conv_layout == "kernel" else cn.synapse_map()).select(m)
                else:
                    conn = present_synapses(m)
                self.capacity[k] = np.asarray(m) != 0
                connectivity.append(conn)
                h.update(np.packbits(np.asarray(m) != 0).tobytes())
            if any(c is not None for c in connectivity):
                self.connectivity = connectivity
                self._build_connectivity = connectivity
                if rows:
                    left = _leave_out(net, masks, connectivity, self.shapes)
                    if left is not None:
                        self.neurons_built, self.connectivity, self._build_connectivity, self._columns = left
                        for kept in self.neurons_built:
                            h.update(b"none-left-out" if kept is None else b"kept" + kept.tobytes())
                conn_key = h.hexdigest()
        self._objects = None
        self.project_dir = None
        self._noise = None  # the current run's readout threshold tables (stochastic layers)
        self.build_seconds = None
        if device != "runtime":
            import brian2

            key = "|".join([net.structure_key(), str(self.batch_size), device, str(self.threads),
                            brian2.__version__, _builder_version(), repr(sorted(self.cuda_options.items())),
                            conn_key, event_code] + ([] if weight_dtype == "float64" else [weight_dtype])
                           + ([] if conv_layout == "synapses" or not any(c.kind == "conv" for c in net.connections)
                              else ["conv-kernel"]))
            digest = hashlib.sha256(key.encode()).hexdigest()[:16]
            self.key = digest
            root = cache_dir or cache_root()
            os.makedirs(root, exist_ok=True)
            self.project_dir = os.path.join(root, f"{device}-{digest}")
            self._results = f"results_{os.getpid()}_{id(self):x}"
            self._inputs = os.path.join(self.project_dir, f"inputs_{os.getpid()}_{id(self):x}")
            # this simulator's own input and results folders go when it does (or at exit)
            weakref.finalize(self, _remove_folders, self._inputs, os.path.join(self.project_dir, self._results))

    # -- building -----------------------------------------------------------
    def _ensure_built(self):
        self._check_memory()
        if self.device == "runtime":
            return
        if _ACTIVE["key"] == self.key and _ACTIVE["objects"] is not None:
            self._objects = _ACTIVE["objects"]  # another simulator of the same structure built it
            return
        import brian2 as b2

        t0 = time.perf_counter()
        with _file_lock(self.project_dir + ".lock"):
            if self.device == "cuda_standalone":
                import brian2cuda  # noqa: F401  (registers the cuda_standalone device)
            # a fresh project on this device, whatever was built on it (or selected) before
            b2.set_device(self.device, build_on_run=False)
            b2.device.reinit()
            b2.set_device(self.device, build_on_run=False)
            if self.device == "cuda_standalone":
                from .cuda import configure_cuda

                configure_cuda(**self.cuda_options)
            else:
                from .cuda import restore_cpp_prefs

                restore_cpp_prefs()  # undo a CUDA build's host flags (C++17, no -march=native)
                b2.prefs.devices.cpp_standalone.openmp_threads = self.threads
            b2.defaultclock.dt = self.net.dt
            objs = build_objects(self.net, self.batch_size, connectivity=self._build_connectivity,
                                 event_code=self.event_code, weight_dtype=self.weight_dtype,
                                 sizes=[None if k is None else len(k) for k in self.neurons_built],
                                 conv_layout=self.conv_layout)
            _run_declaration(objs)
            if self.device == "cuda_standalone":
                compile_ = self.cuda_options.get("compile", True)
                with _interrupted_compilation():
                    b2.device.build(directory=self.project_dir, compile=compile_, run=False, with_output=False)
            else:
                from brian2.codegen.cpp_prefs import get_compiler_and_args

                b2.device.build(directory=self.project_dir, compile=False, run=False, with_output=False)
                tune_generated_code(self.project_dir)
                with _interrupted_compilation():
                    b2.device.compile_source(self.project_dir, get_compiler_and_args()[0], debug=False, clean=False)
        self._objects = objs
        _ACTIVE["key"] = self.key
        _ACTIVE["objects"] = objs
        self.build_seconds = time.perf_counter() - t0

    def build(self):
        """Generate and compile now (otherwise the first :meth:`run` does it)."""
        self._ensure_built()
        return self

    # -- checks -------------------------------------------------------------
    def _check(self, spikes, weights, biases):
        T, n_in = self.net.steps, self.net.input.size
        spikes = np.asarray(spikes)
        if spikes.ndim != 3 or spikes.shape[0] != T or spikes.shape[2] != n_in:
            raise ValueError(f"input spikes must have shape [T={T}, B, {n_in}], got {spikes.shape}")
        if spikes.shape[1] == 0 or spikes.shape[1] > self.batch_size:
            raise ValueError(f"minibatch of {spikes.shape[1]} samples; this simulator runs 1..{self.batch_size}")
        if len(weights) != len(self.shapes):
            raise ValueError(f"expected {len(self.shapes)} weight matrices, got {len(weights)}")
        for k, (w, shape) in enumerate(zip(weights, self.shapes)):
            if np.shape(w) != shape:
                raise ValueError(f"weights of layer {k + 1} have shape {np.shape(w)}, the network needs {shape}")
            if not np.all(np.isfinite(w)):
                raise ValueError(f"weights of layer {k + 1} contain NaN or infinite values")
        biases = biases if biases is not None else [None] * len(self.shapes)
        for k, (b, layer, cn) in enumerate(zip(biases, self.net.trained, self.net.connections)):
            if layer.bias and (b is None or np.shape(b) != cn.bias_shape or not np.all(np.isfinite(b))):
                raise ValueError(f"layer {k + 1} has a bias: it needs a finite array of shape {cn.bias_shape}")
        return spikes, biases

    def _check_noise(self, noise, B):
        """Per trained layer None or the [T, B, N] uniform noise of a stochastic readout."""
        flags = self.net.stochastic
        if not any(flags):
            if noise is not None and any(n is not None for n in (noise if isinstance(noise, list) else [noise])):
                raise ValueError("noise given, but this network has no stochastic layer")
            return None
        if noise is None:
            raise ValueError("this network has a stochastic readout: run(..., noise=) needs its uniform noise "
                             "[T, B, N] in (0, 1)")
        if not isinstance(noise, list):
            if sum(flags) != 1:
                raise ValueError("several stochastic layers: give noise as a list, one entry per trained layer")
            noise = [noise if f else None for f in flags]
        if len(noise) != len(flags):
            raise ValueError(f"noise: expected {len(flags)} entries (one per trained layer), got {len(noise)}")
        out = []
        for k, (n, f, layer) in enumerate(zip(noise, flags, self.net.trained), start=1):
            if not f:
                if n is not None:
                    raise ValueError(f"noise given for layer {k}, which is not stochastic")
                out.append(None)
                continue
            shape = (self.net.steps, B, layer.size)
            if n is None or np.shape(n) != shape:
                raise ValueError(f"noise of stochastic layer {k} must have shape {shape}, got "
                                 f"{None if n is None else np.shape(n)}")
            n = np.asarray(n, dtype=np.float64)
            if not np.all((n > 0) & (n < 1)):
                raise ValueError(f"noise of stochastic layer {k} must lie strictly inside (0, 1) (no NaN)")
            out.append(n)
        return out

    def expected_sizes(self) -> dict:
        """The size of every array the binary takes, by Brian2 name."""
        return _expected_sizes(self.net, self.batch_size, self.connectivity, self.conv_layout)

    def memory_estimate(self) -> MemoryEstimate:
        """What this simulator's build and runs take in memory (:func:`memory_estimate`)."""
        return memory_estimate(self.net, self.batch_size, weight_dtype=self.weight_dtype, sizes=self.expected_sizes())

    def _check_memory(self):
        """Refuse a build the machine has no memory for (once per simulator, before generating code)."""
        if self.memory_check and not self._memory_checked:
            check_memory(self.memory_estimate())
        self._memory_checked = True

    def holds(self, masks) -> bool:
        """Whether every synapse present in ``masks`` transmits in this build: then it runs that
        structure exactly, given weights that are zero wherever ``masks`` removed a synapse."""
        return all(c is None or not np.any((np.asarray(m) != 0) & ~c) for m, c in zip(masks, self.capacity))

    @property
    def compiled(self) -> bool:
        """Whether this build's project is already compiled in the cache (the runtime device has none)."""
        return self.project_dir is not None and os.path.exists(os.path.join(self.project_dir, "main"))

    @property
    def synapses_built(self) -> int:
        """The number of synapses in the build (what the simulation walks)."""
        return sum(int(np.prod(v)) for k, v in self.expected_sizes().items() if k.endswith(".w"))

    def input_dtype(self, name) -> str:
        """The element type of a ``run_args`` file: the synaptic weights in ``weight_dtype``, all else float64."""
        return self.weight_dtype if name.endswith(".w") else "float64"

    def check_run_args(self, run_args: dict):
        """Check every ``run_args`` array against the built size of its target (raise ``ValueError``).

        Keys are Brian2 names (``'syn1.w'``, ``'stim.values'``).  Brian2 itself accepts a
        synaptic array of the wrong length, prints to stderr and keeps the old values.
        """
        sizes = self.expected_sizes()
        for name, value in run_args.items():
            if name not in sizes:
                raise ValueError(f"run_args names {name!r}, which the build does not have; it has {sorted(sizes)}")
            shape = np.shape(value)
            if shape != sizes[name]:
                raise ValueError(f"run_args for {name}: shape {shape}, the build has {sizes[name]}")

    # -- running ------------------------------------------------------------
    def run(self, spikes, weights, biases=None, noise=None) -> Recording:
        """Simulate one minibatch.

        ``spikes``: [T, B, n_in] 0/1 input; ``weights``: per layer (post, pre)
        arrays (already masked; a conv layer's kernel ``(C_out, C_in, kh, kw)``, expanded
        here to one value per synapse); ``biases``: per layer arrays or None.
        ``noise``: only for a network with a stochastic readout (``Dense(stochastic=True)``):
        its uniform noise [T, B, N] in (0, 1) (or a list, one entry per trained layer, None
        for deterministic layers); neuron ``i`` spikes at step ``t`` when ``noise < sigmoid(u)``.
        """
        spikes, biases = self._check(spikes, weights, biases)
        weights = [w if m is None else np.asarray(w) * m for w, m in zip(weights, self.run_masks)]
        B = spikes.shape[1]
        noise = self._check_noise(noise, B)
        if B < self.batch_size:
            pad = np.zeros((spikes.shape[0], self.batch_size - B, spikes.shape[2]), spikes.dtype)
            spikes = np.concatenate([spikes, pad], axis=1)
            if noise is not None:
                noise = [None if n is None else
                         np.concatenate([n, np.full((n.shape[0], self.batch_size - B, n.shape[2]), 0.5)], axis=1)
                         for n in noise]
        self._noise = None if noise is None else [None if n is None else noise_table(n) for n in noise]
        if self.device == "runtime":
            rec = self._run_runtime(spikes, weights, biases)
        else:
            rec = self._run_standalone(spikes, weights, biases)
        if B < self.batch_size:
            rec.u = [u[:, :B] for u in rec.u]
            rec.s = [s[:, :B] for s in rec.s]
        return rec

    def _run_standalone(self, spikes, weights, biases):
        import brian2 as b2

        if self._server is None or not self._server.alive():
            self._ensure_built()
            if self.persistent and serving_supported(self.project_dir):
                self._server = _Server(self.project_dir, self._objects, self._exchange_bytes(), self._columns)
        objs = self._objects
        t0 = time.perf_counter()
        named = {"stim.values": pack_input(spikes)}
        for k, (w, b, layer, cn) in enumerate(zip(weights, biases, self.net.trained, self.net.connections),
                                              start=1):
            conn = self.connectivity[k - 1] if self.connectivity is not None else None
            if cn.kind == "conv":  # the kernel's entries, or one value per synapse from the kernel (tied)
                smap = (cn.kernel_map() if self.conv_layout == "kernel" else cn.synapse_map()) if conn is None else conn
                if len(smap):
                    named[f"syn{k}.w"] = smap.expand(w)
            elif conn is None or len(conn[0]):
                named[f"syn{k}.w"] = synapse_order(w, conn)
            if layer.bias:
                named[f"layer{k}.b"] = cn.expand_bias(b)
            if getattr(layer, "stochastic", False):
                named[f"readout_noise{k}.values"] = self._noise[k - 1]
        self.check_run_args(named)
        if self._server is not None:
            args = self._server.write_inputs({k: (v, self.input_dtype(k)) for k, v in named.items()})
            t1 = time.perf_counter()
            with _file_lock(self.project_dir + ".lock", shared=True):
                simulation = self._server.request(args)
            t2 = time.perf_counter()
            rec = self._server.read(self.net.steps, self.batch_size, float(self.net.dt))
        else:
            # Each simulator writes its inputs to files of its own (Brian2's run_args would put
            # them under a content hash in the shared static_arrays/ folder, where two processes
            # with the same weights would share -- and delete -- the same file).
            os.makedirs(self._inputs, exist_ok=True)
            args = []
            for name, value in named.items():
                path = os.path.join(self._inputs, name)
                np.ascontiguousarray(value, dtype=self.input_dtype(name)).tofile(path)
                args.append(f"{name}={path}")
            t1 = time.perf_counter()
            env = RUN_ENVIRONMENT if self.device == "cpp_standalone" else {}
            with _file_lock(self.project_dir + ".lock", shared=True), _run_environment(env):
                b2.device.run(directory=self.project_dir, results_directory=self._results, with_output=False,
                              run_args=args)
            t2 = time.perf_counter()
            simulation = float(getattr(b2.device, "_last_run_time", float("nan")))
            rec = self._read(objs)
        rec.timings = {"write_inputs": t1 - t0, "binary": t2 - t1, "read_results": time.perf_counter() - t2,
                       "simulation": simulation}
        return rec

    def _run_runtime(self, spikes, weights, biases):
        import brian2 as b2

        self._check_memory()
        t0 = time.perf_counter()
        if _ACTIVE["key"] is not None:
            b2.device.reinit()
            _ACTIVE.update(key=None, objects=None)
        b2.set_device("runtime")
        b2.defaultclock.dt = self.net.dt
        objs = build_objects(self.net, self.batch_size, stim_values=pack_input(spikes), weights=weights,
                             biases=biases, connectivity=self.connectivity, noise_values=self._noise,
                             weight_dtype=self.weight_dtype, conv_layout=self.conv_layout)
        t1 = time.perf_counter()
        objs.network.run(objs.duration)
        t2 = time.perf_counter()
        rec = self._read(objs)
        rec.timings = {"write_inputs": t1 - t0, "binary": t2 - t1, "read_results": time.perf_counter() - t2}
        return rec

    def _read(self, objs) -> Recording:
        return _recording([(G.name, G.N, unit, sm.variables[m].get_value(), spm.variables["i"].get_value(),
                            spm.variables["t"].get_value())
                           for sm, spm, m, unit, G in zip(objs.state_monitors, objs.spike_monitors, objs.membranes,
                                                          objs.units, objs.groups)],
                          self.net.steps, self.batch_size, float(self.net.dt), self._columns)

    def _exchange_bytes(self) -> int:
        """An upper bound of what a minibatch exchanges with a serving binary: the inputs,
        and per layer the membranes (8 bytes per neuron and step) and at most one spike per
        neuron and step (12 bytes: index and time)."""
        inputs = sum(np.dtype(self.input_dtype(name)).itemsize * int(np.prod(shape))
                     for name, shape in self.expected_sizes().items())
        steps = self.batch_size * self.net.steps
        return inputs + sum(steps * (20 * layer.size + 8) for layer in self.net.trained)

    def close(self):
        """End the binary serving this simulator's minibatches (a later :meth:`run` starts a new one)."""
        if self._server is not None:
            self._server.close()
            self._server = None

    def delete_project(self):
        """Remove this simulator's compiled project from the cache."""
        if self.project_dir and os.path.isdir(self.project_dir):
            shutil.rmtree(self.project_dir, ignore_errors=True)


def _run_declaration(objs):
    """``objs.network.run`` on a standalone device (code generation); a template of
    :mod:`sdsnn_brian.codegen` that does not apply raises its :class:`GeneratedCodeMismatch` itself,
    not wrapped in Brian2's ``BrianObjectException``."""
    from .codegen import GeneratedCodeMismatch

    try:
        objs.network.run(objs.duration)
    except Exception as exc:
        cause = exc
        while cause is not None and not isinstance(cause, GeneratedCodeMismatch):
            cause = cause.__cause__
        if cause is not None:  # its message names the object; Brian2's wrapper adds nothing
            raise cause.with_traceback(cause.__traceback__) from None
        raise


def _expected_sizes(net, batch_size, connectivity, conv_layout="synapses") -> dict:
    """The size of every array the binary of ``net`` takes, by Brian2 name (``connectivity``: per
    layer None for the full layer, or the build's synapses; ``conv_layout``: conv layers as their
    kernel entries, or one synapse per position pair and kernel entry)."""
    T, B = net.steps, batch_size
    blocks = -(-net.input.size // 32)
    sizes = {"stim.values": (B * T, blocks)}
    for k, (cn, layer) in enumerate(zip(net.connections, net.trained), start=1):
        conn = connectivity[k - 1] if connectivity is not None else None
        n_post = cn.n_post
        if cn.kind == "conv":
            if conn is None:
                n_syn = int(np.prod(cn.param_shape)) if conv_layout == "kernel" else cn.n_synapses()
            else:
                n_syn = len(conn)
        else:
            n_syn = cn.n_post * cn.n_op if conn is None else len(conn[0])
        if n_syn:
            sizes[f"syn{k}.w"] = (n_syn,)
        if layer.bias:
            sizes[f"layer{k}.b"] = (n_post,)
        if getattr(layer, "stochastic", False):
            sizes[f"readout_noise{k}.values"] = (B * T, n_post)
    return sizes


@contextlib.contextmanager
def _interrupted_compilation():
    """Ctrl-C during ``make`` as a KeyboardInterrupt, not Brian2's "Project compilation failed".

    Brian2 runs make through ``os.system``, which ignores SIGINT in this process while make runs;
    a make killed by it comes back as the wait status ``SIGINT`` (error code 2), while a make that
    failed exits with status 2 (error code 512).
    """
    try:
        yield
    except RuntimeError as exc:
        m = re.search(r"compilation failed \(error code: (\d+)\)", str(exc))
        if m and int(m.group(1)) & 0x7F == signal.SIGINT:
            raise KeyboardInterrupt("compilation interrupted") from None
        raise


def _remove_folders(*folders):
    for d in folders:
        shutil.rmtree(d, ignore_errors=True)


def _recording(layers, T, B, dt, columns=None) -> Recording:
    """A :class:`Recording` from per-layer ``(name, N, unit, membrane (B*T, N) in SI, spike i, spike t)``.

    ``columns``: per layer None, or for every neuron of the layer the built neuron whose
    recording it takes (a layer some of whose neurons were left out of the build, see
    :func:`_leave_out`)."""
    us, ss = [], []
    for k, (name, N, unit, raw, i, t) in enumerate(layers):
        raw = np.asarray(raw)
        if raw.shape != (B * T, N):
            raise RuntimeError(f"membrane recording of {name} has shape {raw.shape}, expected {(B * T, N)}")
        cols = None if columns is None else columns[k]
        view = raw.reshape(B, T, N).transpose(1, 0, 2)
        # a copy either way: raw may be a mapped file
        u = np.array(view, order="C") if cols is None else np.take(view, cols, axis=2)
        if unit != 1.0:
            u /= unit
        us.append(u)
        step = np.rint(np.asarray(t) / dt).astype(np.int64)
        i = np.asarray(i, dtype=np.int64)
        if cols is not None:  # a spike of a built neuron is one of every neuron whose recording it is
            order = np.argsort(cols, kind="stable")  # the neurons, grouped by built neuron
            counts = np.bincount(cols, minlength=N)
            first = np.cumsum(counts) - counts
            reps = counts[i]
            step = np.repeat(step, reps)
            i = order[np.repeat(first[i], reps) + _ranges(reps)]
        s = np.zeros((T, B, len(cols) if cols is not None else N), np.uint8)
        s[step % T, step // T, i] = 1
        ss.append(s)
    return Recording(us, ss)


def _ranges(lengths):
    """``[0..l0), [0..l1), ...`` concatenated."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    starts = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)


def _leave_out(net, masks, connectivity, shapes):
    """Leave the pruned neurons of hidden layers out of a C++ standalone build.

    A neuron of hidden layer ``k`` with no synapse left onto it and none from it (SD-SNN's
    neuronal pruning) receives nothing and sends nothing: without a bias it follows the
    same trajectory as every other such neuron of its layer (leak and reset from the same
    initial value), bit for bit.  So the build keeps one of them as their representative,
    and the recording of every pruned neuron is the representative's; the layer's group,
    its state updates, thresholds and recordings shrink to the neurons that remain.  Layers
    with a bias, stochastic readouts, the readout layer, conv layers and layers feeding a
    conv or pooling layer keep every neuron.

    Returns None when no layer loses at least two neurons, else per layer ``(kept,
    connectivity, build_connectivity, columns)``: the kept neurons (ascending, or None), the
    synapses in the network's numbering (the rows of the weight matrices they take), the same
    synapses in the numbering of the built groups, and for every neuron the built neuron
    whose recording it takes.
    """
    L = len(shapes)
    kept, representative = [None] * L, [None] * L
    for k in range(L - 1):
        layer, cn, nxt = net.trained[k], net.connections[k], net.connections[k + 1]
        if (masks[k] is None or masks[k + 1] is None or cn.kind == "conv" or nxt.kind == "conv"
                or nxt.pool is not None or layer.bias or getattr(layer, "stochastic", False)
                or not _same_without_input(layer.neuron)):
            continue
        incoming = (np.asarray(masks[k]) != 0).any(axis=1)
        outgoing = (np.asarray(masks[k + 1]) != 0).any(axis=0)
        pruned = np.flatnonzero(~incoming & ~outgoing)
        if len(pruned) < 2:
            continue
        keep = incoming | outgoing
        representative[k] = pruned[0]
        keep[pruned[0]] = True
        kept[k] = np.flatnonzero(keep)
    if all(kp is None for kp in kept):
        return None
    position, columns = [], []
    for k, kp in enumerate(kept):
        if kp is None:
            position.append(None)
            columns.append(None)
            continue
        pos = np.full(shapes[k][0], -1, np.int64)
        pos[kp] = np.arange(len(kp))
        cols = pos.copy()
        cols[cols < 0] = pos[representative[k]]
        position.append(pos)
        columns.append(cols)
    full, built = [], []
    for k, (conn, (n_post, n_pre)) in enumerate(zip(connectivity, shapes)):
        pre_pos = position[k - 1] if k > 0 else None
        post_pos = position[k]
        if pre_pos is None and post_pos is None:
            full.append(conn)
            built.append(conn)
            continue
        if conn is None:  # all-to-all between the whole layers
            conn = (np.repeat(np.arange(n_pre, dtype=np.int64), n_post),
                    np.tile(np.arange(n_post, dtype=np.int64), n_pre))
        pre, post = np.asarray(conn[0]), np.asarray(conn[1])
        if pre_pos is not None:  # the left-out sources' synapses go (none of them transmits)
            sel = pre_pos[pre] >= 0
            pre, post = pre[sel], post[sel]
        full.append((pre, post))
        built.append((pre if pre_pos is None else pre_pos[pre], post if post_pos is None else post_pos[post]))
    return kept, full, built, columns


def _same_without_input(model) -> bool:
    """Whether every neuron of ``model`` without input follows the same trajectory: no
    per-neuron parameter in its equations, and no neuron index or random number in its
    initial value, threshold or reset."""
    from brian2 import Equations
    from brian2.utils.stringtools import get_identifiers

    if Equations(model.equations).parameter_names:
        return False
    used = set()
    for expr in (model.init, model.threshold, model.reset):
        used |= get_identifiers(str(expr or ""))
    return not used & {"i", "rand", "randn", "lastspike", "not_refractory"}


def _scratch_dir(fallback, need_bytes) -> str:
    """A new private folder in memory (``/dev/shm``) when there is one with room for twice
    ``need_bytes`` (a container's is often only 64 MB), else under ``fallback``."""
    import tempfile

    shm = "/dev/shm"
    base = fallback
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        _sweep_scratch(shm)
        st = os.statvfs(shm)
        if st.f_bavail * st.f_frsize >= 2 * need_bytes:
            base = shm
    return tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{os.getpid()}-", dir=base)


_SCRATCH_PREFIX = "sdsnn_brian-"


def _sweep_scratch(folder):
    """Remove the scratch folders of processes that no longer exist (killed before they could
    clean up: in ``/dev/shm`` they would hold memory until the machine restarts)."""
    import re

    for name in os.listdir(folder):
        m = re.fullmatch(re.escape(_SCRATCH_PREFIX) + r"(\d+)-\w+", name)
        if m is None:
            continue
        try:
            os.kill(int(m[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
        except (PermissionError, OverflowError):
            pass  # alive (someone else's), or not a pid


class _MappedResult:
    """A results file of a serving binary, mapped into this process (header: payload bytes)."""

    def __init__(self, path):
        self.path = path
        self._mm = None

    def array(self, dtype) -> np.ndarray:
        """The payload, as a view of the mapping (valid until the next request)."""
        import mmap

        size = os.path.getsize(self.path)
        if self._mm is None or len(self._mm) != size:
            self.close()
            with open(self.path, "rb") as fh:
                self._mm = mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ)
        n = int.from_bytes(self._mm[:8], "little")
        return np.frombuffer(self._mm, dtype, count=n // np.dtype(dtype).itemsize, offset=64)

    def close(self):
        if self._mm is not None:
            self._mm.close()
            self._mm = None


class _Server:
    """One process of a C++ standalone binary answering minibatch requests (``main --serve``).

    Inputs and results travel through files in a private folder in memory (``/dev/shm``):
    each input is a file this process keeps mapped and overwrites in place; the binary reads
    it when named in a request (one line of tab-separated ``name=file`` arguments on its
    standard input), runs, copies its recordings into files it keeps mapped, and answers
    ``sdsnn_done <simulation seconds>``.  Nothing is truncated or reallocated between
    minibatches, so neither process pays page faults for it again.  What the binary prints
    to standard error is kept in ``serve_stderr.txt`` and quoted when it fails.
    """

    def __init__(self, project_dir, objs, need_bytes, columns=None):
        import brian2 as b2

        self.columns = columns
        self.dir = _scratch_dir(project_dir, need_bytes)
        self.results_dir = os.path.join(self.dir, "")
        self._inputs = {}
        # the files the monitors write, named now: reading them needs no Brian2 device state later
        self.layers = []
        for sm, spm, m, unit, G in zip(objs.state_monitors, objs.spike_monitors, objs.membranes, objs.units,
                                       objs.groups):
            files = [_MappedResult(os.path.join(self.dir, b2.device.get_array_filename(v)))
                     for v in (sm.variables[m], spm.variables["i"], spm.variables["t"])]
            self.layers.append((G.name, G.N, unit, files))
        env = dict(os.environ)
        env.update(b2.prefs["devices.cpp_standalone.run_environment_variables"])
        env.update(getattr(b2.device, "run_environment_variables", {}))
        for key, value in RUN_ENVIRONMENT.items():
            env.setdefault(key, value)
        self._stderr_path = os.path.join(self.dir, "serve_stderr.txt")
        self._stderr = open(self._stderr_path, "w")
        self._stderr_seen = 0
        self.proc = subprocess.Popen([os.path.join(project_dir, "main"), "--results_dir", self.results_dir, "--serve"],
                                     cwd=project_dir, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, bufsize=1)
        self._finalizer = weakref.finalize(self, _Server._shutdown, os.getpid(), self.proc, self._stderr,
                                           self.layers, self._inputs, self.dir)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def write_inputs(self, named) -> list:
        """Write each ``run_args`` array (``name: (values, dtype)``) into its mapped file; returns the
        request's arguments."""
        args = []
        for name, (value, dtype) in named.items():
            value = np.asarray(value)
            mm = self._inputs.get(name)
            if mm is None or mm.shape != value.shape or mm.dtype != dtype:
                mm = self._inputs[name] = np.memmap(os.path.join(self.dir, "in_" + name), dtype, "w+",
                                                    shape=value.shape)
            mm[...] = value
            args.append(f"{name}={mm.filename}")
        return args

    def _failure(self, what):
        with open(self._stderr_path) as fh:
            err = fh.read()[-2000:]
        self.close()
        return RuntimeError(f"the serving binary {what} (exit status {self.proc.returncode}); "
                            f"its standard error: {err.strip() or '(empty)'}")

    def request(self, args) -> float:
        """Run one minibatch with ``args`` (``name=path`` strings); returns the simulation's seconds."""
        try:
            self.proc.stdin.write("\t".join(args) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._failure("ended before the request") from None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise self._failure("ended during a request")
            if line.startswith(SERVE_DONE):
                break
        # Brian2's generated code reports a run_args file it could not use on standard error
        # and goes on with the old values: here that is an error
        size = os.fstat(self._stderr.fileno()).st_size
        if size > self._stderr_seen:
            with open(self._stderr_path) as fh:
                fh.seek(self._stderr_seen)
                err = fh.read()
            self._stderr_seen = size
            raise RuntimeError(f"the serving binary could not apply the request: {err.strip()[-2000:]}")
        return float(line.split()[1])

    def read(self, T, B, dt) -> Recording:
        layers = [(name, N, unit, fu.array(np.float64).reshape(-1, N), fi.array(np.int32), ft.array(np.float64))
                  for name, N, unit, (fu, fi, ft) in self.layers]
        return _recording(layers, T, B, dt, self.columns)

    def close(self):
        """End the process and remove the private folder (also when garbage-collected, or at exit)."""
        self._finalizer()

    @staticmethod
    def _shutdown(owner_pid, proc, stderr, layers, inputs, folder):
        if os.getpid() != owner_pid:
            return  # a forked child: the binary and its folder belong to the parent
        if proc.poll() is None:
            try:
                proc.stdin.close()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
        for fh in (proc.stdout, proc.stdin, stderr):
            with contextlib.suppress(OSError):
                fh.close()
        for _, _, _, files in layers:
            for f in files:
                f.close()
        inputs.clear()
        shutil.rmtree(folder, ignore_errors=True)
