"""keras-io's example "Text classification with Transformer"
(examples/nlp/text_classification_with_transformer.py, Keras 3 version, Apache 2.0) run on
fastnn with only the imports changed.

Changed besides the imports: IMDB is 256 (train) and 64 (validation) random reviews as
``keras.datasets.imdb.load_data`` gives them (lists of word indices of varied lengths starting
with 1; no network), the label learnable from the words; 2 epochs as the example. A check against
Keras 3 runs the same model in both.
"""

import numpy as np
from keras_twin import copy_weights, keras_module, to_numpy

import fastnn as keras
from fastnn import layers, ops

vocab_size = 20000  # Only consider the top 20k words
maxlen = 200  # Only consider the first 200 words of each movie review
embed_dim = 32  # Embedding size for each token
num_heads = 2  # Number of attention heads
ff_dim = 32  # Hidden layer size in feed forward network inside transformer


def example_model(k, k_layers, k_ops):
    """The example's classifier, for module ``k`` (fastnn or Keras)."""

    class TransformerBlock(k_layers.Layer):
        def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1):
            super().__init__()
            self.att = k_layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
            self.ffn = k.Sequential(
                [
                    k_layers.Dense(ff_dim, activation="relu"),
                    k_layers.Dense(embed_dim),
                ]
            )
            self.layernorm1 = k_layers.LayerNormalization(epsilon=1e-6)
            self.layernorm2 = k_layers.LayerNormalization(epsilon=1e-6)
            self.dropout1 = k_layers.Dropout(rate)
            self.dropout2 = k_layers.Dropout(rate)

        def call(self, inputs):
            attn_output = self.att(inputs, inputs)
            attn_output = self.dropout1(attn_output)
            out1 = self.layernorm1(inputs + attn_output)
            ffn_output = self.ffn(out1)
            ffn_output = self.dropout2(ffn_output)
            return self.layernorm2(out1 + ffn_output)

    class TokenAndPositionEmbedding(k_layers.Layer):
        def __init__(self, maxlen, vocab_size, embed_dim):
            super().__init__()
            self.token_emb = k_layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
            self.pos_emb = k_layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

        def call(self, x):
            maxlen = k_ops.shape(x)[-1]
            positions = k_ops.arange(start=0, stop=maxlen, step=1)
            positions = self.pos_emb(positions)
            x = self.token_emb(x)
            return x + positions

    inputs = k_layers.Input(shape=(maxlen,))
    embedding_layer = TokenAndPositionEmbedding(maxlen, vocab_size, embed_dim)
    x = embedding_layer(inputs)
    transformer_block = TransformerBlock(embed_dim, num_heads, ff_dim)
    x = transformer_block(x)
    x = k_layers.GlobalAveragePooling1D()(x)
    x = k_layers.Dropout(0.1)(x)
    x = k_layers.Dense(20, activation="relu")(x)
    x = k_layers.Dropout(0.1)(x)
    outputs = k_layers.Dense(2, activation="softmax")(x)
    return k.Model(inputs=inputs, outputs=outputs)


def load_data(rng, count):
    """(reviews, labels) as imdb.load_data gives them: an object array of int lists, starting
    with 1; positive reviews use the lower half of the vocabulary more."""
    x, y = np.empty(count, dtype=object), rng.integers(0, 2, count)
    for i, label in enumerate(y):
        words = rng.integers(2, vocab_size // 2, rng.integers(20, 300)) + label * (
            rng.random() < 0.8
        ) * (vocab_size // 2 - 2)
        x[i] = [1, *words.tolist()]
    return x, y


def test_text_classification_with_transformer(capsys):
    rng = np.random.default_rng(0)
    (x_train, y_train), (x_val, y_val) = load_data(rng, 256), load_data(rng, 64)
    print(len(x_train), "Training sequences")
    print(len(x_val), "Validation sequences")
    x_train = keras.utils.pad_sequences(x_train, maxlen=maxlen)
    x_val = keras.utils.pad_sequences(x_val, maxlen=maxlen)
    assert x_train.shape == (256, maxlen) and x_val.shape == (64, maxlen)

    model = example_model(keras, layers, ops)
    model.summary()
    out = capsys.readouterr().out
    # the example's summary (Keras 3)
    assert "(None, 200, 32)" in out and "646,400" in out and "10,656" in out
    assert "Total params: 657,758" in out

    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=32, epochs=2, validation_data=(x_val, y_val))
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][1] < history.history["loss"][0]
    probabilities = model.predict(x_val, verbose=0)
    assert probabilities.shape == (64, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_the_example_s_model_predicts_as_keras():
    keras3 = keras_module()
    ours = example_model(keras, layers, ops)
    theirs = example_model(keras3, keras3.layers, keras3.ops)
    copy_weights(theirs, ours)
    x = np.random.default_rng(1).integers(0, vocab_size, (3, maxlen))
    np.testing.assert_allclose(
        ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)), rtol=1e-4, atol=1e-6
    )
