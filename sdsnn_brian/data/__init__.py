"""Datasets: MNIST from idx files (complete or truncated)."""

from .mnist import MNIST, TruncatedDataWarning, default_mnist_root, load_mnist

__all__ = ["MNIST", "TruncatedDataWarning", "default_mnist_root", "load_mnist"]
