"""The training loop: Brian2 forward, gradient from the recording, update, callbacks.

>>> trainer = Trainer(net, device='cpp_standalone', surrogate='rectangular',
...                   loss='rate_mse', optimizer=Adam(1e-3))
>>> history = trainer.fit(train_set, epochs=10, batch_size=100,
...                       validation=test_set, run_dir='runs/mnist_dense')

One minibatch is one ``device.run``: the encoder turns images into spikes, the
:class:`~sdsnn_brian.device.Simulator` runs them through the compiled network
with the current (masked) weights, :func:`~sdsnn_brian.gradient.backward`
computes BPTT from the recorded membrane and spikes, and the optimiser updates
the weights in place.  Between minibatches (or epochs) the callbacks run:
progress, metrics, checkpoints and the structural schedule.
:meth:`Trainer.gradients` is a step without the update: the loss and the gradients
:meth:`Trainer.train_step` would apply, computed by the same code.

Randomness is derived from ``seed`` alone: the shuffle of epoch ``e`` uses
``default_rng([seed, e])`` and the input encoding of batch ``k`` of epoch ``e``
uses ``default_rng([seed, e, k])``, so a run resumed from a checkpoint at any
batch boundary continues exactly as the uninterrupted run would.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from .builds import SimulatorPool
from .device import Simulator
from .distributed import collective_call, on_root
from .encoding import get_encoder
from .gradient import backward
from .losses import get_loss
from .optim import get_optimizer
from .rundir import (EVAL_SEED_OFFSET, OPTIMIZER_PREFIX, SCHEDULE_PREFIX, STRUCTURE_PREFIX, bias_key,
                     grad_score_key, layer_arrays, mask_key, open_run_directory, weight_key)
from .surrogate import get_surrogate

__all__ = ["Trainer", "Gradients", "as_arrays"]


class _Delegated:
    """A Trainer attribute kept in its :class:`~sdsnn_brian.builds.SimulatorPool` (``trainer.builds``);
    on the class, the pool class's value (``Trainer.COMPACT_SWITCH_EVERY``)."""

    def __init__(self, name):
        self.name = name

    def __get__(self, obj, owner=None):
        return getattr(SimulatorPool if obj is None else obj.builds, self.name)

    def __set__(self, obj, value):
        setattr(obj.builds, self.name, value)


def as_arrays(dataset, n_in=None, n_classes=None, what="dataset"):
    """(images [N, n] float, labels [N] int) from a dataset object or a pair, validated."""
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        x, y = dataset
    elif hasattr(dataset, "images") and hasattr(dataset, "labels"):
        x, y = dataset.images, dataset.labels
    else:
        raise TypeError(f"{what}: expected an (images, labels) pair or an object with .images and .labels")
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim > 2 and (n_in is None or x.ndim != 3 or x.shape[-1] != n_in):
        x = x.reshape(len(x), -1)
    if n_in is not None and x.shape[-1] != n_in:
        raise ValueError(f"{what}: samples have {x.shape[-1]} values, the network's input has {n_in}")
    if len(x) != len(y):
        raise ValueError(f"{what}: {len(x)} samples but {len(y)} labels")
    if len(x) == 0:
        raise ValueError(f"{what} is empty")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{what}: labels must be integers, got dtype {y.dtype}")
    if n_classes is not None and (y.min() < 0 or y.max() >= n_classes):
        bad = y[(y < 0) | (y >= n_classes)][0]
        raise ValueError(f"{what}: label {bad} is out of range for {n_classes} output neurons")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: the samples contain NaN or infinite values")
    return x, y


def _layer_name(net, k):
    layer = net.trained[k]
    return f"layer {k + 1} ({type(layer).__name__}, {layer.size} neurons)"


def _given_arrays(net, given, what, shapes):
    """``given`` checked against one shape (or None) per trained layer; float64 copies."""
    if isinstance(given, np.ndarray) or not isinstance(given, (list, tuple)):
        raise TypeError(f"{what} must be a list with one entry per trained layer ({len(shapes)}), "
                        f"got {type(given).__name__}")
    if len(given) != len(shapes):
        raise ValueError(f"{what}: {len(given)} entries for the network's {len(shapes)} trained layers")
    out = []
    for k, (a, shape) in enumerate(zip(given, shapes)):
        name = _layer_name(net, k)
        if shape is None:
            if a is not None:
                raise ValueError(f"{what} of {name}: the layer has no bias (bias=False), give None")
            out.append(None)
            continue
        if a is None:
            raise ValueError(f"{what} of {name}: missing, the layer needs an array of shape {shape}")
        try:
            a = np.array(a, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{what} of {name}: not an array of numbers") from None
        if a.shape != tuple(shape):
            raise ValueError(f"{what} of {name} have shape {a.shape}, the network needs {tuple(shape)}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{what} of {name} contain NaN or infinite values")
        out.append(a)
    return out


def _initial_params(net, weights0, biases0, weights, biases, masks):
    """The trainer's starting (weights, biases, masks): the seeded ones, or the given ones checked and copied."""
    shapes = [w.shape for w in weights0]
    if weights is not None:
        weights0 = _given_arrays(net, weights, "weights", shapes)
    if biases is not None:
        biases0 = _given_arrays(net, biases, "biases", [None if b is None else b.shape for b in biases0])
    if masks is None:
        return weights0, biases0, [np.ones_like(w) for w in weights0]
    masks = _given_arrays(net, masks, "masks", shapes)
    for k, (w, m) in enumerate(zip(weights0, masks)):
        if not np.all((m == 0) | (m == 1)):
            bad = m[(m != 0) & (m != 1)][0]
            raise ValueError(f"masks of {_layer_name(net, k)} must hold only 0 and 1, found {float(bad)!r}")
        w *= m  # a removed synapse has no weight (as after a structural step); w is ours
    return weights0, biases0, masks


@dataclass
class Gradients:
    """Loss and parameter gradients of one minibatch (:meth:`Trainer.gradients`).

    ``loss``: the loss value (batch mean); ``scores``: ``[B, C]``, prediction =
    ``scores.argmax(1)``; ``correct``: how many of them equal the labels; ``dW``: one array
    per trained layer, shaped as its weights; ``db``: one array per layer *that has a bias*,
    in layer order, so ``dW + db`` (:attr:`grads`) lines up with :attr:`Trainer.params`.  In
    ``'strict'`` gradient mode ``dW`` is zero wherever the mask is (removed synapses get no
    update).  ``spikes``: the input spikes ``[T, B, n_in]``; ``recording``: the
    :class:`~sdsnn_brian.device.Recording` the gradient was computed from (its ``timings``:
    the simulator's split); ``timings``: seconds spent in ``forward`` (encoding and
    simulation) and ``backward`` (loss and BPTT).

    Data-parallel (``communicator`` with several ranks): ``loss``, ``correct``, ``dW`` and
    ``db`` are the global minibatch's (summed over ranks, as one process computes them);
    ``scores``, ``spikes`` and ``recording`` are this rank's share.
    """

    loss: float
    scores: np.ndarray
    correct: int
    dW: list
    db: list
    spikes: np.ndarray | None = None
    recording: object = None
    timings: dict = field(default_factory=dict)
    #: dW before the strict-mode mask (what the removed synapses' scores accumulate)
    dW_unmasked: list | None = field(default=None, repr=False)

    @property
    def grads(self) -> list:
        """``dW + db``: the gradient of every array in :attr:`Trainer.params`, in that order."""
        return list(self.dW) + list(self.db)


class Trainer:
    """Trains a declared network on a Brian2 device with surrogate gradients.

    Parameters
    ----------
    net : Network
    device : str
        ``'cpp_standalone'`` (default), ``'cuda_standalone'`` or ``'runtime'``.
    surrogate : str, dict or Surrogate
        ``'rectangular'``, ``'sigmoid'``, ``'fast_sigmoid'``, ``'arctan'``.
    loss : str
        ``'rate_mse'``, ``'ce_count'``, ``'ce_max_membrane'``.
    optimizer : optimiser object or name
        From :mod:`sdsnn_brian.optim` (``Adam(1e-3)`` by default).
    lr_schedule : callable(optimizer) -> schedule, optional
        E.g. ``lambda opt: StepLR(opt, 40, 0.1)``; stepped once per epoch.
    detach_reset : bool
        Drop the gradient path through the reset (SpikingJelly's ``detach_reset``).
    seed : int
        Seeds the initial weights, the shuffles and the input encoding.
    structure : StructureSchedule, optional
        Structural development (SD-SNN) applied every ``structure_every`` batches
        (``None``: once per epoch) and at the end of the run's epochs.
    gradient_mode : str
        ``'reference'`` (weights train densely between structural steps, the mask
        is applied at each step) or ``'strict'`` (removed synapses get no update).
    callbacks : list
        Objects with any of ``on_fit_start``, ``on_batch_end``, ``on_epoch_end``,
        ``on_fit_end`` (see :mod:`sdsnn_brian.callbacks`).
    backward_dtype : str or numpy dtype
        Precision of the numpy backward pass, ``'float64'`` (default) or
        ``'float32'`` (about half the time and memory on conv networks; gradients
        agree with float64 to about 1e-6 relative).  Parameters and the optimiser
        stay float64.
    communicator : Communicator, optional
        :mod:`sdsnn_brian.distributed`; with more than one rank the training is
        data-parallel: every rank encodes the whole global minibatch exactly as one
        process would, simulates its contiguous share, computes its gradient with the
        loss scaled by ``local_B / global_B`` (so the sum over ranks is the
        one-process gradient) and Allreduce-sums it; every rank applies the same
        update.  Structural steps and the state at the start of ``fit`` (a resumed
        checkpoint included) are broadcast from rank 0, evaluation is split across
        ranks, and only rank 0 writes the run directory and prints.
    compact : bool
        Simulate a pruned structure without its removed synapses (default): evaluation,
        and training in ``'strict'`` mode (where removed synapses transmit nothing), run on a
        build holding only what is left once at most 80 % of the synapses are present, so a
        minibatch costs less as SD-SNN prunes (see :meth:`simulator`; the build changes at most
        once every ``COMPACT_SWITCH_EVERY`` = 500 such minibatches, so short runs do not pay
        code generation and compilations they cannot repay).  The results are the same; ``False``
        always runs the full build.
    weight_dtype : str
        How the compiled network stores its synaptic weights, ``'float64'`` (default) or
        ``'float32'`` (less memory traffic per synaptic event; the simulation then equals a
        float64 one with the weights rounded to float32, see :class:`~sdsnn_brian.device.Simulator`).
        The trained parameters stay float64.
    allow_short_structure : bool
        :meth:`fit` refuses (:class:`~sdsnn_brian.structure.timeline.ShortTimelineError`) an
        SD-SNN run that takes fewer structural steps than its timeline needs to prune at all
        (:func:`~sdsnn_brian.structure.timeline.check_timeline`); ``True`` lets it run anyway.
    weights, biases, masks : lists, optional
        Initial parameters instead of the seeded initialisation (``net.init_params``), one
        entry per trained layer in order, shaped as ``net.weight_shapes`` (a Dense layer
        ``(post, pre)``, a Conv2d ``(C_out, C_in, kh, kw)``); ``biases`` has ``None`` for a
        layer without a bias and an array of the layer's bias shape for one with a bias;
        ``masks`` holds 0/1 (1: the synapse is present).  The arrays are copied (as float64)
        and checked: a wrong count, shape, a NaN or infinite value or a mask value other
        than 0/1 raises ``ValueError`` naming the layer.  Where a mask is 0 the weight is
        set to 0, as after a structural step (a removed synapse has no weight).  A
        checkpoint loaded later (``resume``) replaces them.
    """

    def __init__(self, net, device="cpp_standalone", surrogate="rectangular", loss="rate_mse",
                 optimizer=None, lr_schedule=None, detach_reset=False, seed=0, threads=0,
                 structure=None, structure_every=None, gradient_mode="reference", callbacks=(),
                 cache_dir=None, cuda_options=None, communicator=None, backward_dtype="float64",
                 compact=True, weight_dtype="float64", allow_short_structure=False, weights=None, biases=None,
                 masks=None):
        from .distributed import SingleProcess
        from .optim import Adam

        self.comm = SingleProcess() if communicator is None else communicator
        self.rank = self.comm.rank
        self.net = net
        self.device = device
        self.surrogate = get_surrogate(surrogate)
        self.loss = get_loss(loss)
        self.optimizer = Adam(1e-3) if optimizer is None else get_optimizer(optimizer)
        self.lr_schedule = lr_schedule(self.optimizer) if callable(lr_schedule) else lr_schedule
        self.detach_reset = bool(detach_reset)
        if gradient_mode not in ("reference", "strict"):
            raise ValueError(f"unknown gradient_mode {gradient_mode!r}; use 'reference' or 'strict'")
        self.gradient_mode = gradient_mode
        try:
            self.backward_dtype = np.dtype(backward_dtype)
        except TypeError:
            self.backward_dtype = None
        if self.backward_dtype is None or self.backward_dtype.name not in ("float32", "float64"):
            raise ValueError(f"backward_dtype must be 'float32' or 'float64', got {backward_dtype!r}")
        self.seed = int(seed)
        self.threads = threads
        self.cache_dir = cache_dir
        self.cuda_options = cuda_options
        self.encoder = get_encoder(net.input.encoding)
        self.dynamics = net.dynamics()
        self.structure = structure
        self.structure_every = structure_every
        self.allow_short_structure = bool(allow_short_structure)
        self.structure_steps_planned = None
        self.callbacks = list(callbacks)
        # what fit was given (None until the first fit): config.json records them
        self.epochs = self.batch_size = self.n_train = None
        self.validation = None
        self.weights, self.biases, self.masks = _initial_params(
            net, *net.init_params(np.random.default_rng([self.seed, 2**31])), weights, biases, masks)
        self.grad_score = [np.zeros_like(w) for w in self.weights]
        self.epoch = 0  # epochs completed
        self.batch = 0  # batches completed within the current epoch
        self.history = []
        self.run_dir = None
        if weight_dtype not in ("float64", "float32"):
            raise ValueError(f"weight_dtype must be 'float64' or 'float32', got {weight_dtype!r}")
        self.weight_dtype = weight_dtype
        #: the full and compacted builds and the policy choosing between them (:mod:`sdsnn_brian.builds`)
        self.builds = SimulatorPool(self._new_simulator, compact=compact, root=self.comm.is_root)
        self._mask_changes = 0  # structural steps and loads since construction
        self._epoch_acc = None
        self._step_index = None  # the run's minibatch being trained (epoch * batches + batch), in fit
        self._owned_run_dir = None  # the run directory this trainer wrote (it may go on training there)

    #: Parameter-sized float64 arrays a training run holds at once (weights, masks, gradient
    #: scores, gradients, the weights the simulation runs with, two optimiser moments, one
    #: temporary): what ``sdsnn train`` adds to the simulator's memory estimate.
    TRAINING_ARRAYS = 8

    # -- parameters ---------------------------------------------------------
    @property
    def params(self):
        """Trained arrays in optimiser order (weights, then present biases)."""
        return list(self.weights) + [b for b in self.biases if b is not None]

    def effective_weights(self):
        """Weights as the simulation sees them: removed synapses are zero."""
        return [w * m for w, m in zip(self.weights, self.masks)]

    def simulator(self, batch_size, masked=False):
        """The simulator for minibatches of ``batch_size``, built (:meth:`SimulatorPool.simulator
        <sdsnn_brian.builds.SimulatorPool.simulator>`).

        ``masked``: the weights it will run with are zero wherever a synapse was removed
        (:meth:`effective_weights`); then, with ``compact=True``, a build holding only the
        present synapses may run it (the policy and its ``COMPACT_*`` constants are in
        :mod:`sdsnn_brian.builds`).
        """
        return self.builds.simulator(batch_size, self.masks if masked else None, self._mask_changes)

    def _new_simulator(self, batch_size, masks=None):
        return Simulator(self.net, batch_size, self.device, threads=self.threads, cache_dir=self.cache_dir,
                         cuda_options=self.cuda_options, masks=masks, weight_dtype=self.weight_dtype)

    # the build state lives in self.builds; these names stay (tests, benchmarks, callbacks use them)
    _sim = _Delegated("full")
    _compact_sim = _Delegated("compacted")
    compact = _Delegated("compact")
    #: seconds spent generating and compiling builds (kept out of the training and evaluation times)
    build_seconds = _Delegated("build_seconds")
    #: say "compiling the network (about N s ...)" before a compilation (rank 0)
    announce_builds = _Delegated("announce")
    COMPACT_REBUILD = _Delegated("COMPACT_REBUILD")
    COMPACT_ABOVE = _Delegated("COMPACT_ABOVE")
    COMPACT_SWITCH_EVERY = _Delegated("COMPACT_SWITCH_EVERY")

    # -- one minibatch --------------------------------------------------------
    def encode(self, images, rng):
        return self.encoder(images, self.net.steps, rng)

    def training_weights(self):
        """Weights the training forward pass uses.

        ``'reference'`` mode: the raw weights (removed synapses were zeroed at the last
        structural step and train densely until the next one, as in the published code);
        ``'strict'``: the masked weights.
        """
        return list(self.weights) if self.gradient_mode == "reference" else self.effective_weights()

    def forward(self, images, rng, batch_size=None, weights=None):
        """Encode and simulate one minibatch; returns (input spikes, Recording).

        ``weights`` defaults to the masked weights (what evaluation measures).
        """
        return self._forward(images, rng, batch_size, weights, masked=weights is None)

    def _forward(self, images, rng, batch_size, weights, masked):
        sim = self.simulator(batch_size or len(images), masked=masked)
        x = self.encode(images, rng)
        rec = sim.run(x, self.effective_weights() if weights is None else weights, self.biases)
        return x, rec

    def gradients(self, images, labels, rng=None, batch_size=None) -> Gradients:
        """Loss and gradients of one minibatch, without an update: what :meth:`train_step` applies.

        The same computation as a training step, bit for bit: the minibatch is encoded with
        ``rng`` and simulated with the training weights of the gradient mode
        (:meth:`training_weights`: ``'reference'`` the raw weights, ``'strict'`` the masked
        ones), the loss is taken on the output layer and BPTT
        (:func:`~sdsnn_brian.gradient.backward`) gives the gradients; in ``'strict'`` mode the
        weight gradients of removed synapses are zeroed.  Returns :class:`Gradients` (loss,
        scores, ``dW``, ``db``, the input spikes and the recording).

        Nothing the training state holds changes: the parameters, masks, optimiser state,
        counters and the removed synapses' gradient scores (``grad_score``, which a strict
        :meth:`train_step` accumulates) are left as they were; only the simulator may be
        built (compiled once) or reused.  Non-finite gradients are returned, not raised
        (:meth:`train_step` raises ``FloatingPointError`` before updating).

        ``images``: ``[B, n_in]`` (or ``[B, ...]`` flattened, or event frames ``[B, T, n_in]``);
        ``labels``: ``[B]`` integer classes.  ``rng``: a ``numpy.random.Generator`` or an
        integer seed for the input encoding; ``None`` uses ``default_rng([seed, epoch,
        batch])``, the encoding :meth:`fit` draws for the minibatch at the trainer's current
        position.  ``batch_size``: the simulator's batch size (default ``B``).
        """
        images, labels = as_arrays((images, labels), self.net.input.size, self.net.n_classes, "minibatch")
        return self._gradients(images, labels, self._step_rng(rng), batch_size)

    def _step_rng(self, rng):
        if rng is None:
            return np.random.default_rng([self.seed, self.epoch, self.batch])
        if isinstance(rng, np.random.Generator):
            return rng
        if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
            return np.random.default_rng(int(rng))
        raise TypeError(f"rng must be None, an integer seed or a numpy Generator, got {type(rng).__name__}")

    def _gradients(self, images, labels, rng, batch_size=None) -> Gradients:
        """:meth:`gradients` without checking its arguments (the training step's gradient).

        One path for one process and for ``K`` ranks (one process is rank 0 of 1: its share
        is the whole minibatch, the Allreduce the identity).  The whole global minibatch is
        encoded with ``rng`` (the spikes one process would draw), then this rank's contiguous
        share is simulated; the loss gradient is scaled by ``local_B / global_B`` so that the
        Allreduce sum over ranks is the one-process gradient.  With several ranks an
        exception on a rank is turned into a :class:`RankFailedError` on every rank after the
        Allreduce (before any rank could update its weights); one process raises it as is.
        """
        from .distributed import injected_failure, local_part, reduce_or_fail

        comm = self.comm
        t0 = time.perf_counter()
        B = len(labels)
        lo, hi = comm.share(B)
        weights = self.training_weights()
        has_bias = [b is not None for b in self.biases]

        def zeros():
            return [np.zeros_like(w) for w in self.weights], [np.zeros_like(b) for b in self.biases if b is not None]

        def local():
            injected_failure(comm.rank, self._step_index)
            x = self.encode(images, rng)[:, lo:hi]
            if hi == lo:
                return (x, None, np.zeros((0, self.net.n_classes)), *zeros(), 0.0, 0.0, t0, time.perf_counter())
            rec = self.simulator(comm.local_size(batch_size or B),
                                 masked=self.gradient_mode == "strict").run(x, weights, self.biases)
            t1 = time.perf_counter()
            res = self.loss(rec.u[-1], rec.s[-1], labels[lo:hi])
            scale = (hi - lo) / B
            grads = backward(self.dynamics, x, rec.u, rec.s, weights,
                             None if res.grad_s is None else res.grad_s * scale,
                             None if res.grad_u is None else res.grad_u * scale,
                             self.surrogate, detach_reset=self.detach_reset, dtype=self.backward_dtype,
                             need_bias=any(has_bias))
            dW = [g[0] for g in grads]
            db = [g[1] for g, b in zip(grads, has_bias) if b]
            correct = float(np.sum(np.argmax(res.scores, axis=1) == labels[lo:hi]))
            return x, rec, res.scores, dW, db, res.value * scale, correct, t1, time.perf_counter()

        out, error = local_part(comm, local)
        if error is not None:  # reported to every rank by reduce_or_fail
            out = (None, None, np.zeros((0, self.net.n_classes)), *zeros(), 0.0, 0.0, t0, t0)
        x, rec, scores, dW, db, loss, correct, t1, t2 = out
        local_grads = dW + db
        summed = reduce_or_fail(comm, local_grads + [np.array([loss, correct])], error)
        t3 = time.perf_counter()
        grads = [g.astype(a.dtype, copy=False) for g, a in zip(summed[:len(local_grads)], local_grads)]
        loss, correct = summed[-1]
        g = self._masked(Gradients(float(loss), scores, int(round(correct)), grads[:len(dW)], grads[len(dW):],
                                   x, rec))
        g.timings = {"forward": t1 - t0, "backward": t2 - t1}
        if comm.size > 1:
            g.timings["allreduce"] = t3 - t2
        return g

    def _masked(self, g):
        """Strict mode: the weight gradients of removed synapses zeroed (the unmasked ones kept)."""
        g.dW_unmasked = g.dW
        if self.gradient_mode == "strict":
            g.dW = [d * m for d, m in zip(g.dW, self.masks)]
        return g

    def train_step(self, images, labels, rng=None, batch_size=None):
        """Forward, loss, BPTT and update on one minibatch. Returns a dict of measurements.

        The gradient is :meth:`gradients`'s (``rng`` as there); the step then accumulates the
        removed synapses' scores (strict mode), stops on a non-finite gradient and lets the
        optimiser update the parameters in place.
        """
        g = self._gradients(images, labels, self._step_rng(rng), batch_size)
        t1 = time.perf_counter()
        self._check_gradient(g)
        t2 = time.perf_counter()
        self._update(g.dW, g.db)
        t3 = time.perf_counter()
        sim = {} if g.recording is None else g.recording.timings  # a rank without a share simulated nothing
        return {"loss": g.loss, "correct": g.correct, "n": len(labels), "t_forward": g.timings["forward"],
                "t_backward": g.timings["backward"] + (t2 - t1),
                **({"t_allreduce": g.timings["allreduce"]} if "allreduce" in g.timings else {}),
                "t_update": t3 - t2, **{f"t_{k}": v for k, v in sim.items()}}

    def _check_gradient(self, g):
        """Strict mode: score the removed synapses; stop on a non-finite gradient."""
        if self.gradient_mode == "strict":
            for k, m in enumerate(self.masks):
                # virtual displacement of each removed synapse, -lr * sum dL/dw (weight units)
                self.grad_score[k] -= self.optimizer.lr * g.dW_unmasked[k] * (1 - m)
        for a in g.dW + g.db:
            if not np.all(np.isfinite(a)):
                raise FloatingPointError("the gradient contains NaN or infinite values; stopping before the update")

    def _update(self, dW, db):
        self.optimizer.step(self.params, dW + db)
        for k, w in enumerate(self.params):
            if not np.all(np.isfinite(w)):
                raise FloatingPointError(f"parameter {k} became NaN or infinite after the update")

    # -- data parallelism (the protocol: sdsnn_brian.distributed) -------------------
    def sync_state(self):
        """Make every rank hold rank 0's complete state (parameters, optimiser, schedule, counters)."""
        if self.comm.size == 1:
            return
        state = self.comm.bcast(self.state_dict() if self.comm.is_root else None)
        if not self.comm.is_root:
            self.load_state_dict(*state)

    def _sync_structure(self):
        """After a structural step: rank 0's weights, masks, biases, scores and schedule state everywhere.

        Every rank ran the same step on the same state, so this changes nothing unless
        they had drifted apart; the schedule's event log (written by rank 0 only) is
        not sent.
        """
        comm = self.comm
        payload = None
        if comm.is_root:
            payload = {"weights": self.weights, "masks": self.masks, "biases": self.biases,
                       "grad_score": self.grad_score,
                       "structure": {k: v for k, v in self.structure.state_dict().items() if not k.startswith("log.")}}
        payload = comm.bcast(payload)
        if comm.is_root:
            return
        for name in ("weights", "masks", "biases", "grad_score"):
            for mine, theirs in zip(getattr(self, name), payload[name]):
                if mine is not None:
                    np.copyto(mine, theirs)
        log = self.structure.log
        self.structure.load_state_dict({**payload["structure"], **log.to_dict("log.")})
        self.structure.log = log

    # -- evaluation -------------------------------------------------------------
    def evaluate(self, dataset, batch_size=100, seed_offset=EVAL_SEED_OFFSET):
        """Loss, accuracy and synaptic operations per sample on ``dataset``.

        The input encoding of batch ``k`` uses ``default_rng([seed, seed_offset, k])``:
        the same spikes at every evaluation.
        """
        x_all, y_all = as_arrays(dataset, self.net.input.size, self.net.n_classes, "validation set")
        from .distributed import local_part, reduce_or_fail

        # every batch is encoded as one process would, then split across the ranks (one
        # process: its share is the whole batch, the Allreduce the identity)
        comm = self.comm
        sums = np.zeros(3)  # loss * n, correct, SOPs
        present = self._fanout()

        def local():
            for k, start in enumerate(range(0, len(x_all), batch_size)):
                xb, yb = x_all[start:start + batch_size], y_all[start:start + batch_size]
                x = self.encode(xb, np.random.default_rng([self.seed, seed_offset, k]))
                lo, hi = comm.share(len(yb))
                if hi == lo:
                    continue
                x = x[:, lo:hi]
                rec = self.simulator(comm.local_size(batch_size), masked=True).run(
                    x, self.effective_weights(), self.biases)
                res = self.loss(rec.u[-1], rec.s[-1], yb[lo:hi])
                sums[0] += res.value * (hi - lo)
                sums[1] += np.sum(np.argmax(res.scores, axis=1) == yb[lo:hi])
                pre = [x] + rec.s[:-1]
                sums[2] += sum(float(np.sum(p.sum(axis=(0, 1)) * f)) for p, f in zip(pre, present))

        _, error = local_part(comm, local)
        total, = reduce_or_fail(comm, [sums], error, " during evaluation")
        n = len(y_all)
        return {"loss": total[0] / n, "accuracy": total[1] / n, "sops_per_sample": total[2] / n}

    def _fanout(self):
        """Present fan-out of each presynaptic neuron per layer (conv and pooled layers: from their synapse maps)."""
        return [m.sum(axis=0) if cn.plain else cn.fanout(m) for m, cn in zip(self.masks, self.net.connections)]

    def predict(self, images, batch_size=100, seed_offset=EVAL_SEED_OFFSET):
        """Predicted classes (argmax of the loss's scores) with the evaluation encoding."""
        images = np.asarray(images)
        n_in = self.net.input.size
        if images.ndim > 2 and not (images.ndim == 3 and images.shape[-1] == n_in):  # keep [N, T, n] frames
            images = images.reshape(len(images), -1)
        out = []
        for k, start in enumerate(range(0, len(images), batch_size)):
            xb = images[start:start + batch_size]
            _, rec = self.forward(xb, np.random.default_rng([self.seed, seed_offset, k]), batch_size)
            res = self.loss(rec.u[-1], rec.s[-1], np.zeros(len(xb), dtype=np.int64))
            out.append(np.argmax(res.scores, axis=1))
        return np.concatenate(out)

    # -- structure ----------------------------------------------------------------
    def structure_step(self):
        """One structural step (spines, regeneration, pruning) on the current parameters."""
        if self.structure is None:
            return None
        score = self.grad_score if self.gradient_mode == "strict" else None
        stats = self.structure.step(self.weights, self.masks, biases=self.biases, grad_score=score)
        if self.gradient_mode == "strict":
            for g, m in zip(self.grad_score, self.masks):
                g *= 0
        for w, m in zip(self.weights, self.masks):
            w *= m
        self._mask_changes += 1
        if self.comm.size > 1:
            self._sync_structure()
        self._call("on_structure_step", stats)
        return stats

    # -- the loop ---------------------------------------------------------------------
    def fit(self, train_set, epochs, batch_size=100, validation=None, run_dir=None, resume=False,
            log_every=10, eval_every=1, overwrite=False):
        """Train for ``epochs`` epochs (counted from the start of the run).

        ``run_dir`` receives ``config.json``, ``metrics.jsonl``, checkpoints and
        ``summary.json`` (through the default callbacks).  With ``resume=True`` the
        newest valid checkpoint in ``run_dir`` is loaded first.  ``validation`` is
        evaluated after every ``eval_every``-th epoch and after the last one.

        A ``run_dir`` that already holds a run is refused unless ``resume`` or ``overwrite``
        (which removes the earlier run's files), and it is locked while training: a second
        process on the same directory fails at once naming this one (:mod:`sdsnn_brian.rundir`).
        """
        x_all, y_all = as_arrays(train_set, self.net.input.size, self.net.n_classes, "training set")
        if not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
        if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.n_train = len(y_all)
        self.epochs = int(epochs)
        if validation is not None:  # bad validation data fails now, not after the first epoch
            as_arrays(validation, self.net.input.size, self.net.n_classes, "validation set")
        self._check_structure_timeline()
        lock = None
        if run_dir is not None:
            self.run_dir = run_dir
            # only rank 0 writes the run directory; it holds its lock until fit ends
            # a trainer continuing in the directory it wrote itself goes on (like a resume)
            own = self._owned_run_dir is not None and os.path.abspath(run_dir) == self._owned_run_dir
            lock = on_root(self.comm, lambda: open_run_directory(run_dir, resume=resume or own, overwrite=overwrite))
            self._owned_run_dir = os.path.abspath(run_dir)
        try:
            return self._fit(x_all, y_all, epochs, batch_size, validation, run_dir, resume, log_every,
                             eval_every)
        finally:
            if lock is not None:
                lock.release()

    def _fit(self, x_all, y_all, epochs, batch_size, validation, run_dir, resume, log_every, eval_every):
        from . import callbacks as cb
        from .distributed import RankFailedError

        if run_dir is not None:
            if not any(isinstance(c, cb.RunDirectory) for c in self.callbacks):
                self.callbacks.insert(0, cb.RunDirectory(run_dir))
            if resume:
                on_root(self.comm, cb.restore_latest, self, run_dir)
        self.sync_state()  # ranks start from rank 0's state (a resumed checkpoint included)
        if not any(isinstance(c, cb.ProgressLogger) for c in self.callbacks) and log_every:
            self.callbacks.append(cb.ProgressLogger(every=log_every))
        self.validation = validation
        self._call("on_fit_start")
        n_batches = -(-len(y_all) // batch_size)
        while self.epoch < epochs:
            e = self.epoch
            order = np.random.default_rng([self.seed, e]).permutation(len(y_all))
            if self.batch == 0 or self._epoch_acc is None:
                self._epoch_acc = {"loss": 0.0, "correct": 0, "n": 0, "times": {}, "t0": time.perf_counter(),
                                   "build0": self.build_seconds}
            acc = self._epoch_acc
            acc.setdefault("build0", self.build_seconds)
            while self.batch < n_batches:
                k = self.batch
                idx = order[k * batch_size:(k + 1) * batch_size]
                self._step_index = e * n_batches + k
                try:
                    m = self.train_step(x_all[idx], y_all[idx], np.random.default_rng([self.seed, e, k]), batch_size)
                except FloatingPointError as exc:
                    raise FloatingPointError(_nan_message(exc, e, k, self.run_dir)) from None
                except RankFailedError as exc:
                    raise RankFailedError(_rank_failure_message(exc, e, k, self.run_dir)) from None
                acc["loss"] += m["loss"] * m["n"]
                acc["correct"] += m["correct"]
                acc["n"] += m["n"]
                for key, v in m.items():
                    if key.startswith("t_"):
                        acc["times"][key] = acc["times"].get(key, 0.0) + v
                self.batch += 1
                if self.structure is not None and self.structure_every and self.batch % self.structure_every == 0:
                    self.structure_step()
                self._call("on_batch_end", k, n_batches, m)
            built = self.build_seconds - acc["build0"]  # compilation is not training time
            seconds = max(time.perf_counter() - acc["t0"] - built, 1e-9)
            if self.structure is not None and not self.structure_every:
                self.structure_step()
            record = {"epoch": e + 1, "train_loss": acc["loss"] / acc["n"], "train_accuracy": acc["correct"] / acc["n"],
                      "lr": float(self.optimizer.lr), "train_seconds": seconds,
                      "train_samples_per_s": acc["n"] / seconds,
                      "time_per_batch": {k[2:]: v / n_batches for k, v in acc["times"].items()}}
            if built:
                record["build_seconds"] = built
            if self.lr_schedule is not None:
                self.lr_schedule.step()
            if validation is not None and ((e + 1) % max(1, eval_every) == 0 or e + 1 == epochs):
                t0, b0 = time.perf_counter(), self.build_seconds
                ev = self.evaluate(validation, batch_size)
                val_build = self.build_seconds - b0
                record.update({"val_loss": ev["loss"], "val_accuracy": ev["accuracy"],
                               "sops_per_sample": ev["sops_per_sample"],
                               "val_seconds": time.perf_counter() - t0 - val_build})
                if val_build:
                    record["build_seconds"] = record.get("build_seconds", 0.0) + val_build
            record.update(self.structure_summary())
            self.epoch += 1
            self.batch = 0
            self._epoch_acc = None
            self.history.append(record)
            self._call("on_epoch_end", record)
        self._call("on_fit_end")
        return self.history

    def _check_structure_timeline(self):
        """Refuse an SD-SNN run too short for its structural timeline (see ``allow_short_structure``)."""
        from .structure.timeline import check_timeline, structural_steps

        config = getattr(self.structure, "config", None)
        if config is None or not hasattr(config, "structure_after"):
            return
        self.structure_steps_planned = structural_steps(self.n_train, self.batch_size, self.epochs,
                                                        self.structure_every)
        check_timeline(config, self.structure_steps_planned, allow_short=self.allow_short_structure)

    def structure_summary(self):
        """Present-synapse fractions per layer and neurons pruned (1.0 and 0 for a dense run)."""
        total = sum(m.size for m in self.masks)
        out = {"synapses_present": [float(m.mean()) for m in self.masks],
               "compression": float(1 - sum(m.sum() for m in self.masks) / total)}
        if self.structure is not None:
            rep = self.structure.removed_fractions(self.masks)
            out["compression_with_dead_sources"] = _jsonable_report(rep)
            out["neurons_pruned"] = {k: int(v) for k, v in self.structure.neurons_pruned().items()}
            out["structural_steps"] = int(getattr(self.structure, "t", 0))
        return out

    def config(self) -> dict:
        """The resolved configuration (JSON-able), written into the run directory."""
        cfg = {"network": self.net.describe(), "device": self.device, "surrogate": self.surrogate.config(),
               "loss": self.loss.name, "optimizer": _describe(self.optimizer),
               "lr_schedule": _describe(self.lr_schedule), "detach_reset": self.detach_reset,
               "seed": self.seed, "threads": self.threads, "gradient_mode": self.gradient_mode,
               "backward_dtype": self.backward_dtype.name, "weight_dtype": self.weight_dtype,
               "compact": self.compact, "structure_every": self.structure_every,
               "structure": _describe(self.structure)}
        if self.structure_steps_planned is not None:
            cfg["structural_steps_planned"] = self.structure_steps_planned
            cfg["allow_short_structure"] = self.allow_short_structure
        if self.epochs is not None:  # set by fit
            cfg.update(epochs=self.epochs, batch_size=self.batch_size, n_train=self.n_train)
        if self.comm.size > 1:
            cfg["ranks"] = self.comm.size
        return cfg

    def _call(self, hook, *args):
        def call():
            for c in self.callbacks:
                fn = getattr(c, hook, None)
                if fn is not None:
                    fn(self, *args)

        collective_call(self.comm, call)  # one process: just call()

    # -- state ------------------------------------------------------------------------------
    def state_dict(self):
        """Everything needed to continue exactly: arrays and a JSON-able meta dict."""
        arrays = {}
        for k, (w, m) in enumerate(zip(self.weights, self.masks)):
            arrays[weight_key(k)] = w
            arrays[mask_key(k)] = m
            arrays[grad_score_key(k)] = self.grad_score[k]
            if self.biases[k] is not None:
                arrays[bias_key(k)] = self.biases[k]
        for key, v in self.optimizer.state_dict().items():
            arrays[OPTIMIZER_PREFIX + key] = np.asarray(v)
        if self.lr_schedule is not None:
            for key, v in self.lr_schedule.state_dict().items():
                arrays[SCHEDULE_PREFIX + key] = np.asarray(v)
        if self.structure is not None:
            for key, v in self.structure.state_dict().items():
                arrays[STRUCTURE_PREFIX + key] = np.asarray(v)
        acc = None
        if self._epoch_acc is not None:
            acc = {k: v for k, v in self._epoch_acc.items() if k not in ("t0", "build0")}
        meta = {"epoch": self.epoch, "batch": self.batch, "seed": self.seed, "history": self.history,
                "epoch_acc": acc, "structure_key": self.net.structure_key()}
        return arrays, meta

    def load_state_dict(self, arrays, meta):
        if meta.get("structure_key") not in (None, self.net.structure_key()):
            raise ValueError("the checkpoint belongs to a different network structure")
        weights, masks, biases = layer_arrays(arrays, len(self.weights), copy=True,
                                              bias=[b is not None for b in self.biases])
        for k in range(len(self.weights)):
            self.weights[k] = weights[k]
            self.masks[k] = masks[k]
            self._mask_changes += 1
            self.grad_score[k] = np.array(arrays.get(grad_score_key(k), np.zeros_like(self.weights[k])), dtype=float)
            if biases[k] is not None:
                self.biases[k] = biases[k]
        self.optimizer.load_state_dict(_prefixed(arrays, OPTIMIZER_PREFIX))
        if self.lr_schedule is not None:
            self.lr_schedule.load_state_dict(_prefixed(arrays, SCHEDULE_PREFIX))
        if self.structure is not None:
            self.structure.load_state_dict(_prefixed(arrays, STRUCTURE_PREFIX))
        self.epoch = int(meta["epoch"])
        self.batch = int(meta["batch"])
        self.history = list(meta.get("history", []))
        acc = meta.get("epoch_acc")
        self._epoch_acc = None if acc is None else {**acc, "t0": time.perf_counter()}


def _nan_message(exc, epoch, batch, run_dir):
    from .checkpoint import latest_checkpoint

    last = latest_checkpoint(run_dir) if run_dir else None
    where = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
    return f"stopped at epoch {epoch + 1}, batch {batch + 1}: {exc}; {where} (resume from it with a smaller learning rate)"


def _rank_failure_message(exc, epoch, batch, run_dir):
    from .checkpoint import latest_checkpoint

    last = latest_checkpoint(run_dir) if run_dir else None
    where = f"the last checkpoint is {last} (resume from it with --resume)" if last else "no checkpoint was written yet"
    return f"stopped at epoch {epoch + 1}, batch {batch + 1}: {exc}; {where}"


def _jsonable_report(rep):
    if isinstance(rep, dict):
        return {str(k): _jsonable_report(v) for k, v in rep.items()}
    if isinstance(rep, (np.generic,)):
        return rep.item()
    return rep


def _describe(obj):
    if obj is None:
        return None
    cfg = getattr(obj, "config", None)
    if callable(cfg):
        return cfg()
    if hasattr(cfg, "to_dict"):  # a structure schedule: its constants and layers
        return {"config": cfg.to_dict(), "layers": [s.to_dict() for s in getattr(obj, "layers", [])]}
    return repr(obj)


def _prefixed(arrays, prefix):
    return {k[len(prefix):]: (v.item() if np.ndim(v) == 0 else v) for k, v in arrays.items() if k.startswith(prefix)}
