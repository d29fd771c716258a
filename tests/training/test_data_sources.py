"""fit / evaluate / predict and validation_data on batch sources, as Keras 3 takes them: a
PyDataset, a Python generator (with steps_per_epoch), a torch DataLoader, or another iterable of
(x, y) / (x, y, sample_weight) / x batches. Each gives what the same data as arrays gives, and
Keras's own fit on a PyDataset gives the same weights and visits the same batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from keras_twin import copy_weights, keras_module

import fastnn
from fastnn import layers
from fastnn.training import data_adapters

RNG = np.random.default_rng(0)
X = RNG.random((24, 3)).astype("float32")
Y = (X @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")
W = RNG.random(24).astype("float32") + 0.5
BATCH = 8


def make_model(K=fastnn):
    if K is fastnn:
        fastnn.utils.set_random_seed(0)
    inputs = K.Input((3,))
    model = K.Model(inputs, K.layers.Dense(1)(K.layers.Dense(4, activation="tanh")(inputs)))
    model.compile(optimizer=K.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    return model


def batches(with_weights=False):
    for start in range(0, len(X), BATCH):
        part = slice(start, start + BATCH)
        yield (X[part], Y[part], W[part]) if with_weights else (X[part], Y[part])


def make_dataset(base):
    """A PyDataset subclass of ``base`` (fastnn's or Keras's) that records what it is asked."""

    class Batches(base):
        def __init__(self, x, y, **kwargs):
            super().__init__(**kwargs)
            self.x, self.y, self.seen, self.epochs = x, y, [], []

        def __len__(self):
            return -(-len(self.x) // BATCH)

        def __getitem__(self, index):
            self.seen.append(index)
            part = slice(index * BATCH, (index + 1) * BATCH)
            return self.x[part], self.y[part]

        def on_epoch_begin(self):
            self.epochs.append("begin")

        def on_epoch_end(self):
            self.epochs.append("end")

    return Batches


Dataset = make_dataset(fastnn.utils.PyDataset)


def fitted_on_arrays(epochs=2, **kwargs):
    model = make_model()
    history = model.fit(X, Y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0, **kwargs)
    return model, history.history


def assert_same_history(ours: dict, expected: dict):
    assert set(ours) == set(expected)
    for key, values in expected.items():
        np.testing.assert_allclose(ours[key], values, rtol=1e-6, err_msg=key)


def assert_same_weights(a, b):
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)


def test_fit_on_a_pydataset_matches_keras_weights_history_and_batch_order():
    keras = keras_module()
    ours, theirs = make_model(), make_model(keras)
    copy_weights(theirs, ours)
    our_data, their_data = Dataset(X, Y), make_dataset(keras.utils.PyDataset)(X, Y)
    kwargs = {"epochs": 3, "shuffle": False, "verbose": 0, "steps_per_epoch": 2}
    our_history = ours.fit(our_data, **kwargs).history
    their_history = theirs.fit(their_data, **kwargs).history
    # steps_per_epoch=2 of 3 batches: Keras runs 0 1 | 2 | 0 1, its iterator running on (after
    # reading batch 0 once more to build its step)
    assert our_data.seen == their_data.seen[1:] == [0, 1, 2, 0, 1]
    assert our_data.epochs == ["begin", "end"] * 3  # Keras adds a pair around its peek
    for key in their_history:
        np.testing.assert_allclose(our_history[key], their_history[key], rtol=1e-4, atol=1e-6)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, keras.ops.convert_to_numpy(b), rtol=1e-4, atol=1e-6)


def test_fit_on_a_pydataset_equals_arrays_and_shuffles_its_batches_by_the_seed():
    arrays, history = fitted_on_arrays()
    model, data = make_model(), Dataset(X, Y)
    assert_same_history(model.fit(data, epochs=2, shuffle=False, verbose=0).history, history)
    assert data.seen == [0, 1, 2] * 2 and data.epochs == ["begin", "end"] * 2
    assert_same_weights(model, arrays)
    orders = []
    for _ in range(2):
        data = Dataset(X, Y)
        make_model().fit(data, epochs=3, verbose=0)  # shuffle=True: a new order each epoch
        orders.append(data.seen)
    assert orders[0] == orders[1]  # set_random_seed(0) in make_model repeats them
    epochs = [orders[0][i : i + 3] for i in (0, 3, 6)]
    assert all(sorted(e) == [0, 1, 2] for e in epochs) and len({tuple(e) for e in epochs}) > 1


def test_a_generator_with_steps_per_epoch_runs_on_across_epochs():
    arrays, _ = fitted_on_arrays()
    model = make_model()
    endless = (item for _ in range(2) for item in batches())
    model.fit(endless, steps_per_epoch=3, epochs=2, verbose=0)
    assert_same_weights(model, arrays)
    assert next(endless, None) is None  # both epochs' batches were used, no more


def test_a_generator_without_steps_stops_training_when_it_runs_out(capsys):
    arrays, _ = fitted_on_arrays(epochs=1)
    model = make_model()
    history = model.fit(batches(), epochs=3, verbose=0)
    assert "the input ran out of data" in capsys.readouterr().out
    assert len(history.history["loss"]) == 1
    assert_same_weights(model, arrays)


def test_torch_dataloaders_and_plain_iterables_train_evaluate_and_predict_as_arrays():
    arrays, history = fitted_on_arrays(sample_weight=W)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(Y), torch.tensor(W)),
        batch_size=BATCH,
    )
    from_loader = make_model()
    assert_same_history(from_loader.fit(loader, epochs=2, verbose=0).history, history)
    assert_same_weights(from_loader, arrays)

    class Iterable:  # neither a generator nor indexable: iterated afresh each epoch
        def __iter__(self):
            return batches(with_weights=True)

    from_iterable = make_model()
    from_iterable.fit(Iterable(), epochs=2, verbose=0)
    assert_same_weights(from_iterable, arrays)

    expected = arrays.evaluate(X, Y, batch_size=BATCH, sample_weight=W, verbose=0)
    np.testing.assert_allclose(arrays.evaluate(loader, verbose=0), expected, rtol=1e-6)
    np.testing.assert_allclose(arrays.evaluate(Iterable(), verbose=0), expected, rtol=1e-6)
    first_two = arrays.evaluate(X[:16], Y[:16], sample_weight=W[:16], verbose=0)
    np.testing.assert_allclose(arrays.evaluate(loader, steps=2, verbose=0), first_two, rtol=1e-6)
    predicted = arrays.predict(X, verbose=0)
    np.testing.assert_allclose(arrays.predict(loader, verbose=0), predicted, rtol=1e-6)
    x_only = torch.utils.data.DataLoader(torch.from_numpy(X), batch_size=5)  # x alone
    np.testing.assert_allclose(arrays.predict(x_only, verbose=0), predicted, rtol=1e-6)
    np.testing.assert_allclose(
        arrays.predict(x_only, steps=2, verbose=0), predicted[:10], rtol=1e-6
    )


def test_validation_data_may_be_a_batch_source():
    model = make_model()
    data = Dataset(X, Y)
    history = model.fit(X, Y, epochs=2, batch_size=BATCH, validation_data=data, verbose=0)
    assert data.seen == [0, 1, 2] * 2  # in order: validation never shuffles
    expected = model.evaluate(X, Y, batch_size=BATCH, return_dict=True, verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(expected["loss"], rel=1e-6)
    assert history.history["val_mae"][-1] == pytest.approx(expected["mae"], rel=1e-6)
    endless = (item for _ in range(10) for item in batches())
    history = model.fit(
        Dataset(X, Y), epochs=2, validation_data=endless, validation_steps=1, verbose=0
    )
    # one validation iterator runs on across epochs, as Keras's: epoch 2 gets the second batch
    second = model.evaluate(X[8:16], Y[8:16], return_dict=True, verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(second["loss"], rel=1e-6)


def test_batches_may_be_dicts_of_named_inputs_and_tensors_needing_gradients():
    fastnn.utils.set_random_seed(0)
    a, b = fastnn.Input((3,), name="a"), fastnn.Input((2,), name="b")
    model = fastnn.Model([a, b], layers.Dense(1)(layers.Concatenate()([a, b])))
    model.compile("sgd", "mse")
    xb = RNG.random((24, 2)).astype("float32")
    source = [({"a": X[i : i + 8], "b": xb[i : i + 8]}, Y[i : i + 8]) for i in (0, 8, 16)]
    model.fit(iter(source), epochs=1, verbose=0)
    expected = model.predict({"a": X, "b": xb}, verbose=0)
    got = model.predict(iter([{"a": X, "b": torch.tensor(xb, requires_grad=True)}]), verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_bad_sources_and_arguments_fail_before_any_step():
    model = make_model()
    before = model.get_weights()
    with pytest.raises(ValueError, match="pass y=None.*got y"):
        model.fit(Dataset(X, Y), Y, verbose=0)
    with pytest.raises(ValueError, match="got sample_weight"):
        model.fit(batches(), sample_weight=W, steps_per_epoch=1, verbose=0)
    with pytest.raises(ValueError, match="got validation_split"):
        model.fit(Dataset(X, Y), validation_split=0.5, verbose=0)
    with pytest.raises(ValueError, match="evaluate\\(\\): .*got y"):
        model.evaluate(Dataset(X, Y), Y, verbose=0)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        model.evaluate(Dataset(X, Y), steps=0, verbose=0)
    with pytest.raises(ValueError, match="no batches"):
        model.predict(iter([]), verbose=0)
    with pytest.raises(ValueError, match="no batches"):
        model.evaluate(iter([]), verbose=0)
    with pytest.raises(ValueError, match=r"must be \(x, y\).*got str"):
        model.evaluate(iter(["text"]), verbose=0)
    with pytest.raises(ValueError, match="evaluate\\(\\) batch 0: .*needs targets y"):
        model.evaluate(iter([X]), verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_what_counts_as_a_batch_source():
    assert data_adapters.is_batch_source(Dataset(X, Y))
    assert data_adapters.is_batch_source(batches())
    assert data_adapters.is_batch_source(torch.utils.data.DataLoader(torch.from_numpy(X)))
    for data in (X, [X, X], (X, Y), {"a": X}, "x", torch.from_numpy(X), None):
        assert not data_adapters.is_batch_source(data)
    tensor = torch.ones(2, requires_grad=True)
    converted = data_adapters.as_numpy({"t": [tensor, (tensor,)], "n": None})
    assert isinstance(converted["t"][0], np.ndarray) and isinstance(converted["t"][1], tuple)
    assert converted["n"] is None


def test_progress_counts_a_sources_batches(capsys):
    model = make_model()
    model.evaluate(Dataset(X, Y), verbose=2)
    assert capsys.readouterr().out.startswith("3/3 - ")
    model.predict(batches(), verbose=2)  # no length: the count of batches seen
    assert capsys.readouterr().out.startswith("3/3 - ")


def test_class_weight_weighs_a_sources_batches_as_arrays():
    labels = (Y > 0).astype("int64")[:, 0]
    weights = {0: 1.0, 1: 3.0}

    def fitted(data, **kwargs):
        fastnn.utils.set_random_seed(0)
        inputs = fastnn.Input((3,))
        model = fastnn.Model(inputs, layers.Dense(2, activation="softmax")(inputs))
        model.compile("sgd", "sparse_categorical_crossentropy")
        model.fit(data, class_weight=weights, epochs=2, shuffle=False, verbose=0, **kwargs)
        return model

    arrays = fitted(X, y=labels, batch_size=BATCH)
    assert_same_weights(fitted(Dataset(X, labels)), arrays)
    assert_same_weights(fitted(iter([(X[i : i + 8], labels[i : i + 8]) for i in (0, 8, 16)] * 2),
                               steps_per_epoch=3), arrays)  # fmt: skip


def test_a_validation_generator_that_runs_out_skips_validation_but_not_training(capsys):
    model = make_model()
    history = model.fit(X, Y, epochs=2, validation_data=batches(), verbose=0)
    assert "validation_data ran out of data" in capsys.readouterr().out
    assert len(history.history["loss"]) == 2 and len(history.history["val_loss"]) == 1


def test_fit_evaluate_predict_on_a_torch_dataloader_match_keras():
    keras = keras_module()
    ours, theirs = make_model(), make_model(keras)
    copy_weights(theirs, ours)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(Y), torch.tensor(W)),
        batch_size=BATCH,
    )
    our_history = ours.fit(loader, epochs=2, verbose=0).history
    their_history = theirs.fit(loader, epochs=2, verbose=0).history
    for key in their_history:
        np.testing.assert_allclose(our_history[key], their_history[key], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        ours.evaluate(loader, verbose=0), theirs.evaluate(loader, verbose=0), rtol=1e-4
    )
    np.testing.assert_allclose(
        ours.predict(loader, verbose=0), theirs.predict(loader, verbose=0), rtol=1e-4, atol=1e-6
    )
