"""End to end: the demo's CNN learns the bundled UCI handwritten digits."""

import numpy as np

from fastnn.examples import digits


def test_digits_data_ships_with_the_package():
    (x_train, y_train), (x_test, y_test) = digits.load_digits()
    assert x_train.shape[1:] == (8, 8, 1) and x_train.dtype == np.float32
    assert len(x_train) + len(x_test) == 1797
    assert set(np.unique(y_train)) == set(range(10))
    assert x_train.min() >= 0.0 and x_train.max() <= 1.0


def test_cnn_reaches_97_percent_on_held_out_digits():
    model, history, accuracy = digits.train(epochs=15, seed=0, verbose=0)
    assert accuracy >= 0.97
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
