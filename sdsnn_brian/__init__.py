"""sdsnn_brian: spiking networks declared as Brian2 equations, compiled to C++/CUDA standalone
code, trained with surrogate gradients computed from recorded state, with SD-SNN structural
development (dendritic-spine constraint, neuronal pruning, synaptic regeneration).

The public API::

    from sdsnn_brian import Network, Input, Dense, models, Trainer, Adam, MNIST

    net = Network(Input(784, encoding='rate'), Dense(400, neuron=models.sdsnn_lif),
                  Dense(10, neuron=models.sdsnn_lif), steps=20)
    trainer = Trainer(net, device='cpp_standalone', surrogate='rectangular',
                      loss='rate_mse', optimizer=Adam(1e-3))
    history = trainer.fit(MNIST(train=True), epochs=10, batch_size=100,
                          validation=MNIST(train=False), run_dir='runs/mnist_dense')

One minibatch by hand: the loss and gradients a training step would apply, without the update
(``Trainer.gradients``), from given initial parameters (``weights=``, ``biases=``, ``masks=``,
one array per trained layer; masks of 0/1)::

    trainer = Trainer(net, weights=my_weights, masks=my_masks)
    g = trainer.gradients(images[:100], labels[:100], rng=0)
    g.loss, g.scores, g.dW, g.db                # dW per layer, db per layer with a bias

The pieces underneath, for a custom loop: ``Simulator(net, batch_size)`` compiles the network
once and ``run(spikes, weights, biases)`` returns the ``Recording`` (membrane ``u`` and spikes
``s`` per layer, ``[T, B, N]``); ``backward(net.dynamics(), spikes, rec.u, rec.s, weights,
grad_s, grad_u, surrogate)`` is BPTT from that recording, ``[(dW, db), ...]`` per layer::

    from sdsnn_brian import Simulator, backward
    from sdsnn_brian.losses import get_loss

    sim = Simulator(net, batch_size=100)            # device='cpp_standalone'
    rec = sim.run(spikes, weights, biases)          # spikes: [T, B, n_in] 0/1
    res = get_loss('rate_mse')(rec.u[-1], rec.s[-1], labels)
    grads = backward(net.dynamics(), spikes, rec.u, rec.s, weights, res.grad_s, res.grad_u,
                     'rectangular')

Time decoding (VDIB): a spiking encoder with a stochastic readout, a numpy decoder::

    from sdsnn_brian import VDIBTrainer, Window, vdib_encoder

    net = vdib_encoder(784, hidden=(256,), readouts=128, steps=20)
    tr = VDIBTrainer(net, 'mlp', distortion='ce', n_out=10, window=Window('whole'),
                     beta=1e-3, r=0.3, estimator='score')
    tr.fit(train.images, train.labels, epochs=4)
    tr.evaluate(test.images, test.labels)      # accuracy, distortion, KL, readout rate
"""
import warnings as _warnings

# brian2 2.8 imports a private setuptools helper that warns on every start; it says nothing to our users
_warnings.filterwarnings("ignore", message="_get_vc_env is private")

from . import models  # noqa: E402
from .data import MNIST, load_mnist
from .encoding import Direct, Latency, Rate
from .network import AvgPool2d, Conv2d, Dense, Input, Network
from .neuron import NeuronModel, UnsupportedModelError
from .optim import SGD, Adam, CosineLR, StepLR
from .trainer import Gradients, Trainer
from .device import Recording, Simulator
from .gradient import backward
from .decoders import Decoder, Window, make_decoder
from .vdib import VDIBTrainer, bernoulli_kl, kl_sample
from .vdib_experiments import vdib_encoder

__version__ = "0.1.0"

__all__ = ["Network", "Input", "Dense", "Conv2d", "AvgPool2d", "NeuronModel", "UnsupportedModelError", "models", "Trainer",
           "Gradients", "Simulator", "Recording", "backward",
           "Adam", "SGD", "StepLR", "CosineLR", "Rate", "Latency", "Direct", "MNIST", "load_mnist",
           "VDIBTrainer", "Decoder", "Window", "make_decoder", "kl_sample", "bernoulli_kl", "vdib_encoder"]
