"""keras-io's example "Timeseries forecasting for weather prediction"
(examples/timeseries/timeseries_weather_forecasting.py, Apache 2.0): its windows, model and
training run on fastnn with only the imports changed.

Changed besides the imports: the Jena climate CSV (420,551 rows read with pandas) is 3000 rows
of seven synthetic daily-cycle features in a numpy array (no network, no pandas: ``.loc`` /
``.iloc`` / ``.values`` are numpy slices); ``dataset_train.take(1)`` and ``.numpy()`` (tf.data's
API) are ``next(iter(...))`` on numpy batches; no plots; past/future/step shrunk (120, 12, 6
instead of 720, 72, 6) and 3 epochs instead of 10. The checkpoint is written as Keras 3 names
weight files (``.weights.h5``; the example's ``.h5`` predates that rule).
"""

import numpy as np
import pytest

import fastnn as keras


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def jena_features(rows=3000):
    """Seven hourly-sampled climate-like features; column 1 ("T (degC)") follows the others."""
    rng = np.random.default_rng(0)
    t = np.arange(rows) / 144.0  # ten-minute steps, a day is 144
    base = np.sin(2 * np.pi * t)[:, None] + 0.1 * rng.normal(size=(rows, 7))
    features = base * rng.uniform(0.5, 2, 7) + rng.uniform(-5, 5, 7)
    features[:, 1] = 10 + 8 * np.sin(2 * np.pi * (t - 0.1)) + 0.2 * rng.normal(size=rows)
    return features


def test_weather_forecasting_with_an_lstm(capsys):
    split_fraction = 0.715
    data = jena_features()
    train_split = int(split_fraction * int(data.shape[0]))
    step = 6
    past = 120
    future = 12
    learning_rate = 0.001
    batch_size = 256
    epochs = 3

    def normalize(data, train_split):
        data_mean = data[:train_split].mean(axis=0)
        data_std = data[:train_split].std(axis=0)
        return (data - data_mean) / data_std

    features = normalize(data, train_split)
    train_data = features[0:train_split]
    val_data = features[train_split:]

    start = past + future
    end = start + train_split
    x_train = train_data[:, [i for i in range(7)]]
    y_train = features[start:end][:, [1]]
    sequence_length = int(past / step)

    dataset_train = keras.preprocessing.timeseries_dataset_from_array(
        x_train,
        y_train,
        sequence_length=sequence_length,
        sampling_rate=step,
        batch_size=batch_size,
    )
    x_end = len(val_data) - past - future
    label_start = train_split + past + future
    x_val = val_data[:x_end][:, [i for i in range(7)]]
    y_val = features[label_start:][:, [1]]
    dataset_val = keras.preprocessing.timeseries_dataset_from_array(
        x_val,
        y_val,
        sequence_length=sequence_length,
        sampling_rate=step,
        batch_size=batch_size,
    )

    inputs, targets = next(iter(dataset_train))
    print("Input shape:", inputs.shape)
    print("Target shape:", targets.shape)
    assert inputs.shape == (batch_size, sequence_length, 7) and targets.shape == (batch_size, 1)
    # window i starts at row i and its target is the temperature `past + future` rows later
    np.testing.assert_array_equal(inputs[3], x_train[3 : 3 + past : step])
    np.testing.assert_array_equal(targets[3], features[3 + start, [1]])

    inputs = keras.layers.Input(shape=(inputs.shape[1], inputs.shape[2]))
    lstm_out = keras.layers.LSTM(32)(inputs)
    outputs = keras.layers.Dense(1)(lstm_out)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse")
    model.summary()

    path_checkpoint = "model_checkpoint.weights.h5"
    es_callback = keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=0, patience=5)
    modelckpt_callback = keras.callbacks.ModelCheckpoint(
        monitor="val_loss",
        filepath=path_checkpoint,
        verbose=1,
        save_weights_only=True,
        save_best_only=True,
    )
    history = model.fit(
        dataset_train,
        epochs=epochs,
        validation_data=dataset_val,
        callbacks=[es_callback, modelckpt_callback],
    )
    loss, val_loss = history.history["loss"], history.history["val_loss"]
    assert loss[-1] < loss[0] and val_loss[-1] < val_loss[0]
    assert "saving model to model_checkpoint.weights.h5" in capsys.readouterr().out

    # predictions for the validation windows, from the best weights
    model.load_weights(path_checkpoint)
    for x, y in list(dataset_val)[:2]:
        prediction = model.predict(x, verbose=0)[0]
        assert prediction.shape == y[0].shape == (1,)
