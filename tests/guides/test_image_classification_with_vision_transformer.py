"""keras-io's example "Image classification with Vision Transformer"
(examples/vision/image_classification_with_vision_transformer.py, Keras 3 version, Apache 2.0)
run on fastnn with only the imports changed.

Changed besides the imports: CIFAR-100 is 256 (train) and 64 (test) random uint8 images of its
shape (no network); a small ViT (images resized to 40x40 instead of 72x72, 8x8 patches: 25
patches, projection_dim 16, 2 heads, 2 Transformer blocks, head [64, 32]), batch 64, 2 epochs;
plots on matplotlib's Agg backend, the checkpoint in a temporary directory. The example's
``data_augmentation`` is whole: Normalization, Resizing, RandomFlip, RandomRotation, RandomZoom.
"""

import numpy as np
import pytest
from keras_twin import copy_weights, keras_module, to_numpy

import fastnn as keras
from fastnn import layers, ops

num_classes = 100
input_shape = (32, 32, 3)
learning_rate = 0.001
weight_decay = 0.0001
batch_size = 64
num_epochs = 2
image_size = 40  # We'll resize input images to this size
patch_size = 8  # Size of the patches to be extract from the input images
num_patches = (image_size // patch_size) ** 2
projection_dim = 16
num_heads = 2
hidden_dim = projection_dim * num_heads
transformer_units = [hidden_dim * 2, hidden_dim]  # Size of the transformer layers
transformer_layers = 2
mlp_head_units = [64, 32]  # Size of the dense layers of the final classifier


def vit_parts(k, k_layers, k_ops):
    """The example's Patches, PatchEncoder and create_vit_classifier for module ``k``."""

    def mlp(x, hidden_units, dropout_rate):
        for units in hidden_units:
            x = k_layers.Dense(units, activation=k.activations.gelu)(x)
            x = k_layers.Dropout(dropout_rate)(x)
        return x

    class Patches(k_layers.Layer):
        def __init__(self, patch_size):
            super().__init__()
            self.patch_size = patch_size

        def call(self, images):
            input_shape = k_ops.shape(images)
            batch_size = input_shape[0]
            height = input_shape[1]
            width = input_shape[2]
            channels = input_shape[3]
            num_patches_h = height // self.patch_size
            num_patches_w = width // self.patch_size
            patches = k.ops.image.extract_patches(images, size=self.patch_size)
            patches = k_ops.reshape(
                patches,
                (
                    batch_size,
                    num_patches_h * num_patches_w,
                    self.patch_size * self.patch_size * channels,
                ),
            )
            return patches

        def get_config(self):
            config = super().get_config()
            config.update({"patch_size": self.patch_size})
            return config

    class PatchEncoder(k_layers.Layer):
        def __init__(self, num_patches, projection_dim):
            super().__init__()
            self.num_patches = num_patches
            self.projection = k_layers.Dense(units=projection_dim)
            self.position_embedding = k_layers.Embedding(
                input_dim=num_patches, output_dim=projection_dim
            )

        def call(self, patch):
            positions = k_ops.expand_dims(
                k_ops.arange(start=0, stop=self.num_patches, step=1), axis=0
            )
            projected_patches = self.projection(patch)
            encoded = projected_patches + self.position_embedding(positions)
            return encoded

        def get_config(self):
            config = super().get_config()
            config.update({"num_patches": self.num_patches})
            return config

    def create_vit_classifier(data_augmentation):
        inputs = k.Input(shape=input_shape)
        # Augment data.
        augmented = data_augmentation(inputs)
        # Create patches.
        patches = Patches(patch_size)(augmented)
        # Encode patches.
        encoded_patches = PatchEncoder(num_patches, hidden_dim)(patches)
        # Create multiple layers of the Transformer block.
        for _ in range(transformer_layers):
            x1 = k_layers.LayerNormalization(epsilon=1e-6)(encoded_patches)
            attention_output = k_layers.MultiHeadAttention(
                num_heads=num_heads, key_dim=projection_dim, dropout=0.1
            )(x1, x1)
            x2 = k_layers.Add()([attention_output, encoded_patches])
            x3 = k_layers.LayerNormalization(epsilon=1e-6)(x2)
            x3 = mlp(x3, hidden_units=transformer_units, dropout_rate=0.1)
            encoded_patches = k_layers.Add()([x3, x2])
        # Create a [batch_size, projection_dim] tensor.
        representation = k_layers.LayerNormalization(epsilon=1e-6)(encoded_patches)
        representation = k_layers.Flatten()(representation)
        representation = k_layers.Dropout(0.5)(representation)
        features = mlp(representation, hidden_units=mlp_head_units, dropout_rate=0.5)
        logits = k_layers.Dense(num_classes)(features)
        return k.Model(inputs=inputs, outputs=logits)

    return Patches, create_vit_classifier


def augmentation(k, k_layers, x_train):
    data_augmentation = k.Sequential(
        [
            k_layers.Normalization(),
            k_layers.Resizing(image_size, image_size),
            k_layers.RandomFlip("horizontal"),
            k_layers.RandomRotation(factor=0.02),
            k_layers.RandomZoom(height_factor=0.2, width_factor=0.2),
        ],
        name="data_augmentation",
    )
    # Compute the mean and the variance of the training data for normalization.
    data_augmentation.layers[0].adapt(x_train)
    return data_augmentation


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (256, 32, 32, 3), dtype="uint8")
    y_train = rng.integers(0, 100, (256, 1), dtype="int64")
    x_test = rng.integers(0, 256, (64, 32, 32, 3), dtype="uint8")
    y_test = rng.integers(0, 100, (64, 1), dtype="int64")
    return (x_train, y_train), (x_test, y_test)


def test_vision_transformer(data, tmp_path, capsys):
    plt = pytest.importorskip("matplotlib.pyplot")
    plt.switch_backend("Agg")
    (x_train, y_train), (x_test, y_test) = data
    data_augmentation = augmentation(keras, layers, x_train)
    norm = data_augmentation.layers[0]
    np.testing.assert_allclose(
        np.ravel(norm.get_weights()[0]), x_train.reshape(-1, 3).mean(axis=0), rtol=1e-4
    )
    Patches, create_vit_classifier = vit_parts(keras, layers, ops)

    # Let's display patches for a sample image
    plt.figure(figsize=(4, 4))
    image = x_train[np.random.choice(range(x_train.shape[0]))]
    plt.imshow(image.astype("uint8"))
    plt.axis("off")
    resized_image = ops.image.resize(
        ops.convert_to_tensor([image], dtype="float32"), size=(image_size, image_size)
    )
    patches = Patches(patch_size)(resized_image)
    assert tuple(patches.shape) == (1, num_patches, patch_size * patch_size * 3)
    second = np.asarray(resized_image)[0, :8, 8:16].reshape(-1)
    np.testing.assert_allclose(patches[0, 1], second, rtol=1e-5)
    n = int(np.sqrt(patches.shape[1]))
    plt.figure(figsize=(4, 4))
    for i, patch in enumerate(patches[0]):
        plt.subplot(n, n, i + 1)
        patch_img = ops.reshape(patch, (patch_size, patch_size, 3))
        plt.imshow(ops.convert_to_numpy(patch_img).astype("uint8"))
        plt.axis("off")
    plt.close("all")

    model = create_vit_classifier(data_augmentation)
    model.summary()
    out = capsys.readouterr().out
    assert "Total params: 80,779" in out and "Non-trainable params: 7" in out  # as Keras 3

    optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            keras.metrics.SparseTopKCategoricalAccuracy(5, name="top-5-accuracy"),
        ],
    )
    checkpoint_filepath = str(tmp_path / "checkpoint.weights.h5")
    checkpoint_callback = keras.callbacks.ModelCheckpoint(
        checkpoint_filepath,
        monitor="val_accuracy",
        save_best_only=True,
        save_weights_only=True,
    )
    history = model.fit(
        x=x_train,
        y=y_train,
        batch_size=batch_size,
        epochs=num_epochs,
        validation_split=0.1,
        callbacks=[checkpoint_callback],
    )
    assert sorted(history.history) == [
        "accuracy",
        "loss",
        "top-5-accuracy",
        "val_accuracy",
        "val_loss",
        "val_top-5-accuracy",
    ]
    assert np.all(np.isfinite(history.history["loss"]))
    assert (tmp_path / "checkpoint.weights.h5").exists()
    model.load_weights(checkpoint_filepath)
    _, accuracy, top_5_accuracy = model.evaluate(x_test, y_test)
    print(f"Test accuracy: {round(accuracy * 100, 2)}%")
    print(f"Test top 5 accuracy: {round(top_5_accuracy * 100, 2)}%")
    assert 0 <= accuracy <= top_5_accuracy <= 1

    for item in ("loss", "top-5-accuracy"):  # plot_history
        plt.plot(history.history[item], label=item)
        plt.plot(history.history["val_" + item], label="val_" + item)
        plt.legend()
        plt.close("all")


def test_the_example_s_vit_predicts_as_keras(data):
    keras3 = keras_module()
    (x_train, _), (x_test, _) = data
    ours = vit_parts(keras, layers, ops)[1](augmentation(keras, layers, x_train))
    theirs = vit_parts(keras3, keras3.layers, keras3.ops)[1](
        augmentation(keras3, keras3.layers, x_train)
    )
    copy_weights(theirs, ours)
    x = x_test[:4].astype("float32")
    np.testing.assert_allclose(
        ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)), rtol=1e-3, atol=1e-5
    )
