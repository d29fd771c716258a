"""keras-io's example "Text classification from scratch"
(examples/nlp/text_classification_from_scratch.py, Keras 3 version, Apache 2.0): its model
parts run on fastnn with only the imports changed.

Not run: the IMDB download, so the training data is already vectorized: 200 random reviews of
120 token ids below max_features (the example: 500), with a label the model can learn (the
share of "positive" ids), in place of ``raw_train_ds.map(vectorize_text)``; the vectorizing
itself runs on raw reviews in its own test, its ``custom_standardization`` written with numpy
(Keras hands a callable numpy strings on backends other than TensorFlow) where the example
uses tf.strings. The tf.data datasets are re-iterables of batches; the end-to-end model over
raw strings is left out (a model's inputs are numbers, as on Keras's torch backend).
"""

import re
import string

import numpy as np

import fastnn as keras
from fastnn import layers

# Model constants.
max_features = 20000
embedding_dim = 128
sequence_length = 120


class Batches:
    """A vectorized, batched tf.data dataset: each pass yields the same (x, y) batches."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)


def vectorized_reviews(rng, count):
    """Batches of 32 (token ids, 0/1 label): positive reviews use more ids below 20."""
    labels = rng.integers(0, 2, count)
    low = rng.random((count, sequence_length)) < np.where(labels, 0.9, 0.1)[:, None]
    ids = np.where(low, rng.integers(1, 20, low.shape), rng.integers(20, max_features, low.shape))
    return Batches([(ids[i : i + 32], labels[i : i + 32]) for i in range(0, count, 32)])


def test_the_text_convnet_trains_and_evaluates():
    rng = np.random.default_rng(0)
    train_ds, val_ds, test_ds = (vectorized_reviews(rng, n) for n in (192, 64, 64))

    # A integer input for vocab indices.
    inputs = keras.Input(shape=(None,), dtype="int64")
    # Next, we add a layer to map those vocab indices into a space of dimensionality
    # 'embedding_dim'.
    x = layers.Embedding(max_features, embedding_dim)(inputs)
    x = layers.Dropout(0.5)(x)
    # Conv1D + global max pooling
    x = layers.Conv1D(128, 7, padding="valid", activation="relu", strides=3)(x)
    x = layers.Conv1D(128, 7, padding="valid", activation="relu", strides=3)(x)
    x = layers.GlobalMaxPooling1D()(x)
    # We add a vanilla hidden layer:
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    # We project onto a single unit output layer, and squash it with a sigmoid:
    predictions = layers.Dense(1, activation="sigmoid", name="predictions")(x)
    model = keras.Model(inputs, predictions)
    # Compile the model with binary crossentropy loss and an adam optimizer.
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    assert model.count_params() == 20000 * 128 + (7 * 128 * 128 + 128) * 2 + 128 * 129 + 129

    epochs = 3
    # Fit the model using the train and test datasets.
    history = model.fit(train_ds, validation_data=val_ds, epochs=epochs)
    loss, accuracy = model.evaluate(test_ds)
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    losses, val_losses = history.history["loss"], history.history["val_loss"]
    assert losses[2] < losses[1] < losses[0]  # the share of low ids decides the label
    assert val_losses[2] < val_losses[0] and loss < 0.6
    assert 0 <= accuracy <= 1
    # variable-length reviews go through the same model (shape=(None,))
    assert model.predict(test_ds.batches[0][0][:, :50], verbose=0).shape == (32, 1)


def custom_standardization(input_data):
    lowercase = np.char.lower(input_data)
    stripped_html = np.char.replace(lowercase, "<br />", " ")
    return np.array([re.sub(f"[{re.escape(string.punctuation)}]", "", t) for t in stripped_html])


def test_raw_reviews_are_vectorized():
    reviews = np.array(
        [
            "This movie was GREAT!<br />Great acting, great story.",
            "Terrible. Just terrible; the story made no sense.",
            "An okay movie... the acting was fine.",
        ]
    )
    vectorize_layer = keras.layers.TextVectorization(
        standardize=custom_standardization,
        max_tokens=max_features,
        output_mode="int",
        output_sequence_length=sequence_length,
    )
    vectorize_layer.adapt(reviews)
    vocabulary = vectorize_layer.get_vocabulary()
    # by count (3 greats), ties by the higher word (was > the > terrible > story ...)
    assert vocabulary[:5] == ["", "[UNK]", "great", "was", "the"]

    def vectorize_text(text, label):
        text = np.expand_dims(text, -1)
        return vectorize_layer(text), label

    ids, labels = vectorize_text(reviews, np.array([1, 0, 1]))
    assert ids.shape == (3, sequence_length) and ids.dtype == np.int64
    words = [vocabulary[i] for i in ids[0] if i]
    assert words == ["this", "movie", "was", "great", "great", "acting", "great", "story"]
    assert (ids[:, 12:] == 0).all()  # padded to sequence_length
