"""Named network architectures.

``mnist_fc(hidden=(400,))``
    784 -> hidden... -> 10 fully connected, the SD-SNN neuron, rate-coded input, T = 20
    (the engine's benchmark network; ``hidden=(300,)`` is the SD-SNN reference FC300 head).
``sdsnn_conv(input_shape=(1, 28, 28), n_classes=10)``
    The SD-SNN reference convolutional network 15C3-AP2-40C3-AP2-FC300-FC<classes>
    (MNIST 1x28x28, N-MNIST 2x34x34, DVS-Gesture 2x128x128 with 11 classes).
"""
from sdsnn_brian.network import AvgPool2d, Conv2d, Dense, Input, Network

__all__ = ["mnist_fc", "sdsnn_conv", "ARCHITECTURES", "get_architecture"]


def mnist_fc(hidden=(400,), neuron="sdsnn_lif", encoding="rate", steps=20, bias=False, n_in=784,
             n_classes=10, name=None):
    """A fully connected MNIST network ``n_in -> hidden... -> n_classes``."""
    hidden = tuple(int(h) for h in hidden)
    layers = [Input(n_in, encoding=encoding)]
    layers += [Dense(h, neuron=neuron, bias=bias) for h in hidden]
    layers.append(Dense(n_classes, neuron=neuron, bias=bias))
    return Network(*layers, steps=steps,
                   name=name or "mnist_fc_" + "-".join(str(s) for s in (n_in, *hidden, n_classes)))


def sdsnn_conv(input_shape=(1, 28, 28), n_classes=10, channels=(15, 40), hidden=(300,), kernel=3, padding=1,
               pool=2, neuron="sdsnn_lif", encoding="rate", steps=20, bias=True, name=None):
    """``C1 conv - AP - C2 conv - AP - hidden... - n_classes``; the defaults are the SD-SNN reference
    15C3-AP2-40C3-AP2-FC300-FC10 as in the STBP-style code it builds on: stride 1, padding 1
    (28 -> 28 -> 14 -> 14 -> 7, so FC300 sees 40x7x7), average pooling of spikes, and a bias
    per channel / neuron (PyTorch's ``Conv2d``/``Linear`` default)."""
    layers = [Input(tuple(int(d) for d in input_shape), encoding=encoding)]
    for c in channels:
        layers += [Conv2d(int(c), kernel=kernel, padding=padding, neuron=neuron, bias=bias), AvgPool2d(pool)]
    layers += [Dense(int(h), neuron=neuron, bias=bias) for h in hidden]
    layers.append(Dense(int(n_classes), neuron=neuron, bias=bias))
    tag = "-".join([f"{c}C{kernel}-AP{pool}" for c in channels] + [f"FC{h}" for h in (*hidden, n_classes)])
    return Network(*layers, steps=steps, name=name or "sdsnn_conv_" + tag)


ARCHITECTURES = {"mnist_fc": mnist_fc, "sdsnn_conv": sdsnn_conv}


def get_architecture(name):
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}") from None
