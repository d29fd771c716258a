"""predict and model(x) from several threads at once give the serial results (no shared buffers);
fit/evaluate/train_on_batch/test_on_batch refuse a second thread instead of mixing its state in."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastnn
from fastnn import layers


def test_concurrent_predict_matches_serial():
    fastnn.utils.set_random_seed(0)
    inputs = fastnn.Input((8, 8, 1))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    model = fastnn.Model(inputs, layers.Dense(3, activation="softmax")(layers.Dense(16)(x)))
    rng = np.random.default_rng(0)
    batches = [rng.random((n, 8, 8, 1), dtype=np.float32) for n in (5, 17, 32, 33, 64, 7, 1, 40)]
    serial = [model.predict(b, batch_size=8, verbose=0) for b in batches]
    direct = [model(b) for b in batches]

    def run(i):
        b = batches[i % len(batches)]
        return i, model.predict(b, batch_size=8, verbose=0), model(b)

    with ThreadPoolExecutor(8) as pool:
        for i, predicted, called in pool.map(run, range(64)):
            np.testing.assert_allclose(predicted, serial[i % len(batches)], rtol=1e-6, atol=0)
            np.testing.assert_allclose(called, direct[i % len(batches)], rtol=1e-6, atol=0)


# ---- one thread at a time trains or evaluates a model ------------------------------------------

TIMEOUT = 30


class PauseAtBegin(fastnn.callbacks.Callback):
    """Holds the call it is passed to at its first hook until the other thread has tried."""

    def __init__(self, barrier, released):
        super().__init__()
        self.barrier, self.released = barrier, released

    def _pause(self, logs=None):
        self.barrier.wait(TIMEOUT)
        self.released.wait(TIMEOUT)

    on_train_begin = on_test_begin = _pause


def stateful_model():
    fastnn.utils.set_random_seed(1)
    inputs = fastnn.Input((6,))
    out = layers.Dense(2)(layers.BatchNormalization()(layers.Dense(8, activation="relu")(inputs)))
    model = fastnn.Model(inputs, out, name="shared")
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    return model


DATA = np.random.default_rng(2).random((64, 6), dtype=np.float32)
TARGETS = np.random.default_rng(3).random((64, 2), dtype=np.float32)

FIRST = {
    "fit": lambda model, cb: (
        model.fit(
            DATA, TARGETS, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[cb]
        ).history
    ),
    "evaluate": lambda model, cb: model.evaluate(
        DATA, TARGETS, batch_size=8, verbose=0, callbacks=[cb], return_dict=True
    ),
}
SECOND = {
    "fit": lambda model: model.fit(DATA, TARGETS, epochs=1, verbose=0),
    "train_on_batch": lambda model: model.train_on_batch(DATA, TARGETS),
    "evaluate": lambda model: model.evaluate(DATA, TARGETS, verbose=0),
    "test_on_batch": lambda model: model.test_on_batch(DATA, TARGETS),
}


def run_first_while(model, first, during):
    """Run FIRST[first] in a thread; once it is inside (a barrier), call ``during`` here."""
    barrier, released = threading.Barrier(2), threading.Event()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(FIRST[first], model, PauseAtBegin(barrier, released))
        try:
            barrier.wait(TIMEOUT)
            during()
        finally:
            released.set()
        return running.result(TIMEOUT)


@pytest.mark.parametrize("second", list(SECOND))
@pytest.mark.parametrize("first", list(FIRST))
def test_a_second_thread_gets_a_clear_error_and_the_first_call_is_untouched(first, second):
    model = stateful_model()
    initial = model.get_weights()
    expected = FIRST[first](model, fastnn.callbacks.Callback())
    expected_weights = model.get_weights()
    model = stateful_model()
    message = rf"Model 'shared': {second}\(\) was called while {first}\(\) runs in another thread"

    def second_call():
        with pytest.raises(RuntimeError, match=message):
            SECOND[second](model)

    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), initial))
    got = run_first_while(model, first, second_call)
    assert got == expected
    for a, b in zip(model.get_weights(), expected_weights):
        np.testing.assert_array_equal(a, b)
    SECOND[second](model)  # free again once the first call ended


def test_predict_from_another_thread_runs_while_a_model_trains():
    model = stateful_model()
    predicted = []
    run_first_while(model, "fit", lambda: predicted.append(model.predict(DATA, verbose=0)))
    assert predicted[0].shape == (64, 2)


def test_a_callback_may_evaluate_the_model_it_trains_in_the_same_thread():
    model = stateful_model()
    seen = []
    on_epoch_end = lambda epoch, logs: seen.append(model.evaluate(DATA, TARGETS, verbose=0))  # noqa: E731
    model.fit(
        DATA,
        TARGETS,
        epochs=2,
        verbose=0,
        callbacks=[fastnn.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)],
    )
    assert len(seen) == 2 and all(np.isfinite(s).all() for s in seen)
