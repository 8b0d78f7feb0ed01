"""Structure against no structure: one network trained once per variant, side by side.

:func:`compare_structures` trains the same declared network with the same seed,
data and budget as ``'dense'`` (no schedule), ``'sdsnn-reference'`` and/or
``'sdsnn-strict'`` (SD-SNN in that gradient mode), each in its own run directory,
and writes the comparison table with the protocol that produced it.  The
protocol scripts differ only in their data, network and constants.
"""
from __future__ import annotations

import argparse
import os

from .callbacks import RunDirectory
from .optim import Adam, CosineLR
from .reporting.comparison import summarize, write_comparison
from .structure import StructureSchedule, network_layer_specs
from .structure.timeline import COMMAND_LINE_HINT, DEFAULT_STEPS_PER_EPOCH, check_timeline, fit_timeline
from .trainer import Trainer

__all__ = ["compare_structures", "event_protocol_parser", "add_structure_options", "add_run_dir_options",
           "VARIANTS"]

VARIANTS = ("dense", "sdsnn-reference", "sdsnn-strict")


def compare_structures(make_network, make_config, train, test, *, variants, run_dir, protocol, epochs,
                       batch_size=100, structure_every=None, compress=None,
                       steps_per_epoch=DEFAULT_STEPS_PER_EPOCH, allow_short_structure=False, seed=0,
                       eval_every=1, resume=False, overwrite=False, log_every=10, comparison_dir=None,
                       backward_dtype="float64"):
    """Train every variant and return ``{variant: summarize(...)}``.

    ``make_network()`` returns a fresh declared network; ``make_config(mode, net)``
    the :class:`~sdsnn_brian.structure.SDSNNConfig` of an SD-SNN variant, on the reference
    timeline.  The timeline is fitted to the run (:func:`~sdsnn_brian.structure.timeline.fit_timeline`):
    ``structure_every`` (None: about ``steps_per_epoch`` structural steps per epoch whatever the
    data size) and ``compress`` (None: 1 unless the run is too short for the whole timeline);
    a run too short to prune at all is refused unless ``allow_short_structure``.  Every
    variant uses the rectangular surrogate, rate MSE, Adam 1e-3 with a cosine decay
    over ``epochs``, and a ``backward_dtype`` backward pass.  Runs go to ``run_dir/<variant>``
    (an existing run there is refused unless ``resume`` or ``overwrite``); the table
    (``comparison.md`` and ``.json``) to ``comparison_dir`` (default ``run_dir``).
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    n_train = len(train[1] if isinstance(train, (tuple, list)) else train.labels)
    results = {}
    for variant in variants:
        net = make_network()
        mode = "reference" if variant == "dense" else variant.split("-", 1)[1]
        schedule, every = None, None
        if variant != "dense":
            config, plan = fit_timeline(make_config(mode, net), n_train, batch_size, epochs,
                                        structure_every=structure_every, compress=compress,
                                        steps_per_epoch=steps_per_epoch)
            check_timeline(config, plan.steps, allow_short=allow_short_structure, options=COMMAND_LINE_HINT)
            schedule, every = StructureSchedule(network_layer_specs(net), config), plan.structure_every
            print(f"structure: {plan.describe()}", flush=True)
        sub = os.path.join(run_dir, variant)
        trainer = Trainer(net, surrogate="rectangular", loss="rate_mse", optimizer=Adam(1e-3),
                          lr_schedule=lambda opt: CosineLR(opt, T_max=epochs), seed=seed, structure=schedule,
                          structure_every=every, gradient_mode=mode, allow_short_structure=allow_short_structure,
                          callbacks=[RunDirectory(sub, protocol=protocol)], backward_dtype=backward_dtype)
        print(f"--- {variant}: {net.name}, {sum(net.sizes[1:])} neurons ---", flush=True)
        trainer.fit(train, epochs=epochs, batch_size=batch_size, validation=test, run_dir=sub, resume=resume,
                    eval_every=eval_every, log_every=log_every, overwrite=overwrite)
        results[variant] = summarize(trainer, label=variant)
    print(write_comparison(comparison_dir or run_dir, results, protocol))
    return results


def event_protocol_parser(dataset: str, *, data_help: str, steps: int, run_dir: str,
                          steps_per_epoch: int = DEFAULT_STEPS_PER_EPOCH) -> argparse.ArgumentParser:
    """The command line of the event-data protocols (N-MNIST, DVS-Gesture): data folder or
    ``--smoke``, framing (``--steps``, ``--denoise``, ``--spatial-factor``), budget and structure
    options (``None`` where the protocol picks its own default, smoke or real), variants, seed and
    the backward precision."""
    p = argparse.ArgumentParser(description=f"SD-SNN against a dense baseline on {dataset}")
    p.add_argument("--data-dir", default=None, help=data_help)
    p.add_argument("--smoke", action="store_true", help="synthetic data, tiny network, seconds")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--steps", type=int, default=steps, help="time bins per recording (T)")
    p.add_argument("--denoise", type=float, default=None, help="tonic Denoise filter time (us)")
    p.add_argument("--spatial-factor", type=float, default=None, help="tonic Downsample factor")
    p.add_argument("--batch-size", type=int, default=None)
    add_structure_options(p, steps_per_epoch)
    p.add_argument("--modes", nargs="+", default=["reference"], choices=["reference", "strict"])
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--test-limit", type=int, default=None)
    add_run_dir_options(p, run_dir)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backward-dtype", default="float32", choices=["float32", "float64"],
                   help="precision of the numpy backward pass (float32: about half the time)")
    return p


def add_structure_options(p, steps_per_epoch=DEFAULT_STEPS_PER_EPOCH):
    """The protocols' structural-timeline options (see :func:`compare_structures`)."""
    p.add_argument("--structure-every", type=int, default=None,
                   help="minibatches between structural steps (default: chosen from the data size, "
                        "--structural-steps-per-epoch per epoch)")
    p.add_argument("--structural-steps-per-epoch", type=int, default=steps_per_epoch,
                   help=f"structural steps per epoch when --structure-every is not given (default: {steps_per_epoch})")
    p.add_argument("--compress", type=float, default=None,
                   help="shrink the structural timeline by this factor (default: 1, or the smallest factor that "
                        "fits the whole timeline into the run)")
    p.add_argument("--allow-short-structure", action="store_true",
                   help="run SD-SNN even when it takes too few structural steps to prune (refused otherwise)")


def add_run_dir_options(p, run_dir):
    """``--run-dir``, ``--resume`` and ``--overwrite`` as every protocol has them."""
    p.add_argument("--run-dir", default=run_dir, help=f"where the runs go (default: {run_dir})")
    p.add_argument("--resume", action="store_true", help="continue interrupted runs from their newest checkpoints")
    p.add_argument("--overwrite", action="store_true",
                   help="replace runs already in --run-dir (without it, or --resume, such a directory is refused)")
