"""fastnn.applications against keras.applications (Keras 3 on torch): the same layers (names,
order, output shapes), weights (paths, shapes, order) and outputs with Keras's weights copied
over, at small inputs; Keras's input-shape rules and errors; preprocess_input and
decode_predictions as Keras's; weights='imagenet' fetching Keras's file names into Keras's
cache with the hash checked (from a file:// origin: never the network)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras.src.applications import imagenet_utils as keras_imagenet_utils  # noqa: E402
from legacy_files import write_model_weights  # noqa: E402

import fastnn  # noqa: E402
from fastnn import applications, layers  # noqa: E402
from fastnn.applications import imagenet_utils, mobilenet_v2, resnet, resnet50, vgg16, vgg19  # noqa: E402

RTOL, ATOL = 1e-4, 1e-4


def both(name: str, **kwargs):
    """fastnn's and Keras's ``name`` model, each built after its session was cleared."""
    fastnn.utils.clear_session()
    keras.utils.clear_session()
    return getattr(applications, name)(**kwargs), getattr(keras.applications, name)(**kwargs)


def keras_like_weights(model, seed: int) -> list[np.ndarray]:
    """``model``'s initial weights with BatchNormalization's four made non-trivial, so the
    comparison reads every one of them."""
    rng = np.random.default_rng(seed)
    arrays = []
    for w in model.weights:
        value = np.asarray(w.numpy() if hasattr(w, "numpy") else w.value, dtype="float32")
        leaf = w.path.rsplit("/", 1)[-1]
        if leaf in ("gamma", "moving_variance"):
            value = rng.uniform(0.5, 1.5, value.shape).astype("float32")
        elif leaf in ("beta", "moving_mean"):
            value = rng.normal(0.0, 0.1, value.shape).astype("float32")
        arrays.append(value)
    return arrays


ARCHITECTURES = {
    "vgg16-notop": ("VGG16", {"include_top": False, "input_shape": (32, 32, 3)}),
    "vgg19-top": ("VGG19", {"input_shape": (32, 40, 3), "classes": 10}),
    "resnet50-top": (
        "ResNet50",
        {"input_shape": (32, 32, 3), "classes": 10, "classifier_activation": None},
    ),
    "mobilenetv2-notop": ("MobileNetV2", {"include_top": False, "input_shape": (32, 32, 3)}),
    "mobilenetv2-top-alpha": (
        "MobileNetV2",
        {"input_shape": (35, 33, 3), "alpha": 0.35, "classes": 7},
    ),
    "mobilenetv2-wide-avg": (
        "MobileNetV2",
        {"include_top": False, "input_shape": (32, 32, 3), "alpha": 1.3, "pooling": "avg"},
    ),
}


@pytest.mark.parametrize("case", ARCHITECTURES)
def test_architecture_weights_and_outputs_match_keras(case):
    name, kwargs = ARCHITECTURES[case]
    model, twin = both(name, weights=None, **kwargs)
    assert model.name == twin.name
    assert [layer.name for layer in model.layers] == [layer.name for layer in twin.layers]
    assert [type(layer).__name__ for layer in model.layers] == [
        type(layer).__name__ for layer in twin.layers
    ]
    for ours, theirs in zip(model.layers[1:], twin.layers[1:], strict=True):
        assert tuple(ours.output.shape) == tuple(theirs.output.shape), ours.name
    assert [w.path for w in model.weights] == [w.path for w in twin.weights]
    assert [tuple(w.shape) for w in model.weights] == [tuple(w.shape) for w in twin.weights]
    assert [w.path for w in model.trainable_weights] == [w.path for w in twin.trainable_weights]
    weights = keras_like_weights(twin, seed=0)
    twin.set_weights(weights)
    model.set_weights(weights)
    x = np.random.default_rng(1).uniform(-1, 1, (2, *kwargs["input_shape"])).astype("float32")
    expected = keras.ops.convert_to_numpy(twin(x, training=False))
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_pooling_layers_as_keras(pooling):
    model, twin = both("VGG16", weights=None, include_top=False, pooling=pooling)
    assert [layer.name for layer in model.layers] == [layer.name for layer in twin.layers]
    assert model.output.shape == tuple(twin.output.shape) == (None, 512)
    fastnn.utils.clear_session()
    resnet = applications.ResNet50(weights=None, include_top=False, pooling=pooling)
    assert resnet.layers[-1].name == f"{pooling}_pool"  # Keras names them in the ResNets
    assert resnet.output.shape == (None, 2048)


def test_resnet101_and_152_stack_keras_blocks():
    """Their stacks of 3, 4, 23, 3 and 3, 8, 36, 3 blocks (ResNet50's, compared above, with
    other counts)."""
    for fn, blocks in (
        (applications.ResNet101, (3, 4, 23, 3)),
        (applications.ResNet152, (3, 8, 36, 3)),
    ):
        model = fn(weights=None, include_top=False, input_shape=(32, 32, 3))
        outs = [layer.name for layer in model.layers if layer.name.endswith("_out")]
        assert outs == [
            f"conv{stack}_block{block}_out"
            for stack, count in zip((2, 3, 4, 5), blocks)
            for block in range(1, count + 1)
        ]
        assert model.output.shape == (None, 1, 1, 2048)


def test_input_tensor_builds_from_its_source_inputs():
    fastnn.utils.clear_session()
    keras.utils.clear_session()
    inputs = layers.Input((32, 32, 3))
    scaled = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    model = applications.VGG16(weights=None, include_top=False, input_tensor=scaled)
    k_inputs = keras.layers.Input((32, 32, 3))
    k_scaled = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(k_inputs)
    twin = keras.applications.VGG16(weights=None, include_top=False, input_tensor=k_scaled)
    assert model.inputs == [inputs]
    assert [layer.name for layer in model.layers] == [layer.name for layer in twin.layers]
    with pytest.raises(ValueError, match="`input_tensor` must be a symbolic tensor"):
        applications.VGG16(weights=None, include_top=False, input_tensor=np.zeros((1, 32, 32, 3)))


# ---- Keras's argument rules and errors -----------------------------------------------------------
ERRORS = {
    "imagenet-classes": ("VGG16", {"classes": 10}),
    "missing-weights-file": ("VGG19", {"weights": "no/such/file.h5"}),
    "imagenet-top-shape": ("ResNet50", {"input_shape": (100, 100, 3)}),
    "too-small": ("VGG16", {"weights": None, "include_top": False, "input_shape": (16, 40, 3)}),
    "rank": ("ResNet50", {"weights": None, "include_top": False, "input_shape": (32, 32)}),
    "imagenet-channels": ("VGG16", {"include_top": False, "input_shape": (32, 32, 1)}),
    "top-needs-static": ("VGG16", {"weights": None, "input_shape": (None, None, 3)}),
    "mobilenet-weights": ("MobileNetV2", {"weights": "nope"}),
    "mobilenet-classes": ("MobileNetV2", {"classes": 5}),
    "mobilenet-alpha": ("MobileNetV2", {"alpha": 0.6, "include_top": False}),
    "mobilenet-input-tensor": (
        "MobileNetV2",
        {"weights": None, "input_shape": (32, 40, 3), "input_tensor": "input"},
    ),
}


@pytest.mark.parametrize("case", ERRORS)
def test_argument_errors_are_keras_errors(case):
    name, kwargs = ERRORS[case]
    raised = []
    for lib in (fastnn, keras):
        kwargs_here = dict(kwargs)
        if kwargs.get("input_tensor") == "input":
            kwargs_here["input_tensor"] = lib.layers.Input((32, 32, 3))
        with pytest.raises(ValueError) as info:
            getattr(lib.applications, name)(**kwargs_here)
        raised.append(str(info.value))
    assert raised[0] == raised[1]


def test_pretrained_classifier_activation_must_be_softmax_or_none():
    prefix = "Only `None` and `softmax` activations are allowed"
    with pytest.raises(ValueError, match=prefix + ".*classifier_activation=relu"):
        applications.MobileNetV2(input_shape=(96, 96, 3), classifier_activation="relu")
    with pytest.raises(ValueError, match=prefix):
        keras.applications.MobileNetV2(input_shape=(96, 96, 3), classifier_activation="relu")
    imagenet_utils.validate_activation("relu", None)  # random weights: any activation


def test_warnings_as_keras(monkeypatch):
    for lib in (fastnn, keras):
        with pytest.warns(UserWarning, match="usually expects 1 or 3 input channels"):
            lib.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 5))

    def no_download(fname, *args, **kwargs):
        raise RuntimeError(f"would fetch {fname}")

    monkeypatch.setattr(imagenet_utils, "get_file", no_download)
    with (
        pytest.warns(UserWarning, match=r"Weights for input shape \(224, 224\) will be loaded"),
        pytest.raises(RuntimeError, match="kernels_1.0_224_no_top.h5"),
    ):
        applications.MobileNetV2(input_shape=(64, 64, 3), include_top=False)


def test_shape_rules_match_keras():
    cases = [
        (None, 224, 32, "channels_last", True, "imagenet"),
        (None, 224, 32, "channels_last", False, None),
        ((64, 80, 3), 224, 32, "channels_last", False, "imagenet"),
        ((3, 64, 80), 224, 32, "channels_first", False, None),
        ((1, 64, 80), 224, 32, "channels_first", True, None),
        (None, 96, 32, "channels_first", True, None),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for case in cases:
            assert imagenet_utils.obtain_input_shape(*case) == tuple(
                keras_imagenet_utils.obtain_input_shape(*case)
            ), case


def test_channels_first_is_refused_clearly():
    fastnn.backend.set_image_data_format("channels_first")
    try:
        with pytest.raises(ValueError, match="channels_last only"):
            applications.ResNet50(weights=None, include_top=False)
    finally:
        fastnn.backend.set_image_data_format("channels_last")


# ---- preprocess_input and decode_predictions ----------------------------------------------------
PREPROCESSORS = [
    (vgg16.preprocess_input, keras.applications.vgg16.preprocess_input),
    (vgg19.preprocess_input, keras.applications.vgg19.preprocess_input),
    (resnet50.preprocess_input, keras.applications.resnet50.preprocess_input),
    (resnet.preprocess_input, keras.applications.resnet.preprocess_input),
    (mobilenet_v2.preprocess_input, keras.applications.mobilenet_v2.preprocess_input),
]


@pytest.mark.parametrize("pair", range(len(PREPROCESSORS)))
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "uint8"])
def test_model_preprocess_input_matches_keras_and_writes_over_as_keras(pair, data_format, dtype):
    ours, theirs = PREPROCESSORS[pair]
    rng = np.random.default_rng(pair)
    for shape in ((2, 5, 4, 3), (5, 4, 3)):
        if data_format == "channels_first":
            shape = shape[:-3] + (3,) + shape[-3:-1]
        images = rng.uniform(0, 255, shape).astype(dtype)
        mine, keras_copy = images.copy(), images.copy()
        got = ours(mine, data_format=data_format)
        expected = theirs(keras_copy, data_format=data_format)
        assert got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=1e-6)
        np.testing.assert_array_equal(mine, keras_copy)  # the input written over the same way


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_every_mode_and_errors_match_keras(mode):
    images = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    expected = keras_imagenet_utils.preprocess_input(images.copy(), mode=mode)
    np.testing.assert_allclose(imagenet_utils.preprocess_input(images.copy(), mode=mode), expected)
    for kwargs in ({"mode": "other"}, {"data_format": "channels_middle"}):
        messages = []
        for fn in (imagenet_utils.preprocess_input, keras_imagenet_utils.preprocess_input):
            with pytest.raises(ValueError) as info:
                fn(images.copy(), **kwargs)
            messages.append(str(info.value))
        assert messages[0] == messages[1]


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_preprocess_input_on_a_tape_has_the_array_values_and_gradients(mode):
    images = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float64")
    expected = imagenet_utils.preprocess_input(images.copy(), mode=mode)
    variable = fastnn.Variable(images.copy())
    weights = np.random.default_rng(1).normal(size=images.shape)
    with fastnn.GradientTape() as tape:
        out = imagenet_utils.preprocess_input(variable, mode=mode)
        loss = fastnn.ops.sum(out * weights)
    np.testing.assert_allclose(fastnn.ops.convert_to_numpy(out), expected, rtol=1e-12)
    np.testing.assert_array_equal(variable.value, images)  # a tensor is not written over
    scale = {"caffe": 1.0, "tf": 1 / 127.5, "torch": 1 / 255.0 / np.array([0.229, 0.224, 0.225])}
    expected_grad = weights[..., ::-1] if mode == "caffe" else weights * scale[mode]
    np.testing.assert_allclose(tape.gradient(loss, variable), expected_grad, rtol=1e-12)


def test_preprocess_input_refuses_a_symbolic_tensor():
    with pytest.raises(TypeError, match="preprocess the images before"):
        vgg16.preprocess_input(layers.Input((8, 8, 3)))


def file_url(path) -> str:
    return f"file://{os.fspath(path)}"


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_decode_predictions_fetches_keras_class_index_and_matches_keras(tmp_path, monkeypatch):
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    served = tmp_path / "served.json"
    served.write_text(json.dumps(index))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", None)
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX_PATH", file_url(served))
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX_HASH", md5(served))
    monkeypatch.setattr(keras_imagenet_utils, "CLASS_INDEX", index)
    preds = np.random.default_rng(0).random((3, 1000)).astype("float32")
    got = vgg16.decode_predictions(preds, top=4)
    assert got == keras.applications.vgg16.decode_predictions(preds, top=4)
    assert got[0][0][:2] == tuple(index[str(int(preds[0].argmax()))])
    assert (tmp_path / "home" / "models" / "imagenet_class_index.json").is_file()
    messages = []
    for fn in (mobilenet_v2.decode_predictions, keras.applications.mobilenet_v2.decode_predictions):
        with pytest.raises(ValueError) as info:
            fn(preds[:, :10])
        messages.append(str(info.value))
    assert messages[0] == messages[1]


# ---- weights="imagenet" and weight files --------------------------------------------------------
@pytest.fixture(scope="module")
def vgg16_notop_file(tmp_path_factory):
    """VGG16's no-top weights (random, full size: the convs' shapes do not depend on the input)
    as Keras 2's file, with the fastnn model they came from."""
    fastnn.utils.set_random_seed(3)
    source = applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    path = tmp_path_factory.mktemp("served") / "vgg16_notop.h5"
    return write_model_weights(source, path), source


def test_imagenet_weights_are_fetched_into_keras_cache_checked_and_loaded(
    vgg16_notop_file, tmp_path, monkeypatch
):
    served, source = vgg16_notop_file
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(vgg16, "WEIGHTS_PATH_NO_TOP", file_url(served))
    monkeypatch.setattr(vgg16, "WEIGHTS_HASH_NO_TOP", md5(served))
    # The seed program's lines, imports changed:
    image_input = layers.Input(shape=(224, 224, 3))
    vgg = applications.VGG16(weights="imagenet", include_top=False)
    image_features = vgg(image_input)
    assert image_features.shape == (None, 7, 7, 512)  # Keras's: the caller's input shape
    head = layers.Dense(2)(layers.Flatten()(image_features))
    assert head.shape == (None, 2)
    cached = tmp_path / "home" / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert cached.is_file()
    for a, b in zip(vgg.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # A file already in the cache (Keras's or ours) is reused: the origin is not read again.
    monkeypatch.setattr(vgg16, "WEIGHTS_PATH_NO_TOP", file_url(tmp_path / "gone.h5"))
    again = applications.VGG16(include_top=False, input_shape=(32, 32, 3))
    np.testing.assert_array_equal(again.get_weights()[-1], source.get_weights()[-1])
    # A download whose hash does not match is refused and kept nowhere.
    cached.unlink()
    monkeypatch.setattr(vgg16, "WEIGHTS_PATH_NO_TOP", file_url(served))
    monkeypatch.setattr(vgg16, "WEIGHTS_HASH_NO_TOP", "0" * 32)
    with pytest.raises(ValueError, match="hash"):
        applications.VGG16(include_top=False)
    assert not cached.exists()


def test_a_weights_path_loads_and_keras_reads_the_same_file(vgg16_notop_file):
    served, source = vgg16_notop_file
    model = applications.VGG16(weights=str(served), include_top=False, input_shape=(32, 32, 3))
    twin = keras.applications.VGG16(weights=str(served), include_top=False, input_shape=(32, 32, 3))
    for a, b, c in zip(model.get_weights(), twin.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, c)
    with pytest.raises(ValueError, match="it holds weights for 13 layers, the model has 16"):
        applications.VGG19(weights=str(served), include_top=False, input_shape=(32, 32, 3))


def test_resnet_and_mobilenet_fetch_keras_file_names(tmp_path, monkeypatch):
    """The file each asks get_file for: Keras's name, origin, cache folder and hash."""
    asked = []

    def fake_get_file(fname, origin, cache_subdir="datasets", file_hash=None, **kwargs):
        asked.append((fname, origin, cache_subdir, file_hash))
        raise RuntimeError("stop before reading")

    monkeypatch.setattr(imagenet_utils, "get_file", fake_get_file)
    calls = [
        (applications.ResNet50, {"include_top": False, "input_shape": (32, 32, 3)}),
        (applications.ResNet101, {"include_top": False, "input_shape": (32, 32, 3)}),
        (applications.MobileNetV2, {"include_top": False, "input_shape": (96, 96, 3)}),
        (applications.MobileNetV2, {"alpha": 0.35, "input_shape": (128, 128, 3)}),
    ]
    for fn, kwargs in calls:
        with pytest.raises(RuntimeError, match="stop before reading"):
            fn(**kwargs)
    base = "https://storage.googleapis.com/tensorflow/keras-applications/"
    assert asked == [
        (
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            base + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "models",
            "4d473c1dd8becc155b73f8504c6f6626",
        ),
        (
            "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
            base + "resnet/resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "models",
            "88cf7a10940856eca736dc7b7e228a21",
        ),
        (
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5",
            base + "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5",
            "models",
            None,
        ),
        (
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_128.h5",
            base + "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_128.h5",
            "models",
            None,
        ),
    ]


def test_import_fastnn_does_not_import_applications():
    code = (
        "import sys, fastnn; assert 'fastnn.applications' not in sys.modules; "
        "from fastnn.applications import VGG16; assert fastnn.applications.VGG16 is VGG16; "
        "assert fastnn.applications.vgg16.preprocess_input"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
