"""keras-io's example "Character-level text generation with LSTM"
(examples/generative/lstm_character_level_text_generation.py, Apache 2.0) run on fastnn with
only the imports changed.

Changed besides the imports: nietzsche.txt is 700 words drawn from 20 common English words
(no network); 2 epochs instead of 40, 40 generated characters per diversity instead of 400.
"""

import random
import sys

import numpy as np

import fastnn as keras
from fastnn import layers

WORDS = "the of and to a in that is it for as with be by not but this are all his which"


def sample(preds, temperature=1.0):
    # helper function to sample an index from a probability array
    preds = np.asarray(preds).astype("float64")
    preds = np.log(preds) / temperature
    exp_preds = np.exp(preds)
    preds = exp_preds / np.sum(exp_preds)
    probas = np.random.multinomial(1, preds, 1)
    return np.argmax(probas)


def test_character_level_text_generation(capsys):
    np.random.seed(0)
    random.seed(0)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    text = (" ".join(rng.choice(WORDS.split(), 700)) + ", (the end).").lower()
    print("corpus length:", len(text))

    chars = sorted(list(set(text)))
    print("total chars:", len(chars))
    char_indices = dict((c, i) for i, c in enumerate(chars))
    indices_char = dict((i, c) for i, c in enumerate(chars))

    # cut the text in semi-redundant sequences of maxlen characters
    maxlen = 40
    step = 3
    sentences = []
    next_chars = []
    for i in range(0, len(text) - maxlen, step):
        sentences.append(text[i : i + maxlen])
        next_chars.append(text[i + maxlen])
    print("nb sequences:", len(sentences))

    x = np.zeros((len(sentences), maxlen, len(chars)), dtype=np.bool)
    y = np.zeros((len(sentences), len(chars)), dtype=np.bool)
    for i, sentence in enumerate(sentences):
        for t, char in enumerate(sentence):
            x[i, t, char_indices[char]] = 1
        y[i, char_indices[next_chars[i]]] = 1

    model = keras.Sequential(
        [
            keras.Input(shape=(maxlen, len(chars))),
            layers.LSTM(128),
            layers.Dense(len(chars), activation="softmax"),
        ]
    )
    optimizer = keras.optimizers.RMSprop(learning_rate=0.01)
    model.compile(loss="categorical_crossentropy", optimizer=optimizer)

    epochs = 2
    batch_size = 128
    losses = []
    for epoch in range(epochs):
        losses += model.fit(x, y, batch_size=batch_size, epochs=1).history["loss"]
        print(f"Generating text after epoch: {epoch}")
        start_index = random.randint(0, len(text) - maxlen - 1)
        for diversity in [0.2, 0.5, 1.0, 1.2]:
            print("----- diversity:", diversity)
            generated = ""
            sentence = text[start_index : start_index + maxlen]
            generated += sentence
            print('----- Generating with seed: "' + sentence + '"')
            sys.stdout.write(generated)
            for _ in range(40):
                x_pred = np.zeros((1, maxlen, len(chars)))
                for t, char in enumerate(sentence):
                    x_pred[0, t, char_indices[char]] = 1.0
                preds = model.predict(x_pred, verbose=0)[0]
                assert preds.shape == (len(chars),)
                np.testing.assert_allclose(preds.sum(), 1.0, rtol=1e-5)
                next_index = sample(preds, diversity)
                next_char = indices_char[next_index]
                sentence = sentence[1:] + next_char
                generated += next_char
                sys.stdout.write(next_char)
                sys.stdout.flush()
            print()
            assert len(generated) == maxlen + 40 and set(generated) <= set(chars)
    assert np.all(np.isfinite(losses)) and losses[1] < losses[0]
    assert capsys.readouterr().out.count("----- diversity:") == 8
