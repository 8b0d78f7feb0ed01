"""Which compiled build runs a minibatch, and what building it costs.

:class:`SimulatorPool` holds the trainer's simulators: the full build (every synapse of
the declared network) and, with ``compact=True``, a compacted one generated for the
current masks (``Simulator(masks=...)``: rows onto the living neurons, or the present
synapses alone).  It decides when the compacted build is worth its code generation and
compilation (the ``COMPACT_*`` constants), builds a simulator before its first minibatch
so the time goes to :attr:`~SimulatorPool.build_seconds` rather than to training or
evaluation, and announces a compilation with the time the earlier ones took (kept in
the cache directory's ``build_seconds.json``).

The :class:`~sdsnn_brian.trainer.Trainer` owns one (``trainer.builds``);
:meth:`Trainer.simulator <sdsnn_brian.trainer.Trainer.simulator>` delegates to it.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

__all__ = ["SimulatorPool"]

_BUILD_TIMES = "build_seconds.json"


class SimulatorPool:
    """The full and the compacted build of one trainer, and the policy choosing between them.

    ``new_simulator(batch_size, masks=None)`` makes an (unbuilt) simulator: the full build
    without ``masks``, the build for ``masks`` with them.  ``compact``: use compacted
    builds at all.  ``announce``: print a line before and after a compilation; ``root``:
    this process may print (rank 0 of a data-parallel job).
    """

    #: A compacted build keeps serving while the build for the current masks would hold at
    #: least this fraction of its synapses.
    COMPACT_REBUILD = 0.7
    #: No compacted build while it would hold more than this fraction of the full build's synapses.
    COMPACT_ABOVE = 0.8
    #: Minibatches run on the masked path before the first compacted build and between two
    #: changes of it: a change generates the project's code (about 2 s for 784-400-10 here) and
    #: compiles it unless it is in the cache (about 7 s), against up to 20 ms saved per minibatch.
    COMPACT_SWITCH_EVERY = 500

    def __init__(self, new_simulator, compact=True, announce=True, root=True):
        self.new_simulator = new_simulator
        self.compact = bool(compact)
        #: say "compiling the network (about N s ...)" before a compilation
        self.announce = announce
        self.root = root
        self.full = None  # the full build (for the batch size last asked for)
        self.compacted = None  # the compacted build last chosen, if any
        #: seconds spent generating and compiling builds (kept out of the training and evaluation times)
        self.build_seconds = 0.0
        self._seen = self._choice = None
        self._recheck = float("inf")  # masked minibatch at which a postponed decision is due
        self._masked_runs = self._switched_at = 0  # minibatches on the masked path; the last new build

    def simulator(self, batch_size, masks=None, mask_changes=0):
        """The simulator for minibatches of ``batch_size``, built.

        ``masks``: given, the weights it will run with are zero wherever a mask is (the
        *masked* path) and ``mask_changes`` counts the structural changes so far.  Then, with
        ``compact``, once the build for the current masks holds at most ``COMPACT_ABOVE`` of
        the full build's synapses, the simulation runs on it, so it costs less as the
        structure shrinks.  A build keeps serving as long as every present synapse is in it
        and the build for the current masks would not hold ``1 - COMPACT_REBUILD`` fewer
        synapses; otherwise the build for the current masks takes over, but only once
        ``COMPACT_SWITCH_EVERY`` minibatches have run on this path since the start or the
        last change (meanwhile a build that still runs the structure, or the full one,
        serves): a change costs code generation and, unless cached, a compilation.
        """
        if masks is not None and self.compact:
            sim = self._compacted_simulator(batch_size, masks, mask_changes)
            if sim is not None:
                return self.built(sim)
        if self.full is None or self.full.batch_size != batch_size:
            if self.full is not None:
                self.full.close()
            self.full = self.new_simulator(batch_size)
        return self.built(self.full)

    def built(self, sim):
        """``sim``, generated and compiled now if it never was: the time goes to :attr:`build_seconds`,
        not to the minibatch that first uses it, and a compilation is announced first."""
        if sim.device == "runtime" or getattr(sim, "_objects", None) is not None:
            return sim
        announce = not sim.compiled and self.root and self.announce
        if announce:
            print(f"compiling the network for {sim.device} (about {expected_build_seconds(sim)} s, once; "
                  f"cached in {sim.project_dir})", flush=True)
        t0 = time.perf_counter()
        sim.build()
        seconds = time.perf_counter() - t0
        self.build_seconds += seconds
        if announce:
            record_build_seconds(sim, seconds)
            print(f"compiled in {seconds:.0f} s", flush=True)
        return sim

    def _compacted_simulator(self, batch_size, masks, mask_changes):
        """The compacted build to use now, or ``None`` for the full one (see :meth:`simulator`)."""
        self._masked_runs += 1
        seen = (batch_size, tuple(id(m) for m in masks), mask_changes,
                tuple(int(np.count_nonzero(m)) for m in masks))
        if self._seen == seen and self._masked_runs < self._recheck:
            return self._choice
        self._seen, self._recheck = seen, float("inf")
        current = self.compacted
        usable = current is not None and current.batch_size == batch_size
        masks = [(m != 0).astype(np.float64) for m in masks]
        usable = usable and current.holds(masks)
        candidate = self.new_simulator(batch_size, masks)  # nothing is built until it runs
        if usable and candidate.synapses_built >= self.COMPACT_REBUILD * current.synapses_built:
            self._choice = current  # it runs this structure, and a new build would not save enough
            return current
        if candidate.synapses_built > self.COMPACT_ABOVE * self.new_simulator(batch_size).synapses_built:
            candidate = None
        elif self._masked_runs - self._switched_at < self.COMPACT_SWITCH_EVERY:
            # not worth a new build yet: keep one that still runs this structure, else the full one,
            # until the next change is due
            self._recheck = self._switched_at + self.COMPACT_SWITCH_EVERY
            self._choice = current if usable else None
            return self._choice
        else:
            self._switched_at = self._masked_runs
        if current is not None:
            current.close()
        self.compacted = self._choice = candidate
        return candidate


def _build_times(sim) -> tuple:
    """``(path, {device: [seconds, ...]})`` of the compilations recorded in ``sim``'s cache."""
    path = os.path.join(os.path.dirname(sim.project_dir), _BUILD_TIMES)
    try:
        with open(path) as fh:
            seen = json.load(fh)
    except (OSError, ValueError):
        seen = {}
    return path, seen if isinstance(seen, dict) else {}


def expected_build_seconds(sim) -> int:
    """How long a compilation is likely to take: the median of the last ones recorded in the cache
    for this device (30 s for C++, 150 s for CUDA when none is)."""
    default = 150 if sim.device == "cuda_standalone" else 30
    try:
        seen = _build_times(sim)[1].get(sim.device) or []
        return int(round(float(np.median(seen)))) if seen else default
    except (ValueError, TypeError, AttributeError):
        return default


def record_build_seconds(sim, seconds):
    """Remember a compilation's duration for :func:`expected_build_seconds` (best effort)."""
    from .rundir import write_json_atomic

    path, seen = _build_times(sim)
    try:
        seen[sim.device] = (list(seen.get(sim.device) or []) + [round(float(seconds), 1)])[-9:]
        write_json_atomic(path, seen)
    except (OSError, TypeError):
        pass
