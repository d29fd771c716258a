"""VGG19 (Simonyan and Zisserman, 2015), as ``keras.applications.vgg19``."""

from __future__ import annotations

from fastnn.applications import imagenet_utils
from fastnn.applications.vgg import vgg
from fastnn.models import Model

WEIGHTS_PATH = (
    "https://storage.googleapis.com/tensorflow/keras-applications/"
    "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5"
)
WEIGHTS_PATH_NO_TOP = (
    "https://storage.googleapis.com/tensorflow/"
    "keras-applications/vgg19/"
    "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
)
WEIGHTS_HASH = "cbe5617147190e668d6c5d5026f83318"
WEIGHTS_HASH_NO_TOP = "253f8cb515780f3b799900260a226db6"


def VGG19(  # noqa: N802
    include_top: bool = True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes: int = 1000,
    classifier_activation="softmax",
    name: str = "vgg19",
) -> Model:
    """VGG19 with Keras's layer names and weights: ``weights`` is None (random), 'imagenet'
    (Keras's file, fetched into its cache) or a weights file's path. The default input is
    224x224x3; without the top, any size from 32x32 (``pooling``: None, 'avg' or 'max')."""
    files = (
        ("vgg19_weights_tf_dim_ordering_tf_kernels.h5", WEIGHTS_PATH, WEIGHTS_HASH),
        (
            "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
            WEIGHTS_PATH_NO_TOP,
            WEIGHTS_HASH_NO_TOP,
        ),
    )
    return vgg(
        (2, 2, 4, 4, 4),
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
