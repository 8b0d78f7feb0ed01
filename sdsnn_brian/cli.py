"""The ``sdsnn`` command line.

    sdsnn train [options]        train a network on MNIST (C++ standalone by default;
                                 under ``mpiexec -n K`` with --distributed: data-parallel)
    sdsnn sweep --out DIR [--seeds S ...] [--vary OPT=V1,V2] -- [train options]
                                 several runs spread over MPI ranks, one table
    sdsnn report RUN_DIR         write RUN_DIR/report/index.md and index.html with every figure
    sdsnn plot RUN_DIR --figure NAME [--out FILE]   draw one figure into a PNG
    sdsnn --help                 the commands; ``sdsnn COMMAND --help`` for each

Errors in the arguments or the data, and a network the machine has no memory for
(see :func:`sdsnn_brian.device.memory_estimate`), end the command with a one-line message
(``sdsnn: error: ...``) and exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main", "build_parser"]


def _add_train(sub):
    p = sub.add_parser("train", help="train a network on MNIST", description="Train a spiking network on MNIST "
                       "with surrogate gradients computed from the Brian2 simulation's recorded state.")
    g = p.add_argument_group("network")
    g.add_argument("--architecture", default="fc", choices=["fc", "conv"],
                   help="fc: 784-hidden...-10 fully connected (default); conv: the SD-SNN reference "
                        "C1C3-AP2-C2C3-AP2-hidden...-10 (channels from --channels)")
    g.add_argument("--hidden", type=int, nargs="+", default=None,
                   help="fully connected hidden layer sizes (default: 400 for fc, 300 for conv)")
    g.add_argument("--channels", type=int, nargs="+", default=[15, 40],
                   help="conv: channels of the 3x3 convolutions, each followed by 2x2 average pooling "
                        "(default: 15 40)")
    g.add_argument("--neuron", default="sdsnn_lif", help="neuron model name (default: sdsnn_lif)")
    g.add_argument("--encoding", default="rate", choices=["rate", "latency"], help="input encoding")
    g.add_argument("--steps", type=int, default=20, help="time steps per sample, T (default: 20)")
    g.add_argument("--bias", action="store_true", help="train a bias per neuron (conv: always, as the reference)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=None, help="epochs (default: 25)")
    g.add_argument("--batch-size", type=int, default=100)
    g.add_argument("--loss", default="rate_mse", help="rate_mse | ce_count | ce_max_membrane")
    g.add_argument("--surrogate", default="rectangular", help="rectangular | sigmoid | fast_sigmoid | arctan")
    g.add_argument("--surrogate-param", type=float, default=None, help="width / scale / slope / alpha")
    g.add_argument("--detach-reset", action="store_true", help="no gradient through the reset")
    g.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    g.add_argument("--lr-step", type=int, default=0, help="multiply the learning rate by --lr-gamma every N epochs")
    g.add_argument("--lr-gamma", type=float, default=0.1)
    g.add_argument("--cosine", action="store_true", help="cosine learning-rate schedule over the epochs")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("structural development (SD-SNN)")
    g.add_argument("--sdsnn", action="store_true", help="spine constraint, neuronal pruning and regeneration")
    g.add_argument("--gradient-mode", default="reference", choices=["reference", "strict"],
                   help="reference: dense training between structural steps; strict: removed synapses frozen")
    g.add_argument("--structure-every", type=int, default=None,
                   help="minibatches between structural steps (default: chosen from the data size so that an "
                        "epoch holds --structural-steps-per-epoch steps)")
    g.add_argument("--structural-steps-per-epoch", type=int, default=8,
                   help="structural steps per epoch when --structure-every is not given (default: 8)")
    g.add_argument("--compress", type=float, default=None,
                   help="shrink the structural timeline by this factor (default: 1, or the smallest factor that "
                        "lets the whole reference timeline fit the run's structural steps)")
    g.add_argument("--allow-short-structure", action="store_true",
                   help="train even when the run takes too few structural steps to prune at all (refused otherwise)")
    g.add_argument("--freeze-after", type=int, default=None,
                   help="structural step from which masks stop changing (default: never, the reference)")
    g = p.add_argument_group("data and device")
    g.add_argument("--mnist-dir", default=None, help="directory of the MNIST idx files (default: shared data)")
    g.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    g.add_argument("--test-limit", type=int, default=None, help="use only the first N test images")
    g.add_argument("--device", default="cpp_standalone", choices=["cpp_standalone", "cuda_standalone", "runtime"])
    g.add_argument("--threads", type=int, default=0, help="OpenMP threads for C++ standalone")
    g.add_argument("--backward-dtype", default="float64", choices=["float64", "float32"],
                   help="precision of the numpy backward pass (float32: about half the time)")
    g.add_argument("--weight-dtype", default="float64", choices=["float64", "float32"],
                   help="how the compiled network stores synaptic weights (float32: less memory traffic; "
                        "the simulation uses the weights rounded to float32)")
    g.add_argument("--no-compact", action="store_true",
                   help="always simulate the full build, even once pruning has removed most synapses "
                        "(default: evaluation and strict-mode training run on a build without them)")
    g.add_argument("--distributed", action="store_true", help="data-parallel over MPI ranks: start with "
                   "'mpiexec -n K sdsnn train --distributed ...' (needs pip install '.[mpi]'; see docs/cluster.md)")
    g = p.add_argument_group("run directory")
    g.add_argument("--run-dir", default="runs/mnist_dense",
                   help="where the run is written (default: runs/mnist_dense); a directory that already holds a "
                        "run is refused unless --resume or --overwrite, and is locked while training")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its newest valid "
                   "checkpoint, with the options it was started with; only --epochs, --lr, --log-every and "
                   "--checkpoint-every may be changed (recorded in config.json), any other differing option "
                   "is refused")
    g.add_argument("--overwrite", action="store_true", help="replace the run already in --run-dir (its config, "
                   "metrics, checkpoints, summary, structure log and report are removed first)")
    g.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N batches")
    g.add_argument("--log-every", type=int, default=None, help="a progress line every N batches (default: a "
                   "progress bar with the time left on a terminal, a line every 10 batches otherwise)")
    p.set_defaults(func=cmd_train)


def build_parser():
    parser = argparse.ArgumentParser(prog="sdsnn", description="Spiking networks in Brian2, trained with "
                                     "surrogate gradients, with SD-SNN structural development.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_sweep(sub)
    _add_build_cuda(sub)
    _add_report(sub)
    _add_plot(sub)
    return parser


_POSITIVE = ("batch_size", "steps", "structure_every", "structural_steps_per_epoch")
_NON_NEGATIVE = ("epochs", "checkpoint_every", "log_every", "threads", "lr_step")
#: Options that may differ when a run is resumed: they change nothing already computed.
_CHANGE_ON_RESUME = ("epochs", "lr", "log_every", "checkpoint_every")
#: Options that say how this process runs, not what the run is.
_NOT_RUN_OPTIONS = ("func", "command", "resume", "distributed", "overwrite", "_argv", "_resume_info")


def _train_subparser():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def _given_options(argv) -> set:
    """The ``sdsnn train`` options written on the command line ``argv`` (not left at their defaults)."""
    if not argv or argv[0] != "train":
        return set()
    p = _train_subparser()
    unset = object()
    ns = argparse.Namespace(**{a.dest: unset for a in p._actions if a.dest != "help"})
    p.parse_known_args(argv[1:], ns)
    return {k for k, v in vars(ns).items() if v is not unset}


def _saved_options(run_dir):
    """``(cli_args, config)`` of the run in ``run_dir``: from its config.json, or, when that file is
    damaged, from its newest valid checkpoint (with a warning); errors name the file."""
    import json
    import warnings

    from .checkpoint import latest_checkpoint, load_checkpoint
    from .rundir import CONFIG_FILE

    cfg_path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"cannot resume: {run_dir!r} is not a directory")
    problem = None
    try:
        with open(cfg_path) as fh:
            cfg = json.load(fh)
        if not isinstance(cfg, dict):
            raise ValueError("not a JSON object")
        if cfg.get("cli_args"):
            return cfg["cli_args"], cfg
        problem = f"{cfg_path} was not written by 'sdsnn train' (no cli_args)"
    except FileNotFoundError:
        problem = f"{cfg_path} does not exist (is {run_dir!r} a run directory?)"
    except ValueError as exc:  # json.JSONDecodeError included
        problem = f"{cfg_path} is damaged ({exc})"
    ckpt = latest_checkpoint(run_dir)
    meta = load_checkpoint(ckpt)[1] if ckpt is not None else {}
    if not meta.get("cli_args"):
        raise ValueError(f"cannot resume: {problem}, and no checkpoint in {run_dir!r} holds the run's options")
    warnings.warn(f"{problem}: the run's options were taken from {ckpt}; config.json is rewritten", stacklevel=2)
    return meta["cli_args"], {}


def _resolve_train_args(args):
    """Validate the options; with ``--resume RUN_DIR`` take the run's own options.

    On resume, options given on the command line that differ from the run's are honoured
    when they change nothing already computed (:data:`_CHANGE_ON_RESUME`, recorded as a
    change in ``config.json``) and refused otherwise, naming the option.
    """
    import math

    if args.resume and getattr(args, "overwrite", False):
        raise ValueError("--resume continues a run and --overwrite replaces it: give one of them")
    if args.resume:
        saved, saved_cfg = _saved_options(args.resume)
        given = _given_options(getattr(args, "_argv", None)) - set(_NOT_RUN_OPTIONS) - {"run_dir"}
        changed, refused = {}, []
        for key in sorted(given):
            new, old = getattr(args, key), saved.get(key)
            if key not in saved or new == old:
                continue
            if key in _CHANGE_ON_RESUME:
                changed[key] = [old, new]
            else:
                refused.append(f"--{key.replace('_', '-')} {_show(new)} (the run has {_show(old)})")
        if refused:
            raise ValueError(f"cannot resume {args.resume!r} with different options: {'; '.join(refused)}. A "
                             f"resumed run keeps its configuration; only {', '.join('--' + k.replace('_', '-') for k in _CHANGE_ON_RESUME)} "
                             "may change. Start a new run directory for another configuration")
        for key, value in saved.items():
            if key not in changed:
                setattr(args, key, value)
        args.run_dir = args.resume
        args._resume_info = {"changed": changed, "saved_config": saved_cfg}
    if args.epochs is None:
        args.epochs = 25
    for key in _POSITIVE:
        if getattr(args, key, None) is not None and getattr(args, key) <= 0:
            raise ValueError(f"--{key.replace('_', '-')} must be positive, got {getattr(args, key)}")
    for key in _NON_NEGATIVE:
        if getattr(args, key) is not None and getattr(args, key) < 0:
            raise ValueError(f"--{key.replace('_', '-')} must not be negative, got {getattr(args, key)}")
    for key in ("lr", "momentum", "lr_gamma", "compress"):
        v = getattr(args, key)
        if v is None:
            continue
        if not math.isfinite(v) or v < 0 or (key in ("lr", "compress") and v == 0):
            raise ValueError(f"--{key.replace('_', '-')} must be a finite {'positive' if key in ('lr', 'compress') else 'non-negative'} number, got {v}")
    if args.hidden is None:
        args.hidden = [400] if args.architecture == "fc" else [300]
    if any(h <= 0 for h in args.hidden):
        raise ValueError(f"--hidden sizes must be positive, got {args.hidden}")
    if any(c <= 0 for c in args.channels):
        raise ValueError(f"--channels must be positive, got {args.channels}")
    return args


def _show(v):
    return " ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


def command_line(cli_args) -> str:
    """``sdsnn train ...`` with every option of ``cli_args`` written so that it can be pasted back
    (flags only when set, lists as separate words, quoted where needed)."""
    import shlex

    words = ["sdsnn", "train"]
    for action in _train_subparser()._actions:
        if action.dest not in cli_args or action.dest in _NOT_RUN_OPTIONS or not action.option_strings:
            continue
        v = cli_args[action.dest]
        opt = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            if v:
                words.append(opt)
        elif v is None:
            continue
        elif isinstance(v, (list, tuple)):
            words += [opt, *map(str, v)]
        else:
            words += [opt, str(v)]
    return " ".join(shlex.quote(w) for w in words)


def cmd_train(args):
    comm = _communicator(getattr(args, "distributed", False))
    if comm.size > 1:
        return _train_distributed(args, comm)
    try:
        _prepare_train(args, comm)[1]()
    except KeyboardInterrupt:
        print(_interrupted_message(args.run_dir), file=sys.stderr, flush=True)
        return 130
    return 0


def _interrupted_message(run_dir) -> str:
    import shlex

    from .checkpoint import latest_checkpoint
    from .rundir import CONFIG_FILE

    if not run_dir or not os.path.exists(os.path.join(run_dir, CONFIG_FILE)):
        return "\nsdsnn: interrupted before training started; nothing was written"
    last = latest_checkpoint(run_dir)
    where = f"the last checkpoint is {last}" if last else "no checkpoint was written yet (it restarts from the beginning)"
    return f"\nsdsnn: interrupted; {where}; resume with: sdsnn train --resume {shlex.quote(run_dir)}"


def _communicator(distributed):
    """The MPI communicator for --distributed (else one process); no mpi4py is a one-line error."""
    from .distributed import get_communicator

    try:
        return get_communicator(bool(distributed))
    except RuntimeError as exc:
        raise ValueError(str(exc)) from None


def _train_distributed(args, comm):
    """``sdsnn train --distributed`` on one rank of K; every rank ends with the same exit status.

    Failures that every rank learns about (a rank failing in a training step, in
    evaluation or in a callback, a NaN stop, bad options) are printed once, by rank
    0, and end with status 2 and the last checkpoint intact; anything else prints
    ``rank r failed: ...`` and stops the whole job with ``MPI_Abort``.
    """
    from .distributed import RankFailedError

    err = None
    try:
        fit = _prepare_train(args, comm)[1]
    except Exception as exc:
        err = exc
    errors = comm.allgather(None if err is None else str(err))
    if any(e is not None for e in errors):
        if comm.is_root:
            found = {e for e in errors if e is not None}
            msg = found.pop() if len(found) == 1 and all(e is not None for e in errors) else \
                "; ".join(f"rank {r}: {e}" for r, e in enumerate(errors) if e is not None)
            print(f"sdsnn: error: {msg}", file=sys.stderr, flush=True)
        return 2
    try:
        fit()
    except Exception as exc:
        if isinstance(exc, (RankFailedError, FloatingPointError)) or getattr(exc, "reported_to_all_ranks", False):
            if comm.is_root:
                print(f"sdsnn: error: {exc}", file=sys.stderr, flush=True)
            return 2
        comm.abort(f"sdsnn: error: rank {comm.rank} failed: {type(exc).__name__}: {exc}; stopping all ranks", 2)
    return 0


def _prepare_train(args, comm=None):
    """Resolve the options and build the trainer; returns ``(trainer, fit)``, ``fit()`` runs the training."""
    from . import SGD, Adam, CosineLR, StepLR, Trainer
    from .callbacks import RunDirectory
    from .data import MNIST
    from .builder import conv_layout_for
    from .device import check_memory, memory_estimate
    from .models import mnist_fc, sdsnn_conv
    from .structure import SDSNNConfig, StructureSchedule, network_layer_specs
    from .surrogate import SURROGATES

    from .callbacks import LearningRateChange, ProgressLogger
    from .structure.timeline import COMMAND_LINE_HINT, check_timeline, fit_timeline

    resume = bool(args.resume)
    args = _resolve_train_args(args)
    root = comm is None or comm.is_root
    if args.architecture == "conv":
        net = sdsnn_conv((1, 28, 28), 10, channels=args.channels, hidden=args.hidden, neuron=args.neuron,
                         encoding=args.encoding, steps=args.steps, bias=True)
    else:
        net = mnist_fc(hidden=args.hidden, neuron=args.neuron, encoding=args.encoding, steps=args.steps,
                       bias=args.bias)
    # refuse a network the machine has no memory for, before any of it is allocated
    check_memory(memory_estimate(net, args.batch_size, weight_dtype=getattr(args, "weight_dtype", "float64"),
                                 training_arrays=Trainer.TRAINING_ARRAYS,
                                 conv_layout=conv_layout_for(getattr(args, "device", "cpp_standalone"))))
    if args.surrogate not in SURROGATES:
        raise ValueError(f"unknown surrogate {args.surrogate!r}; known: {sorted(SURROGATES)}")
    surrogate = {"name": args.surrogate}
    if args.surrogate_param is not None:
        surrogate[SURROGATES[args.surrogate][0]] = args.surrogate_param
    opt = Adam(args.lr) if args.optimizer == "adam" else SGD(args.lr, momentum=args.momentum)
    schedule = None
    if args.cosine:
        schedule = lambda o: CosineLR(o, T_max=args.epochs)  # noqa: E731
    elif args.lr_step:
        schedule = lambda o: StepLR(o, args.lr_step, args.lr_gamma)  # noqa: E731
    train = MNIST(args.mnist_dir, train=True, limit=args.train_limit)
    test = MNIST(args.mnist_dir, train=False, limit=args.test_limit)
    if root:
        ranks = f"; {comm.size} ranks" if comm is not None and comm.size > 1 else ""
        print(f"data: {len(train)} training images ({train.source}), {len(test)} test images{ranks}", flush=True)
    structure = None
    if args.sdsnn:
        config = SDSNNConfig(mode=args.gradient_mode, n_out=net.n_classes,
                             freeze_after=getattr(args, "freeze_after", None))
        # the structural timeline fitted to this run's length (explicit --structure-every / --compress win)
        config, plan = fit_timeline(config, len(train), args.batch_size, args.epochs,
                                    structure_every=args.structure_every, compress=args.compress,
                                    steps_per_epoch=args.structural_steps_per_epoch)
        args.structure_every, args.compress = plan.structure_every, plan.compress
        check_timeline(config, plan.steps, allow_short=args.allow_short_structure, options=COMMAND_LINE_HINT)
        if root and not resume:
            print(f"structure: {plan.describe()}", flush=True)
        structure = StructureSchedule(network_layer_specs(net), config)
    # --distributed is how this process was started, not part of the run (resume with any number of ranks)
    cli_args = {k: v for k, v in vars(args).items() if k not in _NOT_RUN_OPTIONS}
    protocol = command_line(cli_args)
    callbacks = []
    extra = {"cli_args": cli_args}
    info = getattr(args, "_resume_info", None)
    if resume and info is not None:
        import time

        from .checkpoint import latest_checkpoint

        saved_cfg = info["saved_config"]
        protocol = saved_cfg.get("protocol", protocol)
        last = latest_checkpoint(args.run_dir)
        entry = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "from_checkpoint": last and os.path.basename(last),
                 "command": " ".join(["sdsnn"] + list(getattr(args, "_argv", None) or ["train", "--resume",
                                                                                      args.run_dir])),
                 "changed": info["changed"]}
        extra["resumes"] = list(saved_cfg.get("resumes", [])) + [entry]
        if "lr" in info["changed"]:
            callbacks.append(LearningRateChange(args.lr))
        if root and info["changed"]:
            print("resuming with changed options: " + ", ".join(f"--{k.replace('_', '-')} {_show(o)} -> {_show(n)}"
                                                               for k, (o, n) in info["changed"].items()), flush=True)
    log_every = 10 if args.log_every is None else args.log_every
    if log_every or args.log_every is None:
        callbacks.append(ProgressLogger(every=log_every, bar=None if args.log_every is None else False))
    trainer = Trainer(net, device=args.device, surrogate=surrogate, loss=args.loss, optimizer=opt,
                      lr_schedule=schedule, detach_reset=args.detach_reset, seed=args.seed, threads=args.threads,
                      structure=structure, structure_every=args.structure_every if args.sdsnn else None,
                      gradient_mode=args.gradient_mode, communicator=comm, backward_dtype=args.backward_dtype,
                      weight_dtype=getattr(args, "weight_dtype", "float64"),
                      compact=not getattr(args, "no_compact", False),
                      allow_short_structure=getattr(args, "allow_short_structure", False),
                      callbacks=callbacks + [RunDirectory(args.run_dir, checkpoint_every=args.checkpoint_every,
                                                          protocol=protocol, extra=extra)])

    def fit():
        return trainer.fit(train, epochs=args.epochs, batch_size=args.batch_size, validation=test,
                           run_dir=args.run_dir, resume=resume, log_every=0,
                           overwrite=getattr(args, "overwrite", False))

    return trainer, fit


def _add_sweep(sub):
    p = sub.add_parser("sweep", help="several seeds or configurations, spread over MPI ranks",
                       description="Train one run per seed and per combination of --vary values (each its own "
                       "run directory under --out), spread over the ranks of an MPI job (rank r trains runs r, "
                       "r+K, ... one after the other; without --distributed one process trains them all), then "
                       "gather the results into one table: OUT/comparison.md and OUT/comparison.json. "
                       "Training options go after '--', e.g. "
                       "mpiexec -n 4 sdsnn sweep --distributed --out runs/seeds --seeds 0 1 2 3 -- --epochs 5")
    p.add_argument("--out", required=True, metavar="DIR", help="sweep directory (one run directory per run)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    p.add_argument("--vary", action="append", default=[], metavar="OPTION=V1,V2",
                   help="a train option and its values, e.g. --vary lr=0.001,0.003 (repeatable: all combinations)")
    p.add_argument("--distributed", action="store_true", help="spread the runs over the ranks of 'mpiexec -n K'")
    p.add_argument("train_args", nargs=argparse.REMAINDER, metavar="-- TRAIN_OPTIONS",
                   help="options of 'sdsnn train' shared by every run")
    p.set_defaults(func=cmd_sweep)


def _sweep_runs(args):
    """``[(label, train argv)]``: every seed times every combination of the --vary values."""
    import itertools
    import os

    train_args = list(args.train_args)
    if train_args[:1] == ["--"]:
        train_args = train_args[1:]
    for fixed in ("--seed", "--run-dir", "--resume", "--distributed"):
        if any(a == fixed or a.startswith(fixed + "=") for a in train_args):
            raise ValueError(f"sweep: {fixed} is set by the sweep itself; leave it out of the training options")
    axes = []
    for spec in args.vary:
        key, sep, values = spec.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key or not values:
            raise ValueError(f"sweep: --vary needs OPTION=V1,V2,..., got {spec!r}")
        axes.append([(key, v.strip()) for v in values.split(",") if v.strip()])
    runs = []
    for combo in itertools.product(*axes):
        for seed in args.seeds:
            label = "-".join([f"seed{seed}"] + [f"{k.replace('-', '_')}{v}" for k, v in combo])
            opts = [x for k, v in combo for x in (f"--{k.replace('_', '-')}", *v.split())]
            runs.append((label, ["train", *train_args, *opts, "--seed", str(seed),
                                 "--run-dir", os.path.join(args.out, label)]))
    parser = build_parser()
    for label, argv in runs:  # every configuration is checked before any training starts
        parsed, unknown = parser.parse_known_args(argv)
        if unknown:
            raise ValueError(f"sweep: run {label}: unknown training options {unknown}")
        _resolve_train_args(parsed)
    return runs


def cmd_sweep(args):
    import os
    import time

    from .distributed import SingleProcess
    from .reporting.comparison import comparison_markdown, summarize, write_comparison

    comm = _communicator(args.distributed)
    runs = _sweep_runs(args)
    rows = {}
    parser = build_parser()
    for i in range(comm.rank, len(runs), comm.size):
        label, argv = runs[i]
        print(f"sweep: rank {comm.rank} starts run {i + 1}/{len(runs)} {label}", flush=True)
        t0 = time.perf_counter()
        try:
            trainer, fit = _prepare_train(parser.parse_args(argv), SingleProcess())
            fit()
            rows[label] = {**summarize(trainer, time.perf_counter() - t0, label), "rank": comm.rank}
        except Exception as exc:  # one failed run does not stop the others
            print(f"sweep: run {label} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            rows[label] = {"label": label, "rank": comm.rank, "error": f"{type(exc).__name__}: {exc}"}
    gathered = comm.gather(rows)
    if not comm.is_root:
        return 0
    merged = {}
    for part in gathered:
        merged.update(part)
    merged = {label: merged[label] for label, _ in runs}
    protocol = f"sdsnn sweep --out {args.out} --seeds {' '.join(map(str, args.seeds))}" + \
        "".join(f" --vary {v}" for v in args.vary) + f" -- {' '.join(_sweep_train_args(args))} ({comm.size} ranks)"
    write_comparison(args.out, merged, protocol)
    failed = [label for label, r in merged.items() if "error" in r]
    if failed:
        with open(os.path.join(args.out, "comparison.md"), "a") as fh:
            fh.write("\nFailed runs:\n\n" + "".join(f"- {label}: {merged[label]['error']}\n" for label in failed))
    print(f"sweep: {len(runs)} runs on {comm.size} ranks, {len(failed)} failed; "
          f"table in {os.path.join(args.out, 'comparison.md')} and comparison.json", flush=True)
    print(comparison_markdown({k: v for k, v in merged.items() if "error" not in v}, protocol), flush=True)
    return 1 if failed else 0


def _sweep_train_args(args):
    return args.train_args[1:] if args.train_args[:1] == ["--"] else list(args.train_args)


def _add_build_cuda(sub):
    p = sub.add_parser("build-cuda", help="export a trained network to a CUDA (or C++) standalone project",
                       description="Export the newest checkpoint of RUN_DIR to a self-contained standalone project "
                       "(removed synapses and silent neurons absent, weights and a deterministic test input baked "
                       "in, README.md, run.sh, manifest.json). Code generation works anywhere; compiling a CUDA "
                       "project needs nvcc and cuRAND (pip install nvidia-curand), running it needs a GPU.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory (config.json and ckpt-*.npz)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (new, empty or a previous export)")
    p.add_argument("--device", default="cuda_standalone", choices=["cuda_standalone", "cpp_standalone"])
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="run make after generating the code (default: --compile)")
    p.add_argument("--compute-capability", type=float, default=9.0, help="CUDA target, e.g. 8.0, 9.0 (default 9.0)")
    p.add_argument("--gpu-id", type=int, default=0, help="GPU the binary uses (default 0)")
    p.add_argument("--samples", type=int, default=100, help="MNIST test images baked in (default 100)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size of the evaluation encoding "
                   "(default: the run's)")
    p.add_argument("--mnist-dir", default=None, help="directory of the MNIST idx files (default: shared data)")
    p.add_argument("--curand-dir", default=None, help="directory with include/curand.h and lib/libcurand.so*")
    p.add_argument("--jobs", type=int, default=None, help="parallel make jobs (default: CPU count)")
    p.add_argument("--run", action="store_true", help="run the binary after building and print the accuracy")
    p.set_defaults(func=cmd_build_cuda)


def cmd_build_cuda(args):
    from .cuda import ToolchainError
    from .export import export_network, load_export_results, run_export

    opts = {"curand_dir": args.curand_dir} if args.curand_dir else {}
    if args.run and not args.compile:
        raise ValueError("--run needs --compile")
    try:
        m = export_network(args.run_dir, args.out, device=args.device, samples=args.samples,
                           batch_size=args.batch_size, mnist_dir=args.mnist_dir, compile=args.compile,
                           compute_capability=args.compute_capability, gpu_id=args.gpu_id, cuda_options=opts,
                           jobs=args.jobs)
        t = m["timings"]
        sizes = " -> ".join(str(l["kept"]) for l in m["layers"])
        syn = ", ".join(f"{s['name']} {s['count']}" for s in m["synapses"])
        print(f"exported {m['source']['checkpoint']} to {args.out} ({m['device']}): neurons {sizes}; "
              f"synapses {syn}; generated in {t['generate_seconds']:.1f} s"
              + (f", compiled in {t['compile_seconds']:.1f} s" if "compile_seconds" in t else " (not compiled)"),
              flush=True)
        if args.run:
            seconds = run_export(args.out)
            res = load_export_results(args.out)
            acc = "" if res["accuracy"] is None else f", accuracy {res['accuracy']:.4f}"
            print(f"ran in {seconds:.2f} s: {m['samples']} samples{acc}")
    except (ToolchainError, RuntimeError) as exc:
        raise ValueError(str(exc)) from None
    return 0


def _add_report(sub):
    p = sub.add_parser("report", help="write a run's report (figures, configuration, metrics)",
                       description="Write a static report (index.md and index.html with every figure as a PNG, the "
                       "configuration and the metrics) of a run directory, or of a comparison directory written by "
                       "protocols/sdsnn_mnist.py (dense/, sdsnn-reference/, sdsnn-strict/, comparison.md).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory or comparison directory")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default: RUN_DIR/report)")
    _add_figure_options(p)
    p.add_argument("--no-simulate", action="store_true", help="skip the figures that simulate the final network "
                   "(spike rasters, membrane traces)")
    p.set_defaults(func=cmd_report)


def _add_figure_options(p):
    p.add_argument("--cache-dir", default=None, metavar="DIR", help="compiled-project cache (default: "
                   "$SDSNN_CACHE_DIR or ~/.cache/sdsnn_brian)")
    p.add_argument("--samples", type=int, nargs="+", default=[0, 1, 2], metavar="K",
                   help="test samples shown in rasters (the first one in membrane traces; default: 0 1 2)")


def _add_plot(sub):
    from .reporting.figures import FIGURE_NAMES

    p = sub.add_parser("plot", help="draw one figure of a run into a PNG",
                       description="Draw one figure of a run directory (or 'comparison' of a comparison directory) "
                       f"into a PNG. Figures: {', '.join(FIGURE_NAMES)}.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory (or comparison directory for 'comparison')")
    p.add_argument("--figure", required=True, metavar="NAME", help=f"one of: {', '.join(FIGURE_NAMES)}")
    p.add_argument("--out", default=None, metavar="FILE", help="PNG file (default: RUN_DIR/report/NAME.png)")
    _add_figure_options(p)
    p.set_defaults(func=cmd_plot)


def cmd_report(args):
    from .reporting.page import write_report

    rep = write_report(args.run_dir, args.out, simulate=not args.no_simulate, cache_dir=args.cache_dir,
                       samples=args.samples)
    print(f"report: {rep.markdown} and {rep.html} ({len(rep.figures)} figures)")
    for name, why in rep.skipped.items():
        print(f"  not drawn: {name} ({why})")
    return 0


def cmd_plot(args):
    from .reporting.figures import FIGURE_NAMES, render_figure

    if args.figure not in FIGURE_NAMES:
        raise ValueError(f"unknown figure {args.figure!r}; known figures: {', '.join(FIGURE_NAMES)}")
    print(render_figure(args.run_dir, args.figure, args.out, cache_dir=args.cache_dir, samples=args.samples))
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    args._argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\nsdsnn: interrupted", file=sys.stderr, flush=True)
        return 130
    except (ValueError, OSError, TypeError, ArithmeticError, MemoryError) as exc:
        print(f"sdsnn: error: {exc or 'out of memory'}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
