"""Datasets: MNIST from idx files (complete or truncated); N-MNIST and DVS-Gesture event data (``events``); a drifting-blob stimulus (``blobs``)."""

from .blobs import DriftingBlob
from .errors import CorruptDataError
from .events import DVSGesture, FrameSettings, NMNIST
from .mnist import MNIST, TruncatedDataWarning, default_mnist_root, load_mnist

__all__ = ["CorruptDataError", "DriftingBlob", "NMNIST", "DVSGesture", "FrameSettings", "MNIST", "TruncatedDataWarning", "default_mnist_root", "load_mnist"]
