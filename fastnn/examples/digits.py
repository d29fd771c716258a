"""Train a small CNN on the UCI 8x8 handwritten digits that ship with fastnn; print test accuracy.

Run: ``python -m fastnn.examples.digits [--epochs N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import gzip
import time
from importlib import resources

import numpy as np

import fastnn as keras
from fastnn import layers


def load_digits(test_fraction: float = 0.2, seed: int = 0):
    """((x_train, y_train), (x_test, y_test)): images (N, 8, 8, 1) scaled to [0, 1], int labels."""
    raw = resources.files("fastnn.examples").joinpath("data/digits.csv.gz").read_bytes()
    table = np.loadtxt(gzip.decompress(raw).decode().splitlines(), delimiter=",")
    images = (table[:, :64] / 16.0).astype("float32").reshape(-1, 8, 8, 1)
    labels = table[:, 64].astype("int64")
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = int(len(labels) * (1 - test_fraction))
    train, test = order[:cut], order[cut:]
    return (images[train], labels[train]), (images[test], labels[test])


def build_model() -> keras.Model:
    """The seed document's CNN, sized for 8x8 inputs."""
    inputs = keras.Input(shape=(8, 8, 1), name="digit")
    x = layers.Conv2D(32, kernel_size=3, activation="relu", padding="same")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, kernel_size=3, activation="relu", padding="same")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(100, activation="relu")(x)
    x = layers.Dropout(0.4)(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs=inputs, outputs=outputs, name="digits_cnn")


def train(epochs: int = 25, seed: int = 0, verbose="auto"):
    """Train on the digits; return (model, history, test accuracy)."""
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = load_digits(seed=seed)
    model = build_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(
        x_train, y_train, epochs=epochs, batch_size=32, validation_split=0.1, verbose=verbose
    )
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return model, history, accuracy


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model, _, accuracy = train(args.epochs, args.seed)
    model.summary()
    print(f"Test accuracy: {accuracy:.4f} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
