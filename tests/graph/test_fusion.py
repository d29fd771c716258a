"""Fusion rules: where each fires and where not, fused == unfused, and switching rules off."""

import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest
from gradcheck import randomize_weights
from layer_harness import fused_names, pass_and_grads

import fastnn
from fastnn import fusion, layers
from fastnn.fusion.conv_bn_activation import LinearBatchNorm
from fastnn.fusion.conv_max_pool import ConvMaxPool
from fastnn.fusion.embedded_rnn import EmbeddedRNN
from fastnn.graph import Graph
from fastnn.kernels import conv_simd

F64 = "float64"


def conv_pool(pool=None, second_reader=False, conv_is_output=False):
    x = fastnn.Input((8, 8, 2))
    c = layers.Conv2D(3, 3, padding="same", name="c")(x)
    p = (pool or layers.MaxPooling2D(2, name="p"))(c)
    outputs = [layers.Flatten(name="f")(p)]
    if second_reader:
        outputs.append(layers.GlobalAveragePooling2D(name="g")(c))
    if conv_is_output:
        outputs.append(c)
    return fastnn.Model(x, outputs)


def conv_act_pool(act, conv_activation=None, pool_size=2, average=False):
    x = fastnn.Input((8, 8, 2))
    h = act(layers.Conv2D(3, 3, padding="same", activation=conv_activation, name="c")(x))
    pool = layers.AveragePooling2D if average else layers.MaxPooling2D
    return fastnn.Model(x, pool(pool_size, name="p")(h))


def dense_bn(activation="relu", use_bias=False, axis=-1, time_steps=False):
    x = fastnn.Input((3, 4) if time_steps else (4,))
    d = layers.Dense(3, use_bias=use_bias, name="d")(x)
    b = layers.BatchNormalization(axis=axis, name="b")(d)
    return fastnn.Model(x, layers.Activation(activation, name="a")(b))


def embedded(reader=None, second_reader=False, rows_are_output=False, initial_state=False):
    ids = fastnn.Input((5,))
    e = layers.Embedding(9, 4, name="e")(ids)
    if initial_state:
        h = fastnn.Input((3,))
        outputs = [layers.SimpleRNN(3, name="r")(e, initial_state=[h])]
        return fastnn.Model([ids, h], outputs)
    outputs = [(reader or layers.LSTM(3, name="r"))(e)]
    if second_reader:
        outputs.append(layers.GlobalAveragePooling1D(name="g")(e))
    if rows_are_output:
        outputs.append(e)
    return fastnn.Model(ids, outputs)


def conv_bn(
    activation="relu", conv_activation=None, second_reader=False, act_reader=None, pool=None
):
    x = fastnn.Input((6, 6, 2))
    c = layers.Conv2D(3, 3, activation=conv_activation, name="c")(x)
    b = layers.BatchNormalization(name="b")(c)
    outputs = [(act_reader or layers.Activation(activation, name="a"))(b)]
    if pool is not None:
        outputs = [pool(outputs[0])]
    if second_reader:
        outputs.append(layers.Flatten(name="f")(c))
    return fastnn.Model(x, outputs)


def bn_act(reader=None, second_reader=False, bn_is_output=False, **bn):
    x = fastnn.Input((4, 4, 3))
    b = layers.BatchNormalization(name="b", **bn)(x)
    outputs = [(reader or layers.Activation("relu", name="a"))(b)]
    if second_reader:
        outputs.append(layers.Activation("relu", name="a2")(b))
    if bn_is_output:
        outputs.append(b)
    return fastnn.Model(x, outputs)


def add_act(activation="relu", inputs=2, shapes_differ=False, sum_is_output=False, act=None):
    x = fastnn.Input((4, 3))
    branches = [layers.Dense(3, name=f"d{i}")(x) for i in range(inputs)]
    if shapes_differ:
        branches[-1] = layers.Dense(1, name="narrow")(x)  # broadcast over the last axis
    total = layers.Add(name="s")(branches)
    outputs = [(act or layers.Activation(activation, name="a"))(total)]
    if sum_is_output:
        outputs.append(total)
    return fastnn.Model(x, outputs)


def linear_act(act, linear=None, second_reader=False):
    x = fastnn.Input((6, 6, 3))
    h = (linear or layers.Conv2D(4, 3, name="c"))(x)
    outputs = [act(h)]
    if second_reader:
        outputs.append(layers.Flatten(name="f")(h))
    return fastnn.Model(x, outputs)


def conv1d_act(act, padding="valid"):
    x = fastnn.Input((9, 3))
    return fastnn.Model(x, act(layers.Conv1D(4, 3, padding=padding, name="c")(x)))


def residual_block(activation="relu", add_inputs=2, conv_activation=None, second_reader=False):
    x = fastnn.Input((6, 6, 3))
    c = layers.Conv2D(3, 3, padding="same", activation=conv_activation, name="c")(x)
    b = layers.BatchNormalization(name="b")(c)
    total = layers.Add(name="s")([b, x, x][:add_inputs])
    outputs = [total if activation is None else layers.Activation(activation, name="a")(total)]
    if second_reader:
        outputs.append(layers.Flatten(name="f")(b))
    return fastnn.Model(x, outputs)


def depthwise_bn(activation="relu", depthwise_activation=None, dilation=1, multiplier=1):
    x = fastnn.Input((6, 6, 3))
    d = layers.DepthwiseConv2D(
        3, depth_multiplier=multiplier, activation=depthwise_activation,
        dilation_rate=dilation, name="d",
    )(x)  # fmt: skip
    b = layers.BatchNormalization(name="b")(d)
    return fastnn.Model(x, layers.Activation(activation, name="a")(b))


def dense_dropout(activation="relu", second_reader=False, dense_is_output=False):
    x = fastnn.Input((4, 3))
    d = layers.Dense(3, activation=activation, name="d")(x)
    outputs = [layers.Dropout(0.5, name="o")(d)]
    if second_reader:
        outputs.append(layers.Flatten(name="f")(d))
    if dense_is_output:
        outputs.append(d)
    return fastnn.Model(x, outputs)


@pytest.mark.parametrize(
    "build, fused",
    [
        (depthwise_bn, ["d+b+a"]),
        (lambda: depthwise_bn(multiplier=2), ["d+b+a"]),
        (lambda: depthwise_bn("tanh"), ["d+b"]),
        (lambda: depthwise_bn(depthwise_activation="relu"), ["b+a"]),
        (lambda: depthwise_bn(dilation=2), ["b+a"]),
        (dense_dropout, ["d+o"]),
        (lambda: dense_dropout("linear"), ["d+o"]),
        (lambda: dense_dropout("gelu"), ["d+o"]),
        (lambda: dense_dropout("tanh"), []),  # its gradient reads the output dropout scaled
        (lambda: dense_dropout(second_reader=True), []),
        (lambda: dense_dropout(dense_is_output=True), []),
        (lambda: linear_act(layers.LeakyReLU(0.2, name="a")), ["c+a"]),
        (lambda: linear_act(layers.LeakyReLU(name="a")), []),  # 0.3: no kernel code
        (lambda: linear_act(layers.Activation("gelu", name="a")), ["c+a"]),
        (
            lambda: linear_act(layers.Activation("softmax", name="a"), layers.Dense(5, name="c")),
            ["c+a"],
        ),
        (
            lambda: linear_act(
                layers.ReLU(name="a"), layers.Conv2D(4, 3, activation="relu", name="c")
            ),
            [],
        ),
        (
            lambda: linear_act(
                layers.ReLU(name="a"), layers.Conv2D(4, 3, data_format="channels_first", name="c")
            ),
            [],
        ),
        (lambda: linear_act(layers.ReLU(name="a"), second_reader=True), []),
        (
            lambda: linear_act(layers.ReLU(name="a"), layers.Conv2DTranspose(4, 3, name="c")),
            ["c+a"],
        ),
        (lambda: linear_act(layers.ReLU(name="a"), layers.DepthwiseConv2D(3, name="c")), ["c+a"]),
        (lambda: conv1d_act(layers.Activation("gelu", name="a")), ["c+a"]),
        (lambda: conv1d_act(layers.ReLU(name="a"), padding="causal"), ["c+a"]),
        (lambda: linear_act(layers.Activation(lambda t: t * 2, name="a")), []),
        (residual_block, ["c+b+s+a"]),
        (lambda: residual_block("linear"), ["c+b+s+a"]),
        (lambda: residual_block(None), ["c+b+s"]),
        (lambda: residual_block("tanh"), ["c+b", "s+a"]),
        (lambda: residual_block(add_inputs=3), ["c+b", "s+a"]),
        (lambda: residual_block(conv_activation="relu"), ["s+a"]),
        (lambda: residual_block(second_reader=True), ["c+b", "s+a"]),
        (add_act, ["s+a"]),
        (lambda: add_act(act=layers.ReLU(name="a")), ["s+a"]),
        (lambda: add_act(act=layers.ReLU(max_value=6.0, name="a")), ["s+a"]),
        (lambda: add_act(act=layers.ReLU(negative_slope=0.1, name="a")), []),
        (lambda: add_act(act=layers.ReLU(max_value=4.0, name="a")), []),
        (lambda: add_act("gelu", inputs=3), ["s+a"]),
        (lambda: add_act("softmax"), []),
        (lambda: add_act(shapes_differ=True), []),
        (lambda: add_act(sum_is_output=True), []),
        (lambda: add_act(act=layers.Dense(2, activation="relu", name="a")), []),
        (bn_act, ["b+a"]),
        (lambda: bn_act(layers.Activation("linear", name="a")), ["b+a"]),
        (lambda: bn_act(layers.ReLU(name="a")), ["b+a"]),
        (lambda: bn_act(layers.ReLU(threshold=0.5, name="a")), []),
        (lambda: bn_act(layers.ReLU(max_value=6.0, name="a")), ["b+a"]),
        (lambda: bn_act(layers.Activation("relu6", name="a")), ["b+a"]),
        (lambda: bn_act(center=False, scale=False), ["b+a"]),
        (lambda: bn_act(layers.Activation("tanh", name="a")), []),
        (lambda: bn_act(layers.Activation("softmax", name="a")), []),
        (lambda: bn_act(layers.Dense(2, activation="relu", name="a")), []),
        (lambda: bn_act(second_reader=True), []),
        (lambda: bn_act(bn_is_output=True), []),
        (conv_bn, ["c+b+a"]),
        (lambda: conv_bn("linear"), ["c+b+a"]),
        (lambda: conv_bn("tanh"), ["c+b"]),
        (lambda: conv_bn(conv_activation="relu"), ["b+a"]),
        (lambda: conv_bn(act_reader=layers.ReLU(name="a")), ["c+b+a"]),
        (lambda: conv_bn(act_reader=layers.ReLU(max_value=6.0, name="a")), ["c+b+a"]),
        (
            lambda: conv_bn(
                act_reader=layers.ReLU(max_value=6.0, name="a"),
                pool=layers.MaxPooling2D(2, name="p"),
            ),
            ["c+b+a"],  # the pooled kernels take relu or none
        ),
        (lambda: conv_bn(second_reader=True), ["b+a"]),
        (lambda: conv_bn(act_reader=layers.Flatten(name="a")), ["c+b"]),
        (lambda: conv_bn(pool=layers.MaxPooling2D(2, name="p")), ["c+b+a+p"]),
        (lambda: conv_bn(pool=layers.MaxPooling2D(3, name="p")), ["c+b+a"]),
        (lambda: conv_bn("tanh", pool=layers.MaxPooling2D(2, name="p")), ["c+b"]),
        (dense_bn, ["d+b+a"]),
        (lambda: dense_bn(use_bias=True, time_steps=True), ["d+b+a"]),
        (lambda: dense_bn("tanh"), ["d+b"]),
        (lambda: dense_bn(time_steps=True, axis=1), ["b+a"]),
        (conv_pool, ["c+p"]),
        (lambda: conv_act_pool(layers.Activation("relu", name="a")), ["c+a+p"]),
        (lambda: conv_act_pool(layers.LeakyReLU(0.2, name="a")), ["c+a+p"]),
        (lambda: conv_act_pool(layers.Activation("gelu", name="a")), ["c+a+p"]),
        (lambda: conv_act_pool(layers.ReLU(name="a"), conv_activation="tanh"), []),
        (lambda: conv_act_pool(layers.ReLU(name="a"), pool_size=3), ["c+a"]),
        (lambda: conv_act_pool(layers.Activation("tanh", name="a"), average=True), ["c+a+p"]),
        (lambda: conv_pool(layers.MaxPooling2D(2, strides=1, name="p")), []),
        (lambda: conv_pool(layers.MaxPooling2D(2, padding="same", name="p")), []),
        (lambda: conv_pool(layers.MaxPooling2D(3, name="p")), []),
        (lambda: conv_pool(layers.AveragePooling2D(2, name="p")), ["c+p"]),
        (lambda: conv_pool(layers.AveragePooling2D(2, strides=1, name="p")), []),
        (lambda: conv_pool(layers.AveragePooling2D(2, padding="same", name="p")), []),
        (lambda: conv_pool(layers.AveragePooling2D(3, name="p")), []),
        (lambda: conv_pool(layers.AveragePooling2D(2, name="p"), second_reader=True), []),
        (lambda: conv_pool(second_reader=True), []),
        (lambda: conv_pool(conv_is_output=True), []),
        (embedded, ["e+r"]),
        (lambda: embedded(layers.GRU(3, go_backwards=True, name="r")), ["e+r"]),
        (lambda: embedded(layers.GlobalAveragePooling1D(name="r")), []),
        (lambda: embedded(second_reader=True), []),
        (lambda: embedded(rows_are_output=True), []),
        (lambda: embedded(initial_state=True), []),
    ],
)
def test_a_rule_fires_where_its_pattern_is_and_nowhere_else(build, fused):
    model = build()
    assert fused_names(model) == fused
    assert not any(isinstance(layer, fusion.FusedLayer) for layer in model.layers)


def test_switched_off_rules_leave_the_graph_as_written(monkeypatch):
    with fusion.disabled("conv_max_pool"):
        assert fused_names(conv_pool()) == []
        assert fused_names(embedded()) == ["e+r"]
        with fusion.disabled():
            assert fused_names(embedded()) == []
        assert fused_names(embedded()) == ["e+r"]
    assert fused_names(conv_pool()) == ["c+p"]
    env = {**os.environ, "FASTNN_FUSION_OFF": "embedded_rnn"}
    code = (
        "import fastnn; from fastnn import layers; i = fastnn.Input((5,)); "
        "m = fastnn.Model(i, layers.LSTM(2)(layers.Embedding(4, 3)(i))); "
        "print(len(m._graph.steps))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "2", out.stderr


def conv_pool_net(activation):
    x = fastnn.Input((7, 7, 2), dtype=F64)
    h = layers.Conv2D(3, 3, padding="same", activation=activation, dtype=F64)(x)
    h = layers.MaxPooling2D(2, dtype=F64)(h)
    h = layers.Conv2D(4, 1, activation=activation, dtype=F64)(h)
    h = layers.MaxPooling2D(2, dtype=F64)(h)
    return fastnn.Model(x, layers.Dense(2, dtype=F64)(layers.Flatten(dtype=F64)(h)))


def conv_act_pool_net(activation, pool=layers.MaxPooling2D):
    """Conv2D -> an activation layer -> a 2x2 pool: the conv_max_pool and conv_average_pool
    rules' three-layer chains (Keras's CIFAR-10 example)."""
    x = fastnn.Input((7, 7, 2), dtype=F64)
    h = layers.Conv2D(3, 3, padding="same", dtype=F64)(x)
    h = pool(2, dtype=F64)(layers.Activation(activation, dtype=F64)(h))
    return fastnn.Model(x, layers.Dense(2, dtype=F64)(layers.Flatten(dtype=F64)(h)))


def average_pool_net(activation):
    """LeNet's Conv2D -> AveragePooling2D(2) pairs: the conv_average_pool rule (the direct
    kernels, then a conv the plan runs otherwise, to an odd output)."""
    x = fastnn.Input((9, 9, 1), dtype=F64)
    h = layers.Conv2D(3, 5, padding="same", activation=activation, dtype=F64)(x)
    h = layers.AveragePooling2D(2, dtype=F64)(h)
    h = layers.Conv2D(4, 2, activation=activation, dtype=F64)(h)
    h = layers.AveragePooling2D(2, dtype=F64)(h)
    return fastnn.Model(x, layers.Dense(2, dtype=F64)(layers.Flatten(dtype=F64)(h)))


def bn_net(activation, conv_bias=True, pool=False, **bn):
    x = fastnn.Input((7, 7, 2), dtype=F64)
    h = layers.Conv2D(3, 3, use_bias=conv_bias, dtype=F64)(x)
    h = layers.BatchNormalization(dtype=F64, **bn)(h)
    h = layers.Activation(activation, dtype=F64)(h)
    if pool:
        h = layers.MaxPooling2D(2, dtype=F64)(h)
    h = layers.Dense(4, dtype=F64)(layers.Flatten(dtype=F64)(h))
    h = layers.BatchNormalization(momentum=0.5, dtype=F64, **bn)(h)
    return fastnn.Model(x, layers.Activation(activation, dtype=F64)(h))


def dense_bn_net(units):
    """Dense + BN + relu: folded at inference when the kernel is no larger than the input."""
    x = fastnn.Input((3,), dtype=F64)
    h = layers.Dense(units, use_bias=False, dtype=F64)(x)
    h = layers.BatchNormalization(momentum=0.5, dtype=F64)(h)
    return fastnn.Model(x, layers.Activation("relu", dtype=F64)(h))


def residual_net(activation, inputs):
    """relu(Dense(x) + Dense(x) [+ x]) -> Dense: the add_act rule's residual block."""
    x = fastnn.Input((5,), dtype=F64)
    branches = [layers.Dense(5, dtype=F64)(x) for _ in range(2)] + [x] * (inputs - 2)
    h = layers.Activation(activation, dtype=F64)(layers.Add(dtype=F64)(branches))
    return fastnn.Model(x, layers.Dense(2, dtype=F64)(h))


def conv_residual_net(activation, projection):
    """A ResNet block: relu(BN(conv(relu(BN(conv(x))))) + shortcut), the shortcut x itself or
    BN(1x1 conv(x)) (a projection): the conv_bn_add_act rule."""
    x = fastnn.Input((6, 6, 3), dtype=F64)
    h = layers.Conv2D(4, 3, padding="same", use_bias=False, dtype=F64)(x)
    h = layers.Activation("relu", dtype=F64)(layers.BatchNormalization(dtype=F64)(h))
    h = layers.BatchNormalization(momentum=0.5, dtype=F64)(
        layers.Conv2D(4, 3, padding="same", dtype=F64)(h)
    )
    shortcut = layers.Dense(4, dtype=F64)(x)  # a plain projection: no second conv_bn chain
    if projection:
        shortcut = layers.Conv2D(4, 1, use_bias=False, dtype=F64)(x)
        shortcut = layers.BatchNormalization(dtype=F64)(shortcut)
    total = layers.Add(dtype=F64)([h, shortcut])
    if activation is not None:
        total = layers.Activation(activation, dtype=F64)(total)
    return fastnn.Model(x, layers.Dense(2, dtype=F64)(layers.Flatten(dtype=F64)(total)))


def relu_layer_net(max_value):
    """Conv2D -> BN -> ReLU() and relu6 (ReLU(max_value=6)) of a sum: the ReLU layer as the
    conv_bn_act and add_act rules' activation."""
    x = fastnn.Input((6, 6, 3), dtype=F64)
    h = layers.Conv2D(4, 3, padding="same", dtype=F64)(x)
    h = layers.ReLU(dtype=F64)(layers.BatchNormalization(dtype=F64)(h))
    shortcut = layers.Conv2D(4, 1, dtype=F64)(x)
    h = layers.ReLU(max_value=max_value, dtype=F64)(layers.Add(dtype=F64)([h, shortcut]))
    return fastnn.Model(x, layers.Dense(2, dtype=F64)(layers.Flatten(dtype=F64)(h)))


def conv1d_act_net(activation):
    """Conv1D -> an activation layer -> Conv1D (causal) -> relu: the linear_act rule on 1-D."""
    x = fastnn.Input((9, 3), dtype=F64)
    h = layers.Activation(activation, dtype=F64)(layers.Conv1D(4, 3, dtype=F64)(x))
    h = layers.ReLU(dtype=F64)(layers.Conv1D(4, 2, padding="causal", dtype=F64)(h))
    return fastnn.Model(x, layers.Dense(2, dtype=F64)(layers.Flatten(dtype=F64)(h)))


def linear_act_net(activation):
    """Conv2D -> LeakyReLU(0.2), Conv2DTranspose and DepthwiseConv2D -> an activation, Dense ->
    softmax: the linear_act rule (the activation in the layer's epilogue)."""
    x = fastnn.Input((6, 6, 3), dtype=F64)
    h = layers.LeakyReLU(0.2, dtype=F64)(layers.Conv2D(4, 3, padding="same", dtype=F64)(x))
    h = layers.Conv2DTranspose(4, 3, strides=2, padding="same", dtype=F64)(h)
    h = layers.DepthwiseConv2D(3, dtype=F64)(layers.Activation(activation, dtype=F64)(h))
    h = layers.LeakyReLU(0.2, dtype=F64)(h)
    h = layers.Activation(activation, dtype=F64)(layers.Conv2D(4, 3, dtype=F64)(h))
    h = layers.Dense(3, dtype=F64)(layers.Flatten(dtype=F64)(h))
    return fastnn.Model(x, layers.Activation("softmax", dtype=F64)(h))


def depthwise_bn_net(activation, multiplier):
    """DepthwiseConv2D -> BN -> act: the depthwise_bn_act rule, BN folded in at inference."""
    x = fastnn.Input((6, 6, 2), dtype=F64)
    h = layers.DepthwiseConv2D(3, depth_multiplier=multiplier, padding="same", dtype=F64)(x)
    h = layers.BatchNormalization(momentum=0.5, dtype=F64)(h)
    h = layers.Activation(activation, dtype=F64)(h)
    return fastnn.Model(x, layers.Dense(2, dtype=F64)(layers.Flatten(dtype=F64)(h)))


def separable_bn_net(activation, multiplier):
    """SeparableConv2D -> BN -> act: the separable_bn_act rule, BN folded in at inference."""
    x = fastnn.Input((6, 6, 2), dtype=F64)
    h = layers.SeparableConv2D(3, 3, depth_multiplier=multiplier, padding="same", dtype=F64)(x)
    h = layers.BatchNormalization(momentum=0.5, dtype=F64)(h)
    h = layers.Activation(activation, dtype=F64)(h)
    return fastnn.Model(x, layers.Dense(2, dtype=F64)(layers.Flatten(dtype=F64)(h)))


def dropout_net(activation):
    """Dense(activation) -> Dropout -> Dense: the dense_dropout rule (and Dense's own)."""
    x = fastnn.Input((5,), dtype=F64)
    h = layers.Dense(6, activation=activation, dtype=F64)(x)
    h = layers.Dropout(0.4, seed=3, dtype=F64)(h)
    return fastnn.Model(x, layers.Dense(2, dtype=F64)(h))


def rnn_net(mask_zero, dropout):
    ids = fastnn.Input((6,))
    e = layers.Embedding(7, 3, mask_zero=mask_zero, dtype=F64)(ids)
    h = layers.GRU(4, go_backwards=True, dropout=dropout, dtype=F64)(e)
    return fastnn.Model(ids, layers.Dense(2, dtype=F64)(h))


@pytest.mark.parametrize(
    "build, data",
    [
        *[
            (lambda a=a: conv_pool_net(a), lambda rng: rng.standard_normal((3, 7, 7, 2)))
            for a in ("relu", "tanh", "softmax", None)
        ],
        *[
            (lambda a=a: conv_act_pool_net(a), lambda rng: rng.standard_normal((3, 7, 7, 2)))
            for a in ("relu", "leaky_relu", "gelu", "tanh")
        ],
        *[
            (
                lambda a=a: conv_act_pool_net(a, layers.AveragePooling2D),
                lambda rng: rng.standard_normal((3, 7, 7, 2)),
            )
            for a in ("relu", "tanh")
        ],
        *[
            (lambda a=a: average_pool_net(a), lambda rng: rng.standard_normal((3, 9, 9, 1)))
            for a in ("relu", "tanh", "softmax", None)
        ],
        *[
            (
                lambda a=a, c=c: bn_net(a, center=c, scale=c),
                lambda rng: rng.normal(2, 3, (4, 7, 7, 2)),
            )
            for a in ("relu", "linear")
            for c in (True, False)
        ],
        *[
            (lambda a=a: bn_net(a, conv_bias=False), lambda rng: rng.normal(2, 3, (4, 7, 7, 2)))
            for a in ("relu", "tanh")
        ],
        *[
            (lambda a=a: bn_net(a, pool=True), lambda rng: rng.normal(2, 3, (4, 7, 7, 2)))
            for a in ("relu", "linear")
        ],
        *[
            (lambda u=u: dense_bn_net(u), lambda rng: rng.normal(2, 3, (4, 3)))
            for u in (2, 16)  # kernel 6 <= input 12: folded; 48 > 12: as written
        ],
        *[
            (lambda a=a, m=m: depthwise_bn_net(a, m), lambda rng: rng.normal(2, 3, (3, 6, 6, 2)))
            for a, m in (("relu", 1), ("linear", 2))
        ],
        *[
            (lambda a=a, m=m: separable_bn_net(a, m), lambda rng: rng.normal(2, 3, (3, 6, 6, 2)))
            for a, m in (("relu", 1), ("linear", 2))
        ],
        *[
            (lambda a=a: dropout_net(a), lambda rng: rng.standard_normal((8, 5)))
            for a in ("relu", "linear", "silu")
        ],
        *[
            (lambda a=a, n=n: residual_net(a, n), lambda rng: rng.standard_normal((4, 5)))
            for a, n in (("relu", 2), ("tanh", 3), ("gelu", 2))
        ],
        *[
            (lambda a=a, p=p: conv_residual_net(a, p), lambda rng: rng.normal(1, 2, (3, 6, 6, 3)))
            for a, p in (("relu", False), ("relu", True), (None, True))
        ],
        *[
            (lambda a=a: linear_act_net(a), lambda rng: rng.normal(0, 2, (3, 6, 6, 3)))
            for a in ("tanh", "gelu", "relu")
        ],
        *[
            (lambda a=a: conv1d_act_net(a), lambda rng: rng.normal(0, 2, (3, 9, 3)))
            for a in ("tanh", "gelu")
        ],
        *[
            (lambda v=v: relu_layer_net(v), lambda rng: rng.normal(1, 2, (3, 6, 6, 3)))
            for v in (None, 6.0)
        ],
        *[
            (lambda m=m, d=d: rnn_net(m, d), lambda rng: rng.integers(0, 7, (3, 6)).astype(F64))
            for m in (False, True)
            for d in (0.0, 0.5)
        ],
    ],
)
@pytest.mark.parametrize("training", [True, False])
def test_fused_equals_unfused_in_values_and_gradients(build, data, training):
    model = build()
    randomize_weights(model, 1)
    with fusion.disabled():
        unfused = Graph(model.inputs, model.outputs)
    assert len(unfused.steps) > len(model._graph.steps)
    x = data(np.random.default_rng(2))
    if x.dtype.kind == "f" and x.ndim == 2:
        x[0, 4:] = 0  # padding, masked with mask_zero
    got, want = (
        pass_and_grads(model._graph, model, x, training),
        pass_and_grads(unfused, model, x, training),
    )
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-14)
    for w, g, ref in zip(model.weights, got[1], want[1]):
        np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-13, err_msg=w.path)


@pytest.mark.parametrize("strides, filters", [(1, 16), (2, 32), (1, 8)])
def test_a_float32_conv_gathers_batch_norm_statistics_as_the_layers_compute_them(
    monkeypatch, strides, filters
):
    """In training a float32 Conv2D's SIMD kernels gather the following BatchNormalization's
    batch statistics as they write its rows: the fused step's output, moving statistics and
    gradients are those of the layers as written."""
    gathered = []
    combine = conv_simd._combine_moments
    monkeypatch.setattr(conv_simd, "_combine_moments", lambda *a: gathered.append(1) or combine(*a))
    x = fastnn.Input((12, 12, 8))
    h = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    h = layers.Activation("relu")(layers.BatchNormalization(momentum=0.5)(h))
    model = fastnn.Model(x, layers.Dense(3)(layers.Flatten()(h)))
    assert isinstance(model._graph.steps[0].layer, LinearBatchNorm)
    randomize_weights(model, 3)
    with fusion.disabled():
        unfused = Graph(model.inputs, model.outputs)
    data = np.random.default_rng(4).normal(1.5, 2, (6, 12, 12, 8)).astype(np.float32)
    bn = model.layers[2]
    results = []
    for graph in (model._graph, unfused):
        before = [w.value.copy() for w in bn.weights]
        results.append((*pass_and_grads(graph, model, data, True), [w.value for w in bn.weights]))
        for w, value in zip(bn.weights, before):
            w.value[...] = value
    (out, grads, stats), (ref_out, ref_grads, ref_stats) = results
    assert gathered == [1]  # by the fused step's conv; the unfused BatchNormalization's own
    np.testing.assert_allclose(out, ref_out, rtol=1e-4, atol=1e-4)
    for got, want in zip(stats, ref_stats):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for w, got, want in zip(model.weights, grads, ref_grads):
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3, err_msg=w.path)


def test_fusion_changes_nothing_the_user_sees():
    model = conv_pool()
    with fusion.disabled():
        unfused = conv_pool()
    assert [type(layer) for layer in model.layers] == [type(layer) for layer in unfused.layers]
    assert [w.path for w in model.weights] == ["c/kernel", "c/bias"]
    assert isinstance(model._graph.steps[0].layer, ConvMaxPool)
    assert len(model.get_config()["layers"]) == len(unfused.get_config()["layers"])
    assert not isinstance(embedded()._graph.steps[0].layer, ConvMaxPool)
    assert isinstance(embedded()._graph.steps[0].layer, EmbeddedRNN)


def predicted_fused_and_unfused(model, data):
    """(model.predict(data), the output of its layers as written at inference)."""
    with fusion.disabled():
        unfused = Graph(model.inputs, model.outputs)
    (want,), _ = unfused.forward([data], training=False)
    return model.predict(data, verbose=0), want


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", None])
def test_a_float32_conv_and_average_pool_predict_as_the_layers_as_written(activation):
    """At inference a float32 Conv2D -> AveragePooling2D(2) runs as one pass (LeNet's convs:
    the SIMD conv in bands of rows, activated and averaged in cache): the outputs of the layers
    as written, to float32 rounding."""
    x = fastnn.Input((28, 28, 1))
    h = layers.Conv2D(6, 5, padding="same", activation=activation)(x)
    h = layers.AveragePooling2D(2)(h)
    h = layers.Conv2D(16, 5, activation=activation)(h)
    h = layers.AveragePooling2D(2)(h)
    model = fastnn.Model(x, layers.Flatten()(h))
    assert fused_names(model) == [f"{model.layers[1].name}+{model.layers[2].name}",
                                  f"{model.layers[3].name}+{model.layers[4].name}"]  # fmt: skip
    randomize_weights(model, 3)
    data = np.random.default_rng(4).standard_normal((5, 28, 28, 1)).astype(np.float32)
    got, want = predicted_fused_and_unfused(model, data)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ["relu", None])
def test_a_float32_separable_conv_and_batch_norm_predict_as_the_layers_as_written(activation):
    """At inference SeparableConv2D -> BatchNormalization (-> relu) runs as one step, BN folded
    into the pointwise kernel and bias and the relu in the product's epilogue: the outputs of
    the layers as written, to float32 rounding."""
    x = fastnn.Input((10, 10, 16))
    h = layers.SeparableConv2D(24, 3, padding="same", use_bias=False)(x)
    h = layers.BatchNormalization()(h)
    if activation:
        h = layers.Activation(activation)(h)
    model = fastnn.Model(x, h)
    assert isinstance(model._graph.steps[0].layer, LinearBatchNorm)
    randomize_weights(model, 5)
    data = np.random.default_rng(6).standard_normal((64, 10, 10, 16)).astype(np.float32)
    got, want = predicted_fused_and_unfused(model, data)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("filters, strides", [(16, 1), (24, 1), (32, 2)])
def test_a_float32_residual_block_predicts_as_the_layers_as_written(filters, strides):
    """At inference Conv2D -> BatchNormalization -> Add(shortcut) -> relu runs as one step: BN
    folded into the conv, the shortcut added and the relu applied as each row is written (the
    SIMD conv's rows, or a pass after the other algorithms): the layers as written, to float32
    rounding."""
    x = fastnn.Input((12, 12, 16))
    h = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    h = layers.BatchNormalization()(h)
    shortcut = layers.Conv2D(filters, 1, strides=strides)(x)
    h = layers.Activation("relu")(layers.Add()([shortcut, h]))
    model = fastnn.Model(x, h)
    assert len(fused_names(model)) == 1
    randomize_weights(model, 5)
    data = np.random.default_rng(6).standard_normal((8, 12, 12, 16)).astype(np.float32)
    got, want = predicted_fused_and_unfused(model, data)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("training", [True, False])
def test_relu6_after_batch_norm_fuses_and_clips_as_the_layers_as_written(training):
    """MobileNetV2's conv -> BN -> ReLU(6.0) and depthwise conv -> BN -> relu6, with BN scaled
    so that outputs pass 6: fused (BN's kernels clip as they normalize; folded at inference)
    == the layers as written, values and gradients, in float64."""
    x = fastnn.Input((6, 6, 3), dtype=F64)
    h = layers.Conv2D(4, 3, padding="same", use_bias=False, dtype=F64)(x)
    normalized = layers.BatchNormalization(dtype=F64)(h)
    h = layers.DepthwiseConv2D(3, padding="same", use_bias=False, dtype=F64)(
        layers.ReLU(6.0, dtype=F64)(normalized)
    )
    h = layers.Activation("relu6", dtype=F64)(layers.BatchNormalization(dtype=F64)(h))
    model = fastnn.Model(x, layers.Dense(2, dtype=F64)(layers.Flatten(dtype=F64)(h)))
    assert len(fused_names(model)) == 2
    randomize_weights(model, 1)
    for bn in (layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)):
        bn.gamma.value[...] = 8.0
    with fusion.disabled():
        unfused = Graph(model.inputs, model.outputs)
    data = np.random.default_rng(2).normal(1, 2, (3, 6, 6, 3))
    got, want = (pass_and_grads(g, model, data, training) for g in (model._graph, unfused))
    assert fastnn.Model(x, normalized).predict(data, verbose=0).max() > 6  # relu6 clips
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-14)
    for w, g, ref in zip(model.weights, got[1], want[1]):
        np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-13, err_msg=w.path)


def test_a_gradient_tape_differentiates_the_weights_of_fused_layers():
    """A custom train_step's GradientTape records a fused node as one entry: the gradients of
    every weight of the layers it fuses are those of the layers as written (they were None)."""

    def build():
        fastnn.utils.set_random_seed(1)
        x = fastnn.Input((8, 8, 2))
        h = layers.Conv2D(4, 3)(x)
        h = layers.Activation("relu")(layers.BatchNormalization()(h))
        h = layers.LeakyReLU(0.2)(layers.Conv2D(3, 1)(h))
        return fastnn.Model(x, layers.Dense(1)(layers.Flatten()(h)))

    data = np.random.default_rng(0).random((6, 8, 8, 2)).astype(np.float32)
    grads = []
    for fused in (True, False):
        with contextlib.nullcontext() if fused else fusion.disabled():
            model = build()
        assert bool(fused_names(model)) == fused
        with fastnn.GradientTape() as tape:
            loss = fastnn.ops.mean(model(data, training=True) ** 2)
        grads.append(tape.gradient(loss, model.trainable_weights))
    for got, want in zip(*grads):
        assert got is not None
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pool", [layers.MaxPooling2D, layers.AveragePooling2D])
@pytest.mark.parametrize("make_activation", [lambda: layers.LeakyReLU(0.2), layers.ReLU])
def test_a_float32_conv_activation_layer_and_pool_predict_as_the_layers_as_written(
    pool, make_activation
):
    """Conv2D -> an activation layer -> a 2x2 pool runs as one pass at inference (the SIMD
    conv activating and pooling in cache), and Conv2D -> an activation layer as the conv with
    that activation: the layers as written, to float32 rounding."""
    x = fastnn.Input((16, 16, 8))
    h = pool(2)(make_activation()(layers.Conv2D(16, 3, padding="same")(x)))
    h = make_activation()(layers.Conv2D(32, 3, padding="same")(h))
    model = fastnn.Model(x, h)
    assert len(fused_names(model)) == 2 and len(model._graph.steps) == 2
    randomize_weights(model, 5)
    data = np.random.default_rng(6).standard_normal((16, 16, 16, 8)).astype(np.float32)
    got, want = predicted_fused_and_unfused(model, data)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
