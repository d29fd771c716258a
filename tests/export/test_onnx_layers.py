"""One small model per converted layer (and per code path), exported and run by ONNX's reference
evaluator and ONNX Runtime, equal to ``model.predict``."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_check import assert_matches

import fastnn
from fastnn import layers
from fastnn.export.convert_core import ACTIVATION_NAMES
from fastnn.kernels import codes

RNG = np.random.default_rng(0)


def data(*shape, low=-1.0, high=1.0):
    return RNG.uniform(low, high, (3, *shape)).astype(np.float32)


def ids(steps, vocab=7, pad_after=None):
    """Token ids (3, steps), zero-padded at the end of each row from ``pad_after[i]`` on."""
    tokens = RNG.integers(1, vocab, (3, steps)).astype(np.float32)
    for row, start in enumerate(pad_after or []):
        tokens[row, start:] = 0
    return tokens


def one(layer, shape, x=None):
    """A model of one layer on inputs of ``shape``; its data."""
    inputs = fastnn.Input(shape)
    return fastnn.Model(inputs, layer(inputs)), data(*shape) if x is None else x


def with_random_weights(model, rng=None):
    """Random weights (BN statistics too), so nothing is exported as a trivial 0 or 1. A
    kernel's spread shrinks with its fan-in, so deep models keep their activations near 1 and
    their softmax unsaturated: a well-conditioned output that 1e-5 can judge."""
    rng = RNG if rng is None else rng
    for w in model.weights:
        if "variance" in w.path:
            value = rng.uniform(0.5, 1.5, w.shape)
        else:
            fan_in = int(np.prod(w.shape[:-1])) if len(w.shape) > 1 else 1
            value = rng.normal(0, 0.5 * min(1.0, 4 / np.sqrt(fan_in)), w.shape)
        w.assign(value.astype(w.dtype))
    return model


def conv_chain(*stack, shape=(6, 6, 3)):
    inputs = fastnn.Input(shape)
    x = inputs
    for layer in stack:
        x = layer(x)
    return fastnn.Model(inputs, x), data(*[7 if d is None else d for d in shape])


CASES = {
    "dense": lambda: one(layers.Dense(4), (5,)),
    "dense-3d": lambda: one(layers.Dense(4, activation="relu"), (2, 5)),
    "dense-no-bias": lambda: one(layers.Dense(4, use_bias=False), (5,)),
    "relu-layer": lambda: one(layers.ReLU(), (5,)),
    "relu-capped-slope-threshold": lambda: one(
        layers.ReLU(max_value=0.5, negative_slope=0.1, threshold=0.2), (5,)
    ),
    "leaky-relu": lambda: one(layers.LeakyReLU(negative_slope=0.3), (5,)),
    "elu-layer": lambda: one(layers.ELU(alpha=0.7), (5,)),
    "prelu": lambda: one(layers.PReLU(shared_axes=[1]), (3, 4)),
    "softmax-layer": lambda: one(layers.Softmax(axis=1), (3, 4)),
    "softmax-two-axes": lambda: one(layers.Softmax(axis=[1, 2]), (3, 4)),
    "dropout": lambda: one(layers.Dropout(0.5), (5,)),
    "noise": lambda: conv_chain(
        layers.GaussianNoise(1.0),
        layers.GaussianDropout(0.3),
        layers.SpatialDropout2D(0.5),
        layers.Identity(),
    ),  # fmt: skip
    "augmentations": lambda: conv_chain(
        layers.RandomFlip(seed=1),
        layers.RandomRotation(0.2, seed=2),
        layers.RandomZoom(0.2, seed=3),
        layers.RandomTranslation(0.1, 0.1, seed=4),
        layers.RandomContrast(0.3, seed=5),
        layers.RandomBrightness(0.2, seed=6),
    ),  # fmt: skip
    "resizing-down": lambda: one(layers.Resizing(4, 5), (7, 9, 2)),
    "resizing-up-nearest": lambda: one(layers.Resizing(9, 6, interpolation="nearest"), (4, 5, 2)),
    "resizing-crop-to-aspect": lambda: one(
        layers.Resizing(3, 6, crop_to_aspect_ratio=True), (7, 9, 2)
    ),
    "resizing-pad-to-aspect": lambda: one(
        layers.Resizing(4, 4, pad_to_aspect_ratio=True, fill_value=0.5), (5, 9, 2)
    ),
    "resizing-channels-first": lambda: one(
        layers.Resizing(3, 4, data_format="channels_first"), (2, 7, 9)
    ),
    "resizing-after-conv": lambda: conv_chain(
        layers.Conv2D(2, 3), layers.Resizing(6, 6), layers.Conv2D(3, 3)
    ),
    "center-crop": lambda: one(layers.CenterCrop(4, 5), (7, 9, 2)),
    "center-crop-smaller-input": lambda: one(layers.CenterCrop(8, 6), (5, 9, 2)),
    "random-crop-at-inference": lambda: one(layers.RandomCrop(4, 5, seed=1), (7, 9, 2)),
    "integer-lookup": lambda: one(
        layers.IntegerLookup(vocabulary=[3, 1, 5]), (4,), ids(4, vocab=8)
    ),
    "integer-lookup-mask-two-oov": lambda: one(
        layers.IntegerLookup(vocabulary=[3, 1, 5], mask_token=0, num_oov_indices=2),
        (5,),
        ids(5, vocab=8, pad_after=[3, 5, 1]),
    ),
    "integer-lookup-one-hot": lambda: one(
        layers.IntegerLookup(vocabulary=[2, 4], output_mode="one_hot"), (1,), ids(1, vocab=6)
    ),
    "integer-lookup-multi-hot-mask": lambda: one(
        layers.IntegerLookup(vocabulary=[2, 4], output_mode="multi_hot", mask_token=0),
        (4,),
        ids(4, vocab=6, pad_after=[2, 4, 0]),
    ),
    "integer-lookup-count-padded": lambda: one(
        layers.IntegerLookup(
            vocabulary=[2, 4], output_mode="count", pad_to_max_tokens=True, max_tokens=5
        ),
        (6,),
        ids(6, vocab=6),
    ),
    "integer-lookup-tf-idf": lambda: one(
        layers.IntegerLookup(vocabulary=[2, 4], output_mode="tf_idf", idf_weights=[0.5, 1.5]),
        (6,),
        ids(6, vocab=6),
    ),
    "integer-lookup-invert": lambda: one(
        layers.IntegerLookup(vocabulary=[30, 10, 50], invert=True), (4,), ids(4, vocab=6)
    ),
    "flatten": lambda: one(layers.Flatten(), (2, 3, 2)),
    "reshape": lambda: one(layers.Reshape((3, -1)), (2, 3, 2)),
    "permute": lambda: one(layers.Permute((2, 1)), (2, 3)),
    "repeat-vector": lambda: one(layers.RepeatVector(3), (4,)),
    "batch-norm": lambda: one(layers.BatchNormalization(), (4,)),
    "batch-norm-axis-1": lambda: one(layers.BatchNormalization(axis=1, center=False), (3, 4)),
    "dense-bn-folded": lambda: conv_chain(
        layers.Dense(4), layers.BatchNormalization(), layers.Activation("relu"), shape=(5,)
    ),  # fmt: skip
    "layer-norm": lambda: one(layers.LayerNormalization(), (2, 4)),
    "layer-norm-two-axes": lambda: one(layers.LayerNormalization(axis=[1, 2], scale=False), (2, 4)),
    "layer-norm-rms": lambda: one(layers.LayerNormalization(rms_scaling=True), (2, 4)),
    "layer-norm-middle-axis": lambda: one(layers.LayerNormalization(axis=1), (3, 4)),
    "group-norm": lambda: one(layers.GroupNormalization(groups=2), (3, 3, 4)),
    "group-norm-instance-no-affine": lambda: one(
        layers.GroupNormalization(groups=-1, center=False, scale=False), (5, 3)
    ),
    "group-norm-after-conv": lambda: conv_chain(
        layers.Conv2D(4, 3), layers.GroupNormalization(groups=2), layers.Conv2D(2, 1)
    ),
    "unit-norm": lambda: one(layers.UnitNormalization(), (2, 4)),
    "unit-norm-two-axes": lambda: one(layers.UnitNormalization(axis=[1, 2]), (2, 4)),
    "normalization": lambda: one(
        layers.Normalization(mean=[0.5, -1.0, 2.0], variance=[4.0, 0.25, 1.0]), (2, 3)
    ),
    "normalization-invert": lambda: one(
        layers.Normalization(mean=1.5, variance=2.0, invert=True), (3,)
    ),
    "time-distributed-dense": lambda: one(
        layers.TimeDistributed(layers.Dense(3, activation="relu")), (4, 5)
    ),
    "time-distributed-conv": lambda: one(layers.TimeDistributed(layers.Conv2D(2, 3)), (2, 5, 5, 3)),
    "category-one-hot": lambda: one(layers.CategoryEncoding(5, "one_hot"), (1,), ids(1, 5)),
    "category-one-hot-2d": lambda: one(layers.CategoryEncoding(5, "one_hot"), (3,), ids(3, 5)),
    "category-multi-hot": lambda: one(layers.CategoryEncoding(5), (4,), ids(4, 5)),
    "category-count": lambda: one(layers.CategoryEncoding(5, "count"), (4,), ids(4, 5)),
    "rescaling": lambda: one(layers.Rescaling(0.5, offset=-1.0), (4,)),
    "embedding": lambda: one(layers.Embedding(7, 3), (4,), ids(4)),
    "conv1d-same": lambda: one(layers.Conv1D(4, 3, padding="same", activation="tanh"), (7, 2)),
    "conv1d-causal-dilated": lambda: one(
        layers.Conv1D(4, 2, padding="causal", dilation_rate=2), (7, 2)
    ),
    "conv1d-strided-valid": lambda: one(layers.Conv1D(3, 3, strides=2), (8, 2)),
    "conv2d-same-strided": lambda: one(layers.Conv2D(4, 3, strides=2, padding="same"), (7, 6, 3)),
    "conv2d-dilated": lambda: one(layers.Conv2D(4, 3, dilation_rate=2, padding="same"), (7, 7, 2)),
    "conv2d-groups": lambda: one(layers.Conv2D(4, 2, groups=2, activation="softmax"), (5, 5, 4)),
    "conv-bn-relu-folded": lambda: conv_chain(
        layers.Conv2D(4, 3, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.Activation("relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
    ),
    "conv-chain-no-transposes": lambda: conv_chain(
        layers.Conv2D(4, 3, padding="same", activation="relu"),
        layers.BatchNormalization(),  # not folded (the conv has an activation): channels-first
        layers.Conv2D(3, 1),
        layers.GlobalAveragePooling2D(),
    ),
    "depthwise2d": lambda: one(
        layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same"), (5, 5, 3)
    ),  # fmt: skip
    "depthwise-bn-folded": lambda: conv_chain(
        layers.DepthwiseConv2D(3, depth_multiplier=2), layers.BatchNormalization()
    ),
    "depthwise1d": lambda: one(layers.DepthwiseConv1D(3, strides=2), (9, 2)),
    "separable2d": lambda: one(layers.SeparableConv2D(4, 3, activation="relu"), (6, 6, 2)),
    "separable1d": lambda: one(layers.SeparableConv1D(3, 2, padding="same"), (6, 2)),
    "conv2d-transpose-same": lambda: one(
        layers.Conv2DTranspose(3, 3, strides=2, padding="same"), (3, 4, 2)
    ),  # fmt: skip
    "conv2d-transpose-valid": lambda: one(
        layers.Conv2DTranspose(2, (2, 3), strides=(2, 1)), (3, 3, 2)
    ),  # fmt: skip
    "conv2d-transpose-stride-beyond-kernel": lambda: one(
        layers.Conv2DTranspose(2, 2, strides=3, activation="relu"), (2, 3, 2)
    ),
    "conv2d-transpose-output-padding": lambda: one(
        layers.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1), (3, 3, 2)
    ),
    "conv2d-transpose-dilated": lambda: one(
        layers.Conv2DTranspose(2, 3, dilation_rate=2, padding="same"), (4, 4, 2)
    ),
    "conv1d-transpose-same": lambda: one(
        layers.Conv1DTranspose(3, 4, strides=2, padding="same"), (5, 2)
    ),  # fmt: skip
    "conv1d-transpose-valid-output-padding": lambda: one(
        layers.Conv1DTranspose(3, 3, strides=2, output_padding=1), (5, 2)
    ),
    "channels-first-depthwise-chain": lambda: conv_chain(
        layers.DepthwiseConv2D(3, data_format="channels_first", activation="relu"),
        layers.ZeroPadding2D(1, data_format="channels_first"),
        layers.SeparableConv2D(2, 3, data_format="channels_first"),
        layers.UpSampling2D(2, data_format="channels_first"),
        layers.Cropping2D((1, 2), data_format="channels_first"),
        layers.Conv2DTranspose(2, 2, strides=2, data_format="channels_first"),
        layers.Flatten(),
        shape=(3, 7, 6),
    ),
    "channels-first-bn-along-width-not-folded": lambda: conv_chain(
        layers.DepthwiseConv2D(2, data_format="channels_first"),
        layers.BatchNormalization(),  # axis -1: the width here, not the channels
        layers.BatchNormalization(axis=1),
        shape=(3, 5, 4),
    ),
    "channels-first-after-channels-last": lambda: conv_chain(
        layers.Conv2D(3, 3),  # channels-first inside: the next layer reads Keras's layout
        layers.DepthwiseConv2D(2, data_format="channels_first"),
        layers.Conv2D(2, 1),
    ),
    "unknown-sizes-same-padding": lambda: conv_chain(
        layers.Conv2D(3, 3, strides=2, padding="same"),
        layers.MaxPooling2D(2, padding="same"),
        layers.AveragePooling2D(3, strides=2, padding="same"),
        layers.Conv2D(2, 2, dilation_rate=2, padding="same"),
        layers.GlobalAveragePooling2D(),
        shape=(None, None, 3),
    ),
    "unknown-steps-conv1d": lambda: (
        conv_chain(
            layers.Conv1D(2, 3, padding="same"),
            layers.Conv1D(2, 2, padding="causal"),
            shape=(None, 3),
        )[0],  # fmt: skip
        data(7, 3),
    ),
    "maxpool2d-same": lambda: one(layers.MaxPooling2D(2, padding="same"), (5, 5, 2)),
    "avgpool2d-same": lambda: one(layers.AveragePooling2D(3, strides=2, padding="same"), (5, 5, 2)),
    "avgpool2d-valid": lambda: one(layers.AveragePooling2D(2), (4, 6, 2)),
    "maxpool1d": lambda: one(layers.MaxPooling1D(2), (6, 3)),
    "avgpool1d-same": lambda: one(layers.AveragePooling1D(2, padding="same"), (5, 3)),
    "global-max2d": lambda: one(layers.GlobalMaxPooling2D(), (4, 4, 3)),
    "global-avg2d-keepdims": lambda: one(layers.GlobalAveragePooling2D(keepdims=True), (4, 4, 3)),
    "global-avg1d": lambda: one(layers.GlobalAveragePooling1D(), (5, 3)),
    "global-max1d": lambda: one(layers.GlobalMaxPooling1D(), (5, 3)),
    "zero-padding2d": lambda: one(layers.ZeroPadding2D(((1, 0), (2, 1))), (3, 3, 2)),
    "zero-padding1d": lambda: one(layers.ZeroPadding1D((2, 1)), (3, 2)),
    "cropping2d": lambda: one(layers.Cropping2D(((1, 0), (0, 2))), (4, 5, 2)),
    "cropping1d": lambda: one(layers.Cropping1D((1, 2)), (6, 2)),
    "upsampling2d": lambda: one(layers.UpSampling2D((2, 3)), (2, 3, 2)),
    "upsampling2d-bilinear": lambda: one(
        layers.UpSampling2D((2, 3), interpolation="bilinear"), (3, 4, 2)
    ),
    "upsampling1d": lambda: one(layers.UpSampling1D(2), (3, 2)),
    "conv-pad-crop-up-chain": lambda: conv_chain(
        layers.Conv2D(3, 3),
        layers.ZeroPadding2D(1),
        layers.UpSampling2D(2),
        layers.Cropping2D(1),
        layers.Conv2D(2, 1),
    ),
}

for _name in sorted(ACTIVATION_NAMES):
    CASES[f"activation-{_name}"] = lambda name=_name: one(layers.Activation(name), (2, 5))
    CASES[f"dense-{_name}"] = lambda name=_name: one(layers.Dense(3, activation=name), (4,))
CASES["conv-softmax-channels-first"] = lambda: conv_chain(
    layers.Conv2D(3, 1), layers.Activation("softmax"), layers.Conv2D(2, 1)
)


def merge_case(layer, n=2):
    inputs = [fastnn.Input((3, 4)) for _ in range(n)]
    return fastnn.Model(inputs, layer(inputs)), [data(3, 4) for _ in range(n)]


def merge_case_shapes(layer, *shapes):
    inputs = [fastnn.Input(shape) for shape in shapes]
    return fastnn.Model(inputs, layer(inputs)), [data(*shape) for shape in shapes]


def conv_merge_case(layer):
    """A merge of two conv outputs: it runs channels-first, no transposes between."""
    inputs = fastnn.Input((4, 4, 2))
    a = layers.Conv2D(3, 1)(inputs)
    b = layers.Conv2D(3, 1)(inputs)
    return fastnn.Model(inputs, layers.Conv2D(2, 1)(layer([a, b]))), data(4, 4, 2)


for _cls in (
    layers.Add, layers.Subtract, layers.Multiply, layers.Average, layers.Maximum, layers.Minimum
):  # fmt: skip
    CASES[f"merge-{_cls.__name__}"] = lambda cls=_cls: merge_case(cls())
    CASES[f"merge-{_cls.__name__}-channels-first"] = lambda cls=_cls: conv_merge_case(cls())
CASES["merge-Add-three"] = lambda: merge_case(layers.Add(), 3)
CASES["merge-Concatenate"] = lambda: merge_case(layers.Concatenate(axis=1))
CASES["merge-Concatenate-channels-first"] = lambda: conv_merge_case(layers.Concatenate())
CASES["merge-Concatenate-height"] = lambda: conv_merge_case(layers.Concatenate(axis=1))
CASES["dot-2d"] = lambda: merge_case_shapes(layers.Dot(axes=1), (4,), (4,))
CASES["dot-3d-normalized"] = lambda: merge_case_shapes(
    layers.Dot(axes=(2, 2), normalize=True), (3, 4), (5, 4)
)
CASES["dot-3d-matmul"] = lambda: merge_case_shapes(layers.Dot(axes=(2, 1)), (3, 4), (4, 2))
if hasattr(layers, "Minimum"):
    CASES["merge-Minimum"] = lambda: merge_case(layers.Minimum())


@pytest.mark.parametrize("opset", [None, 13])  # the default, and the oldest accepted
@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_exports(case, opset, tmp_path):
    model, x = CASES[case]()
    with_random_weights(model)
    assert_matches(model, x, tmp_path, opset=opset)


@pytest.mark.parametrize("opset", [13, 17])
def test_older_opsets_use_formulas(opset, tmp_path):
    """gelu, mish, hard_silu and LayerNormalization before the opsets that have them as
    operators."""
    inputs = fastnn.Input((5,))
    x = inputs
    for name in ("gelu", "mish", "hard_silu", "silu"):
        x = layers.Activation(name)(x)
    x = layers.LayerNormalization()(x)
    model = with_random_weights(fastnn.Model(inputs, layers.Dense(3)(x)))
    proto = assert_matches(model, data(5), tmp_path, opset=opset)
    assert proto.opset_import[0].version == opset
    ops = {node.op_type for node in proto.graph.node}
    assert not {"Gelu", "Mish"} & ops
    assert ("LayerNormalization" in ops) == (opset >= 17)


def test_conv_chain_has_transposes_only_at_the_edges(tmp_path):
    model, x = CASES["conv-chain-no-transposes"]()
    proto = assert_matches(with_random_weights(model), x, tmp_path)
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("Transpose") == 1  # into channels-first; global pooling leaves it
    assert "BatchNormalization" not in ops


@pytest.mark.parametrize("then_concat", [False, True])
def test_a_dense_reads_a_flattened_feature_map_without_transposing(then_concat, tmp_path):
    """Flatten of a channels-first map then Dense: the Dense's kernel rows are put in the
    channels-first order instead, through a Concatenate too."""
    inputs = fastnn.Input((6, 6, 2))
    x = layers.MaxPooling2D(2)(layers.Conv2D(3, 3, activation="relu")(inputs))
    x = layers.Dropout(0.5)(layers.Flatten()(x))
    if then_concat:
        x = layers.Concatenate()([x, layers.Flatten()(inputs)])
    model = with_random_weights(fastnn.Model(inputs, layers.Dense(4)(x)))
    proto = assert_matches(model, data(6, 6, 2), tmp_path)
    assert [n.op_type for n in proto.graph.node].count("Transpose") == 1


@pytest.mark.parametrize("case", ["conv-bn-relu-folded", "depthwise-bn-folded"])
def test_bn_after_a_linear_conv_is_folded(case, tmp_path):
    model, x = CASES[case]()
    proto = assert_matches(with_random_weights(model), x, tmp_path)
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("Conv") == 1 and "Mul" not in ops and "Add" not in ops


def test_bn_along_another_axis_than_the_channels_is_not_folded(tmp_path):
    model, x = CASES["channels-first-bn-along-width-not-folded"]()
    proto = assert_matches(with_random_weights(model), x, tmp_path)
    assert [node.op_type for node in proto.graph.node].count("Mul") == 2


def test_every_activation_name_converts():
    assert set(codes.CODES) == ACTIVATION_NAMES  # the names fastnn.activations knows
