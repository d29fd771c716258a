"""Keras's ``_keras_mask``: an eager layer call's output carries the mask its layer computes,
the next eager call takes it, and a symbolic tensor tells whether (and what shape) it has one."""

import numpy as np
import pytest
from keras_twin import keras_module, to_numpy

import fastnn as keras
from fastnn import layers, ops

PADDED = np.array([[711, 632, 71, 0, 0, 0], [73, 8, 3215, 55, 927, 0], [83, 91, 1, 645, 1253, 927]])


def test_embedding_and_masking_outputs_carry_their_masks():
    embedded = layers.Embedding(input_dim=5000, output_dim=4, mask_zero=True)(PADDED)
    np.testing.assert_array_equal(embedded._keras_mask, PADDED != 0)
    steps = np.repeat(PADDED[..., None], 3, axis=-1).astype("float32")
    masked = layers.Masking()(steps)
    np.testing.assert_array_equal(masked._keras_mask, PADDED != 0)
    np.testing.assert_array_equal(masked, steps)  # the values are the layer's output
    assert getattr(layers.Embedding(5000, 4)(PADDED), "_keras_mask", None) is None
    derived = embedded * 2  # arrays computed from one carry no mask, as Keras's tensors
    assert getattr(derived, "_keras_mask", None) is None


def test_an_eager_lstm_takes_the_mask_its_input_carries():
    embedding = layers.Embedding(input_dim=5000, output_dim=4, mask_zero=True)
    lstm = layers.LSTM(3)
    embedded = embedding(PADDED)
    carried = lstm(embedded)
    explicit = lstm(np.asarray(embedded), mask=PADDED != 0)
    unmasked = lstm(np.asarray(embedded))
    np.testing.assert_allclose(carried, explicit, rtol=1e-6)
    assert not np.allclose(carried, unmasked)
    # LSTM(return_sequences=False) ends the mask
    assert getattr(carried, "_keras_mask", None) is None
    sequences = layers.LSTM(3, return_sequences=True)(embedded)
    np.testing.assert_array_equal(sequences._keras_mask, PADDED != 0)


class TemporalSplit(keras.layers.Layer):
    def call(self, inputs):
        return ops.split(inputs, 2, axis=1)

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        return ops.split(mask, 2, axis=1)


class NotEqualZero(keras.layers.Layer):
    def call(self, inputs):
        return ops.cast(inputs, "float32")

    def compute_mask(self, inputs, mask=None):
        return ops.not_equal(inputs, 0)


class Relu(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        return ops.relu(inputs)


class SeesMask(keras.layers.Layer):
    def call(self, inputs, mask=None):
        self.seen = mask
        return inputs


def test_call_layers_get_and_give_masks_as_keras():
    embedded = layers.Embedding(5000, 4, mask_zero=True)(PADDED)
    first_half, second_half = TemporalSplit()(embedded)
    np.testing.assert_array_equal(first_half._keras_mask, PADDED[:, :3] != 0)
    np.testing.assert_array_equal(second_half._keras_mask, PADDED[:, 3:] != 0)
    np.testing.assert_array_equal(NotEqualZero()(PADDED)._keras_mask, PADDED != 0)
    np.testing.assert_array_equal(Relu()(embedded)._keras_mask, PADDED != 0)
    # a call() layer that does not opt in drops the mask, but its call(mask=) still gets it
    sees = SeesMask()
    assert getattr(sees(embedded), "_keras_mask", None) is None
    np.testing.assert_array_equal(sees.seen, PADDED != 0)


def test_symbolic_tensors_tell_their_mask():
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(input_dim=5000, output_dim=16, mask_zero=True)(inputs)
    x = Relu()(x)
    assert x._keras_mask.shape == (None, None) and x._keras_mask.dtype == bool
    assert layers.LSTM(4)(x)._keras_mask is None
    assert layers.LSTM(4, return_sequences=True)(x)._keras_mask.shape == (None, None)
    fixed = keras.Input(shape=(7,), dtype="int32")
    assert layers.Embedding(10, 2, mask_zero=True)(fixed)._keras_mask.shape == (None, 7)
    assert layers.Embedding(10, 2)(fixed)._keras_mask is None
    assert inputs._keras_mask is None
    six = keras.Input(shape=(6,), dtype="int32")
    halves = TemporalSplit()(layers.Embedding(10, 2, mask_zero=True)(six))
    assert halves[0]._keras_mask.shape == halves[1]._keras_mask.shape == (None, 3)


@pytest.mark.parametrize("mask_zero", [True, False])
def test_eager_masks_match_keras(mask_zero):
    keras_ = keras_module()
    ours = layers.Embedding(5000, 4, mask_zero=mask_zero)(PADDED)
    theirs = keras_.layers.Embedding(5000, 4, mask_zero=mask_zero)(PADDED)
    their_mask = getattr(theirs, "_keras_mask", None)
    our_mask = getattr(ours, "_keras_mask", None)
    assert (our_mask is None) == (their_mask is None)
    if their_mask is not None:
        np.testing.assert_array_equal(our_mask, to_numpy(their_mask))
