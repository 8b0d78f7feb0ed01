"""
Dense MNIST with the SD-SNN neuron, trained through Brian2 C++ standalone code
==============================================================================

The engine's reference protocol: a 784-400-10 network of SD-SNN neurons
(u <- 0.2 u (1 - s) + W x, threshold 0.5, hard reset), rate-coded input over
T = 20 steps of 1 ms, trained with BPTT through a rectangular surrogate on the
MSE between output firing rates and one-hot targets (the SD-SNN reference
loss), Adam at 1e-3 with a cosine decay over the run (the reference decays
stepwise, x0.1 every 40 of 300 epochs; a constant rate makes the last epochs of a short
run unstable), minibatches of 100.

Data: the shared MNIST files -- 6,309 training images (all whole images in the
truncated training file) and the complete 10,000-image test set.

Every minibatch is one run of the compiled C++ project: the weights and the
minibatch's input spikes go in through ``run_args``, the membrane potentials
and spikes of every step come back, and the gradient is computed in numpy from
that recording.  The run directory holds the configuration, per-epoch metrics,
checkpoints and a summary; ``--resume`` continues an interrupted run.

    python protocols/train_mnist.py [--epochs 25] [--run-dir runs/mnist_dense]
"""
import argparse

from sdsnn_brian import MNIST, Adam, CosineLR, Trainer
from sdsnn_brian.callbacks import RunDirectory
from sdsnn_brian.models import mnist_fc

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--epochs", type=int, default=25)
parser.add_argument("--hidden", type=int, default=400)
parser.add_argument("--run-dir", default="runs/mnist_dense")
parser.add_argument("--mnist-dir", default=None)
parser.add_argument("--train-limit", type=int, default=None)
parser.add_argument("--test-limit", type=int, default=None)
parser.add_argument("--resume", action="store_true")
parser.add_argument("--overwrite", action="store_true", help="replace the run already in --run-dir")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

# The data: every whole training image the files hold, and the full test set.
train = MNIST(args.mnist_dir, train=True, limit=args.train_limit)
test = MNIST(args.mnist_dir, train=False, limit=args.test_limit)
print(f"{len(train)} training images, {len(test)} test images")

# The network: declared once, compiled to C++ on the first minibatch.
net = mnist_fc(hidden=(args.hidden,), neuron="sdsnn_lif", encoding="rate", steps=20)

# The learning rule: BPTT from the recorded state, rectangular surrogate, rate MSE, Adam.
trainer = Trainer(net, device="cpp_standalone", surrogate="rectangular", loss="rate_mse",
                  optimizer=Adam(1e-3), lr_schedule=lambda opt: CosineLR(opt, T_max=args.epochs),
                  seed=args.seed,
                  callbacks=[RunDirectory(args.run_dir, protocol=f"protocols/train_mnist.py {vars(args)}")])

history = trainer.fit(train, epochs=args.epochs, batch_size=100, validation=test,
                      run_dir=args.run_dir, resume=args.resume, overwrite=args.overwrite)

last = history[-1]
print(f"test accuracy {100 * last['val_accuracy']:.2f} % after {last['epoch']} epochs; "
      f"{last['train_samples_per_s']:.0f} training samples/s; results in {args.run_dir}")
