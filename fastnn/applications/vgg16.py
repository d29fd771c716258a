"""VGG16 (Simonyan and Zisserman, 2015), as ``keras.applications.vgg16``."""

from __future__ import annotations

from fastnn.applications import imagenet_utils
from fastnn.applications.vgg import vgg
from fastnn.models import Model

WEIGHTS_PATH = (
    "https://storage.googleapis.com/tensorflow/keras-applications/"
    "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5"
)
WEIGHTS_PATH_NO_TOP = (
    "https://storage.googleapis.com/tensorflow/"
    "keras-applications/vgg16/"
    "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
)
WEIGHTS_HASH = "64373286793e3c8b2b4e3219cbf3544b"
WEIGHTS_HASH_NO_TOP = "6d6bbae143d832006294945121d1f1fc"


def VGG16(  # noqa: N802
    include_top: bool = True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes: int = 1000,
    classifier_activation="softmax",
    name: str = "vgg16",
) -> Model:
    """VGG16 with Keras's layer names and weights: ``weights`` is None (random), 'imagenet'
    (Keras's file, fetched into its cache) or a weights file's path. The default input is
    224x224x3; without the top, any size from 32x32 (``pooling``: None, 'avg' or 'max')."""
    files = (
        ("vgg16_weights_tf_dim_ordering_tf_kernels.h5", WEIGHTS_PATH, WEIGHTS_HASH),
        (
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            WEIGHTS_PATH_NO_TOP,
            WEIGHTS_HASH_NO_TOP,
        ),
    )
    return vgg(
        (2, 2, 3, 3, 3),
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        files,
    )


def preprocess_input(x, data_format: str | None = None):
    """Images in [0, 255], RGB, to VGG's input: BGR, ImageNet's mean pixel subtracted."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="caffe")


def decode_predictions(preds, top: int = 5) -> list[list[tuple]]:
    """The ``top`` ImageNet classes of each prediction: ``(class_name, description, score)``."""
    return imagenet_utils.decode_predictions(preds, top=top)
