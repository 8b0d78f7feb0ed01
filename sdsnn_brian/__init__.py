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
from .trainer import Trainer
from .decoders import Decoder, Window, make_decoder
from .vdib import VDIBTrainer, bernoulli_kl, kl_sample
from .vdib_experiments import vdib_encoder

__version__ = "0.1.0"

__all__ = ["Network", "Input", "Dense", "Conv2d", "AvgPool2d", "NeuronModel", "UnsupportedModelError", "models", "Trainer",
           "Adam", "SGD", "StepLR", "CosineLR", "Rate", "Latency", "Direct", "MNIST", "load_mnist",
           "VDIBTrainer", "Decoder", "Window", "make_decoder", "kl_sample", "bernoulli_kl", "vdib_encoder"]
