"""predict and model(x) from several threads at once give the serial results (no shared buffers)."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

import fastnn
from fastnn import layers


def test_concurrent_predict_matches_serial():
    fastnn.utils.set_random_seed(0)
    inputs = fastnn.Input((8, 8, 1))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    model = fastnn.Model(inputs, layers.Dense(3, activation="softmax")(layers.Dense(16)(x)))
    rng = np.random.default_rng(0)
    batches = [rng.random((n, 8, 8, 1), dtype=np.float32) for n in (5, 17, 32, 33, 64, 7, 1, 40)]
    serial = [model.predict(b, batch_size=8, verbose=0) for b in batches]
    direct = [model(b) for b in batches]

    def run(i):
        b = batches[i % len(batches)]
        return i, model.predict(b, batch_size=8, verbose=0), model(b)

    with ThreadPoolExecutor(8) as pool:
        for i, predicted, called in pool.map(run, range(64)):
            np.testing.assert_allclose(predicted, serial[i % len(batches)], rtol=1e-6, atol=0)
            np.testing.assert_allclose(called, direct[i % len(batches)], rtol=1e-6, atol=0)
