"""The ``sdsnn`` command line.

    sdsnn train [options]        train a network on MNIST (C++ standalone by default)
    sdsnn --help                 the commands; ``sdsnn COMMAND --help`` for each

Errors in the arguments or the data end the command with a one-line message
(``sdsnn: error: ...``) and exit status 2.
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser"]


def _add_train(sub):
    p = sub.add_parser("train", help="train a network on MNIST", description="Train a spiking network on MNIST "
                       "with surrogate gradients computed from the Brian2 simulation's recorded state.")
    g = p.add_argument_group("network")
    g.add_argument("--hidden", type=int, nargs="+", default=[400], help="hidden layer sizes (default: 400)")
    g.add_argument("--neuron", default="sdsnn_lif", help="neuron model name (default: sdsnn_lif)")
    g.add_argument("--encoding", default="rate", choices=["rate", "latency"], help="input encoding")
    g.add_argument("--steps", type=int, default=20, help="time steps per sample, T (default: 20)")
    g.add_argument("--bias", action="store_true", help="train a bias per neuron")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=25)
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
    g = p.add_argument_group("data and device")
    g.add_argument("--mnist-dir", default=None, help="directory of the MNIST idx files (default: shared data)")
    g.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    g.add_argument("--test-limit", type=int, default=None, help="use only the first N test images")
    g.add_argument("--device", default="cpp_standalone", choices=["cpp_standalone", "cuda_standalone", "runtime"])
    g.add_argument("--threads", type=int, default=0, help="OpenMP threads for C++ standalone")
    g = p.add_argument_group("run directory")
    g.add_argument("--run-dir", default="runs/mnist_dense")
    g.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --run-dir")
    g.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N batches")
    g.add_argument("--log-every", type=int, default=10, help="progress line every N batches")
    p.set_defaults(func=cmd_train)


def build_parser():
    parser = argparse.ArgumentParser(prog="sdsnn", description="Spiking networks in Brian2, trained with "
                                     "surrogate gradients, with SD-SNN structural development.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    return parser


def cmd_train(args):
    from . import SGD, Adam, CosineLR, StepLR, Trainer
    from .callbacks import RunDirectory
    from .data import MNIST
    from .models import mnist_fc
    from .surrogate import SURROGATES

    net = mnist_fc(hidden=args.hidden, neuron=args.neuron, encoding=args.encoding, steps=args.steps, bias=args.bias)
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
    print(f"data: {len(train)} training images ({train.source}), {len(test)} test images", flush=True)
    protocol = "sdsnn " + " ".join(sys.argv[1:])
    trainer = Trainer(net, device=args.device, surrogate=surrogate, loss=args.loss, optimizer=opt,
                      lr_schedule=schedule, detach_reset=args.detach_reset, seed=args.seed, threads=args.threads,
                      callbacks=[RunDirectory(args.run_dir, checkpoint_every=args.checkpoint_every,
                                              protocol=protocol)])
    trainer.fit(train, epochs=args.epochs, batch_size=args.batch_size, validation=test, run_dir=args.run_dir,
                resume=args.resume, log_every=args.log_every)
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, PermissionError, TypeError) as exc:
        print(f"sdsnn: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
