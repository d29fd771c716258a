"""A small training script the distribution tests run alone or under ``mpiexec -n N``.

``python driver.py <case> <out_dir> [--dp] [--sync-bn]``: builds the case's model with seed 0,
trains it (with a DataParallel distribution when ``--dp``) and writes ``rank<r>.npz`` (the
weights, then the history's values) into ``out_dir``. Cases: mlp, cnn, lstm (training), fault
(rank 1 raises at its third batch), kill (rank 1 kills itself there), raise (rank 1 raises
before fit), save / resume (train one epoch and save to out_dir/model.fastnn; load it and train
the second epoch). Training runs with validation and a CSVLogger; the mlp case prints its
progress (verbose=2) and adds evaluate's and predict's results and report<rank>.json.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import numpy as np

import fastnn as keras
from fastnn import distribution, layers

SAMPLES = 25  # with a global batch of 10: batches of 10, 10 and 5 (split 3/3/4 and 1/2/2)
BATCH = 10
#: The LSTM's: a last batch of 2, which leaves rank 0 of 3 without samples
LSTM_SAMPLES = 22


def data(case: str):
    rng = np.random.default_rng(1)
    if case == "cnn":
        x = rng.normal(size=(SAMPLES, 6, 6, 2)).astype("float32")
    elif case == "lstm":
        x = rng.normal(size=(LSTM_SAMPLES, 5, 3)).astype("float32")
    else:
        x = rng.normal(size=(SAMPLES, 4)).astype("float32")
    y = rng.integers(0, 3, size=len(x))
    return x, y


def model_for(case: str):
    if case == "cnn":
        stack = [
            keras.Input((6, 6, 2)),
            layers.Conv2D(4, 3, padding="same", use_bias=False),  # BN removes a bias
            layers.BatchNormalization(),
            layers.Activation("relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(3),
        ]
    elif case == "lstm":
        stack = [keras.Input((5, 3)), layers.LSTM(4), layers.Dense(3)]
    else:
        stack = [keras.Input((4,)), layers.Dense(8, activation="tanh"), layers.Dense(3)]
    model = keras.Sequential(stack)
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def write(out_dir: str, model, values: list) -> None:
    arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    arrays.update({f"v{i}": np.asarray(v, np.float64) for i, v in enumerate(values)})
    np.savez(os.path.join(out_dir, f"rank{distribution.rank()}.npz"), **arrays)


def history_values(history) -> list:
    return [history.history[k] for k in sorted(history.history)]


class Fail(keras.callbacks.Callback):
    """On rank 1, at the third batch: raise, or die from SIGKILL."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how

    def on_train_batch_end(self, batch, logs=None):
        if distribution.rank() == 1 and batch == 2:
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("the data loader broke")


def main(case: str, out_dir: str, flags: list[str]) -> None:
    keras.utils.set_random_seed(0)
    if "--dp" in flags:
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(sync_batchnorm="--sync-bn" in flags)
        )
    x, y = data(case)
    path = os.path.join(out_dir, "model.fastnn")
    if case == "resume":
        model = keras.saving.load_model(path)
        history = model.fit(x, y, batch_size=BATCH, epochs=2, initial_epoch=1, verbose=0)
        write(out_dir, model, history_values(history))
        return
    model = model_for(case if case in ("cnn", "lstm") else "mlp")
    if case == "raise":  # outside fit, while the other ranks wait in fit's first broadcast
        if distribution.rank() == 1:
            raise RuntimeError("the script broke before fit")
        model.fit(x, y, batch_size=4, epochs=3, verbose=0)
        return
    if case in ("fault", "kill"):
        model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[Fail(case)])
        return
    epochs = 1 if case == "save" else 2
    log = keras.callbacks.CSVLogger(os.path.join(out_dir, "log.csv"))
    history = model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=epochs,
        verbose=2 if case == "mlp" else 0,
        validation_data=(x, y),
        callbacks=[log],
    )
    values = history_values(history)
    if case == "save" and distribution.is_main():
        model.save(path)
    if case == "mlp":  # evaluate's and predict's results; what each rank sees of the job
        values += [model.evaluate(x, y, batch_size=BATCH, verbose=0)]
        values += [model.predict(x, batch_size=4, verbose=0)]
        report(out_dir)
    write(out_dir, model, values)


def report(out_dir: str) -> None:
    """report<rank>.json: the rank, an allreduce of rank + 1 over the ranks, the local size."""
    dp = distribution.distribution()
    summed = dp.allreduce([distribution.rank() + 1.0], False) if dp else [1.0]
    facts = {"rank": distribution.rank(), "sum": float(summed[0])}
    facts["local_size"] = distribution.local_size()
    with open(os.path.join(out_dir, f"report{distribution.rank()}.json"), "w") as f:
        json.dump(facts, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
