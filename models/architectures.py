"""Named network architectures.

``mnist_fc(hidden=(400,))``
    784 -> hidden... -> 10 fully connected, the SD-SNN neuron, rate-coded input, T = 20
    (the engine's benchmark network; ``hidden=(300,)`` is the SD-SNN reference FC300 head).
"""
from sdsnn_brian.network import Dense, Input, Network

__all__ = ["mnist_fc", "ARCHITECTURES", "get_architecture"]


def mnist_fc(hidden=(400,), neuron="sdsnn_lif", encoding="rate", steps=20, bias=False, n_in=784,
             n_classes=10, name=None):
    """A fully connected MNIST network ``n_in -> hidden... -> n_classes``."""
    hidden = tuple(int(h) for h in hidden)
    layers = [Input(n_in, encoding=encoding)]
    layers += [Dense(h, neuron=neuron, bias=bias) for h in hidden]
    layers.append(Dense(n_classes, neuron=neuron, bias=bias))
    return Network(*layers, steps=steps,
                   name=name or "mnist_fc_" + "-".join(str(s) for s in (n_in, *hidden, n_classes)))


ARCHITECTURES = {"mnist_fc": mnist_fc}


def get_architecture(name):
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}") from None
