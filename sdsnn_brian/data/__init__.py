"""Datasets: MNIST from idx files (complete or truncated); CIFAR-10 (python batches, image folder or the
shared JPEG archive, ``cifar10``); N-MNIST and DVS-Gesture event data (``events``); a drifting-blob stimulus (``blobs``)."""

from .blobs import DriftingBlob
from .cifar10 import CIFAR10, load_cifar10
from .errors import CorruptDataError
from .events import DVSGesture, FrameSettings, NMNIST
from .mnist import MNIST, TruncatedDataWarning, default_mnist_root, load_mnist

__all__ = ["CIFAR10", "load_cifar10", "CorruptDataError", "DriftingBlob", "NMNIST", "DVSGesture", "FrameSettings", "MNIST", "TruncatedDataWarning", "default_mnist_root", "load_mnist"]
