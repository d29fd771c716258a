"""Keras's applications: ImageNet models with Keras's layer names, order and weight files.

``from fastnn.applications import VGG16`` as ``from keras.applications import VGG16``;
``weights="imagenet"`` fetches Keras's file into Keras's cache (``~/.keras/models``) and loads
it. Each model's module has its ``preprocess_input`` and ``decode_predictions``
(``fastnn.applications.vgg16.preprocess_input``). Imported on first use of
``fastnn.applications``.
"""

from fastnn.applications import imagenet_utils, mobilenet_v2, resnet, resnet50, vgg16, vgg19
from fastnn.applications.mobilenet_v2 import MobileNetV2
from fastnn.applications.resnet import ResNet50, ResNet101, ResNet152
from fastnn.applications.vgg16 import VGG16
from fastnn.applications.vgg19 import VGG19

__all__ = [
    "MobileNetV2",
    "ResNet50",
    "ResNet101",
    "ResNet152",
    "VGG16",
    "VGG19",
    "imagenet_utils",
    "mobilenet_v2",
    "resnet",
    "resnet50",
    "vgg16",
    "vgg19",
]
