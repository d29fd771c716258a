"""keras.datasets: MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100, IMDB, Reuters, Boston and
California housing. Each ``load_data()`` fetches Keras 3's file from Keras's origin into Keras's
cache (``~/.keras/datasets``, or ``$KERAS_HOME``; a file Keras downloaded is reused), checks its
hash and returns the arrays Keras returns. Reading a file never runs code from it.

Not imported by ``import fastnn``: ``fastnn.datasets`` loads on first use.
"""

from fastnn.datasets import (
    boston_housing,
    california_housing,
    cifar10,
    cifar100,
    fashion_mnist,
    imdb,
    mnist,
    reuters,
)

__all__ = [
    "boston_housing",
    "california_housing",
    "cifar10",
    "cifar100",
    "fashion_mnist",
    "imdb",
    "mnist",
    "reuters",
]
