"""MobileNetV2 (Sandler et al., 2018), as ``keras.applications.mobilenet_v2``."""

from __future__ import annotations

import warnings

from fastnn import backend
from fastnn.applications import imagenet_utils
from fastnn.layers import (
    Add,
    BatchNormalization,
    Conv2D,
    Dense,
    DepthwiseConv2D,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    ReLU,
    ZeroPadding2D,
)
from fastnn.models import Model
from fastnn.nodes import SymbolicTensor

BASE_WEIGHT_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
#: The widths and input sizes Keras has ImageNet weights for.
IMAGENET_ALPHAS = (0.35, 0.50, 0.75, 1.0, 1.3, 1.4)
IMAGENET_SIZES = (96, 128, 160, 192, 224)
#: Each inverted residual block: (filters, stride, expansion).
BLOCKS = (
    (16, 1, 1),
    (24, 2, 6),
    (24, 1, 6),
    (32, 2, 6),
    (32, 1, 6),
    (32, 1, 6),
    (64, 2, 6),
    (64, 1, 6),
    (64, 1, 6),
    (64, 1, 6),
    (96, 1, 6),
    (96, 1, 6),
    (96, 1, 6),
    (160, 2, 6),
    (160, 1, 6),
    (160, 1, 6),
    (320, 1, 6),
)
_BN = {"axis": -1, "epsilon": 1e-3, "momentum": 0.999}


def MobileNetV2(  # noqa: N802
    input_shape=None,
    alpha: float = 1.0,
    include_top: bool = True,
    weights="imagenet",
    input_tensor=None,
    pooling=None,
    classes: int = 1000,
    classifier_activation="softmax",
    name: str | None = None,
) -> Model:
    """MobileNetV2 with Keras's layer names and weights; ``alpha`` scales the filters
    (ImageNet weights for 0.35, 0.5, 0.75, 1.0, 1.3 and 1.4, at 96 to 224 pixels square)."""
    _check_arguments(weights, classes, include_top)
    imagenet_utils.check_channels_last("MobileNetV2")
    default_size = _default_size(input_shape, input_tensor)
    input_shape = imagenet_utils.obtain_input_shape(
        input_shape,
        default_size=default_size,
        min_size=32,
        data_format=backend.image_data_format(),
        require_flatten=include_top,
        weights=weights,
    )
    rows, cols = input_shape[0], input_shape[1]
    if weights == "imagenet":
        if alpha not in IMAGENET_ALPHAS:
            raise ValueError(
                "If imagenet weights are being loaded, "
                "alpha must be one of `0.35`, `0.50`, `0.75`, "
                "`1.0`, `1.3` or `1.4` only;"
                f" Received `alpha={alpha}`"
            )
        if rows != cols or rows not in IMAGENET_SIZES:
            rows = 224
            warnings.warn(
                "`input_shape` is undefined or non-square, "
                "or `rows` is not in [96, 128, 160, 192, 224]. "
                "Weights for input shape (224, 224) will be "
                "loaded as the default.",
                stacklevel=2,
            )
    img_input = imagenet_utils.image_input(input_tensor, input_shape)
    x = Conv2D(
        _make_divisible(32 * alpha, 8),
        kernel_size=3,
        strides=(2, 2),
        padding="same",
        use_bias=False,
        name="Conv1",
    )(img_input)
    x = BatchNormalization(**_BN, name="bn_Conv1")(x)
    x = ReLU(6.0, name="Conv1_relu")(x)
    for block_id, (filters, stride, expansion) in enumerate(BLOCKS):
        x = _inverted_res_block(x, expansion, stride, alpha, filters, block_id)
    # No alpha on the last conv, as in the paper, unless it widens the network.
    last_block_filters = _make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280
    x = Conv2D(last_block_filters, kernel_size=1, use_bias=False, name="Conv_1")(x)
    x = BatchNormalization(**_BN, name="Conv_1_bn")(x)
    x = ReLU(6.0, name="out_relu")(x)
    if include_top:
        x = GlobalAveragePooling2D()(x)
        imagenet_utils.validate_activation(classifier_activation, weights)
        x = Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = GlobalAveragePooling2D()(x)
    elif pooling == "max":
        x = GlobalMaxPooling2D()(x)
    if name is None:
        name = f"mobilenetv2_{alpha:0.2f}_{rows}"
    model = Model(imagenet_utils.model_inputs(input_tensor, img_input), x, name=name)
    top = "" if include_top else "_no_top"
    file_name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}{top}.h5"
    imagenet_file = (file_name, BASE_WEIGHT_PATH + file_name, None)  # Keras checks no hash
    imagenet_utils.load_weights(model, weights, imagenet_file)
    return model


def _check_arguments(weights, classes: int, include_top: bool) -> None:
    """Keras's MobileNetV2 words these errors its own way."""
    try:
        imagenet_utils.check_weights(weights, 1000, include_top)
    except ValueError:
        raise ValueError(
            "The `weights` argument should be either "
            "`None` (random initialization), `imagenet` "
            "(pre-training on ImageNet), "
            "or the path to the weights file to be loaded.  "
            f"Received `weights={weights}`"
        ) from None
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(
            'If using `weights="imagenet"` with `include_top` '
            f"as true, `classes` should be 1000. Received `classes={classes}`"
        )


def _default_size(input_shape, input_tensor) -> int:
    """224, or the square ImageNet size the input has (Keras's rule, channels_last)."""
    if input_tensor is not None and not isinstance(input_tensor, SymbolicTensor):
        raise ValueError(
            f"input_tensor is not a Keras tensor; Received `input_tensor={input_tensor}`"
        )
    if (
        input_shape is not None
        and input_tensor is not None
        and input_tensor.shape[2] != input_shape[1]
    ):
        raise ValueError(
            "input_tensor.shape[2] must equal input_shape[1]; "
            f"Received `input_tensor.shape={input_tensor.shape}`, "
            f"`input_shape={input_shape}`"
        )
    if input_shape is None and input_tensor is not None:
        rows, cols = input_tensor.shape[1], input_tensor.shape[2]
    elif input_shape is None:
        return 224
    else:
        rows, cols = input_shape[0], input_shape[1]
    return rows if rows == cols and rows in IMAGENET_SIZES else 224


def _inverted_res_block(
    inputs, expansion: int, stride: int, alpha: float, filters: int, block_id: int
):
    """Expand (1x1), depthwise 3x3, project (1x1), plus the input when the shapes allow."""
    in_channels = inputs.shape[-1]
    pointwise_filters = _make_divisible(int(filters * alpha), 8)
    x = inputs
    prefix = f"block_{block_id}_"
    if block_id:
        x = Conv2D(
            expansion * in_channels,
            kernel_size=1,
            padding="same",
            use_bias=False,
            activation=None,
            name=f"{prefix}expand",
        )(x)
        x = BatchNormalization(**_BN, name=f"{prefix}expand_BN")(x)
        x = ReLU(6.0, name=f"{prefix}expand_relu")(x)
    else:
        prefix = "expanded_conv_"
    if stride == 2:
        x = ZeroPadding2D(padding=imagenet_utils.correct_pad(x, 3), name=f"{prefix}pad")(x)
    x = DepthwiseConv2D(
        kernel_size=3,
        strides=stride,
        activation=None,
        use_bias=False,
        padding="same" if stride == 1 else "valid",
        name=f"{prefix}depthwise",
    )(x)
    x = BatchNormalization(**_BN, name=f"{prefix}depthwise_BN")(x)
    x = ReLU(6.0, name=f"{prefix}depthwise_relu")(x)
    x = Conv2D(
        pointwise_filters,
        kernel_size=1,
        padding="same",
        use_bias=False,
        activation=None,
        name=f"{prefix}project",
    )(x)
    x = BatchNormalization(**_BN, name=f"{prefix}project_BN")(x)
    if in_channels == pointwise_filters and stride == 1:
        return Add(name=f"{prefix}add")([inputs, x])
    return x


def _make_divisible(v, divisor: int, min_value=None) -> int:
    """``v`` rounded to a multiple of ``divisor``, never more than 10% below it."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def preprocess_input(x, data_format: str | None = None):
    """Images in [0, 255] to MobileNetV2's input: scaled to [-1, 1]."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="tf")


def decode_predictions(preds, top: int = 5) -> list[list[tuple]]:
    """The ``top`` ImageNet classes of each prediction: ``(class_name, description, score)``."""
    return imagenet_utils.decode_predictions(preds, top=top)
