"""keras-io's example "Sequence to sequence learning for performing number addition"
(examples/nlp/addition_rnn.py, Apache 2.0) run on fastnn with only the imports changed.

Changed besides the imports: 600 questions instead of 50,000, 2 training iterations instead of
29, and 3 sampled validation questions per iteration instead of 10.
"""

import numpy as np

import fastnn as keras
from fastnn import layers

# Parameters for the model and dataset.
TRAINING_SIZE = 600
DIGITS = 3
REVERSE = True
# Maximum length of input is 'int + int' (e.g., '345+678').
MAXLEN = DIGITS + 1 + DIGITS


class CharacterTable:
    """Given a set of characters: one-hot encode them; decode one-hot, index or probability
    rows back to characters."""

    def __init__(self, chars):
        self.chars = sorted(set(chars))
        self.char_indices = dict((c, i) for i, c in enumerate(self.chars))
        self.indices_char = dict((i, c) for i, c in enumerate(self.chars))

    def encode(self, C, num_rows):
        x = np.zeros((num_rows, len(self.chars)))
        for i, c in enumerate(C):
            x[i, self.char_indices[c]] = 1
        return x

    def decode(self, x, calc_argmax=True):
        if calc_argmax:
            x = x.argmax(axis=-1)
        return "".join(self.indices_char[x] for x in x)


def generate_data(ctable, chars):
    questions = []
    expected = []
    seen = set()
    while len(questions) < TRAINING_SIZE:
        f = lambda: int(  # noqa: E731 (the example's)
            "".join(
                np.random.choice(list("0123456789"))
                for i in range(np.random.randint(1, DIGITS + 1))
            )
        )
        a, b = f(), f()
        # Skip any addition questions we've already seen, and x+Y == Y+x.
        key = tuple(sorted((a, b)))
        if key in seen:
            continue
        seen.add(key)
        # Pad the data with spaces such that it is always MAXLEN.
        q = f"{a}+{b}"
        query = q + " " * (MAXLEN - len(q))
        ans = str(a + b)
        # Answers can be of maximum size DIGITS + 1.
        ans += " " * (DIGITS + 1 - len(ans))
        if REVERSE:
            query = query[::-1]
        questions.append(query)
        expected.append(ans)

    x = np.zeros((len(questions), MAXLEN, len(chars)), dtype=np.bool)
    y = np.zeros((len(questions), DIGITS + 1, len(chars)), dtype=np.bool)
    for i, sentence in enumerate(questions):
        x[i] = ctable.encode(sentence, MAXLEN)
    for i, sentence in enumerate(expected):
        y[i] = ctable.encode(sentence, DIGITS + 1)
    return x, y


def test_addition_rnn(capsys):
    np.random.seed(0)
    keras.utils.set_random_seed(0)
    # All the numbers, plus sign and space for padding.
    chars = "0123456789+ "
    ctable = CharacterTable(chars)
    x, y = generate_data(ctable, chars)
    # Shuffle (x, y) in unison
    indices = np.arange(len(y))
    np.random.shuffle(indices)
    x = x[indices]
    y = y[indices]
    # Explicitly set apart 10% for validation data that we never train over.
    split_at = len(x) - len(x) // 10
    (x_train, x_val) = x[:split_at], x[split_at:]
    (y_train, y_val) = y[:split_at], y[split_at:]
    assert x_train.shape == (540, MAXLEN, 12) and y_train.shape == (540, DIGITS + 1, 12)

    num_layers = 1
    model = keras.Sequential()
    # "Encode" the input sequence using a LSTM, producing an output of size 128.
    model.add(layers.LSTM(128, input_shape=(MAXLEN, len(chars))))
    # Repeat the encoding 'DIGITS + 1' times as the decoder RNN's input.
    model.add(layers.RepeatVector(DIGITS + 1))
    for _ in range(num_layers):
        model.add(layers.LSTM(128, return_sequences=True))
    # For each step of the output sequence, decide which character should be chosen.
    model.add(layers.Dense(len(chars), activation="softmax"))
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.summary()
    out = capsys.readouterr().out
    assert "Total params: 205,324" in out  # the example's summary
    assert [layer.output.shape for layer in model.layers] == [
        (None, 128),
        (None, 4, 128),
        (None, 4, 128),
        (None, 4, 12),
    ]

    epochs = 3
    batch_size = 32
    losses = []
    for epoch in range(1, epochs):
        print("Iteration", epoch)
        history = model.fit(
            x_train, y_train, batch_size=batch_size, epochs=1, validation_data=(x_val, y_val)
        )
        losses += history.history["loss"]
        # Select samples from the validation set at random so we can visualize errors.
        for _ in range(3):
            ind = np.random.randint(0, len(x_val))
            rowx, rowy = x_val[np.array([ind])], y_val[np.array([ind])]
            preds = np.argmax(model.predict(rowx), axis=-1)
            assert preds.shape == (1, DIGITS + 1)
            q = ctable.decode(rowx[0])
            correct = ctable.decode(rowy[0])
            guess = ctable.decode(preds[0], calc_argmax=False)
            assert len(guess) == len(correct) == DIGITS + 1
            print("Q", q[::-1] if REVERSE else q, end=" ")
            print("T", correct, end=" ")
            print(("☑ " if correct == guess else "☒ ") + guess)
    assert np.all(np.isfinite(losses)) and losses[1] < losses[0]
    assert capsys.readouterr().out.count("Q ") == 6
