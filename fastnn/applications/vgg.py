"""The VGG networks (``vgg16`` and ``vgg19`` fill in the depth and Keras's weight files)."""

from __future__ import annotations

from fastnn import backend
from fastnn.applications import imagenet_utils
from fastnn.layers import (
    Conv2D,
    Dense,
    Flatten,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    MaxPooling2D,
)
from fastnn.models import Model

#: Each block's filters; VGG16 has (2, 2, 3, 3, 3) convs per block, VGG19 (2, 2, 4, 4, 4).
BLOCK_FILTERS = (64, 128, 256, 512, 512)


def vgg(
    convs_per_block: tuple[int, ...],
    include_top: bool,
    weights,
    input_tensor,
    input_shape,
    pooling,
    classes: int,
    classifier_activation,
    name: str,
    weight_files: tuple[tuple[str, str, str], tuple[str, str, str]],
) -> Model:
    """A VGG network as Keras builds it: its layer names, order and weights;
    ``weight_files`` is ``(file name, origin, hash)`` with the top, then without."""
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
    x = img_input
    for block, (filters, convs) in enumerate(zip(BLOCK_FILTERS, convs_per_block), start=1):
        for conv in range(1, convs + 1):
            x = Conv2D(
                filters, (3, 3), activation="relu", padding="same", name=f"block{block}_conv{conv}"
            )(x)
        x = MaxPooling2D((2, 2), strides=(2, 2), name=f"block{block}_pool")(x)
    if include_top:
        x = Flatten(name="flatten")(x)
        x = Dense(4096, activation="relu", name="fc1")(x)
        x = Dense(4096, activation="relu", name="fc2")(x)
        imagenet_utils.validate_activation(classifier_activation, weights)
        x = Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = GlobalAveragePooling2D()(x)
    elif pooling == "max":
        x = GlobalMaxPooling2D()(x)
    model = Model(imagenet_utils.model_inputs(input_tensor, img_input), x, name=name)
    imagenet_utils.load_weights(model, weights, weight_files[0 if include_top else 1])
    return model
