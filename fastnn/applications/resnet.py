"""ResNet50, ResNet101 and ResNet152 (He et al., 2015), as ``keras.applications.resnet``."""

from __future__ import annotations

from collections.abc import Callable

from fastnn import backend
from fastnn.applications import imagenet_utils
from fastnn.layers import (
    Activation,
    Add,
    BatchNormalization,
    Conv2D,
    Dense,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    MaxPooling2D,
    ZeroPadding2D,
)
from fastnn.models import Model

BASE_WEIGHTS_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
#: Keras's hashes of its files: (with the top, without).
WEIGHTS_HASHES = {
    "resnet50": ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    "resnet152": ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
}
#: Keras's BatchNormalization epsilon in the ResNets (channels_last: the last axis).
BN_EPSILON = 1.001e-5
BN_AXIS = 3


def ResNet(  # noqa: N802
    stack_fn: Callable,
    include_top: bool = True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes: int = 1000,
    classifier_activation="softmax",
    name: str = "resnet",
    weights_name: str | None = None,
) -> Model:
    """A ResNet (v1) whose residual stacks ``stack_fn`` adds; Keras's ``weights_name`` picks
    its ImageNet file."""
    imagenet_utils.check_weights(weights, classes, include_top)
    imagenet_utils.check_channels_last(name)
    input_shape = imagenet_utils.obtain_input_shape(
        input_shape,
        default_size=224,
        min_size=32,
        data_format=backend.image_data_format(),
        require_flatten=include_top,
        weights=weights,
    )
    img_input = imagenet_utils.image_input(input_tensor, input_shape)
    x = ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(img_input)
    x = Conv2D(64, 7, strides=2, use_bias=True, name="conv1_conv")(x)
    x = BatchNormalization(axis=BN_AXIS, epsilon=BN_EPSILON, name="conv1_bn")(x)
    x = Activation("relu", name="conv1_relu")(x)
    x = ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    x = MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    x = stack_fn(x)
    if include_top:
        x = GlobalAveragePooling2D(name="avg_pool")(x)
        imagenet_utils.validate_activation(classifier_activation, weights)
        x = Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = GlobalMaxPooling2D(name="max_pool")(x)
    model = Model(imagenet_utils.model_inputs(input_tensor, img_input), x, name=name)
    imagenet_file = None
    if weights_name in WEIGHTS_HASHES:
        top = "" if include_top else "_notop"
        file_name = f"{weights_name}_weights_tf_dim_ordering_tf_kernels{top}.h5"
        file_hash = WEIGHTS_HASHES[weights_name][0 if include_top else 1]
        imagenet_file = (file_name, f"{BASE_WEIGHTS_PATH}{file_name}", file_hash)
    imagenet_utils.load_weights(model, weights, imagenet_file)
    return model


def residual_block_v1(x, filters: int, kernel_size=3, stride=1, conv_shortcut=True, name=None):
    """A bottleneck block: 1x1, ``kernel_size``, 1x1 (4 * ``filters``) convs plus the
    shortcut (a strided 1x1 conv, or the input itself)."""
    if conv_shortcut:
        shortcut = Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = _batch_norm(f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    x = Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x)
    x = _batch_norm(f"{name}_1_bn")(x)
    x = Activation("relu", name=f"{name}_1_relu")(x)
    x = Conv2D(filters, kernel_size, padding="same", name=f"{name}_2_conv")(x)
    x = _batch_norm(f"{name}_2_bn")(x)
    x = Activation("relu", name=f"{name}_2_relu")(x)
    x = Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x)
    x = _batch_norm(f"{name}_3_bn")(x)
    x = Add(name=f"{name}_add")([shortcut, x])
    return Activation("relu", name=f"{name}_out")(x)


def stack_residual_blocks_v1(x, filters: int, blocks: int, stride1=2, name=None):
    """``blocks`` residual blocks, the first with a conv shortcut and stride ``stride1``."""
    x = residual_block_v1(x, filters, stride=stride1, name=f"{name}_block1")
    for i in range(2, blocks + 1):
        x = residual_block_v1(x, filters, conv_shortcut=False, name=f"{name}_block{i}")
    return x


def _batch_norm(name: str) -> BatchNormalization:
    return BatchNormalization(axis=BN_AXIS, epsilon=BN_EPSILON, name=name)


def _stacks(blocks: tuple[int, int, int, int]) -> Callable:
    def stack_fn(x):
        x = stack_residual_blocks_v1(x, 64, blocks[0], stride1=1, name="conv2")
        x = stack_residual_blocks_v1(x, 128, blocks[1], name="conv3")
        x = stack_residual_blocks_v1(x, 256, blocks[2], name="conv4")
        return stack_residual_blocks_v1(x, 512, blocks[3], name="conv5")

    return stack_fn


def ResNet50(  # noqa: N802
    include_top: bool = True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes: int = 1000,
    classifier_activation="softmax",
    name: str = "resnet50",
) -> Model:
    """ResNet50 with Keras's layer names and weights (``weights``: None, 'imagenet' or a
    path); without the top, any input from 32x32."""
    return ResNet(
        _stacks((3, 4, 6, 3)),
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        weights_name="resnet50",
    )


def ResNet101(  # noqa: N802
    include_top: bool = True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes: int = 1000,
    classifier_activation="softmax",
    name: str = "resnet101",
) -> Model:
    """ResNet101 with Keras's layer names and weights."""
    return ResNet(
        _stacks((3, 4, 23, 3)),
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        weights_name="resnet101",
    )


def ResNet152(  # noqa: N802
    include_top: bool = True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes: int = 1000,
    classifier_activation="softmax",
    name: str = "resnet152",
) -> Model:
    """ResNet152 with Keras's layer names and weights."""
    return ResNet(
        _stacks((3, 8, 36, 3)),
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        weights_name="resnet152",
    )


def preprocess_input(x, data_format: str | None = None):
    """Images in [0, 255], RGB, to the ResNets' input: BGR, ImageNet's mean pixel subtracted."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="caffe")


def decode_predictions(preds, top: int = 5) -> list[list[tuple]]:
    """The ``top`` ImageNet classes of each prediction: ``(class_name, description, score)``."""
    return imagenet_utils.decode_predictions(preds, top=top)
