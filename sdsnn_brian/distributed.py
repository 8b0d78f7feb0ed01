"""Processes working together: data-parallel training and sweeps over MPI (mpi4py).

A *communicator* is the small interface the trainer and the ``sweep`` command use:

``rank``, ``size``
    This process's number and the number of processes (``0`` and ``1`` alone).
``allreduce_sum(arrays)``
    Element-wise sums over all ranks of a list of numpy arrays, packed into one
    flat float64 buffer so that one ``MPI_Allreduce`` moves them all.
``bcast(obj)``, ``gather(obj)``, ``allgather(obj)``
    Python objects (numpy arrays included) from rank 0 to all, to rank 0, to all.
``barrier()``, ``abort(message)``
    Synchronise; print ``message`` and stop every process of the job.

:class:`SingleProcess` is rank 0 of 1 (everything is local, no MPI is imported);
:class:`MPICommunicator` wraps ``mpi4py``'s ``COMM_WORLD``.  MPI is an optional
extra (``pip install .[mpi]`` installs ``mpi4py`` and the MPICH wheel, whose
``mpiexec`` lands in the environment's ``bin/``)::

    mpiexec -n 4 sdsnn train --distributed --epochs 25 --run-dir runs/dp4

How the training is split is described in :class:`sdsnn_brian.trainer.Trainer`;
the cluster recipe is ``docs/cluster.md``.

Test hook
---------
:func:`injected_failure` makes one rank fail on purpose, so that tests can check
what a failing rank does to a job: with ``SDSNN_FAIL_RANK=r`` and
``SDSNN_FAIL_AT_BATCH=n`` in the environment, rank ``r`` raises a
``RuntimeError`` when it starts minibatch ``n`` of the run (counted from 0 over
all epochs, ``epoch * batches_per_epoch + batch``) in training (one process is rank 0 of 1);
with ``SDSNN_FAIL_HOW=exit`` as well it exits at once instead (``os._exit(3)``,
no clean-up: a crash or an out-of-memory kill), which ``mpiexec`` answers by
stopping the other ranks.  Without these variables it does nothing.
"""
from __future__ import annotations

import os
import sys

import numpy as np

__all__ = ["Communicator", "SingleProcess", "MPICommunicator", "get_communicator", "share",
           "RankFailedError", "injected_failure", "mpi_available", "local_part", "reduce_or_fail", "collective_call", "on_root"]


class RankFailedError(RuntimeError):
    """One or more ranks failed during a collective step; raised on every rank alike."""


def share(n: int, rank: int, size: int) -> tuple[int, int]:
    """The contiguous slice ``[lo, hi)`` of ``n`` items that ``rank`` of ``size`` owns.

    The first ``n % size`` ranks own one item more; a rank may own nothing when
    ``n < size``.
    """
    base, extra = divmod(int(n), int(size))
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def local_part(comm, fn):
    """This rank's part of a collective step: ``(fn(), None)``, or ``(None, "Type: message")`` when
    ``fn`` raised on a rank of several (:func:`reduce_or_fail` then reports it to every rank).

    One process (rank 0 of 1) has nobody to tell: the exception is raised as it is.
    """
    try:
        return fn(), None
    except Exception as exc:
        if comm.size == 1:
            raise
        return None, f"{type(exc).__name__}: {exc}"


def reduce_or_fail(comm, arrays, error, during=""):
    """``comm.allreduce_sum(arrays)`` with each rank's failure flag in the same Allreduce.

    ``error``: this rank's :func:`local_part` error (``None``: it succeeded).  When any rank
    failed, every rank raises the same :class:`RankFailedError` naming the failed ranks and
    their errors (``during``: e.g. ``" during evaluation"``), so none waits in a later
    collective for one that stopped.
    """
    failed = np.zeros(comm.size)
    failed[comm.rank] = error is not None
    *summed, failed = comm.allreduce_sum(list(arrays) + [failed])
    if failed.any():
        errors = comm.allgather(error)
        raise RankFailedError("; ".join(f"rank {r} failed{during}: {errors[r]}" for r in np.flatnonzero(failed)))
    return summed


def collective_call(comm, fn, *args):
    """Run ``fn(*args)`` on every rank; an exception on any rank is raised on all of them.

    The failing rank raises its own exception, the others a :class:`RankFailedError`
    naming it, so no rank is left waiting in a collective for one that stopped.  One
    process: just ``fn(*args)``.
    """
    if comm.size == 1:
        return fn(*args)
    out = err = None
    try:
        out = fn(*args)
    except Exception as exc:
        err = exc
    errors = comm.allgather(None if err is None else f"{type(err).__name__}: {err}")
    if err is not None:
        try:
            err.reported_to_all_ranks = True  # the other ranks raise RankFailedError naming this one
        except AttributeError:
            pass
        raise err
    bad = [(r, e) for r, e in enumerate(errors) if e is not None]
    if bad:
        raise RankFailedError("; ".join(f"rank {r} failed: {e}" for r, e in bad))
    return out


def on_root(comm, fn, *args):
    """``fn(*args)`` on rank 0 only (its result on rank 0, None elsewhere); failures reach every rank."""
    return collective_call(comm, lambda: fn(*args) if comm.is_root else None)


def _pack(arrays):
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    flat = np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0)
    return arrays, flat


def _unpack(arrays, flat):
    out, pos = [], 0
    for a in arrays:
        out.append(flat[pos:pos + a.size].reshape(a.shape))
        pos += a.size
    return out


class Communicator:
    """The interface (see the module doc); subclasses implement the transport."""

    rank = 0
    size = 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def share(self, n: int) -> tuple[int, int]:
        """This rank's contiguous slice of ``n`` items (:func:`share`)."""
        return share(n, self.rank, self.size)

    def local_size(self, n: int) -> int:
        """The largest share of ``n`` items (a rank's simulator batch size for a global minibatch of ``n``)."""
        return -(-int(n) // self.size)

    def __repr__(self):
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class SingleProcess(Communicator):
    """Rank 0 of 1: every collective is the identity."""

    def allreduce_sum(self, arrays):
        return [np.array(a, dtype=np.float64) for a in arrays]

    def bcast(self, obj, root=0):
        return obj

    def gather(self, obj, root=0):
        return [obj]

    def allgather(self, obj):
        return [obj]

    def barrier(self):
        pass

    def abort(self, message, code=1):
        print(message, file=sys.stderr, flush=True)
        sys.exit(code)


class MPICommunicator(Communicator):
    """``mpi4py``'s ``COMM_WORLD`` (or ``comm``) behind the communicator interface."""

    def __init__(self, comm=None):
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()

    def allreduce_sum(self, arrays):
        arrays, flat = _pack(arrays)
        out = np.empty_like(flat)
        self.comm.Allreduce(flat, out, op=self._MPI.SUM)
        return _unpack(arrays, out)

    def bcast(self, obj, root=0):
        return self.comm.bcast(obj, root=root)

    def gather(self, obj, root=0):
        return self.comm.gather(obj, root=root)

    def allgather(self, obj):
        return self.comm.allgather(obj)

    def barrier(self):
        self.comm.Barrier()

    def abort(self, message, code=1):
        """Print ``message`` on stderr and stop every rank of the job (``MPI_Abort``)."""
        print(message, file=sys.stderr, flush=True)
        sys.stdout.flush()
        self.comm.Abort(code)


def mpi_available() -> bool:
    """Whether ``mpi4py`` can be imported."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def get_communicator(distributed: bool = False) -> Communicator:
    """:class:`MPICommunicator` when ``distributed``, else :class:`SingleProcess`.

    Asking for MPI without ``mpi4py`` installed raises a :class:`RuntimeError`
    that says how to install it.  A script started without ``mpiexec`` is rank
    0 of 1 either way.
    """
    if not distributed:
        return SingleProcess()
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        raise RuntimeError("--distributed needs MPI, and mpi4py is not installed: pip install '.[mpi]' "
                           "(or pip install mpi4py mpich), then start the job with mpiexec -n K") from None
    try:
        return MPICommunicator()
    except Exception as exc:  # an mpi4py without a working MPI library
        raise RuntimeError(f"--distributed: MPI could not be initialised ({type(exc).__name__}: {exc}); "
                           "pip install mpich, or load your cluster's MPI module and rebuild mpi4py") from None


def injected_failure(rank: int, step) -> None:
    """Test hook: raise on rank ``$SDSNN_FAIL_RANK`` at run minibatch ``$SDSNN_FAIL_AT_BATCH`` (see module doc)."""
    want_rank = os.environ.get("SDSNN_FAIL_RANK")
    want_step = os.environ.get("SDSNN_FAIL_AT_BATCH")
    if want_rank is None or want_step is None or step is None:
        return
    if int(want_rank) == rank and int(want_step) == step:
        if os.environ.get("SDSNN_FAIL_HOW") == "exit":
            print(f"rank {rank}: injected crash (os._exit)", file=sys.stderr, flush=True)
            os._exit(3)
        raise RuntimeError(f"injected failure (SDSNN_FAIL_RANK={want_rank}, SDSNN_FAIL_AT_BATCH={want_step})")
