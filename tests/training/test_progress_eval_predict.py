"""evaluate() and predict() show Keras's progress: a bar (verbose=1), one line (2), or nothing."""

import io

import numpy as np
import pytest

import fastnn
from fastnn import callbacks, layers

BAR = "━" * 20
RNG = np.random.default_rng(0)
X = RNG.random((40, 3)).astype("float32")
Y = X.sum(axis=1, keepdims=True)


def small_model():
    fastnn.utils.set_random_seed(0)
    inputs = fastnn.Input((3,))
    model = fastnn.Model(inputs, layers.Dense(1)(layers.Dense(4, activation="tanh")(inputs)))
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    return model


def final_state(out: str) -> str:
    """What a terminal shows last: the text after the last carriage return, without the clear."""
    return out.rsplit("\r", 1)[-1].replace("\x1b[K", "")


def test_evaluate_verbose_1_draws_a_bar_that_ends_with_the_metrics(capsys):
    loss, mae = small_model().evaluate(X, Y, batch_size=10, verbose=1)
    out = capsys.readouterr().out
    assert out.startswith("\r") and out.endswith("\x1b[K\n")
    last = final_state(out)
    assert last.startswith(f"4/4 {BAR} - ")
    assert last.endswith(f"loss: {loss:.4f} - mae: {mae:.4f}\n")
    assert "Epoch" not in out


def test_evaluate_verbose_2_prints_one_line(capsys):
    result = small_model().evaluate(X, Y, batch_size=16, verbose=2, return_dict=True)
    out = capsys.readouterr().out
    assert "\r" not in out and out.count("\n") == 1
    assert out.startswith("3/3 - ") and "━" not in out
    assert out.endswith(f"loss: {result['loss']:.4f} - mae: {result['mae']:.4f}\n")


def test_predict_verbose_1_draws_a_bar_over_predict_steps(capsys):
    predictions = small_model().predict(X, batch_size=16, verbose=1)
    assert predictions.shape == (40, 1)
    out = capsys.readouterr().out
    last = final_state(out)
    assert last.startswith(f"3/3 {BAR} - ") and last.endswith("/step\n")
    assert "loss" not in out


def test_predict_verbose_2_prints_one_line(capsys):
    small_model().predict(X, batch_size=32, verbose=2)
    out = capsys.readouterr().out
    assert out.startswith("2/2 - ") and out.endswith("/step\n") and out.count("\n") == 1


def test_verbose_0_is_silent(capsys):
    model = small_model()
    model.evaluate(X, Y, verbose=0)
    model.predict(X, verbose=0)
    assert capsys.readouterr().out == ""


def test_auto_is_a_bar_on_a_terminal_and_a_line_otherwise(capsys, monkeypatch):
    model = small_model()
    model.evaluate(X, Y, batch_size=20)  # captured output is not a terminal
    assert capsys.readouterr().out.startswith("2/2 - ")
    monkeypatch.setattr(callbacks, "is_interactive", lambda: True)
    model.predict(X, batch_size=20)
    assert final_state(capsys.readouterr().out).startswith(f"2/2 {BAR}")


def test_bad_verbose_is_rejected():
    model = small_model()
    with pytest.raises(ValueError, match=r"`verbose` must be 'auto', 0, 1 or 2; got verbose=3"):
        model.evaluate(X, Y, verbose=3)
    with pytest.raises(ValueError, match=r"got verbose='yes'"):
        model.predict(X, verbose="yes")


def test_callbacks_see_the_step_count_and_every_batch():
    seen = []

    class Recorder(callbacks.Callback):
        def on_test_batch_end(self, batch, logs=None):
            seen.append(("test", batch, self.params["steps"]))

        def on_predict_batch_end(self, batch, logs=None):
            seen.append(("predict", batch, self.params["steps"]))

    model = small_model()
    model.evaluate(X, Y, batch_size=25, verbose=0, callbacks=[Recorder()])
    model.predict(X, batch_size=40, verbose=0, callbacks=[Recorder()])
    assert seen == [("test", 0, 2), ("test", 1, 2), ("predict", 0, 1)]


def test_fit_validation_draws_no_second_bar(capsys):
    small_model().fit(X, Y, epochs=2, batch_size=10, validation_split=0.25, verbose=1)
    out = capsys.readouterr().out
    assert out.count("\x1b[K\n") == 2  # one finished bar per epoch
    for epoch_output in out.split("Epoch ")[1:]:
        assert final_state(epoch_output).startswith(f"3/3 {BAR}")
        assert "val_loss: " in epoch_output


def test_a_progbar_inside_fit_ignores_test_hooks():
    stream = io.StringIO()
    logger = callbacks.ProgbarLogger(verbose=1, stream=stream)
    logger.set_params({"epochs": 1, "steps": 2})
    logger.on_train_begin()
    logger.on_test_begin()
    logger.on_test_batch_end(0, {"loss": 1.0})
    logger.on_test_end({"loss": 1.0})
    assert stream.getvalue() == ""
    logger.on_train_end()
    logger.on_test_begin()  # after fit, the same logger draws evaluate's bar again
    logger.on_test_end({"loss": 1.0})
    assert stream.getvalue().endswith("loss: 1.0000\x1b[K\n")


def test_fit_validation_runs_the_test_hooks_without_a_second_bar(capsys):
    calls = []

    class Recorder(fastnn.callbacks.Callback):
        def on_test_begin(self, logs=None):
            calls.append("test_begin")

        def on_test_batch_end(self, batch, logs=None):
            calls.append(f"test_batch_{batch}")

        def on_test_end(self, logs=None):
            calls.append(("test_end", sorted(logs)))

    x = np.ones((8, 3), "float32")
    model = fastnn.Sequential([fastnn.layers.Dense(1, input_shape=(3,))])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(
        x,
        x[:, :1],
        epochs=1,
        batch_size=4,
        validation_data=(x, x[:, :1]),
        verbose=2,
        callbacks=[Recorder()],
    )
    assert calls == ["test_begin", "test_batch_0", "test_batch_1", ("test_end", ["loss"])]
    assert capsys.readouterr().out.count("/step") == 1


def test_predict_on_batch_results_survive_the_next_call():
    """predict_on_batch reuses its layers' buffers between calls, never the arrays it returned."""
    model = fastnn.Sequential([fastnn.Input((3,)), layers.Dense(4), layers.Dense(2)])
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 3), np.float32), rng.random((5, 3), np.float32)
    first = model.predict_on_batch(a)
    expected = first.copy()
    second = model.predict_on_batch(b)
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_allclose(second, model.predict(b, verbose=0), rtol=1e-6)
    assert not np.shares_memory(first, second)


def test_predict_of_one_batch_results_survive_the_next_call():
    """predict of a single batch, with no hook to run, makes one pass and returns copies."""
    model = fastnn.Sequential([fastnn.Input((3,)), layers.Dense(4), layers.Dense(2)])
    rng = np.random.default_rng(1)
    a, b = rng.random((1, 3), np.float32), rng.random((5, 3), np.float32)
    first = model.predict(a, verbose=0)
    expected = first.copy()
    second = model.predict(b, verbose=0)
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_allclose(second, model.predict_on_batch(b), rtol=1e-6)
    assert not np.shares_memory(first, second)


def count_passes(model, monkeypatch):
    """The list of the row counts of the model's inference passes from now on."""
    rows = []
    infer = model._graph.infer
    monkeypatch.setattr(
        model._graph, "infer", lambda xs, *a, **k: rows.append(len(xs[0])) or infer(xs, *a, **k)
    )
    return rows


class Recorder(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_predict_batch_begin(self, batch, logs=None):
        self.calls.append(("begin", batch))

    def on_predict_batch_end(self, batch, logs=None):
        self.calls.append(("end", batch))


def test_predict_runs_a_small_models_batches_as_one_pass_with_the_same_results(monkeypatch):
    """A model whose layers keep samples apart predicts several batches per forward pass (its
    arrays stay small): the results are those of one pass per batch, which predict still makes
    when a callback of the user's watches the batches."""
    model = small_model()
    passes = count_passes(model, monkeypatch)
    merged = model.predict(X, batch_size=16, verbose=0)
    assert passes == [40]
    passes.clear()
    recorder = Recorder()
    per_batch = model.predict(X, batch_size=16, verbose=0, callbacks=[recorder])
    assert passes == [16, 16, 8]
    assert recorder.calls == [(kind, b) for b in range(3) for kind in ("begin", "end")]
    np.testing.assert_allclose(merged, per_batch, rtol=1e-6, atol=1e-7)


def test_predict_keeps_a_pass_per_batch_where_a_layer_may_mix_samples(monkeypatch):
    """A Lambda (here: centering over the batch) and a layer class from outside fastnn may mix a
    batch's samples, so each batch keeps its own pass, as in Keras."""
    inputs = fastnn.Input((3,))
    centered = layers.Lambda(lambda x: x - x.mean(axis=0))(inputs)
    model = fastnn.Model(inputs, centered)
    passes = count_passes(model, monkeypatch)
    out = model.predict(X, batch_size=16, verbose=0)
    assert passes == [16, 16, 8]
    for start in (0, 16, 32):
        part = X[start : start + 16]
        np.testing.assert_allclose(out[start : start + 16], part - part.mean(axis=0), atol=1e-6)

    class Doubled(layers.Layer):  # a user's layer: its forward is unknown to predict
        def forward(self, inputs, training):
            return 2 * inputs, None

    model = fastnn.Model(inputs, Doubled()(inputs))
    passes = count_passes(model, monkeypatch)
    model.predict(X, batch_size=16, verbose=0)
    assert passes == [16, 16, 8]


def test_predict_passes_stay_under_the_memory_budget(monkeypatch):
    """Batches merge only while a pass's arrays fit PREDICT_PASS_BYTES: memory still grows with
    the batch size, not with the data."""
    model = small_model()
    per_sample = model._graph.bytes_per_sample()
    assert per_sample == (3 + 4 + 1) * 4  # the input and each layer's output, float32
    monkeypatch.setattr(fastnn.training.trainer, "PREDICT_PASS_BYTES", per_sample * 20)
    passes = count_passes(model, monkeypatch)
    model.predict(X, batch_size=8, verbose=0)
    assert passes == [16, 16, 8]  # two batches of 8 a pass
    monkeypatch.setattr(fastnn.training.trainer, "PREDICT_PASS_BYTES", per_sample * 7)
    passes.clear()
    model.predict(X, batch_size=8, verbose=0)
    assert passes == [8] * 5  # a batch is over the budget alone: one a pass
