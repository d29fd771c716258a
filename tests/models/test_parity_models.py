"""Whole models against Keras 3 (torch backend): the same architecture built in both, Keras's
weights copied over, then predictions, training steps, evaluate/fit logs, summary counts and layer
order must agree. The models are those of the project's seed document, plus shared layers, skip
connections, a Multiply interaction, a nested model, BatchNormalization and a frozen layer."""

import os

os.environ["KERAS_BACKEND"] = "torch"  # keras reads this once, at import

import re  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastnn  # noqa: E402

keras = pytest.importorskip("keras")

N = 8  # samples per batch: small keeps the file fast, 28x28 CNNs included


# ---------------------------------------------------------------- models (K is keras or fastnn)


def cnn_layers(K, dropout, **first):
    L = K.layers
    return [
        L.Conv2D(32, kernel_size=3, activation="relu", padding="same", name="conv1", **first),
        L.MaxPooling2D(2, name="pool1"),
        L.Conv2D(64, kernel_size=3, activation="relu", padding="same", name="conv2"),
        L.MaxPooling2D(2, name="pool2"),
        L.Flatten(name="flatten"),
        L.Dense(100, activation="relu", name="hidden"),
        L.Dropout(dropout, name="dropout"),
        L.Dense(10, activation="softmax", name="probs"),
    ]


def cnn_functional(K, dropout=0.4):
    x = inputs = K.Input(shape=(28, 28, 1), name="image")
    for layer in cnn_layers(K, dropout):
        x = layer(x)
    return K.Model(inputs=inputs, outputs=x, name="cnn")


def cnn_sequential(K, dropout=0.4):
    return K.Sequential(cnn_layers(K, dropout, input_shape=(28, 28, 1)), name="cnn_seq")


def cnn_sequential_input(K, dropout=0.4):
    return K.Sequential([K.Input(shape=(28, 28, 1)), *cnn_layers(K, dropout)], name="cnn_seq_in")


def multi_input(K, dropout=0.0):
    L = K.layers
    input_1 = K.Input(shape=(10,), name="user_info")
    x1 = L.Dense(32, activation="relu", name="info_dense")(input_1)
    input_2 = K.Input(shape=(5,), name="user_behavior")
    x2 = L.Dense(16, activation="relu", name="behavior_dense")(input_2)
    merged = L.Concatenate(name="merged")([x1, x2])
    x = L.Dense(64, activation="relu", name="hidden1")(merged)
    x = L.Dense(32, activation="relu", name="hidden2")(x)
    output = L.Dense(1, activation="sigmoid", name="purchase_prob")(x)
    return K.Model(inputs=[input_1, input_2], outputs=output, name="purchase")


def multi_output(K, dropout=0.0):
    L = K.layers
    input_img = K.Input(shape=(28, 28, 1), name="face_image")
    x = L.Conv2D(32, kernel_size=3, activation="relu", name="conv1")(input_img)
    x = L.MaxPooling2D(2, name="pool1")(x)
    x = L.Conv2D(64, kernel_size=3, activation="relu", name="conv2")(x)
    x = L.MaxPooling2D(2, name="pool2")(x)
    x = L.Flatten(name="flatten")(x)
    output_age = L.Dense(1, name="output_age")(x)
    output_gender = L.Dense(1, activation="sigmoid", name="output_gender")(x)
    return K.Model(inputs=input_img, outputs=[output_age, output_gender], name="face")


def two_heads(K, dropout=0.0):
    """Outputs named so that Keras's sorted log keys differ from the output order."""
    L = K.layers
    inputs = K.Input(shape=(5,), name="features")
    h = L.Dense(8, activation="relu", name="trunk")(inputs)
    price = L.Dense(1, name="price")(h)
    kind = L.Dense(3, activation="softmax", name="kind")(h)
    return K.Model(inputs=inputs, outputs=[price, kind], name="two_heads")


def shared_layer(K, dropout=0.0):
    L = K.layers
    a = K.Input(shape=(6,), name="left")
    b = K.Input(shape=(6,), name="right")
    shared = L.Dense(8, activation="tanh", name="shared")
    merged = L.Concatenate(name="merged")([shared(a), shared(b)])
    out = L.Dense(1, activation="sigmoid", name="same")(merged)
    return K.Model(inputs=[a, b], outputs=out, name="siamese")


def skip_connection(K, dropout=0.0):
    L = K.layers
    inputs = K.Input(shape=(12,), name="features")
    h = L.Dense(12, activation="relu", name="block")(inputs)
    h = L.Add(name="residual")([h, inputs])
    out = L.Dense(3, activation="softmax", name="probs")(h)
    return K.Model(inputs=inputs, outputs=out, name="resnet_ish")


def multiply_interaction(K, dropout=0.0):
    L = K.layers
    user = K.Input(shape=(7,), name="user")
    item = K.Input(shape=(9,), name="item")
    u = L.Dense(8, name="user_embed")(user)
    v = L.Dense(8, name="item_embed")(item)
    out = L.Dense(1, activation="sigmoid", name="score")(L.Multiply(name="interact")([u, v]))
    return K.Model(inputs=[user, item], outputs=out, name="factorization")


def nested_model(K, dropout=0.0):
    L = K.layers
    inner_in = K.Input(shape=(6,), name="inner_in")
    inner_out = L.Dense(5, activation="relu", name="inner_dense")(inner_in)
    inner = K.Model(inputs=inner_in, outputs=inner_out, name="encoder")
    inputs = K.Input(shape=(6,), name="outer_in")
    h = L.Dense(6, activation="tanh", name="pre")(inputs)
    out = L.Dense(3, activation="softmax", name="probs")(inner(h))
    return K.Model(inputs=inputs, outputs=out, name="outer")


def batchnorm_model(K, dropout=0.0):
    L = K.layers
    inputs = K.Input(shape=(6,), name="features")
    h = L.Dense(10, use_bias=False, name="dense")(inputs)  # a bias would have zero gradient
    h = L.BatchNormalization(name="bn")(h)
    h = L.Activation("relu", name="relu")(h)
    out = L.Dense(1, activation="sigmoid", name="prob")(h)
    return K.Model(inputs=inputs, outputs=out, name="bn_model")


def frozen_layer(K, dropout=0.0):
    L = K.layers
    inputs = K.Input(shape=(6,), name="features")
    frozen = L.Dense(10, activation="relu", name="frozen")
    frozen.trainable = False
    h = frozen(inputs)
    out = L.Dense(3, activation="softmax", name="probs")(L.Dense(8, name="head")(h))
    return K.Model(inputs=inputs, outputs=out, name="frozen_model")


# ---------------------------------------------------------------- data and compile arguments


def images(rng, n):
    return rng.random((n, 28, 28, 1), dtype=np.float32)


def binary(rng, n):
    return rng.integers(0, 2, (n, 1)).astype(np.float32)


def sparse3(rng, n):
    return rng.integers(0, 3, n)


DATA = {
    "cnn": lambda rng, n: (images(rng, n), rng.integers(0, 10, n)),
    "multi_input": lambda rng, n: (
        [rng.standard_normal((n, 10), np.float32), rng.standard_normal((n, 5), np.float32)],
        binary(rng, n),
    ),
    "multi_output": lambda rng, n: (
        images(rng, n),
        {"output_age": 3 * rng.random((n, 1), np.float32), "output_gender": binary(rng, n)},
    ),
    "two_heads": lambda rng, n: (
        rng.standard_normal((n, 5), np.float32),
        {"price": rng.standard_normal((n, 1), np.float32), "kind": sparse3(rng, n)},
    ),
    "shared": lambda rng, n: (
        [rng.standard_normal((n, 6), np.float32), rng.standard_normal((n, 6), np.float32)],
        binary(rng, n),
    ),
    "skip": lambda rng, n: (rng.standard_normal((n, 12), np.float32), sparse3(rng, n)),
    "multiply": lambda rng, n: (
        [rng.standard_normal((n, 7), np.float32), rng.standard_normal((n, 9), np.float32)],
        binary(rng, n),
    ),
    "nested": lambda rng, n: (rng.standard_normal((n, 6), np.float32), sparse3(rng, n)),
    "batchnorm": lambda rng, n: (3 * rng.standard_normal((n, 6), np.float32) + 1, binary(rng, n)),
    "frozen": lambda rng, n: (rng.standard_normal((n, 6), np.float32), sparse3(rng, n)),
}

SPARSE = dict(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
BINARY = dict(loss="binary_crossentropy", metrics=["accuracy"])
FACE = dict(
    loss={"output_age": "mse", "output_gender": "binary_crossentropy"},
    metrics={"output_age": "mae", "output_gender": "accuracy"},
)

TWO_HEADS = dict(
    loss={"price": "mse", "kind": "sparse_categorical_crossentropy"},
    metrics={"kind": "accuracy"},
)

# name: (builder, data key, compile arguments)
MODELS = {
    "cnn_functional": (cnn_functional, "cnn", SPARSE),
    "cnn_sequential": (cnn_sequential, "cnn", SPARSE),
    "cnn_sequential_input": (cnn_sequential_input, "cnn", SPARSE),
    "multi_input": (multi_input, "multi_input", BINARY),
    "multi_output": (multi_output, "multi_output", FACE),
    "two_heads": (two_heads, "two_heads", TWO_HEADS),
    "shared_layer": (shared_layer, "shared", BINARY),
    "skip_connection": (skip_connection, "skip", SPARSE),
    "multiply": (multiply_interaction, "multiply", BINARY),
    "nested_model": (nested_model, "nested", SPARSE),
    "batchnorm": (batchnorm_model, "batchnorm", BINARY),
    "frozen_layer": (frozen_layer, "frozen", SPARSE),
}

OPTIMIZERS = {
    "sgd": lambda K: K.optimizers.SGD(learning_rate=0.01),
    "sgd_nesterov": lambda K: K.optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True),
    "adam": lambda K: K.optimizers.Adam(),
}


# ---------------------------------------------------------------- helpers


def build_pair(builder, dropout=None, seed=0):
    """The model in Keras and in fastnn with identical, perturbed weights.

    Keras's initial biases are zero and BatchNormalization starts at the identity; random offsets
    (moving variances kept positive) make every weight matter to the comparison.
    """
    kwargs = {} if dropout is None else {"dropout": dropout}
    keras.utils.set_random_seed(seed)
    fastnn.utils.set_random_seed(seed)
    theirs, ours = builder(keras, **kwargs), builder(fastnn, **kwargs)
    rng = np.random.default_rng(seed)
    weights = []
    for var in theirs.weights:
        value = keras.ops.convert_to_numpy(var.value)
        if "variance" in var.name:
            value = rng.uniform(0.5, 2.0, value.shape).astype(value.dtype)
        else:
            value = value + rng.normal(0, 0.05, value.shape).astype(value.dtype)
        weights.append(value)
    theirs.set_weights(weights)
    ours.set_weights(weights)  # raises if fastnn's weight order or shapes differ from Keras's
    return theirs, ours


def data_for(name, n=N, seed=1):
    return DATA[MODELS[name][1]](np.random.default_rng(seed), n)


def as_numpy(value):
    if isinstance(value, dict):
        return {k: as_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_numpy(v) for v in value]
    return np.asarray(keras.ops.convert_to_numpy(value))


def assert_close(ours, theirs, rtol=1e-5, atol=1e-6, what=""):
    ours, theirs = as_numpy(ours), as_numpy(theirs)
    if isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), what
        for i, (o, t) in enumerate(zip(ours, theirs)):
            assert_close(o, t, rtol, atol, f"{what}[{i}]")
        return
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, err_msg=what)


def assert_same_weights(ours, theirs, rtol=1e-5, atol=1e-6):
    names = [v.path for v in theirs.weights]
    for name, o, t in zip(names, ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(o, t, rtol=rtol, atol=atol, err_msg=name)


def assert_same_updates(ours, theirs, ours_before, theirs_before, floor=2e-6):
    """The weight changes of a step agree: tighter than comparing the weights themselves.

    The absolute floor covers gradients that are zero up to rounding (a bias just before
    BatchNormalization), which Adam's normalisation turns into updates of ~1e-6.
    """
    names = [v.path for v in theirs.weights]
    for name, o, t, o0, t0 in zip(
        names, ours.get_weights(), theirs.get_weights(), ours_before, theirs_before
    ):
        d_ours, d_theirs = o - o0, t - t0
        scale = float(np.abs(d_theirs).max()) if d_theirs.size else 0.0
        np.testing.assert_allclose(
            d_ours, d_theirs, rtol=1e-3, atol=2e-3 * scale + floor, err_msg=f"update of {name}"
        )


def compile_pair(theirs, ours, optimizer="sgd", **compile_args):
    theirs.compile(optimizer=OPTIMIZERS[optimizer](keras), **compile_args)
    ours.compile(optimizer=OPTIMIZERS[optimizer](fastnn), **compile_args)


def summary_text(model) -> str:
    lines = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    return "\n".join(lines)


def param_lines(model) -> list[str]:
    text = summary_text(model)
    return [
        line.strip()
        for line in text.splitlines()
        if re.match(r"\s*(Total|Trainable|Non-trainable|Optimizer) params:", line)
    ]


def summary_rows(model) -> list[tuple]:
    """A summary table's rows as cell tuples; cells wrapped over several lines are joined."""
    rows, cells = [], None
    for line in summary_text(model).splitlines():
        if line.startswith("│"):
            parts = [c.strip() for c in line.split("│")[1:-1]]
            cells = parts if cells is None else [f"{a} {b}".strip() for a, b in zip(cells, parts)]
        elif cells is not None:
            rows.append(tuple(cells))
            cells = None
    return rows


# ---------------------------------------------------------------- 1. predictions


@pytest.mark.parametrize("name", list(MODELS))
def test_predictions_match_keras(name):
    theirs, ours = build_pair(MODELS[name][0])
    x, _ = data_for(name)
    expected = theirs.predict(x, verbose=0)
    assert_close(ours.predict(x, verbose=0), expected, what="predict")
    assert_close(ours(x), theirs(x), what="model(x)")
    assert_close(ours.predict(x, batch_size=3, verbose=0), expected, what="predict, batch_size=3")


def test_multi_input_predict_takes_a_dict_keyed_by_input_name():
    theirs, ours = build_pair(multi_input)
    (a, b), _ = data_for("multi_input")
    by_name = {"user_behavior": b, "user_info": a}
    assert_close(ours.predict(by_name, verbose=0), theirs.predict(by_name, verbose=0))
    assert_close(ours(by_name), theirs(by_name))


# ---------------------------------------------------------------- 2. training steps


# The Sequential CNNs differ from the Functional one only in construction: one optimizer each.
TRAIN_CASES = [
    (name, optimizer)
    for name in MODELS
    for optimizer in (["adam"] if name.startswith("cnn_sequential") else OPTIMIZERS)
]


# Adam moves a weight whose gradient is below its epsilon (1e-7) by lr * g / eps, 1e4 g at lr 1e-3:
# float32 rounding of 1% in such a gradient (a near-cancelled sum; BLAS kernels order it
# differently) moves the weight by ~1.6e-6, and a gradient that is exactly 0 in Keras's conv and
# 5e-10 in ours (Winograd's transforms and fused multiply-adds round a sum of ~1e-3 terms
# differently) by 5e-6 a step. The SGD cases check the same gradients to 1e-6 without that
# amplification; each step's update is also checked against its own scale below.
ADAM_ATOL = 1e-5


@pytest.mark.parametrize("name, optimizer", TRAIN_CASES)
def test_train_on_batch_matches_keras(name, optimizer):
    builder, _, compile_args = MODELS[name]
    theirs, ours = build_pair(builder, dropout=0.0)
    compile_pair(theirs, ours, optimizer, **compile_args)
    for step in range(2):  # the second step uses the momentum / moment estimates of the first
        x, y = data_for(name, seed=10 + step)
        theirs_before, ours_before = theirs.get_weights(), ours.get_weights()
        expected = theirs.train_on_batch(x, y)
        got = ours.train_on_batch(x, y)
        assert_close(got, expected, what=f"step {step} loss and metrics")
        floor = ADAM_ATOL if optimizer == "adam" else 1e-6
        assert_same_weights(ours, theirs, atol=floor)
        assert_same_updates(ours, theirs, ours_before, theirs_before, floor)


@pytest.mark.parametrize("name", ["frozen_layer", "batchnorm"])
def test_non_trainable_weights_are_left_alone_by_the_optimizer(name):
    theirs, ours = build_pair(MODELS[name][0])
    compile_pair(theirs, ours, "adam", **MODELS[name][2])
    x, y = data_for(name)
    frozen = [v.path for v in theirs.weights if not v.trainable]
    assert frozen  # the frozen kernel and bias; BatchNormalization's moving statistics
    paths = [v.path for v in theirs.weights]
    before = dict(zip(paths, theirs.get_weights()))
    theirs.train_on_batch(x, y)
    ours.train_on_batch(x, y)
    for model in (theirs, ours):
        after = dict(zip(paths, model.get_weights()))
        for path in frozen:
            if name == "frozen_layer":
                np.testing.assert_array_equal(after[path], before[path], err_msg=path)
            else:  # moving statistics follow the batch, not the gradient
                assert not np.allclose(after[path], before[path]), path
    assert_same_weights(ours, theirs)


def test_batchnorm_trains_and_predicts_like_keras():
    theirs, ours = build_pair(batchnorm_model)
    compile_pair(theirs, ours, "sgd", **BINARY)
    x, y = data_for("batchnorm")
    assert_close(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), what="inference")
    assert_close(ours(x, training=True), theirs(x, training=True), what="training-mode call")
    assert_close(ours.train_on_batch(x, y), theirs.train_on_batch(x, y), what="loss")
    for layer_name in ("bn", "dense"):
        o, t = ours.get_layer(layer_name), theirs.get_layer(layer_name)
        assert [w.name for w in o.weights] == [w.name for w in t.weights]
        for w_o, w_t, var in zip(o.get_weights(), t.get_weights(), t.weights):
            np.testing.assert_allclose(w_o, w_t, rtol=1e-5, atol=1e-6, err_msg=var.path)
    assert_close(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), what="after a step")


# ---------------------------------------------------------------- 3. evaluate and fit logs


EVALUATE_CASES = {
    "single_output_metrics": (
        "multi_input",
        dict(loss="binary_crossentropy", metrics=["mse", "accuracy", "mae"]),
    ),
    "single_output_loss_only": ("skip_connection", dict(loss="sparse_categorical_crossentropy")),
    "multi_output_seed": ("multi_output", FACE),
    "multi_output_loss_weights": (
        "multi_output",
        dict(FACE, loss_weights={"output_age": 0.3, "output_gender": 2.0}),
    ),
    "metric_lists_per_output": (
        "two_heads",
        dict(
            loss=["mse", "sparse_categorical_crossentropy"],
            metrics=[["mse", "mae"], ["accuracy", "sparse_categorical_crossentropy"]],
        ),
    ),
    # Keras 3 reads a list as long as the outputs as one entry per output, not as shared metrics
    "metrics_one_per_output": (
        "two_heads",
        dict(loss=["mse", "sparse_categorical_crossentropy"], metrics=["mae", "accuracy"]),
    ),
    "metrics_mixed_per_output": (
        "two_heads",
        dict(loss=TWO_HEADS["loss"], metrics=[None, ["sparse_categorical_crossentropy", "acc"]]),
    ),
    "metrics_dict_of_lists": (
        "two_heads",
        dict(
            TWO_HEADS,
            metrics={"kind": ["sparse_categorical_crossentropy", "acc"], "price": ["mse", "mae"]},
        ),
    ),
    "loss_broadcast": ("multi_output", dict(loss="mse", metrics={"output_gender": "accuracy"})),
    "loss_weights_list": (
        "two_heads",
        dict(loss=["mse", "sparse_categorical_crossentropy"], loss_weights=[2.0, 0.5]),
    ),
}


@pytest.mark.parametrize("case", list(EVALUATE_CASES))
def test_evaluate_returns_keras_values_in_keras_order(case):
    name, compile_args = EVALUATE_CASES[case]
    theirs, ours = build_pair(MODELS[name][0], dropout=0.0)
    compile_pair(theirs, ours, **compile_args)
    x, y = data_for(name, n=11)
    expected = theirs.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    got = ours.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    assert list(got) == list(expected)
    assert_close(list(got.values()), list(expected.values()), what=str(list(expected)))
    expected_list = theirs.evaluate(x, y, batch_size=4, verbose=0)
    assert_close(ours.evaluate(x, y, batch_size=4, verbose=0), expected_list, what="list")


def as_given(x, y):
    return x, y


FIT_CASES = {
    # name: (model, (x, y) -> the form passed to fit, compile arguments, fit arguments)
    "cnn_accuracy": ("cnn_functional", as_given, SPARSE, {}),
    "cnn_sequential_validation": ("cnn_sequential", as_given, SPARSE, {"validation_split": 0.25}),
    "multi_input_list": ("multi_input", as_given, BINARY, {}),
    "multi_input_dict": (
        "multi_input",
        lambda x, y: ({"user_info": x[0], "user_behavior": x[1]}, y),
        BINARY,
        {"validation_split": 0.2},
    ),
    "multi_output_dict": ("multi_output", as_given, FACE, {"validation_split": 0.2}),
    "multi_output_list_weighted": (
        "multi_output",
        lambda x, y: (x, [y["output_age"], y["output_gender"]]),
        dict(FACE, loss_weights={"output_age": 0.5, "output_gender": 1.5}),
        {},
    ),
}


@pytest.mark.parametrize("case", list(FIT_CASES))
def test_fit_history_matches_keras(case):
    name, arrange, compile_args, fit_args = FIT_CASES[case]
    theirs, ours = build_pair(MODELS[name][0], dropout=0.0)
    compile_pair(theirs, ours, "sgd", **compile_args)
    x, y = arrange(*data_for(name, n=10))
    epochs = 2 if MODELS[name][1] not in ("cnn", "multi_output") else 1  # 28x28 CNNs: one epoch
    kwargs = dict(batch_size=4, epochs=epochs, shuffle=False, verbose=0, **fit_args)
    expected = theirs.fit(x, y, **kwargs).history
    got = ours.fit(x, y, **kwargs).history
    assert list(got) == list(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-6, err_msg=key)
    assert_same_weights(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("weighting", ["sample_weight", "class_weight"])
def test_weighted_fit_and_evaluate_match_keras(weighting):
    """Sample and class weights, weighted_metrics, and Keras's names for repeated metrics."""
    theirs, ours = build_pair(skip_connection)
    compile_args = dict(
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy", "accuracy"],  # logged as 'accuracy' and 'accuracy_1'
        weighted_metrics=["accuracy", "sparse_categorical_crossentropy"],  # 'weighted_accuracy'
    )
    compile_pair(theirs, ours, "sgd_nesterov", **compile_args)
    x, y = data_for("skip_connection", n=10)
    weights = np.random.default_rng(5).uniform(0.2, 2.0, len(x)).astype(np.float32)
    if weighting == "sample_weight":
        fit_weights = {"sample_weight": weights}
    else:
        fit_weights = {"class_weight": {0: 0.5, 1: 2.0, 2: 1.25}}
    kwargs = dict(batch_size=4, epochs=2, shuffle=False, verbose=0, **fit_weights)
    expected, got = theirs.fit(x, y, **kwargs).history, ours.fit(x, y, **kwargs).history
    assert list(got) == list(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-6, err_msg=key)
    expected = theirs.evaluate(x, y, sample_weight=weights, verbose=0)
    assert_close(ours.evaluate(x, y, sample_weight=weights, verbose=0), expected, rtol=1e-4)


def lazy_sequential(K):
    L = K.layers
    dense = [L.Dense(8, activation="relu", name="d1"), L.Dense(3, activation="softmax", name="d2")]
    return K.Sequential(dense, name="lazy")


def test_sequential_compiled_before_the_data_builds_it():
    """No input shape: compile first, the first batch builds the model (Keras's usual order)."""
    x, y = data_for("nested_model", n=10)
    theirs, ours = lazy_sequential(keras), lazy_sequential(fastnn)
    compile_pair(theirs, ours, "sgd", **SPARSE)
    kwargs = dict(batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert list(ours.fit(x, y, **kwargs).history) == list(theirs.fit(x, y, **kwargs).history)

    theirs, ours = lazy_sequential(keras), lazy_sequential(fastnn)
    compile_pair(theirs, ours, "sgd", **SPARSE)
    theirs.build((None, 6))
    ours.build((None, 6))
    ours.set_weights(theirs.get_weights())
    expected, got = theirs.fit(x, y, **kwargs).history, ours.fit(x, y, **kwargs).history
    assert list(got) == list(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-6, err_msg=key)
    assert_same_weights(ours, theirs, rtol=1e-4, atol=1e-5)


def test_seed_program_history_keys_with_dropout():
    """The seed document's CNN as written (Dropout 0.4): keys match even though masks differ."""
    theirs, ours = build_pair(cnn_sequential)
    compile_pair(theirs, ours, "adam", **SPARSE)
    x, y = data_for("cnn_sequential", n=10)
    kwargs = dict(batch_size=4, epochs=1, verbose=0, validation_split=0.2)
    assert list(ours.fit(x, y, **kwargs).history) == list(theirs.fit(x, y, **kwargs).history)


# ---------------------------------------------------------------- 4. summary, params, layers


@pytest.mark.parametrize("name", list(MODELS))
def test_params_summary_and_layer_order_match_keras(name):
    theirs, ours = build_pair(MODELS[name][0])
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    assert ours.count_params() == theirs.count_params()
    assert [w.shape for w in ours.trainable_weights] == [
        tuple(w.shape) for w in theirs.trainable_weights
    ]
    assert len(ours.non_trainable_weights) == len(theirs.non_trainable_weights)
    assert param_lines(ours) == param_lines(theirs)


@pytest.mark.parametrize("name", list(MODELS))
def test_summary_rows_match_keras(name):
    """Layer (type), Output Shape, Param # and, for non-chain graphs, Connected to."""
    theirs, ours = build_pair(MODELS[name][0])
    expected, got = summary_rows(theirs), summary_rows(ours)
    assert len(got) == len(expected)
    for ours_row, theirs_row in zip(got, expected):
        assert len(ours_row) == len(theirs_row), (ours_row, theirs_row)
        for cell, keras_cell in zip(ours_row, theirs_row):
            if keras_cell.endswith("…"):  # Keras cut a cell too wide for its column
                assert cell.startswith(keras_cell[:-1]), (ours_row, theirs_row)
            else:
                assert cell == keras_cell, (ours_row, theirs_row)


@pytest.mark.parametrize(
    "name, optimizer",
    [
        ("cnn_sequential", "adam"),
        ("frozen_layer", "sgd_nesterov"),
        ("batchnorm", "adam"),
        ("multi_output", "sgd"),
    ],
)
def test_summary_after_training_counts_optimizer_state_like_keras(name, optimizer):
    builder, _, compile_args = MODELS[name]
    theirs, ours = build_pair(builder, dropout=0.0)
    compile_pair(theirs, ours, optimizer, **compile_args)
    assert param_lines(ours) == param_lines(theirs)  # compiled, optimizer not yet built
    x, y = data_for(name)
    theirs.train_on_batch(x, y)
    ours.train_on_batch(x, y)
    assert param_lines(ours) == param_lines(theirs)


# ---------------------------------------------------------------- 5. 'accuracy' resolution


def dense_model(K, units, activation):
    inputs = K.Input(shape=(4,), name="x")
    outputs = K.layers.Dense(units, activation=activation, name="out")(inputs)
    return K.Model(inputs=inputs, outputs=outputs, name="acc_model")


ACCURACY_CASES = {
    # name: (units, activation, loss, targets from integer classes c in [0, 3))
    "binary_column": (
        1,
        "sigmoid",
        "binary_crossentropy",
        lambda c: (c > 0).astype("float32")[:, None],
    ),
    "binary_flat": (1, "sigmoid", "binary_crossentropy", lambda c: (c > 0).astype("float32")),
    "binary_int_labels": (1, "sigmoid", "binary_crossentropy", lambda c: (c > 0).astype("int64")),
    "binary_soft_labels": (  # Keras compares (y_pred > 0.5) with y_true exactly: 0.8 never matches
        1,
        "sigmoid",
        "binary_crossentropy",
        lambda c: np.array([0.0, 1.0, 0.8], "float32")[c][:, None],
    ),
    "sparse_flat": (3, "softmax", "sparse_categorical_crossentropy", lambda c: c),
    "sparse_column": (3, "softmax", "sparse_categorical_crossentropy", lambda c: c[:, None]),
    "categorical": (
        3,
        "softmax",
        "categorical_crossentropy",
        lambda c: np.eye(3, dtype="float32")[c],
    ),
}


@pytest.mark.parametrize("metric", ["accuracy", "acc"])
@pytest.mark.parametrize("case", list(ACCURACY_CASES))
def test_accuracy_resolves_like_keras(case, metric):
    units, activation, loss, targets = ACCURACY_CASES[case]
    theirs, ours = build_pair(lambda K: dense_model(K, units, activation), seed=3)
    compile_pair(theirs, ours, loss=loss, metrics=[metric])
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((40, 4), dtype=np.float32), targets(rng.integers(0, 3, 40))
    expected = theirs.evaluate(x, y, verbose=0, return_dict=True)
    got = ours.evaluate(x, y, verbose=0, return_dict=True)
    assert list(got) == list(expected) == sorted([metric, "loss"])
    assert_close(list(got.values()), list(expected.values()), what=case)
    assert 0.0 < expected[metric] < 1.0  # not a degenerate all-right or all-wrong case
