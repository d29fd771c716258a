"""keras-io's guide "Understanding masking & padding"
(guides/understanding_masking_and_padding.py, Keras 3 version, Apache 2.0) run on fastnn with
only the imports changed (``keras.preprocessing.sequence.pad_sequences`` is
``keras.utils.pad_sequences``, where Keras 3 keeps it too). Masks print as numpy arrays where
Keras on torch prints tensors."""

import numpy as np

import fastnn as keras
from fastnn import layers, ops

RAW_INPUTS = [
    [711, 632, 71],
    [73, 8, 3215, 55, 927],
    [83, 91, 1, 645, 1253, 927],
]


def padded():
    # By default, this will pad using 0s; it is configurable via the "value" parameter.
    return keras.utils.pad_sequences(RAW_INPUTS, padding="post")


def test_padding_and_mask_generating_layers(capsys):
    padded_inputs = padded()
    print(padded_inputs)
    assert padded_inputs.tolist() == [
        [711, 632, 71, 0, 0, 0],
        [73, 8, 3215, 55, 927, 0],
        [83, 91, 1, 645, 1253, 927],
    ]

    embedding = layers.Embedding(input_dim=5000, output_dim=16, mask_zero=True)
    masked_output = embedding(padded_inputs)
    print(masked_output._keras_mask)

    masking_layer = layers.Masking()
    # Simulate the embedding lookup by expanding the 2D input to 3D,
    # with embedding dimension of 10.
    unmasked_embedding = ops.cast(
        ops.tile(ops.expand_dims(padded_inputs, axis=-1), [1, 1, 10]),
        dtype="float32",
    )
    masked_embedding = masking_layer(unmasked_embedding)
    print(masked_embedding._keras_mask)
    expected = padded_inputs != 0
    np.testing.assert_array_equal(masked_output._keras_mask, expected)
    np.testing.assert_array_equal(masked_embedding._keras_mask, expected)
    assert str(expected) in capsys.readouterr().out


def test_mask_propagation_and_passing_masks_directly():
    model = keras.Sequential(
        [
            layers.Embedding(input_dim=5000, output_dim=16, mask_zero=True),
            layers.LSTM(32),
        ]
    )
    sequential_out = model(padded())
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(input_dim=5000, output_dim=16, mask_zero=True)(inputs)
    outputs = layers.LSTM(32)(x)
    model = keras.Model(inputs, outputs)
    assert sequential_out.shape == model(padded()).shape == (3, 32)

    class MyLayer(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.embedding = layers.Embedding(input_dim=5000, output_dim=16, mask_zero=True)
            self.lstm = layers.LSTM(32)

        def call(self, inputs):
            x = self.embedding(inputs)
            # Note that you could also prepare a `mask` tensor manually.
            # It only needs to be a boolean tensor
            # with the right shape, i.e. (batch_size, timesteps).
            mask = self.embedding.compute_mask(inputs)
            output = self.lstm(x, mask=mask)  # The layer will ignore the masked values
            return output

    layer = MyLayer()
    x = np.random.random((32, 10)) * 100
    x = x.astype("int32")
    assert layer(x).shape == (32, 32)
    # the LSTM ignores the padded steps: padding more zeros at the end changes nothing
    x[:, -3:] = 0
    longer = np.concatenate([x, np.zeros((32, 4), "int32")], axis=1)
    np.testing.assert_allclose(layer(longer), layer(x), rtol=1e-5, atol=1e-6)


def test_custom_layers_that_modify_generate_propagate_and_consume_masks(capsys):
    masked_embedding = layers.Masking()(
        ops.cast(ops.tile(ops.expand_dims(padded(), axis=-1), [1, 1, 10]), dtype="float32")
    )

    class TemporalSplit(keras.layers.Layer):
        """Split the input tensor into 2 tensors along the time dimension."""

        def call(self, inputs):
            # Expect the input to be 3D and mask to be 2D, split the input tensor into 2
            # subtensors along the time axis (axis 1).
            return ops.split(inputs, 2, axis=1)

        def compute_mask(self, inputs, mask=None):
            # Also split the mask into 2 if it presents.
            if mask is None:
                return None
            return ops.split(mask, 2, axis=1)

    first_half, second_half = TemporalSplit()(masked_embedding)
    print(first_half._keras_mask)
    print(second_half._keras_mask)
    np.testing.assert_array_equal(first_half._keras_mask, [[True] * 3] * 3)
    np.testing.assert_array_equal(
        second_half._keras_mask, [[False] * 3, [True, True, False], [True] * 3]
    )

    class CustomEmbedding(keras.layers.Layer):
        def __init__(self, input_dim, output_dim, mask_zero=False, **kwargs):
            super().__init__(**kwargs)
            self.input_dim = input_dim
            self.output_dim = output_dim
            self.mask_zero = mask_zero

        def build(self, input_shape):
            self.embeddings = self.add_weight(
                shape=(self.input_dim, self.output_dim),
                initializer="random_normal",
                dtype="float32",
            )

        def call(self, inputs):
            inputs = ops.cast(inputs, "int32")
            return ops.take(self.embeddings, inputs)

        def compute_mask(self, inputs, mask=None):
            if not self.mask_zero:
                return None
            return ops.not_equal(inputs, 0)

    layer = CustomEmbedding(10, 32, mask_zero=True)
    x = np.random.random((3, 10)) * 9
    x = x.astype("int32")
    y = layer(x)
    mask = layer.compute_mask(x)
    print(mask)
    np.testing.assert_array_equal(mask, x != 0)
    np.testing.assert_array_equal(y._keras_mask, x != 0)  # as Keras sets it
    assert y.shape == (3, 10)  # ops.take without an axis reads the flattened table, as Keras

    class MyActivation(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            # Signal that the layer is safe for mask propagation
            self.supports_masking = True

        def call(self, inputs):
            return ops.relu(inputs)

    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(input_dim=5000, output_dim=16, mask_zero=True)(inputs)
    x = MyActivation()(x)  # Will pass the mask along
    print("Mask found:", x._keras_mask)
    assert x._keras_mask is not None and x._keras_mask.shape == (None, None)
    outputs = layers.LSTM(32)(x)  # Will receive the mask
    model = keras.Model(inputs, outputs)
    y = model(np.random.randint(0, 5000, size=(32, 100)))
    assert y.shape == (32, 32)

    class TemporalSoftmax(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, inputs, mask=None):
            assert mask is not None
            broadcast_float_mask = ops.expand_dims(ops.cast(mask, "float32"), -1)
            inputs_exp = ops.exp(inputs) * broadcast_float_mask
            inputs_sum = ops.sum(inputs_exp * broadcast_float_mask, axis=-1, keepdims=True)
            return inputs_exp / inputs_sum

    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(input_dim=10, output_dim=32, mask_zero=True)(inputs)
    x = layers.Dense(1)(x)
    outputs = TemporalSoftmax()(x)
    model = keras.Model(inputs, outputs)
    ids = np.random.randint(1, 10, size=(32, 100))  # no padding: the guide's 0/0 steps are NaN
    y = model(ids)
    assert y.shape == (32, 100, 1)
    np.testing.assert_allclose(y, 1.0, rtol=1e-6)  # a softmax over a last axis of size 1
