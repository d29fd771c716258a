"""RNN over cells and stateful recurrent layers in files: ``.fastnn`` and ``.keras`` round trips,
Keras loading fastnn's ``.keras`` files and fastnn loading Keras's (configs with a cell or a
stack's cells, weights in Keras's h5 groups), a user's registered cell, and stateful layers,
whose states, as in Keras, are not saved (a loaded model starts from zeros).
"""

import os
import zipfile

os.environ["KERAS_BACKEND"] = "torch"  # keras reads this once, at import

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from gradcheck import randomize_weights  # noqa: E402

import fastnn  # noqa: E402
from fastnn import layers as L  # noqa: E402
from fastnn import ops  # noqa: E402
from fastnn.models import load_model  # noqa: E402
from fastnn.saving import register_keras_serializable  # noqa: E402

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

X = np.random.default_rng(0).standard_normal((4, 5, 3)).astype("float32")


@register_keras_serializable(package="rnn_saving")
class DecayCell(L.Layer):
    """A user's cell: ``h = tanh(x @ kernel) + decay * h``."""

    def __init__(self, units, decay=0.5, **kwargs):
        super().__init__(**kwargs)
        self.units, self.decay = units, decay
        self.state_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")

    def call(self, inputs, states):
        h = ops.tanh(ops.matmul(inputs, self.kernel)) + self.decay * states[0]
        return h, [h]


def one_cell():
    inputs = fastnn.Input((5, 3))
    h = L.RNN(L.LSTMCell(4, unit_forget_bias=False), return_sequences=True)(inputs)
    return fastnn.Model(inputs, L.RNN(L.SimpleRNNCell(2, activation="relu"))(h))


def stacked():
    inputs = fastnn.Input((5, 3))
    cells = [L.GRUCell(2), L.SimpleRNNCell(3), L.GRUCell(2, reset_after=False)]
    return fastnn.Model(inputs, L.RNN(cells, return_sequences=True, go_backwards=True)(inputs))


def bidirectional():
    inputs = fastnn.Input((5, 3))
    return fastnn.Model(inputs, L.Bidirectional(L.RNN(L.LSTMCell(2)), merge_mode="sum")(inputs))


def stateful():
    inputs = fastnn.Input((5, 3), batch_size=4)
    h = L.LSTM(3, stateful=True, return_sequences=True)(inputs)
    return fastnn.Model(inputs, L.RNN(L.GRUCell(2), stateful=True)(h))


def user_cell():
    inputs = fastnn.Input((5, 3))
    return fastnn.Model(inputs, L.RNN(DecayCell(3, decay=0.25), return_state=True)(inputs))


CASES = {"one_cell": one_cell, "stacked": stacked, "bidirectional": bidirectional}
ALL_CASES = {**CASES, "stateful": stateful, "user_cell": user_cell}


def _built(case):
    fastnn.utils.set_random_seed(1)
    model = ALL_CASES[case]()
    randomize_weights(model, 2)
    return model


def _outputs(model):
    out = model.predict(X, batch_size=4, verbose=0)
    return out if isinstance(out, list) else [out]


def _reset(model):
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            layer.reset_states()


@pytest.mark.parametrize("suffix", ["fastnn", "keras"])
@pytest.mark.parametrize("case", list(ALL_CASES))
def test_round_trip_predicts_bit_for_bit(case, suffix, tmp_path):
    model = _built(case)
    want = _outputs(model)
    model.save(tmp_path / f"m.{suffix}")
    loaded = load_model(tmp_path / f"m.{suffix}")
    _reset(model)
    assert loaded.get_config() == model.get_config()
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]
    for a, b in zip(_outputs(loaded), want, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", list(CASES) + ["stateful"])
def test_keras_loads_our_keras_files_and_we_load_its(case, tmp_path):
    model = _built(case)
    want = _outputs(model)
    _reset(model)
    model.save(tmp_path / "ours.keras")
    theirs = keras.models.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(theirs.predict(X, batch_size=4, verbose=0), want[0], 1e-5, 1e-6)
    theirs.save(tmp_path / "theirs.keras")
    back = load_model(tmp_path / "theirs.keras")
    for a, b in zip(_outputs(back), want, strict=True):
        np.testing.assert_array_equal(a, b)
    assert _h5_datasets(tmp_path / "ours.keras") == _h5_datasets(tmp_path / "theirs.keras")


def _h5_datasets(path) -> list[str]:
    """The names of the weights' datasets in a ``.keras`` file (Keras's h5 layout)."""
    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as raw:
        names = []
        with h5py.File(raw, "r") as f:
            f.visititems(
                lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
            )
        return sorted(names)


def test_stateful_states_are_not_saved_as_in_keras(tmp_path):
    """Keras keeps an RNN's states out of its weights: a loaded model starts from zeros."""
    model = _built("stateful")
    first = _outputs(model)[0]
    second = _outputs(model)[0]  # from the first call's last states
    assert not np.allclose(first, second)
    model.save(tmp_path / "m.fastnn")
    model.save(tmp_path / "m.keras")
    for suffix in ("fastnn", "keras"):
        loaded = load_model(tmp_path / f"m.{suffix}")
        assert all(not s.value.any() for layer in loaded.layers[1:] for s in layer.states)
        np.testing.assert_array_equal(_outputs(loaded)[0], first)
    theirs = keras.models.load_model(tmp_path / "m.keras")
    assert all(not kops_any(s) for layer in theirs.layers[1:] for s in layer.states)
    assert len(model.weights) == len(theirs.weights) == 6


def kops_any(variable) -> bool:
    return bool(np.asarray(keras.ops.convert_to_numpy(variable)).any())
