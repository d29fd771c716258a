"""The model zoo: common architectures beyond the seed's five, for bench.models and bench.profile.

Each model is written once against the Keras API (fastnn and Keras 3 build it from the same
function) and once as a PyTorch module (bench/zoo_torch.py) with the same trainable parameters:
bench/test_zoo.py checks the counts, and bench.models asserts them in every run.

Models that need a layer fastnn lacks are in the zoo too (``NEEDS``): bench.models and
bench.profile skip them with a "needs <Layer>" line while fastnn lacks it, and run them, unchanged,
once it has it. Their Keras and PyTorch definitions are checked against each other meanwhile.
"""

from __future__ import annotations

VOCAB = 5000

# name -> (input shapes, output kinds), as bench.models.SPECS: ("ids", steps) is a sequence of
# token ids below VOCAB; kinds: ("sparse", classes), ("binary",) or ("binary", shape) per sample
SPECS = {
    "lenet5": ([(28, 28, 1)], [("sparse", 10)]),
    "vgg_bn": ([(32, 32, 3)], [("sparse", 10)]),
    "resnet20": ([(32, 32, 3)], [("sparse", 10)]),
    "cifar_cnn": ([(32, 32, 3)], [("sparse", 10)]),
    "conv1d_text": ([("ids", 200)], [("binary",)]),
    "mlp_dropout": ([(784,)], [("sparse", 10)]),
    "deep_mlp": ([(784,)], [("sparse", 10)]),
    "bigru_text": ([("ids", 100)], [("binary",)]),
    "stacked_lstm": ([("ids", 100)], [("binary",)]),
    "mobilenet": ([(32, 32, 3)], [("sparse", 10)]),
    "unet": ([(64, 64, 3)], [("binary", (64, 64, 1))]),
    "transformer_encoder": ([("ids", 64)], [("binary",)]),
}

# the Keras layers a model uses beyond those fastnn has had from the start
NEEDS = {
    "mobilenet": ("DepthwiseConv2D",),
    "unet": ("UpSampling2D",),
    "transformer_encoder": ("MultiHeadAttention", "LayerNormalization"),
}

LOSSES = {"sparse": "sparse_categorical_crossentropy", "binary": "binary_crossentropy"}


def missing_layers(lib, name: str) -> list[str]:
    """The layers model ``name`` needs that ``lib`` (fastnn or keras) does not have."""
    return [layer for layer in NEEDS.get(name, ()) if not hasattr(lib.layers, layer)]


def build(lib, name: str):
    """Zoo model ``name`` in a Keras-API library, compiled with Adam and its outputs' losses."""
    missing = missing_layers(lib, name)
    if missing:
        raise NotImplementedError(f"{name} needs {', '.join(missing)}")
    model = BUILDERS[name](lib)
    losses = [LOSSES[kind[0]] for kind in SPECS[name][1]]
    model.compile(optimizer="adam", loss=losses if len(losses) > 1 else losses[0])
    return model


# ---- building blocks ---------------------------------------------------------------------------
def conv_bn_relu(layers, x, filters: int, strides: int = 1):
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    return layers.Activation("relu")(layers.BatchNormalization()(x))


def residual_block(layers, x, filters: int, strides: int):
    """Two 3x3 conv-BN (ReLU between); a 1x1 strided conv-BN shortcut where the shape changes."""
    y = conv_bn_relu(layers, x, filters, strides)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    if strides != 1:
        x = layers.Conv2D(filters, 1, strides=strides, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
    return layers.Activation("relu")(layers.Add()([y, x]))


def double_conv(layers, x, filters: int):
    x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    return layers.Conv2D(filters, 3, padding="same", activation="relu")(x)


# ---- the models ----------------------------------------------------------------------------------
def lenet5(lib):
    """LeNet-5: 5x5 convs with tanh, average pooling, a dense head (28x28 digits)."""
    layers = lib.layers
    inputs = lib.Input(shape=(28, 28, 1))
    x = layers.Conv2D(6, 5, padding="same", activation="tanh")(inputs)
    x = layers.AveragePooling2D(2)(x)
    x = layers.AveragePooling2D(2)(layers.Conv2D(16, 5, activation="tanh")(x))
    x = layers.Dense(120, activation="tanh")(layers.Flatten()(x))
    x = layers.Dense(84, activation="tanh")(x)
    return lib.Model(inputs, layers.Dense(10, activation="softmax")(x))


def vgg_bn(lib):
    """VGG-style: three blocks of two 3x3 conv-BN-ReLU and a max pool, a dense head (CIFAR)."""
    layers = lib.layers
    inputs = x = lib.Input(shape=(32, 32, 3))
    for filters in (32, 64, 128):
        x = conv_bn_relu(layers, conv_bn_relu(layers, x, filters), filters)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Dense(256, activation="relu")(layers.Flatten()(x))
    x = layers.Dropout(0.5)(x)
    return lib.Model(inputs, layers.Dense(10, activation="softmax")(x))


def resnet20(lib):
    """ResNet-20 for CIFAR: a conv stem, three stages of three residual blocks (16, 32, 64
    filters, the last two stages starting with stride 2), global average pool."""
    layers = lib.layers
    inputs = lib.Input(shape=(32, 32, 3))
    x = conv_bn_relu(layers, inputs, 16)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            x = residual_block(layers, x, filters, 2 if stage and not block else 1)
    x = layers.GlobalAveragePooling2D()(x)
    return lib.Model(inputs, layers.Dense(10, activation="softmax")(x))


def cifar_cnn(lib):
    """Keras's CIFAR-10 example CNN: conv-conv-pool-dropout twice, Dense(512), no BN."""
    layers = lib.layers
    inputs = x = lib.Input(shape=(32, 32, 3))
    for filters in (32, 64):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.Dropout(0.25)(layers.MaxPooling2D(2)(x))
    x = layers.Dense(512, activation="relu")(layers.Flatten()(x))
    x = layers.Dropout(0.5)(x)
    return lib.Model(inputs, layers.Dense(10, activation="softmax")(x))


def conv1d_text(lib):
    """A 1-D conv text classifier: Embedding, Conv1D(128, 5), global max pool, dense head."""
    layers = lib.layers
    inputs = lib.Input(shape=(200,))
    x = layers.Embedding(VOCAB, 128)(inputs)
    x = layers.GlobalMaxPooling1D()(layers.Conv1D(128, 5, activation="relu")(x))
    x = layers.Dense(64, activation="relu")(x)
    return lib.Model(inputs, layers.Dense(1, activation="sigmoid")(x))


def mlp_dropout(lib):
    """MLP 784-512-512-10 with Dropout(0.2) after each hidden layer (Keras's MNIST example)."""
    layers = lib.layers
    inputs = x = lib.Input(shape=(784,))
    for _ in range(2):
        x = layers.Dropout(0.2)(layers.Dense(512, activation="relu")(x))
    return lib.Model(inputs, layers.Dense(10, activation="softmax")(x))


def deep_mlp(lib):
    """A deep MLP: six Dense(512)-BN-ReLU blocks (no Dense bias before BN), 784 in, 10 out."""
    layers = lib.layers
    inputs = x = lib.Input(shape=(784,))
    for _ in range(6):
        x = layers.BatchNormalization()(layers.Dense(512, use_bias=False)(x))
        x = layers.Activation("relu")(x)
    return lib.Model(inputs, layers.Dense(10, activation="softmax")(x))


def bigru_text(lib):
    """A bidirectional GRU(64) on an Embedding(5000, 64) of 100 tokens."""
    layers = lib.layers
    inputs = lib.Input(shape=(100,))
    x = layers.Bidirectional(layers.GRU(64))(layers.Embedding(VOCAB, 64)(inputs))
    return lib.Model(inputs, layers.Dense(1, activation="sigmoid")(x))


def stacked_lstm(lib):
    """Two stacked LSTM(64) on an Embedding(5000, 64) of 100 tokens."""
    layers = lib.layers
    inputs = lib.Input(shape=(100,))
    x = layers.LSTM(64, return_sequences=True)(layers.Embedding(VOCAB, 64)(inputs))
    x = layers.LSTM(64)(x)
    return lib.Model(inputs, layers.Dense(1, activation="sigmoid")(x))


def mobilenet(lib):
    """MobileNet-style: a strided conv stem, five depthwise-separable blocks (3x3 depthwise-BN-
    ReLU, 1x1 conv-BN-ReLU), global average pool (CIFAR)."""
    layers = lib.layers
    inputs = lib.Input(shape=(32, 32, 3))
    x = conv_bn_relu(layers, inputs, 32, strides=2)
    for filters, strides in ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1)):
        x = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False)(x)
        x = layers.Activation("relu")(layers.BatchNormalization()(x))
        x = layers.BatchNormalization()(layers.Conv2D(filters, 1, use_bias=False)(x))
        x = layers.Activation("relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return lib.Model(inputs, layers.Dense(10, activation="softmax")(x))


def unet(lib):
    """U-Net-style segmentation: two down steps (double 3x3 conv, max pool), a bottleneck, two
    up steps (nearest upsampling, concatenation with the skip, double conv), a 1x1 sigmoid."""
    layers = lib.layers
    inputs = lib.Input(shape=(64, 64, 3))
    skip1 = double_conv(layers, inputs, 16)
    skip2 = double_conv(layers, layers.MaxPooling2D(2)(skip1), 32)
    x = double_conv(layers, layers.MaxPooling2D(2)(skip2), 64)
    for skip, filters in ((skip2, 32), (skip1, 16)):
        x = layers.Concatenate()([layers.UpSampling2D(2)(x), skip])
        x = double_conv(layers, x, filters)
    return lib.Model(inputs, layers.Conv2D(1, 1, activation="sigmoid")(x))


def transformer_encoder(lib):
    """One post-norm transformer encoder block (4 heads of 16, feed-forward 128) on an
    Embedding(5000, 64) of 64 tokens (no position embedding), mean-pooled."""
    layers = lib.layers
    inputs = lib.Input(shape=(64,))
    x = layers.Embedding(VOCAB, 64)(inputs)
    attention = layers.MultiHeadAttention(num_heads=4, key_dim=16)(x, x)
    x = layers.LayerNormalization()(layers.Add()([x, attention]))
    feed_forward = layers.Dense(64)(layers.Dense(128, activation="relu")(x))
    x = layers.LayerNormalization()(layers.Add()([x, feed_forward]))
    x = layers.GlobalAveragePooling1D()(x)
    return lib.Model(inputs, layers.Dense(1, activation="sigmoid")(x))


BUILDERS = {
    "lenet5": lenet5,
    "vgg_bn": vgg_bn,
    "resnet20": resnet20,
    "cifar_cnn": cifar_cnn,
    "conv1d_text": conv1d_text,
    "mlp_dropout": mlp_dropout,
    "deep_mlp": deep_mlp,
    "bigru_text": bigru_text,
    "stacked_lstm": stacked_lstm,
    "mobilenet": mobilenet,
    "unet": unet,
    "transformer_encoder": transformer_encoder,
}
