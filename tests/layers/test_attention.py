"""MultiHeadAttention, Attention, AdditiveAttention beyond the harness rows: masks (attention_mask,
causal, Keras masks of the inputs), return_attention_scores, self-attention in a Functional model,
float64 gradients of the masked paths, and errors. Keras 3 (torch) is the reference."""

import os

import numpy as np
import pytest
from gradcheck import check_gradients, check_model_gradients, randomize_weights
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import layers as L

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

RTOL = ATOL = 1e-5


def to_numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


def close(ours, theirs, what=""):
    np.testing.assert_allclose(ours, to_numpy(theirs), RTOL, ATOL, err_msg=what)


def data(seed=0, batch=2, tq=4, tv=5, dim=6):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((batch, tq, dim)).astype("float32")
    v = rng.standard_normal((batch, tv, dim)).astype("float32")
    # every query keeps at least its first key (a row masked entirely is NaN in torch's kernel)
    mask = rng.random((batch, tq, tv)) > 0.4
    mask[:, :, 0] = True
    return q, v, mask


def twins(num_heads=2, key_dim=3, **kwargs):
    """A fastnn and a Keras MultiHeadAttention with the same weights (built on data())."""
    q, v, _ = data()
    ours = L.MultiHeadAttention(num_heads, key_dim, **kwargs)
    theirs = keras.layers.MultiHeadAttention(num_heads, key_dim, **kwargs)
    ours(q, v)
    theirs(q, v)
    randomize_weights(ours)
    theirs.set_weights(ours.get_weights())
    return ours, theirs


# ---- MultiHeadAttention against Keras --------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
def test_mha_attention_mask_causal_and_scores_match_keras(causal, with_mask):
    ours, theirs = twins()
    q, v, mask = data(1)
    kwargs = {"use_causal_mask": causal, "attention_mask": mask if with_mask else None}
    out, scores = ours(q, v, return_attention_scores=True, **kwargs)
    want, want_scores = theirs(q, v, return_attention_scores=True, **kwargs)
    close(out, want, "output")
    close(scores, want_scores, "scores")
    assert scores.shape == (2, 2, 4, 5)
    close(ours(q, v, **kwargs), theirs(q, v, **kwargs), "without the scores")
    if causal:  # no weight on a key after the query's step
        assert np.all(np.triu(scores, 1) == 0)


def test_mha_key_and_query_value_masks_match_keras():
    """Keras masks of the inputs (here given by hand; in a model the graph passes them):
    query rows and value/key columns; a query row masked gives weights 0, as Keras's."""
    ours, theirs = twins()
    q, v, _ = data(2)
    k = v[..., ::-1].copy()
    query_mask = np.array([[1, 1, 0, 1], [1, 0, 1, 1]], bool)
    value_mask = np.array([[1, 1, 1, 0, 0], [1, 0, 1, 1, 1]], bool)
    out, scores = ours(
        q, v, k, query_mask=query_mask, value_mask=value_mask, return_attention_scores=True
    )
    kq, kv, kk = (keras.ops.convert_to_tensor(a) for a in (q, v, k))
    kq._keras_mask = keras.ops.convert_to_tensor(query_mask)
    want, want_scores = theirs(
        kq, kv, kk, value_mask=keras.ops.convert_to_tensor(value_mask), return_attention_scores=True
    )
    close(out, want, "output")
    close(scores, want_scores, "scores")
    assert np.all(scores[0, :, 2] == 0) and np.all(scores[0, :, :, 3:] == 0)


def test_mha_build_and_compute_output_shape_take_keras_arguments():
    ours = L.MultiHeadAttention(2, 3, output_shape=7, name="mha")
    theirs = keras.layers.MultiHeadAttention(2, 3, output_shape=7, name="mha")
    shapes = (None, 4, 6), (None, 5, 8), (None, 5, 2)
    assert ours.compute_output_shape(*shapes[:2]) == theirs.compute_output_shape(*shapes[:2])
    ours.build(*shapes)
    theirs.build(*shapes)
    assert [w.shape for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    assert [w.path for w in ours.weights] == [w.path for w in theirs.weights]


def test_self_attention_in_a_functional_model_with_padding_masks_and_causal():
    """x -> Embedding(mask_zero) -> MultiHeadAttention(x, x, use_causal_mask) -> LayerNorm:
    the padded steps' mask reaches the attention through the graph, as in Keras."""
    ids = np.array([[0, 3, 1, 4, 0], [2, 7, 1, 8, 2]])  # padding a causal step sees, and not

    def build(lib):
        inputs = lib.Input((5,), dtype="int32")
        x = lib.layers.Embedding(9, 4, mask_zero=True)(inputs)
        y = lib.layers.MultiHeadAttention(2, 3, name="mha")(x, x, use_causal_mask=True)
        y = lib.layers.LayerNormalization()(lib.layers.Add()([x, y]))
        return lib.Model(inputs, y)

    ours, theirs = build(fastnn), build(keras)
    randomize_weights(ours)
    theirs.set_weights(ours.get_weights())
    got = ours.predict(ids, verbose=0)
    want = to_numpy(theirs(ids))
    # At padded query steps (masked outputs) Keras differs from itself: its Softmax-layer path
    # (scores returned, or dropout) gives those rows weights 0, as fastnn does, its fused torch
    # kernel (this call) something else. The steps the mask keeps agree.
    kept = ids != 0
    np.testing.assert_allclose(got[kept], want[kept], RTOL, ATOL)
    # the mask acts: with the padding replaced by ids, the kept steps see them
    ids_unpadded = np.where(kept, ids, 5)
    assert not np.allclose(ours.predict(ids_unpadded, verbose=0)[kept], got[kept])


def test_self_attention_model_trains_and_its_gradients_are_right():
    """One symbolic tensor as query, value and key: gradients from both uses add up."""
    x = fastnn.Input((3, 4), dtype="float64")
    y = L.MultiHeadAttention(2, 2, dtype="float64")(x, x, x)
    model = fastnn.Model(x, L.GroupNormalization(2, dtype="float64")(y))
    randomize_weights(model, 1)
    data64 = np.random.default_rng(3).standard_normal((2, 3, 4))
    check_model_gradients(model, [data64])
    model.compile("adam", "mse")
    history = model.fit(data64, np.zeros((2, 3, 4)), epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_scores_output_in_a_model_and_config_round_trip():
    q, v = fastnn.Input((4, 6)), fastnn.Input((5, 6))
    mha = L.MultiHeadAttention(2, 3)
    out, scores = mha(q, v, return_attention_scores=True, use_causal_mask=True)
    assert out.shape == (None, 4, 6) and scores.shape == (None, 2, 4, 5)
    model = fastnn.Model([q, v], [out, scores])
    xq, xv, _ = data(4)
    got = model.predict([xq, xv], verbose=0)
    want = mha(xq, xv, return_attention_scores=True, use_causal_mask=True)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def test_attention_mask_as_a_model_input():
    q, v, m = fastnn.Input((4, 6)), fastnn.Input((5, 6)), fastnn.Input((4, 5), dtype="bool")
    mha = L.MultiHeadAttention(2, 3)
    model = fastnn.Model([q, v, m], mha(q, v, attention_mask=m))
    xq, xv, mask = data(5)
    np.testing.assert_allclose(
        model.predict([xq, xv, mask], verbose=0), mha(xq, xv, attention_mask=mask), 1e-6, 1e-6
    )


@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**16), causal=st.booleans(), training=st.booleans())
def test_mha_masked_gradients_float64(seed, causal, training):
    """Input and weight gradients with an attention mask, input masks, causal and dropout."""
    layer = L.MultiHeadAttention(2, 2, value_dim=3, dropout=0.3, seed=1, dtype="float64")
    q, v, mask = (a.astype("float64") for a in data(seed, tq=3, tv=4, dim=3))
    k = np.random.default_rng(seed).standard_normal(v.shape)
    layer(q, v, k)
    randomize_weights(layer, seed)
    query_mask = np.array([[1, 1, 0], [1, 1, 1]], bool)
    value_mask = np.array([[1, 1, 0, 1], [1, 0, 1, 1]], bool)
    options = L.attention._Options(True, True, True, causal)
    state = layer._rng.bit_generator.state

    def reset():
        layer._rng.bit_generator.state = state

    def forward(xs):
        masks = [query_mask, value_mask, None, None]
        out, ctx = layer.forward([*xs, mask], training, mask=masks, options=options)
        return out, ctx

    def backward(ctx, grads):
        return layer.backward(ctx, grads)[:3]

    check_gradients(forward, backward, [q, v, k], layer.trainable_weights, reset=reset)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("scores", [False, True])
def test_mha_float32_side_by_side_path_has_the_per_head_paths_values_and_gradients(
    causal, training, scores
):
    """Float32 without dropout runs the heads side by side (kernels.attention.attend_heads),
    in training too; its outputs and the backward after it (with the returned scores'
    gradient too) are the float64 per-head path's."""
    twins = []
    for dtype in ("float32", "float64"):
        layer = L.MultiHeadAttention(3, 4, value_dim=5, dtype=dtype)
        q, v, mask = data(7, tq=5, tv=6, dim=8)
        layer(q.astype(dtype), v.astype(dtype), attention_mask=mask)
        randomize_weights(layer, 7)
        twins.append((layer, q.astype(dtype), v.astype(dtype), mask))
    options = L.attention._Options(False, True, scores, causal)
    rng = np.random.default_rng(7)
    grad_out = [rng.standard_normal((2, 5, 8)), rng.standard_normal((2, 3, 5, 6))]
    results = []
    for layer, q, v, mask in twins:
        outs, ctx = layer.forward([q, v, mask], training, options=options)
        for w in layer.trainable_weights:
            w.grad[...] = 0
        grad = [g.astype(q.dtype) for g in grad_out] if scores else grad_out[0].astype(q.dtype)
        grads = layer.backward(ctx, grad)[:2]
        outs = outs if scores else [outs]
        results.append((*outs, *grads, *(w.grad.copy() for w in layer.trainable_weights)))
    for side_by_side, per_head in zip(*results):
        assert side_by_side.dtype == np.float32
        np.testing.assert_allclose(side_by_side, per_head, rtol=1e-4, atol=1e-5)


@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**16), causal=st.booleans(), scores=st.booleans())
@pytest.mark.parametrize(
    "make",
    [
        lambda: L.Attention(use_scale=True, dtype="float64"),
        lambda: L.Attention(use_scale=True, score_mode="concat", dtype="float64"),
        lambda: L.AdditiveAttention(dtype="float64"),
    ],
)
def test_attention_masked_gradients_float64(make, seed, causal, scores):
    layer = make()
    q, v, _ = (a.astype("float64") for a in data(seed, tq=3, tv=4, dim=3))
    layer([q, v])
    randomize_weights(layer, seed)
    # the first key kept: a row masked entirely shifts by 1e9, beyond finite differences
    masks = [np.array([[1, 0, 1], [1, 1, 1]], bool), np.array([[1, 1, 0, 1], [1, 0, 1, 1]], bool)]
    options = L.attention._Options(False, False, scores, causal)

    def forward(xs):
        out, ctx = layer.forward(list(xs), True, mask=masks, options=options)
        return (out if scores else [out]), ctx

    def backward(ctx, grads):
        return layer.backward(ctx, grads if scores else grads[0])

    check_gradients(forward, backward, [q, v], layer.trainable_weights)


# ---- Attention and AdditiveAttention against Keras --------------------------------------------


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        ("Attention", {}),
        ("Attention", {"use_scale": True, "score_mode": "concat"}),
        ("AdditiveAttention", {}),
        ("AdditiveAttention", {"use_scale": False}),
    ],
)
@pytest.mark.parametrize("causal", [False, True])
def test_attention_masks_and_scores_match_keras(cls, kwargs, causal):
    q, v, _ = data(6, dim=4)
    k = v * 0.5
    ours, theirs = getattr(L, cls)(**kwargs), getattr(keras.layers, cls)(**kwargs)
    ours([q, v, k])
    theirs([q, v, k])
    randomize_weights(ours)
    theirs.set_weights(ours.get_weights())
    mask = [
        np.array([[1, 1, 0, 1], [1, 0, 1, 1]], bool),
        np.array([[1, 1, 1, 0, 0], [1, 0, 1, 1, 1]], bool),
    ]
    call = {"mask": mask, "return_attention_scores": True, "use_causal_mask": causal}
    out, scores = ours([q, v, k], **call)
    want, want_scores = theirs([q, v, k], **call)
    close(out, want, "output")
    close(scores, want_scores, "scores")
    assert np.all(out[0, 2] == 0)  # a masked query row is zero, as Keras's


def test_attention_passes_the_query_mask_on():
    ids = np.array([[1, 2, 0], [3, 0, 0]])
    inputs = fastnn.Input((3,), dtype="int32")
    x = L.Embedding(5, 4, mask_zero=True)(inputs)
    y = L.Attention()([x, x])
    model = fastnn.Model(inputs, L.LSTM(2)(y))
    keras_inputs = keras.Input((3,), dtype="int32")
    kx = keras.layers.Embedding(5, 4, mask_zero=True)(keras_inputs)
    theirs = keras.Model(keras_inputs, keras.layers.LSTM(2)(keras.layers.Attention()([kx, kx])))
    randomize_weights(model)
    theirs.set_weights(model.get_weights())
    np.testing.assert_allclose(model.predict(ids, verbose=0), to_numpy(theirs(ids)), RTOL, ATOL)


# ---- errors ------------------------------------------------------------------------------------


def test_errors_name_the_layer_and_the_values():
    q, v, _ = data()
    with pytest.raises(ValueError, match="num_heads"):
        L.MultiHeadAttention(0, 2)
    with pytest.raises(NotImplementedError, match="attention_axes"):
        L.MultiHeadAttention(2, 2, attention_axes=(2,))(q, v)
    L.MultiHeadAttention(2, 2, attention_axes=1)(q, v)  # the default, as Keras writes it
    with pytest.raises(NotImplementedError, match="use_gate"):
        L.MultiHeadAttention(2, 2, use_gate=True)
    with pytest.raises(NotImplementedError, match=r"\(batch, steps, features\)"):
        L.MultiHeadAttention(2, 2)(q[:, None], v[:, None])
    with pytest.raises(ValueError, match="`value` and `key`"):
        L.MultiHeadAttention(2, 2)(q, v, v[:, :3])
    with pytest.raises(ValueError, match=r"attention_mask must be \(batch, Tq, Tv\)"):
        L.MultiHeadAttention(2, 2, name="mha")(
            fastnn.Input((4, 6)), fastnn.Input((5, 6)), attention_mask=fastnn.Input((5, 4))
        )
    mha = L.MultiHeadAttention(2, 2)
    x = fastnn.Input((4, 6))
    mha(x, x)
    with pytest.raises(NotImplementedError, match="one set of call options"):
        mha(x, x, use_causal_mask=True)
    with pytest.raises(ValueError, match="the query mask must be"):
        L.MultiHeadAttention(2, 2)(q, v, query_mask=np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="must be called on a list"):
        L.Attention()(q)
    with pytest.raises(ValueError, match="length 2 or 3"):
        L.AdditiveAttention()([q, v, v, v])
    with pytest.raises(ValueError, match="score_mode"):
        L.Attention(score_mode="general")
    with pytest.raises(ValueError, match="same last axis"):
        L.Attention()([q, v[..., :3]])


def test_dot_errors():
    a, b = fastnn.Input((3, 4)), fastnn.Input((5, 3))
    with pytest.raises(ValueError, match=r"Incompatible input shapes: axis values 4 \(at axis 2\)"):
        L.Dot(2)([a, b])
    with pytest.raises(ValueError, match="batch axis 0"):
        L.Dot(0)([a, b])
    with pytest.raises(ValueError, match="two elements"):
        L.Dot((1, 2, 3))
    assert L.Dot((1, 2))([a, b]).shape == (None, 4, 5)
    assert L.dot([fastnn.Input((4,)), fastnn.Input((4,))], axes=1).shape == (None, 1)


def test_normalization_errors():
    with pytest.raises(ValueError, match=r"Number of groups \(3\) must be a multiple"):
        L.GroupNormalization(3)(fastnn.Input((2, 4)))
    with pytest.raises(ValueError, match=r"Number of groups \(8\) cannot be more"):
        L.GroupNormalization(8)(fastnn.Input((2, 4)))
    with pytest.raises(ValueError, match="invalid value for argument `groups`"):
        L.GroupNormalization(0)
    with pytest.raises(ValueError, match="axis 0 is not a non-batch axis"):
        L.LayerNormalization(axis=0)(fastnn.Input((3,)))
    with pytest.raises(ValueError, match="axis 3 is not a non-batch axis"):
        L.BatchNormalization(axis=3)(fastnn.Input((3, 2)))
    norm = L.LayerNormalization(axis=[1, 2])
    norm(fastnn.Input((3, 2)))
    with pytest.raises(ValueError, match=r"sizes on axis \[1, 2\] differ"):
        norm(np.zeros((1, 3, 3), "float32"))
    with pytest.raises(ValueError, match="Could not interpret constraint identifier: 'nonneg'"):
        L.LayerNormalization(gamma_constraint="nonneg")


# ---- saving: fastnn's files and Keras's, both ways ------------------------------------------


def _attention_model(lib):
    """Self-attention with a causal mask, an attention_mask input, scores out, and Attention;
    key by keyword (a record Keras writes so)."""
    x, m = lib.Input((5, 4)), lib.Input((5, 5), dtype="bool")
    y, scores = lib.layers.MultiHeadAttention(2, 3, name="mha")(
        x, x, key=x, attention_mask=m, use_causal_mask=True, return_attention_scores=True
    )
    z = lib.layers.Attention(use_scale=True, name="att")([y, x], use_causal_mask=True)
    return lib.Model([x, m], [lib.layers.LayerNormalization()(z), scores])


def _inputs():
    rng = np.random.default_rng(7)
    mask = rng.random((2, 5, 5)) > 0.3
    mask[:, :, 0] = True
    return [rng.standard_normal((2, 5, 4)).astype("float32"), mask]


@pytest.mark.parametrize("suffix", [".keras", ".fastnn"])
def test_saved_models_keep_call_options_and_weights(tmp_path, suffix):
    model = _attention_model(fastnn)
    randomize_weights(model)
    path = tmp_path / f"m{suffix}"
    model.save(path)
    loaded = fastnn.models.load_model(path)
    for got, want in zip(loaded.predict(_inputs(), verbose=0), model.predict(_inputs(), verbose=0)):
        np.testing.assert_array_equal(got, want)


def test_keras_files_both_ways(tmp_path):
    """Keras's .keras layout for MultiHeadAttention (query_dense, ... groups in the h5 file) and
    its call records (query, value as arguments; attention_mask, use_causal_mask,
    return_attention_scores as keywords)."""
    ours = _attention_model(fastnn)
    randomize_weights(ours)
    ours.save(tmp_path / "ours.keras")
    theirs = keras.saving.load_model(tmp_path / "ours.keras")
    for got, want in zip(ours.predict(_inputs(), verbose=0), theirs(_inputs())):
        close(got, want)
    keras_model = _attention_model(keras)
    keras_model.save(tmp_path / "theirs.keras")
    loaded = fastnn.models.load_model(tmp_path / "theirs.keras")
    for got, want in zip(loaded.predict(_inputs(), verbose=0), keras_model(_inputs())):
        close(got, want)


@pytest.mark.parametrize("causal", [False, True])
def test_float32_self_attention_trains_as_in_keras(causal):
    """A float32 encoder block trained by SGD, the heads side by side in training (the SIMD
    kernels), has Keras's losses and weights after three steps."""

    def build(lib):
        x = lib.Input((6, 8))
        y = lib.layers.MultiHeadAttention(2, 4, value_dim=3, name="mha")(
            x, x, use_causal_mask=causal
        )
        y = lib.layers.LayerNormalization()(lib.layers.Add()([x, y]))
        return lib.Model(x, lib.layers.Dense(1)(lib.layers.GlobalAveragePooling1D()(y)))

    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 6, 8)).astype("float32")
    y = rng.standard_normal((4, 1)).astype("float32")
    ours, theirs = build(fastnn), build(keras)
    randomize_weights(ours, 5)
    theirs.set_weights(ours.get_weights())
    losses = []
    for model, lib in ((ours, fastnn), (theirs, keras)):
        model.compile(optimizer=lib.optimizers.SGD(learning_rate=0.1), loss="mse")
        losses.append([float(model.train_on_batch(x, y)) for _ in range(3)])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
    for got, want in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(got, to_numpy(want), rtol=1e-4, atol=1e-5)
