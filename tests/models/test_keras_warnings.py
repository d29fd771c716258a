"""The warnings Keras 3 gives for what still runs but is likely a mistake, with its words."""

import warnings

import numpy as np
import pytest

import fastnn
from fastnn import layers


def test_input_shape_on_a_layer_warns_as_keras():
    with pytest.warns(UserWarning, match="Do not pass an `input_shape`/`input_dim` argument"):
        model = fastnn.Sequential([layers.Dense(2, input_shape=(3,))])
    assert model.output_shape == (None, 2)  # and it still works


def test_fit_without_trainable_weights_warns_and_with_them_does_not():
    frozen = fastnn.Sequential([fastnn.Input((3,)), layers.Dense(1, trainable=False)])
    frozen.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((4, 3), "float32"), np.ones((4, 1), "float32")
    with pytest.warns(UserWarning, match="The model does not have any trainable weights"):
        frozen.fit(x, y, verbose=0)
    trainable = fastnn.Sequential([fastnn.Input((3,)), layers.Dense(1)])
    trainable.compile(optimizer="sgd", loss="mse")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainable.fit(x, y, verbose=0)
