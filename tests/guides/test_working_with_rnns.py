"""keras-io's guide "Working with RNNs" (guides/working_with_rnns.py, Keras 3 version,
Apache 2.0) run on fastnn with only the imports changed.

Changed besides the imports: MNIST is random uint8 images of its shape (no network), 256
samples; ``tf.argmax`` / ``tf.expand_dims`` are ``ops.argmax`` / ``ops.expand_dims``; the
``tf.device("CPU:0")`` block and matplotlib's plot are left out. Not run: the last section, an
RNN over a custom cell with nested inputs and 2-D states (``state_size`` of
``tf.TensorShape``s): fastnn's RNN takes one input sequence and flat states.
"""

import numpy as np

import fastnn as keras
from fastnn import layers, ops

RNG = np.random.default_rng(0)


def test_built_in_rnn_layers_outputs_and_states(capsys):
    model = keras.Sequential()
    # Add an Embedding layer expecting input vocab of size 1000, and
    # output embedding dimension of size 64.
    model.add(layers.Embedding(input_dim=1000, output_dim=64))
    # Add a LSTM layer with 128 internal units.
    model.add(layers.LSTM(128))
    # Add a Dense layer with 10 units.
    model.add(layers.Dense(10))
    model.summary()
    assert model(np.ones((2, 7), "int32")).shape == (2, 10)

    model = keras.Sequential()
    model.add(layers.Embedding(input_dim=1000, output_dim=64))
    # The output of GRU will be a 3D tensor of shape (batch_size, timesteps, 256)
    model.add(layers.GRU(256, return_sequences=True))
    # The output of SimpleRNN will be a 2D tensor of shape (batch_size, 128)
    model.add(layers.SimpleRNN(128))
    model.add(layers.Dense(10))
    model.summary()
    assert model(np.ones((2, 7), "int32")).shape == (2, 10)
    assert [layer.output.shape for layer in model.layers[1:3]] == [(None, 7, 256), (None, 128)]

    encoder_vocab = 1000
    decoder_vocab = 2000
    encoder_input = layers.Input(shape=(None,))
    encoder_embedded = layers.Embedding(input_dim=encoder_vocab, output_dim=64)(encoder_input)
    # Return states in addition to output
    output, state_h, state_c = layers.LSTM(64, return_state=True, name="encoder")(encoder_embedded)
    encoder_state = [state_h, state_c]
    decoder_input = layers.Input(shape=(None,))
    decoder_embedded = layers.Embedding(input_dim=decoder_vocab, output_dim=64)(decoder_input)
    # Pass the 2 states to a new LSTM layer, as initial state
    decoder_output = layers.LSTM(64, name="decoder")(decoder_embedded, initial_state=encoder_state)
    output = layers.Dense(10)(decoder_output)
    model = keras.Model([encoder_input, decoder_input], output)
    model.summary()
    assert capsys.readouterr().out.endswith(" Non-trainable params: 0 (0.00 B)\n")
    assert model.count_params() == 64_000 + 128_000 + 2 * 33_024 + 650
    source, target = np.ones((2, 5)), np.ones((2, 7))
    prediction = model.predict([source, target], verbose=0)
    assert prediction.shape == (2, 10)
    # the decoder starts from the encoder's states: other sources, other predictions
    assert not np.allclose(model.predict([source * 3, target], verbose=0), prediction)


def test_cross_batch_statefulness_and_state_reuse():
    paragraph1 = np.random.random((20, 10, 50)).astype(np.float32)
    paragraph2 = np.random.random((20, 10, 50)).astype(np.float32)
    paragraph3 = np.random.random((20, 10, 50)).astype(np.float32)

    lstm_layer = layers.LSTM(64, stateful=True)
    output = lstm_layer(paragraph1)
    output = lstm_layer(paragraph2)
    output = lstm_layer(paragraph3)
    # reset_states() will reset the cached state to the original initial_state.
    # If no initial_state was provided, zero-states will be used by default.
    lstm_layer.reset_states()
    np.testing.assert_array_equal(lstm_layer.states[0], 0)
    fresh = layers.LSTM(64)
    fresh.build((None, 10, 50))
    fresh.set_weights(lstm_layer.get_weights())
    np.testing.assert_allclose(lstm_layer(paragraph1), fresh(paragraph1), rtol=1e-5)

    lstm_layer = layers.LSTM(64, stateful=True)
    output = lstm_layer(paragraph1)
    output = lstm_layer(paragraph2)
    existing_state = lstm_layer.states
    new_lstm_layer = layers.LSTM(64)
    new_output = new_lstm_layer(paragraph3, initial_state=existing_state)
    assert output.shape == new_output.shape == (20, 64)


def test_bidirectional_rnns(capsys):
    model = keras.Sequential()
    model.add(layers.Bidirectional(layers.LSTM(64, return_sequences=True), input_shape=(5, 10)))
    model.add(layers.Bidirectional(layers.LSTM(32)))
    model.add(layers.Dense(10))
    model.summary()
    assert "Total params: 80,266" in capsys.readouterr().out  # 38,400 + 41,216 + 650
    assert model.layers[0].output.shape == (None, 5, 128)


batch_size = 64
# Each MNIST image batch is a tensor of shape (batch_size, 28, 28).
# Each input sequence will be of size (28, 28) (height is treated like time).
input_dim = 28
units = 64
output_size = 10  # labels are from 0 to 9


# Build the RNN model
def build_model(allow_cudnn_kernel=True):
    # CuDNN is only available at the layer level, and not at the cell level.
    # This means `LSTM(units)` will use the CuDNN kernel,
    # while RNN(LSTMCell(units)) will run on non-CuDNN kernel.
    if allow_cudnn_kernel:
        # The LSTM layer with default options uses CuDNN.
        lstm_layer = keras.layers.LSTM(units, input_shape=(None, input_dim))
    else:
        # Wrapping a LSTMCell in a RNN layer will not use CuDNN.
        lstm_layer = keras.layers.RNN(keras.layers.LSTMCell(units), input_shape=(None, input_dim))
    model = keras.models.Sequential(
        [
            lstm_layer,
            keras.layers.BatchNormalization(),
            keras.layers.Dense(output_size),
        ]
    )
    return model


def test_the_layer_and_the_cell_in_an_rnn_train_alike(capsys):
    # mnist.load_data(): random images and labels of its shapes and dtypes
    x_train = RNG.integers(0, 256, (256, 28, 28), dtype="uint8")
    y_train = RNG.integers(0, 10, 256, dtype="uint8")
    x_test, y_test = x_train[:64], y_train[:64]
    x_train, x_test = x_train / 255.0, x_test / 255.0
    sample, sample_label = x_train[0], y_train[0]

    model = build_model(allow_cudnn_kernel=True)
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer="sgd",
        metrics=["accuracy"],
    )
    initial_weights = model.get_weights()
    keras.utils.set_random_seed(1)  # (added) both fits shuffle alike
    history = model.fit(
        x_train, y_train, validation_data=(x_test, y_test), batch_size=batch_size, epochs=1
    )

    noncudnn_model = build_model(allow_cudnn_kernel=False)
    noncudnn_model.set_weights(initial_weights)  # the guide copies them after training
    noncudnn_model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer="sgd",
        metrics=["accuracy"],
    )
    keras.utils.set_random_seed(1)
    noncudnn_history = noncudnn_model.fit(
        x_train, y_train, validation_data=(x_test, y_test), batch_size=batch_size, epochs=1
    )
    # RNN(LSTMCell(units)) computes what LSTM(units) does: the same training from the same start
    for key, values in history.history.items():
        np.testing.assert_allclose(noncudnn_history.history[key], values, rtol=1e-4)

    cpu_model = build_model(allow_cudnn_kernel=True)
    cpu_model.set_weights(model.get_weights())
    result = ops.argmax(cpu_model.predict_on_batch(ops.expand_dims(sample, 0)), axis=1)
    print("Predicted result is: %s, target result is: %s" % (result, sample_label))  # noqa: UP031
    assert result.shape == (1,) and 0 <= int(result[0]) < 10
    np.testing.assert_array_equal(result, np.argmax(model.predict(sample[None], verbose=0), axis=1))
