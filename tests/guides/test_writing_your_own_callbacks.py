"""keras-io's guide "Writing your own callbacks" (guides/writing_your_own_callbacks.py, Keras 3
version, Apache 2.0) run on fastnn with only the imports changed.

Changed besides the imports: MNIST is random pixels with a learnable target (no network), 512
training and 256 test samples instead of 1000; ``np.Inf`` is ``np.inf`` (numpy 2 dropped the
alias, so the guide's line fails under Keras too). What the guide prints about the order of the
hooks and their logs' keys is Keras 3's output on the same program (captured once from Keras on
torch and written below).
"""

import numpy as np
import pytest

import fastnn as keras

RNG = np.random.default_rng(0)


# Define the Keras model to add callbacks to
def get_model():
    model = keras.Sequential()
    model.add(keras.layers.Dense(1))
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=0.1),
        loss="mean_squared_error",
        metrics=["mean_absolute_error"],
    )
    return model


@pytest.fixture(scope="module")
def data():
    # keras.datasets.mnist.load_data(), flattened and scaled as the guide does
    x = RNG.random((512, 784)).astype("float32")
    y = x[:, :10].sum(axis=1)
    return (x, y), (x[:256], y[:256])


class CustomCallback(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        keys = list(logs.keys())
        print(f"Starting training; got log keys: {keys}")

    def on_train_end(self, logs=None):
        keys = list(logs.keys())
        print(f"Stop training; got log keys: {keys}")

    def on_epoch_begin(self, epoch, logs=None):
        keys = list(logs.keys())
        print(f"Start epoch {epoch} of training; got log keys: {keys}")

    def on_epoch_end(self, epoch, logs=None):
        keys = list(logs.keys())
        print(f"End epoch {epoch} of training; got log keys: {keys}")

    def on_test_begin(self, logs=None):
        keys = list(logs.keys())
        print(f"Start testing; got log keys: {keys}")

    def on_test_end(self, logs=None):
        keys = list(logs.keys())
        print(f"Stop testing; got log keys: {keys}")

    def on_predict_begin(self, logs=None):
        keys = list(logs.keys())
        print(f"Start predicting; got log keys: {keys}")

    def on_predict_end(self, logs=None):
        keys = list(logs.keys())
        print(f"Stop predicting; got log keys: {keys}")

    def on_train_batch_begin(self, batch, logs=None):
        keys = list(logs.keys())
        print(f"...Training: start of batch {batch}; got log keys: {keys}")

    def on_train_batch_end(self, batch, logs=None):
        keys = list(logs.keys())
        print(f"...Training: end of batch {batch}; got log keys: {keys}")

    def on_test_batch_begin(self, batch, logs=None):
        keys = list(logs.keys())
        print(f"...Evaluating: start of batch {batch}; got log keys: {keys}")

    def on_test_batch_end(self, batch, logs=None):
        keys = list(logs.keys())
        print(f"...Evaluating: end of batch {batch}; got log keys: {keys}")

    def on_predict_batch_begin(self, batch, logs=None):
        keys = list(logs.keys())
        print(f"...Predicting: start of batch {batch}; got log keys: {keys}")

    def on_predict_batch_end(self, batch, logs=None):
        keys = list(logs.keys())
        print(f"...Predicting: end of batch {batch}; got log keys: {keys}")


METRICS = "['loss', 'mean_absolute_error']"
WITH_VAL = "['loss', 'mean_absolute_error', 'val_loss', 'val_mean_absolute_error']"
EVALUATE = f"""Start testing; got log keys: []
...Evaluating: start of batch 0; got log keys: []
...Evaluating: end of batch 0; got log keys: {METRICS}
...Evaluating: start of batch 1; got log keys: []
...Evaluating: end of batch 1; got log keys: {METRICS}
Stop testing; got log keys: {METRICS}
"""
#: What Keras 3 prints for the guide's fit (256 training, 256 validation samples), evaluate and
#: predict (256 samples) with batch_size=128.
KERAS_PRINTS = f"""Starting training; got log keys: []
Start epoch 0 of training; got log keys: []
...Training: start of batch 0; got log keys: []
...Training: end of batch 0; got log keys: {METRICS}
...Training: start of batch 1; got log keys: []
...Training: end of batch 1; got log keys: {METRICS}
{EVALUATE}End epoch 0 of training; got log keys: {WITH_VAL}
Stop training; got log keys: {WITH_VAL}
{EVALUATE}Start predicting; got log keys: []
...Predicting: start of batch 0; got log keys: []
...Predicting: end of batch 0; got log keys: ['outputs']
...Predicting: start of batch 1; got log keys: []
...Predicting: end of batch 1; got log keys: ['outputs']
Stop predicting; got log keys: []
"""


def test_a_basic_example_calls_the_hooks_in_keras_order(data, capsys):
    (x_train, y_train), (x_test, y_test) = data
    model = get_model()
    model.fit(
        x_train,
        y_train,
        batch_size=128,
        epochs=1,
        verbose=0,
        validation_split=0.5,
        callbacks=[CustomCallback()],
    )
    res = model.evaluate(x_test, y_test, batch_size=128, verbose=0, callbacks=[CustomCallback()])
    res = model.predict(x_test, batch_size=128, verbose=0, callbacks=[CustomCallback()])
    assert res.shape == (256, 1)
    assert capsys.readouterr().out == KERAS_PRINTS


class LossAndErrorPrintingCallback(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        print("Up to batch {}, the average loss is {:7.2f}.".format(batch, logs["loss"]))  # noqa: UP032

    def on_test_batch_end(self, batch, logs=None):
        print("Up to batch {}, the average loss is {:7.2f}.".format(batch, logs["loss"]))  # noqa: UP032

    def on_epoch_end(self, epoch, logs=None):
        print(
            "The average loss for epoch {} is {:7.2f} "  # noqa: UP032
            "and mean absolute error is {:7.2f}.".format(
                epoch, logs["loss"], logs["mean_absolute_error"]
            )
        )


def test_the_logs_hold_running_averages(data, capsys):
    (x_train, y_train), (x_test, y_test) = data
    model = get_model()
    history = model.fit(
        x_train,
        y_train,
        batch_size=128,
        epochs=2,
        verbose=0,
        callbacks=[LossAndErrorPrintingCallback()],
    )
    res = model.evaluate(
        x_test,
        y_test,
        batch_size=128,
        verbose=0,
        callbacks=[LossAndErrorPrintingCallback()],
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * (4 + 1) + 2
    # the last batch's running average is the epoch's loss, and evaluate's result
    assert lines[3].split()[-1] == f"{history.history['loss'][0]:.2f}." == lines[4].split()[7] + "."
    assert lines[-1].split()[-1] == f"{res[0]:.2f}."


class EarlyStoppingAtMinLoss(keras.callbacks.Callback):
    """Stop training when the loss is at its min, i.e. the loss stops decreasing.

    Arguments:
        patience: Number of epochs to wait after min has been hit. After this
        number of no improvement, training stops.
    """

    def __init__(self, patience=0):
        super().__init__()
        self.patience = patience
        # best_weights to store the weights at which the minimum loss occurs.
        self.best_weights = None

    def on_train_begin(self, logs=None):
        # The number of epoch it has waited when loss is no longer minimum.
        self.wait = 0
        # The epoch the training stops at.
        self.stopped_epoch = 0
        # Initialize the best as infinity.
        self.best = np.inf

    def on_epoch_end(self, epoch, logs=None):
        current = logs.get("loss")
        if np.less(current, self.best):
            self.best = current
            self.wait = 0
            # Record the best weights if current results is better (less).
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch
                self.model.stop_training = True
                print("Restoring model weights from the end of the best epoch.")
                self.model.set_weights(self.best_weights)

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")


def test_early_stopping_at_min_loss(data, capsys):
    (x_train, y_train), _ = data
    model = get_model()
    stopper = EarlyStoppingAtMinLoss()
    history = model.fit(
        x_train,
        y_train,
        batch_size=64,
        epochs=30,
        verbose=0,
        callbacks=[LossAndErrorPrintingCallback(), stopper],
    )
    epochs = len(history.history["loss"])
    assert 1 < epochs < 30  # RMSprop at 0.1 overshoots: the loss stops falling early
    assert f"Epoch {epochs}: early stopping" in capsys.readouterr().out
    for restored, best in zip(model.get_weights(), stopper.best_weights):
        np.testing.assert_array_equal(restored, best)


class CustomLearningRateScheduler(keras.callbacks.Callback):
    """Learning rate scheduler which sets the learning rate according to schedule.

    Arguments:
        schedule: a function that takes an epoch index
            (integer, indexed from 0) and current learning rate
            as inputs and returns a new learning rate as output (float).
    """

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        if not hasattr(self.model.optimizer, "learning_rate"):
            raise ValueError('Optimizer must have a "learning_rate" attribute.')
        # Get the current learning rate from model's optimizer.
        lr = self.model.optimizer.learning_rate
        # Call schedule function to get the scheduled learning rate.
        scheduled_lr = self.schedule(epoch, lr)
        # Set the value back to the optimizer before this epoch starts
        self.model.optimizer.learning_rate = scheduled_lr
        print(f"\nEpoch {epoch}: Learning rate is {float(np.array(scheduled_lr))}.")


LR_SCHEDULE = [
    # (epoch to start, learning rate) tuples
    (3, 0.05),
    (6, 0.01),
    (9, 0.005),
    (12, 0.001),
]


def lr_schedule(epoch, lr):
    """Helper function to retrieve the scheduled learning rate based on epoch."""
    if epoch < LR_SCHEDULE[0][0] or epoch > LR_SCHEDULE[-1][0]:
        return lr
    for i in range(len(LR_SCHEDULE)):
        if epoch == LR_SCHEDULE[i][0]:
            return LR_SCHEDULE[i][1]
    return lr


def test_learning_rate_scheduling(data, capsys):
    (x_train, y_train), _ = data
    model = get_model()
    model.fit(
        x_train[:128],
        y_train[:128],
        batch_size=64,
        epochs=15,
        verbose=0,
        callbacks=[CustomLearningRateScheduler(lr_schedule)],
    )
    rates = [
        float(line.split()[-1].rstrip("."))
        for line in capsys.readouterr().out.splitlines()
        if "Learning rate" in line
    ]
    expected = [0.1] * 3 + [0.05] * 3 + [0.01] * 3 + [0.005] * 3 + [0.001] * 3
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    assert float(np.array(model.optimizer.learning_rate)) == pytest.approx(0.001)
