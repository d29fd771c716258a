"""KeyboardInterrupt during fit leaves one consistent model, and fit can be called again.

Consistent: weights (with BatchNormalization's moving statistics) and optimizer state
(iterations, slots) are those of a replay of exactly ``iterations`` steps from the start. A real
SIGINT is sent from inside the optimizer's per-variable updates and from inside a forward pass:
fastnn holds it until the step has finished, then raises KeyboardInterrupt.
"""

from __future__ import annotations

import signal

import numpy as np
import pytest

import fastnn
from fastnn import callbacks, layers
from fastnn.kernels import optimizers as optimizer_kernels

# A shell starts a background job (``pytest &``) with SIGINT ignored: Ctrl-C cannot reach it,
# and these tests, which deliver SIGINT and check its handler, have nothing to test there.
pytestmark = pytest.mark.skipif(
    signal.getsignal(signal.SIGINT) is signal.SIG_IGN,
    reason="SIGINT is ignored in this process (started as a background job)",
)

BATCH, STEPS = 8, 10  # batches per epoch
RNG = np.random.default_rng(0)
X = RNG.random((BATCH * STEPS, 6), dtype=np.float32)
Y = RNG.random((BATCH * STEPS, 2), dtype=np.float32)


def make_model() -> fastnn.Model:
    fastnn.utils.set_random_seed(0)
    inputs = fastnn.Input((6,))
    h = layers.BatchNormalization(name="norm")(layers.Dense(8, activation="relu")(inputs))
    model = fastnn.Model(inputs, layers.Dense(2)(h))
    model.compile(optimizer=fastnn.optimizers.Adam(0.01), loss="mse")
    return model


def fit(model, epochs=2, callbacks=None):
    return model.fit(
        X, Y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks
    )


def assert_consistent(model, initial_weights):
    """The model equals a fresh one trained ``iterations`` steps on the same batches."""
    steps = model.optimizer.iterations
    replay = make_model()
    replay.set_weights(initial_weights)
    for k in range(steps):
        batch = slice((k % STEPS) * BATCH, (k % STEPS + 1) * BATCH)
        replay.train_on_batch(X[batch], Y[batch])
    assert replay.optimizer.iterations == steps
    for ours, theirs in zip(model.get_weights(), replay.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)
    for ours, theirs in zip(model.optimizer.get_state(), replay.optimizer.get_state()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def assert_fits_again(model):
    before = model.optimizer.iterations
    history = fit(model, epochs=1)
    assert model.optimizer.iterations == before + STEPS
    assert np.isfinite(history.history["loss"]).all()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class InterruptAt(callbacks.Callback):
    def __init__(self, hook, epoch, step):
        super().__init__()
        self.hook, self.at, self.epoch = hook, (epoch, step), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.hook == "begin" and (self.epoch, batch) == self.at:
            raise KeyboardInterrupt

    def on_train_batch_end(self, batch, logs=None):
        if self.hook == "end" and (self.epoch, batch) == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize(("hook", "finished"), [("begin", STEPS + 3), ("end", STEPS + 4)])
def test_keyboard_interrupt_from_a_callback(hook, finished):
    model = make_model()
    initial = model.get_weights()
    with pytest.raises(KeyboardInterrupt):
        fit(model, callbacks=[InterruptAt(hook, epoch=1, step=3)])
    assert model.optimizer.iterations == finished
    assert_consistent(model, initial)
    assert_fits_again(model)


def test_sigint_inside_the_optimizer_update_waits_for_the_step(monkeypatch):
    """The signal lands between two variables' updates of step 13; without the hold, some
    variables would have moved and ``iterations`` would not count the step."""
    model = make_model()
    initial = model.get_weights()
    n_vars = len(model.trainable_weights)
    real, calls = optimizer_kernels.adam_update, []

    def adam_update(*args):
        calls.append(None)
        if len(calls) == 13 * n_vars + 3:
            signal.raise_signal(signal.SIGINT)
        return real(*args)

    monkeypatch.setattr(optimizer_kernels, "adam_update", adam_update)
    with pytest.raises(KeyboardInterrupt):
        fit(model)
    assert model.optimizer.iterations == 14 and len(calls) == 14 * n_vars
    monkeypatch.setattr(optimizer_kernels, "adam_update", real)
    assert_consistent(model, initial)
    assert_fits_again(model)


def test_sigint_inside_a_forward_pass_waits_for_the_step(monkeypatch):
    """BatchNormalization moves its statistics in the forward pass: the step must finish too."""
    model = make_model()
    initial = model.get_weights()
    norm = model.get_layer("norm")
    real, calls = norm.forward, []

    def forward(*args, **kwargs):
        calls.append(None)
        if len(calls) == 5:
            signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(norm, "forward", forward)
    with pytest.raises(KeyboardInterrupt):
        fit(model)
    assert model.optimizer.iterations == 5
    monkeypatch.undo()
    assert_consistent(model, initial)
    assert_fits_again(model)


@pytest.mark.parametrize("handler", ["callable", "ignore"])
def test_a_held_sigint_goes_to_the_handler_that_was_installed(monkeypatch, handler):
    received = []
    installed = received.append if handler == "callable" else signal.SIG_IGN
    real = optimizer_kernels.adam_update

    def adam_update(*args):
        if not received:
            signal.raise_signal(signal.SIGINT)
        return real(*args)

    model = make_model()
    monkeypatch.setattr(optimizer_kernels, "adam_update", adam_update)
    previous = signal.signal(signal.SIGINT, lambda signum, frame: installed(signum))
    if handler == "ignore":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        fit(model, epochs=1)  # no KeyboardInterrupt: the host application's handler decides
        restored = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert model.optimizer.iterations == STEPS
    if handler == "callable":
        assert received and all(r == signal.SIGINT for r in received)
    else:
        assert restored == signal.SIG_IGN
