"""What the ImageNet models share, as in ``keras.applications.imagenet_utils``: input
preprocessing (``caffe``, ``tf`` and ``torch`` modes), decoding predictions with Keras's class
index, the input-shape rules and errors, and fetching and loading Keras's weight files."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np

from fastnn import activations, backend, ops
from fastnn.layers import Input
from fastnn.nodes import SymbolicTensor
from fastnn.utils.file_utils import get_file

CLASS_INDEX = None
CLASS_INDEX_PATH = (
    "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json"
)
CLASS_INDEX_HASH = "c2c37ea517e94d9795004a39431a14cb"

_CAFFE_MEAN = (103.939, 116.779, 123.68)
_TORCH_MEAN, _TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def preprocess_input(x, data_format: str | None = None, mode: str = "caffe"):
    """A batch of images (3D or 4D, 3 channels, values in [0, 255]) as a model expects them.

    ``caffe``: RGB to BGR, then ImageNet's mean pixel subtracted; ``tf``: scaled to [-1, 1];
    ``torch``: scaled to [0, 1], then normalized per channel. A float numpy array is written
    over, as in Keras; other arrays are converted to ``floatx``.
    """
    if mode not in {"caffe", "tf", "torch"}:
        raise ValueError(
            f"Expected mode to be one of `caffe`, `tf` or `torch`. Received: mode={mode}"
        )
    if data_format is None:
        data_format = backend.image_data_format()
    elif data_format not in {"channels_first", "channels_last"}:
        raise ValueError(
            "Expected data_format to be one of `channels_first` or "
            f"`channels_last`. Received: data_format={data_format}"
        )
    if isinstance(x, SymbolicTensor):
        raise TypeError(
            "preprocess_input() takes arrays, not the symbolic tensor of a model being built: "
            "fastnn models run no ops outside layers, so preprocess the images before "
            "fit()/predict()"
        )
    if isinstance(x, np.ndarray):
        return _preprocess_numpy(x, data_format, mode)
    return _preprocess_tensor(x, data_format, mode)


def _preprocess_numpy(x: np.ndarray, data_format: str, mode: str) -> np.ndarray:
    if not issubclass(x.dtype.type, np.floating):
        x = x.astype(backend.floatx(), copy=False)
    if mode == "tf":
        x /= 127.5
        x -= 1.0
        return x
    channels = _channel_axis(x.ndim, data_format)
    if mode == "torch":
        x /= 255.0
        mean, std = _TORCH_MEAN, _TORCH_STD
    else:
        x = np.flip(x, axis=channels)  # RGB -> BGR, a view as Keras's x[..., ::-1]
        mean, std = _CAFFE_MEAN, None
    for c in range(3):
        channel = (slice(None),) * (channels % x.ndim) + (c,)
        x[channel] -= mean[c]
        if std is not None:
            x[channel] /= std[c]
    return x


def _preprocess_tensor(x, data_format: str, mode: str):
    """The same with fastnn.ops, for tensors on a tape (and anything ops convert)."""
    x = ops.convert_to_tensor(x)
    if not np.issubdtype(np.dtype(x.dtype), np.floating):
        x = ops.cast(x, backend.floatx())
    if mode == "tf":
        return x / 127.5 - 1.0
    channels = _channel_axis(len(x.shape), data_format)
    if mode == "torch":
        x = x / 255.0
        mean, std = _TORCH_MEAN, _TORCH_STD
    else:
        index = (slice(None),) * (channels % len(x.shape))
        x = ops.stack([x[index + (c,)] for c in (2, 1, 0)], axis=channels)
        mean, std = _CAFFE_MEAN, None
    shape = [1] * len(x.shape)
    shape[channels] = 3
    x = x - ops.reshape(ops.convert_to_tensor(np.array(mean, dtype=x.dtype)), shape)
    if std is not None:
        x = x / ops.reshape(ops.convert_to_tensor(np.array(std, dtype=x.dtype)), shape)
    return x


def _channel_axis(ndim: int, data_format: str) -> int:
    if data_format == "channels_last":
        return -1
    return 0 if ndim == 3 else 1


def decode_predictions(preds, top: int = 5) -> list[list[tuple]]:
    """The ``top`` classes of each row of ``preds`` (samples, 1000) as
    ``(class_name, class_description, score)``, best first, from Keras's ImageNet class index
    (fetched once into Keras's cache, ``models/imagenet_class_index.json``)."""
    global CLASS_INDEX
    preds = ops.convert_to_numpy(preds)
    if len(preds.shape) != 2 or preds.shape[1] != 1000:
        raise ValueError(
            "`decode_predictions` expects a batch of predictions "
            "(i.e. a 2D array of shape (samples, 1000)). "
            f"Received array with shape: {preds.shape}"
        )
    if CLASS_INDEX is None:
        path = get_file(
            "imagenet_class_index.json",
            CLASS_INDEX_PATH,
            cache_subdir="models",
            file_hash=CLASS_INDEX_HASH,
        )
        with open(path) as f:
            CLASS_INDEX = json.load(f)
    results = []
    for pred in preds:
        top_indices = pred.argsort()[-top:][::-1]
        result = [tuple(CLASS_INDEX[str(i)]) + (pred[i],) for i in top_indices]
        result.sort(key=lambda item: item[2], reverse=True)
        results.append(result)
    return results


# ---- building the models ------------------------------------------------------------------------
def check_weights(weights, classes: int, include_top: bool) -> None:
    """Keras's errors for a ``weights`` that is not None, 'imagenet' nor an existing file, and
    for ImageNet's classifier with other than 1000 classes."""
    is_path = isinstance(weights, (str, os.PathLike)) and os.path.exists(weights)
    if not (weights is None or weights == "imagenet" or is_path):
        raise ValueError(
            "The `weights` argument should be either "
            "`None` (random initialization), 'imagenet' "
            "(pre-training on ImageNet), "
            "or the path to the weights file to be loaded.  Received: "
            f"weights={weights}"
        )
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(
            "If using `weights='imagenet'` with `include_top=True`, "
            "`classes` should be 1000.  "
            f"Received classes={classes}"
        )


def check_channels_last(model_name: str) -> None:
    """fastnn's convolutions are channels_last only."""
    if backend.image_data_format() != "channels_last":
        raise ValueError(
            f"{model_name}: fastnn builds the applications channels_last only (its Conv2D is "
            f"channels_last); got image_data_format()='{backend.image_data_format()}'"
        )


def obtain_input_shape(
    input_shape,
    default_size: int,
    min_size: int,
    data_format: str,
    require_flatten: bool,
    weights=None,
) -> tuple:
    """Keras's rules for a model's input shape: the default when none is given, ImageNet's
    when its classifier is loaded, and the errors for a shape the model cannot take."""
    if weights != "imagenet" and input_shape and len(input_shape) == 3:
        if data_format == "channels_first":
            if input_shape[0] not in {1, 3}:
                _warn_channels(input_shape[0])
            default_shape = (input_shape[0], default_size, default_size)
        else:
            if input_shape[-1] not in {1, 3}:
                _warn_channels(input_shape[-1])
            default_shape = (default_size, default_size, input_shape[-1])
    elif data_format == "channels_first":
        default_shape = (3, default_size, default_size)
    else:
        default_shape = (default_size, default_size, 3)
    if weights == "imagenet" and require_flatten:
        if input_shape is not None and tuple(input_shape) != default_shape:
            raise ValueError(
                "When setting `include_top=True` "
                "and loading `imagenet` weights, "
                f"`input_shape` should be {default_shape}.  "
                f"Received: input_shape={input_shape}"
            )
        return default_shape
    if input_shape:
        _check_input_shape(input_shape, min_size, data_format, weights)
    elif require_flatten:
        input_shape = default_shape
    else:
        input_shape = (3, None, None) if data_format == "channels_first" else (None, None, 3)
    if require_flatten and None in input_shape:
        raise ValueError(
            "If `include_top` is True, "
            "you should specify a static `input_shape`. "
            f"Received: input_shape={input_shape}"
        )
    return tuple(input_shape)


def _warn_channels(channels) -> None:
    warnings.warn(
        "This model usually expects 1 or 3 input channels. "
        "However, it was passed an input_shape "
        f"with {channels} input channels.",
        stacklevel=3,
    )


def _check_input_shape(input_shape, min_size: int, data_format: str, weights) -> None:
    if len(input_shape) != 3:
        raise ValueError("`input_shape` must be a tuple of three integers.")
    channels, rows, cols = (0, 1, 2) if data_format == "channels_first" else (2, 0, 1)
    if input_shape[channels] != 3 and weights == "imagenet":
        raise ValueError(f"The input must have 3 channels; Received `input_shape={input_shape}`")
    for size in (input_shape[rows], input_shape[cols]):
        if size is not None and size < min_size:
            raise ValueError(
                f"Input size must be at least {min_size}x{min_size}; Received: "
                f"input_shape={input_shape}"
            )


def validate_activation(classifier_activation, weights) -> None:
    """With pretrained weights, the classifier's activation is softmax or none (Keras's rule)."""
    if weights is None:
        return
    if activations.get_name(classifier_activation) not in {"softmax", "linear"}:
        raise ValueError(
            "Only `None` and `softmax` activations are allowed "
            "for the `classifier_activation` argument when using "
            "pretrained weights, with `include_top=True`; Received: "
            f"classifier_activation={classifier_activation}"
        )


def image_input(input_tensor, input_shape: tuple):
    """The model's input: ``input_tensor`` if given (a symbolic tensor), else a new Input."""
    if input_tensor is None:
        return Input(shape=input_shape)
    if not isinstance(input_tensor, SymbolicTensor):
        raise ValueError(
            "`input_tensor` must be a symbolic tensor (the output of `Input()` or of a layer); "
            f"Received: input_tensor of type {type(input_tensor).__name__}"
        )
    return input_tensor


def source_inputs(tensor: SymbolicTensor) -> list[SymbolicTensor]:
    """The Input tensors ``tensor`` is computed from (Keras's ``get_source_inputs``)."""
    found, seen, stack = [], set(), [tensor]
    while stack:
        current = stack.pop()
        node = current.node
        if node is None or node.is_input:
            if id(current) not in seen:
                seen.add(id(current))
                found.append(current)
            continue
        stack.extend(reversed(node.inputs))
    return found


def model_inputs(input_tensor, img_input):
    """What the model is built from: ``input_tensor``'s sources, or the new Input."""
    if input_tensor is None:
        return img_input
    sources = source_inputs(input_tensor)
    return sources[0] if len(sources) == 1 else sources


def correct_pad(inputs: SymbolicTensor, kernel_size) -> tuple:
    """Zero padding ``((top, bottom), (left, right))`` for a strided 'valid' conv to match TF's
    'same' (channels_last)."""
    input_size = inputs.shape[1:3]
    if isinstance(kernel_size, int):
        kernel_size = (kernel_size, kernel_size)
    adjust = (1, 1) if input_size[0] is None else (1 - input_size[0] % 2, 1 - input_size[1] % 2)
    correct = (kernel_size[0] // 2, kernel_size[1] // 2)
    return ((correct[0] - adjust[0], correct[0]), (correct[1] - adjust[1], correct[1]))


def load_weights(model, weights, imagenet_file: tuple[str, str, str | None] | None) -> None:
    """``weights='imagenet'``: Keras's file ``imagenet_file`` (name, origin, hash), fetched into
    Keras's ``models`` cache and hash-checked (None: no such file); a path: that file."""
    if weights == "imagenet":
        if imagenet_file is not None:
            file_name, origin, file_hash = imagenet_file
            model.load_weights(
                get_file(file_name, origin, cache_subdir="models", file_hash=file_hash)
            )
    elif weights is not None:
        model.load_weights(weights)
