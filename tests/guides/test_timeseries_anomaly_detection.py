"""keras-io's example "Timeseries anomaly detection using an Autoencoder"
(examples/timeseries/timeseries_anomaly_detection.py, Keras 3 version, Apache 2.0) run on
fastnn with only the imports changed.

Changed besides the imports: the NAB csv files (no network; pandas is not needed) are 4 days
(instead of 14) of a value every 5 minutes shaped like ``art_daily_small_noise`` (a daily
plateau plus noise), and like ``art_daily_jumpsup`` with a jump during the third day, as
numpy ``(n, 1)`` columns (``DataFrame.mean()/std()`` are numpy's with ``ddof=1``); 4 epochs
instead of 50; plots on matplotlib's Agg backend.
"""

import numpy as np
import pytest

import fastnn as keras
from fastnn import layers

TIME_STEPS = 288
DAYS = 4
JUMP = slice(2 * 288 + 108, 2 * 288 + 204)  # 9:00 to 17:00 of the third day


def nab_like(jump, seed):
    """The csv's ``value`` column: 288 values a day, higher from 9:00 to 17:00."""
    rng = np.random.default_rng(seed)
    n = 288 * DAYS
    hour = (np.arange(n) % 288) / 12
    value = 20 + 60 * ((hour >= 9) & (hour < 17)) + rng.normal(0, 2, n)
    if jump:
        value[JUMP] += 80
    return value[:, None]


# Generated training sequences for use in the model.
def create_sequences(values, time_steps=TIME_STEPS):
    output = []
    for i in range(len(values) - time_steps + 1):
        output.append(values[i : (i + time_steps)])
    return np.stack(output)


def test_timeseries_anomaly_detection(capsys):
    plt = pytest.importorskip("matplotlib.pyplot")
    plt.switch_backend("Agg")
    keras.utils.set_random_seed(0)
    df_small_noise, df_daily_jumpsup = nab_like(False, 0), nab_like(True, 1)

    # Normalize and save the mean and std we get, for normalizing test data.
    training_mean = df_small_noise.mean(axis=0)
    training_std = df_small_noise.std(axis=0, ddof=1)
    df_training_value = (df_small_noise - training_mean) / training_std
    print("Number of training samples:", len(df_training_value))
    x_train = create_sequences(df_training_value)
    print("Training input shape: ", x_train.shape)
    assert x_train.shape == (288 * DAYS - TIME_STEPS + 1, TIME_STEPS, 1)

    model = keras.Sequential(
        [
            layers.Input(shape=(x_train.shape[1], x_train.shape[2])),
            layers.Conv1D(filters=32, kernel_size=7, padding="same", strides=2, activation="relu"),
            layers.Dropout(rate=0.2),
            layers.Conv1D(filters=16, kernel_size=7, padding="same", strides=2, activation="relu"),
            layers.Conv1DTranspose(
                filters=16, kernel_size=7, padding="same", strides=2, activation="relu"
            ),
            layers.Dropout(rate=0.2),
            layers.Conv1DTranspose(
                filters=32, kernel_size=7, padding="same", strides=2, activation="relu"
            ),
            layers.Conv1DTranspose(filters=1, kernel_size=7, padding="same"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.001), loss="mse")
    model.summary()
    out = capsys.readouterr().out
    assert "Total params: 9,505" in out and "(None, 288, 1)" in out  # the example's summary

    history = model.fit(
        x_train,
        x_train,
        epochs=4,
        batch_size=128,
        validation_split=0.1,
        callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=5, mode="min")],
    )
    losses = history.history["loss"]
    assert len(losses) == 4 and losses[-1] < losses[0]
    plt.plot(history.history["loss"], label="Training Loss")
    plt.plot(history.history["val_loss"], label="Validation Loss")
    plt.legend()
    plt.close("all")

    # Get train MAE loss.
    x_train_pred = model.predict(x_train)
    assert x_train_pred.shape == x_train.shape
    train_mae_loss = np.mean(np.abs(x_train_pred - x_train), axis=1)
    plt.hist(train_mae_loss, bins=50)
    plt.close("all")
    # Get reconstruction loss threshold.
    threshold = np.max(train_mae_loss)
    print("Reconstruction error threshold: ", threshold)

    df_test_value = (df_daily_jumpsup - training_mean) / training_std
    x_test = create_sequences(df_test_value)
    print("Test input shape: ", x_test.shape)
    # Get test MAE loss.
    x_test_pred = model.predict(x_test)
    test_mae_loss = np.mean(np.abs(x_test_pred - x_test), axis=1)
    test_mae_loss = test_mae_loss.reshape(-1)
    # Detect all the samples which are anomalies.
    anomalies = test_mae_loss > threshold
    print("Number of anomaly samples: ", np.sum(anomalies))
    print("Indices of anomaly samples: ", np.where(anomalies))

    # data i is an anomaly if samples [(i - timesteps + 1) to (i)] are anomalies
    anomalous_data_indices = []
    for data_idx in range(TIME_STEPS - 1, len(df_test_value) - TIME_STEPS + 1):
        if np.all(anomalies[data_idx - TIME_STEPS + 1 : data_idx]):
            anomalous_data_indices.append(data_idx)
    # the points found are the jump's
    assert len(anomalous_data_indices) > 0
    assert JUMP.start <= min(anomalous_data_indices) and max(anomalous_data_indices) < JUMP.stop
    df_subset = df_daily_jumpsup[anomalous_data_indices]
    assert df_subset.shape == (len(anomalous_data_indices), 1)
