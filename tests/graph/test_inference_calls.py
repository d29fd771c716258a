"""Inference calls (``Layer.inference_call``, ``Graph.infer``): predict's steps made once per
input shapes compute what their forward does, follow weight writes and shapes, and keep each
caller's results their own."""

import threading

import numpy as np
import pytest
from gradcheck import randomize_weights

import fastnn
from fastnn import graph as graph_module
from fastnn import layers, runtime


def dense_stack():
    x = fastnn.Input((20,))
    h = layers.Dense(40, activation="relu")(x)
    h = layers.Dropout(0.3)(h)
    h = layers.Dense(32)(h)
    h = layers.BatchNormalization()(h)
    h = layers.Activation("relu")(h)
    h = layers.Dense(24, use_bias=False)(h)
    h = layers.Activation("tanh")(h)
    h = layers.Dense(16, activation="gelu")(h)
    return fastnn.Model(x, layers.Dense(5, activation="softmax")(h))


def wide_dense():
    """Products large enough for the SIMD kernels with kept panels (bias and relu fused)."""
    x = fastnn.Input((784,))
    h = layers.Dense(512, activation="relu")(x)
    return fastnn.Model(x, layers.Dense(10)(h))


def residual_cnn():
    x = fastnn.Input((16, 16, 8))
    h = layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
    h = layers.BatchNormalization()(h)
    h = layers.Activation("relu")(h)
    y = layers.Conv2D(16, 3, padding="same", use_bias=False)(h)
    y = layers.BatchNormalization()(y)
    h = layers.Activation("relu")(layers.Add()([y, h]))
    s = layers.Conv2D(32, 1, strides=2, use_bias=False)(h)  # a strided 1x1 shortcut
    s = layers.BatchNormalization()(s)
    y = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(h)
    y = layers.Conv2D(32, 3, padding="same")(y)
    h = layers.Activation("relu")(layers.Add()([y, s]))
    h = layers.Conv2D(32, 1, activation="relu")(h)  # pointwise
    h = layers.Conv2D(24, 3, padding="valid")(h)
    h = layers.LeakyReLU(0.2)(h)
    h = layers.Conv2D(16, 3, padding="same", activation="softmax")(h)
    h = layers.GlobalAveragePooling2D()(h)
    return fastnn.Model(x, layers.Dense(3)(h))


def separable_cnn():
    """MobileNet's blocks: depthwise-BN-relu, 1x1 conv-BN-relu; a strided 3x3 and a 5x5
    depthwise conv (the loops and the SIMD rows), a depthwise conv and its activation layer."""
    x = fastnn.Input((12, 12, 16))
    h = x
    for strides, size in ((1, 3), (2, 3), (1, 5)):
        h = layers.DepthwiseConv2D(size, strides=strides, padding="same", use_bias=False)(h)
        h = layers.Activation("relu")(layers.BatchNormalization()(h))
        h = layers.BatchNormalization()(layers.Conv2D(16, 1, use_bias=False)(h))
        h = layers.ReLU(6.0)(h)
    h = layers.DepthwiseConv2D(3, depth_multiplier=2)(h)
    h = layers.Activation("sigmoid")(h)
    h = layers.DepthwiseConv2D(3, padding="same", activation="tanh")(h)
    return fastnn.Model(x, layers.GlobalAveragePooling2D()(h))


def encoder():
    """A transformer block on an Embedding: sums, layer norms, the feed-forward Denses."""
    tokens = fastnn.Input((12,), dtype="int32")
    x = layers.Embedding(50, 16)(tokens)
    attention = layers.MultiHeadAttention(num_heads=2, key_dim=8)(x, x)
    x = layers.LayerNormalization()(layers.Add()([x, attention]))
    h = layers.Dense(16)(layers.Dense(32, activation="relu")(x))
    x = layers.Activation("relu")(layers.Add()([x, h]))
    x = layers.LayerNormalization(epsilon=1e-3)(x)
    return fastnn.Model(tokens, layers.Dense(2)(layers.GlobalAveragePooling1D()(x)))


def text_cnn():
    """Conv1D text classifiers: convs with and without padding, an activation layer after one."""
    tokens = fastnn.Input((40,), dtype="int32")
    x = layers.Embedding(50, 16)(tokens)
    x = layers.Conv1D(32, 5, activation="relu")(x)
    x = layers.Activation("elu")(layers.Conv1D(24, 3, padding="same")(x))
    x = layers.Conv1D(16, 3, strides=2)(x)
    return fastnn.Model(tokens, layers.Dense(1)(layers.GlobalMaxPooling1D()(x)))


def pooled_cnn():
    """Convs a 2x2 pool follows (fused): average after LeNet's 5x5 tanh convs (SIMD bands),
    max after conv-BN-relu, after a relu conv, after a grey 3x3 conv (the direct kernels'
    four-output quads) and average after a few-tap conv (the direct kernels' row pairs)."""
    x = fastnn.Input((28, 28, 1))
    g = layers.MaxPooling2D(2)(layers.Conv2D(4, 3, padding="same", activation="relu")(x))
    d = layers.AveragePooling2D(2)(layers.Conv2D(3, 2, activation="sigmoid")(x))
    h = layers.AveragePooling2D(2)(layers.Conv2D(6, 5, padding="same", activation="tanh")(x))
    h = layers.AveragePooling2D(2)(layers.Conv2D(16, 5, activation="tanh")(h))
    y = layers.Conv2D(32, 3, padding="same", use_bias=False)(h)
    y = layers.MaxPooling2D(2)(layers.Activation("relu")(layers.BatchNormalization()(y)))
    z = layers.MaxPooling2D(2)(layers.Conv2D(16, 3, padding="same", activation="relu")(h))
    flat = [layers.Flatten()(t) for t in (g, d, y, z)]
    return fastnn.Model(x, layers.Dense(4)(layers.Concatenate()(flat)))


MODELS = {
    "dense_stack": dense_stack,
    "wide_dense": wide_dense,
    "residual_cnn": residual_cnn,
    "separable_cnn": separable_cnn,
    "encoder": encoder,
    "text_cnn": text_cnn,
    "pooled_cnn": pooled_cnn,
}


def ready(make, seed=0):
    model = make()
    randomize_weights(model, seed=seed, scale=0.2)
    fastnn.ops.tensor.weights_written()
    return model


def inputs_for(model, batch, seed=1):
    shape = (batch, *model.inputs[0].shape[1:])
    rng = np.random.default_rng(seed)
    if model.inputs[0].dtype.kind == "i":
        return rng.integers(0, 50, shape).astype(np.int32)
    return rng.standard_normal(shape).astype(np.float32)


def forward_outputs(model, x):
    with runtime.serial_blas():
        return model._graph.forward([x], False)[0][0]


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("batch", [1, 3, 64])
def test_inference_calls_compute_what_forward_does(name, batch):
    model = ready(MODELS[name])
    x = inputs_for(model, batch)
    expected = forward_outputs(model, x)
    np.testing.assert_array_equal(model.predict(x, batch_size=batch, verbose=0), expected)
    np.testing.assert_array_equal(model.predict(x, batch_size=batch, verbose=0), expected)
    np.testing.assert_array_equal(model(x), expected)


def made_calls(model) -> list:
    """The inference calls predict made for each step (in this thread)."""
    graph = model._graph
    with runtime.serial_blas():  # the thread count predict's calls were made for
        return graph._inference_calls(graph._thread_calls.__dict__, ("predict", False))


def steps_without_calls(model, batch=2, xs=None) -> list:
    """The layers of the steps a predict (at ``batch``, or on ``xs``) ran by their forward."""
    model.predict(inputs_for(model, batch) if xs is None else xs, verbose=0)
    made = made_calls(model)
    return [step.layer for step, calls in zip(model._graph.steps, made) if None in calls.values()]


def test_the_common_steps_run_by_inference_calls():
    """Every step of these models has an inference call but the pooling and the residual sum
    whose conv is a strided 1x1 (its sum is a pass of its own)."""
    left = steps_without_calls(ready(residual_cnn))
    assert [type(layer).__name__ for layer in left] == ["ResidualSum", "GlobalAveragePooling2D"]
    assert left[0].conv_bn.linear.strides == (2, 2)
    assert steps_without_calls(ready(dense_stack)) == []
    left = steps_without_calls(ready(separable_cnn))
    assert [type(layer).__name__ for layer in left] == ["GlobalAveragePooling2D"]
    left = steps_without_calls(ready(pooled_cnn))
    names = sorted({type(layer).__name__ for layer in left})  # ConvMaxPool: the grey quads
    assert names == ["Concatenate", "ConvMaxPool", "Flatten"]
    left = steps_without_calls(ready(text_cnn))
    assert [type(layer).__name__ for layer in left] == ["GlobalMaxPooling1D"]
    left = steps_without_calls(ready(encoder))
    assert [type(layer).__name__ for layer in left] == [
        "MultiHeadAttention",
        "GlobalAveragePooling1D",
    ]


def test_an_id_out_of_range_is_refused_by_the_inference_call_too():
    model = ready(encoder)
    ids = inputs_for(model, 2)
    model.predict(ids, verbose=0)
    ids[1, 3] = 50
    with pytest.raises(ValueError, match="index 50 is out of range"):
        model.predict(ids, verbose=0)
    assert steps_without_calls(ready(wide_dense), batch=1) == []


def test_written_weights_are_used_by_the_next_predict():
    model = ready(residual_cnn)
    x = inputs_for(model, 4)
    before = model.predict(x, verbose=0)
    weights = model.get_weights()
    model.set_weights([w * 0.5 for w in weights])
    after = model.predict(x, verbose=0)
    assert not np.allclose(before, after)
    np.testing.assert_array_equal(after, forward_outputs(model, x))
    model.set_weights(weights)
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)


def test_a_fit_between_predicts_is_seen():
    model = ready(dense_stack)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = inputs_for(model, 32)
    y = np.eye(5, dtype=np.float32)[np.arange(32) % 5]
    before = model.predict(x, verbose=0)
    model.fit(x, y, epochs=1, verbose=0)
    after = model.predict(x, verbose=0)
    assert not np.allclose(before, after)
    np.testing.assert_array_equal(after, forward_outputs(model, x))


def test_shapes_change_from_call_to_call_and_the_kept_calls_stay_bounded():
    model = ready(residual_cnn)
    for batch in (1, 5, 2, 7, 3, 1, 9):
        x = inputs_for(model, batch, seed=batch)
        np.testing.assert_array_equal(model.predict(x, verbose=0), forward_outputs(model, x))
    assert max(len(calls) for calls in made_calls(model)) <= graph_module.MAX_INFERENCE_CALLS


def test_outputs_are_the_callers_own():
    """The steps rewrite their buffers at each call: predict and model(x) hand out copies."""
    model = ready(wide_dense)
    a, b = inputs_for(model, 2, seed=1), inputs_for(model, 2, seed=2)
    first, first_call = model.predict(a, verbose=0), model(a)
    second, second_call = model.predict(b, verbose=0), model(b)
    np.testing.assert_array_equal(first, forward_outputs(model, a))
    np.testing.assert_array_equal(first_call, forward_outputs(model, a))
    np.testing.assert_array_equal(second, second_call)
    assert not np.allclose(first, second)


def test_threads_predicting_at_once_get_their_own_results():
    model = ready(residual_cnn)
    xs = [inputs_for(model, 3, seed=s) for s in range(4)]
    expected = [forward_outputs(model, x) for x in xs]
    failures = []

    def work(i):
        for _ in range(5):
            got = model.predict(xs[i], verbose=0)
            if not np.array_equal(got, expected[i]):
                failures.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_a_subclass_that_overrides_forward_runs_its_forward():
    class Doubling(layers.Dense):
        def forward(self, inputs, training, workspace=None, activation_code=None):
            y, ctx = super().forward(inputs, training, workspace, activation_code)
            return 2 * y, ctx

    x = fastnn.Input((784,))
    plain = fastnn.Model(x, layers.Dense(512, name="d")(x))
    doubled = fastnn.Model(x, Doubling(512, name="d")(x))
    doubled.set_weights(plain.get_weights())
    data = inputs_for(plain, 2)
    np.testing.assert_allclose(doubled.predict(data, verbose=0), 2 * plain.predict(data, verbose=0))


def test_float64_models_and_masks_take_their_forward():
    """A float64 model's kernels have no kept plans (forward runs), a model making masks runs
    forward throughout; both as before."""
    x = fastnn.Input((6,), dtype="float64")
    model = fastnn.Model(x, layers.Dense(4, dtype="float64", activation="relu")(x))
    data = np.random.default_rng(0).standard_normal((3, 6))
    np.testing.assert_array_equal(model.predict(data, verbose=0), forward_outputs(model, data))
    tokens = fastnn.Input((5,), dtype="int32")
    h = layers.Embedding(10, 4, mask_zero=True)(tokens)
    masked = fastnn.Model(tokens, layers.LSTM(3)(h))
    ids = np.array([[1, 2, 0, 0, 0], [3, 4, 5, 6, 0]], np.int32)
    with runtime.serial_blas():
        expected = masked._graph.forward([ids], False)[0][0]
    np.testing.assert_array_equal(masked.predict(ids, verbose=0), expected)


@pytest.mark.parametrize(
    "start, tracks",
    [
        (lambda x: layers.Embedding(10, 4)(x), False),
        (lambda x: layers.Embedding(10, 4, mask_zero=True)(x), True),
        (lambda x: layers.Masking()(layers.Embedding(10, 4)(x)), True),
    ],
)
def test_only_a_layer_that_starts_a_mask_makes_the_graph_track_masks(start, tracks):
    """Recurrent layers, their wrappers and the global poolings pass a mask on or end it: a
    graph of them without a layer that starts one skips masks (and predict runs its steps'
    inference calls)."""
    tokens = fastnn.Input((6,), dtype="int32")
    h = layers.LSTM(5, return_sequences=True)(start(tokens))
    h = layers.TimeDistributed(layers.Dense(4))(h)
    h = layers.Bidirectional(layers.GRU(3, return_sequences=True))(h)
    model = fastnn.Model(tokens, layers.GlobalAveragePooling1D()(h))
    assert model._graph._makes_masks is tracks
    ids = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 9]], np.int32)
    with runtime.serial_blas():
        expected = model._graph.forward([ids], False)[0][0]
    np.testing.assert_array_equal(model.predict(ids, verbose=0), expected)


def nested():
    """A functional base (as keras.applications' include_top=False) inside a model, called
    twice (a shared base: two call sites), then a head."""
    image = fastnn.Input((10, 10, 4))
    h = layers.Conv2D(16, 3, padding="same", use_bias=False)(image)
    h = layers.Activation("relu")(layers.BatchNormalization()(h))
    base = fastnn.Model(image, layers.GlobalAveragePooling2D()(h), name="base")
    a, b = fastnn.Input((10, 10, 4)), fastnn.Input((10, 10, 4))
    both = layers.Concatenate()([base(a), base(b)])
    return fastnn.Model([a, b], layers.Dense(3)(both))


def test_a_nested_model_runs_its_steps_by_their_calls_at_each_call_site():
    model = ready(nested)
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((3, 10, 10, 4)).astype(np.float32) for _ in range(2)]
    with runtime.serial_blas():
        expected = model._graph.forward(xs, False)[0][0]
    np.testing.assert_array_equal(model.predict(xs, verbose=0), expected)
    np.testing.assert_array_equal(model.predict(xs, verbose=0), expected)
    assert [type(layer).__name__ for layer in steps_without_calls(model, xs=xs)] == ["Concatenate"]
    base = model.get_layer("base")
    base.set_weights([w * 0.5 for w in base.get_weights()])  # the nested model's weights
    with runtime.serial_blas():
        expected = model._graph.forward(xs, False)[0][0]
    np.testing.assert_array_equal(model.predict(xs, verbose=0), expected)


def test_a_nested_augmentation_model_still_augments_when_called_without_training():
    """keras-io's ``data_augmentation`` inside a model: a call without ``training`` augments
    (each layer's default), predict does not; a nested model's inference call stands for
    training False only."""
    image = fastnn.Input((8, 8, 3))
    augment = fastnn.Sequential([fastnn.Input((8, 8, 3)), layers.RandomFlip("horizontal", seed=3)])
    model = fastnn.Model(image, layers.Conv2D(4, 1)(augment(image)))
    x = np.random.default_rng(0).random((16, 8, 8, 3)).astype("float32")
    plain = model.predict(x, verbose=0)
    np.testing.assert_array_equal(model(x, training=False), plain)
    assert not np.allclose(model(x), plain)
    np.testing.assert_array_equal(model.predict(x, verbose=0), plain)
