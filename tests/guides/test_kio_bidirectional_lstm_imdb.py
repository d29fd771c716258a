"""keras-io's example "Bidirectional LSTM on IMDB" (examples/nlp/bidirectional_lstm_imdb.py,
Apache 2.0) run on fastnn with only the imports changed.

Changed besides the imports: IMDB is 128 (train) and 32 (validation) random lists of word
indices of random lengths 20-299 (no network), padded by the example's
``keras.preprocessing.sequence.pad_sequences``; the label is whether a review holds more words
below 10,000 than above (learnable).
"""

import numpy as np

import fastnn as keras
from fastnn import layers

max_features = 20000  # Only consider the top 20k words
maxlen = 200  # Only consider the first 200 words of each movie review


def load_data(rng, count):
    """(sequences, labels) typed as keras.datasets.imdb.load_data(num_words=20000)'s."""
    sequences = [list(rng.integers(1, max_features, rng.integers(20, 300))) for _ in range(count)]
    labels = np.array([int(np.mean(np.array(s) < max_features // 2) > 0.5) for s in sequences])
    return sequences, labels


def test_bidirectional_lstm_on_imdb(capsys):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    # Input for variable-length sequences of integers
    inputs = keras.Input(shape=(None,), dtype="int32")
    # Embed each integer in a 128-dimensional vector
    x = layers.Embedding(max_features, 128)(inputs)
    # Add 2 bidirectional LSTMs
    x = layers.Bidirectional(layers.LSTM(64, return_sequences=True))(x)
    x = layers.Bidirectional(layers.LSTM(64))(x)
    # Add a classifier
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.summary()
    out = capsys.readouterr().out
    assert "Total params: 2,757,761" in out  # the example's summary
    assert "(None, None, 128)" in out and "(None, 128)" in out

    (x_train, y_train), (x_val, y_val) = load_data(rng, 128), load_data(rng, 32)
    print(len(x_train), "Training sequences")
    print(len(x_val), "Validation sequences")
    # Use pad_sequence to standardize sequence length: truncate longer, zero-pad shorter
    x_train = keras.preprocessing.sequence.pad_sequences(x_train, maxlen=maxlen)
    x_val = keras.preprocessing.sequence.pad_sequences(x_val, maxlen=maxlen)
    assert x_train.shape == (128, maxlen) and x_val.shape == (32, maxlen)
    assert x_train.dtype == np.int32

    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=32, epochs=2, validation_data=(x_val, y_val))
    losses = history.history["loss"]
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert np.all(np.isfinite(losses)) and losses[1] < losses[0]
    # variable-length input: any sequence length predicts one probability per review
    probabilities = model.predict(x_val[:4, :50], verbose=0)
    assert probabilities.shape == (4, 1)
    assert np.all((probabilities > 0) & (probabilities < 1))
