"""keras-io's example "Conditional GAN" (examples/generative/conditional_gan.py, Keras 3
version, Apache 2.0) run on fastnn with only the imports changed.

Changed besides the imports: the example's ``tf.GradientTape`` is fastnn's
``keras.GradientTape`` (fastnn's weights are numpy arrays); the ``tf.data`` pipeline
(``from_tensor_slices(...).shuffle(1024).batch(64)``) is ``fit`` on the arrays with
``batch_size`` and ``shuffle=True``; MNIST is 64 random uint8 images (no network); the
convolutions have 8/16 filters instead of 64/128, latent_dim is 16 instead of 128, 2 epochs
instead of 20; the GIF (``tf.image.resize``, imageio, tensorflow_docs) is left out.
"""

import numpy as np

import fastnn as keras
from fastnn import layers, ops

batch_size = 16
num_channels = 1
num_classes = 10
image_size = 28
latent_dim = 16


class ConditionalGAN(keras.Model):
    def __init__(self, discriminator, generator, latent_dim):
        super().__init__()
        self.discriminator = discriminator
        self.generator = generator
        self.latent_dim = latent_dim
        self.seed_generator = keras.random.SeedGenerator(1337)
        self.gen_loss_tracker = keras.metrics.Mean(name="generator_loss")
        self.disc_loss_tracker = keras.metrics.Mean(name="discriminator_loss")

    @property
    def metrics(self):
        return [self.gen_loss_tracker, self.disc_loss_tracker]

    def compile(self, d_optimizer, g_optimizer, loss_fn):
        super().compile()
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.loss_fn = loss_fn

    def train_step(self, data):
        # Unpack the data.
        real_images, one_hot_labels = data

        # Add dummy dimensions to the labels so that they can be concatenated with
        # the images. This is for the discriminator.
        image_one_hot_labels = one_hot_labels[:, :, None, None]
        image_one_hot_labels = ops.repeat(image_one_hot_labels, repeats=[image_size * image_size])
        image_one_hot_labels = ops.reshape(
            image_one_hot_labels, (-1, image_size, image_size, num_classes)
        )

        # Sample random points in the latent space and concatenate the labels.
        batch_size = ops.shape(real_images)[0]
        random_latent_vectors = keras.random.normal(
            shape=(batch_size, self.latent_dim), seed=self.seed_generator
        )
        random_vector_labels = ops.concatenate([random_latent_vectors, one_hot_labels], axis=1)

        # Decode the noise (guided by labels) to fake images.
        generated_images = self.generator(random_vector_labels)

        # Combine them with real images, the labels concatenated to both.
        fake_image_and_labels = ops.concatenate([generated_images, image_one_hot_labels], -1)
        real_image_and_labels = ops.concatenate([real_images, image_one_hot_labels], -1)
        combined_images = ops.concatenate([fake_image_and_labels, real_image_and_labels], axis=0)

        # Assemble labels discriminating real from fake images.
        labels = ops.concatenate([ops.ones((batch_size, 1)), ops.zeros((batch_size, 1))], axis=0)

        # Train the discriminator.
        with keras.GradientTape() as tape:
            predictions = self.discriminator(combined_images)
            d_loss = self.loss_fn(labels, predictions)
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))

        # Sample random points in the latent space.
        random_latent_vectors = keras.random.normal(
            shape=(batch_size, self.latent_dim), seed=self.seed_generator
        )
        random_vector_labels = ops.concatenate([random_latent_vectors, one_hot_labels], axis=1)

        # Assemble labels that say "all real images".
        misleading_labels = ops.zeros((batch_size, 1))

        # Train the generator (not the discriminator's weights).
        with keras.GradientTape() as tape:
            fake_images = self.generator(random_vector_labels)
            fake_image_and_labels = ops.concatenate([fake_images, image_one_hot_labels], -1)
            predictions = self.discriminator(fake_image_and_labels)
            g_loss = self.loss_fn(misleading_labels, predictions)
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))

        # Monitor loss.
        self.gen_loss_tracker.update_state(g_loss)
        self.disc_loss_tracker.update_state(d_loss)
        return {
            "g_loss": self.gen_loss_tracker.result(),
            "d_loss": self.disc_loss_tracker.result(),
        }


def test_conditional_gan():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (48, 28, 28), dtype="uint8")
    y_train = rng.integers(0, 10, 48, dtype="uint8")
    x_test = rng.integers(0, 256, (16, 28, 28), dtype="uint8")
    y_test = rng.integers(0, 10, 16, dtype="uint8")
    # We'll use all the available examples from both the training and test sets.
    all_digits = np.concatenate([x_train, x_test])
    all_labels = np.concatenate([y_train, y_test])
    # Scale to [0, 1], add a channel dimension, one-hot encode the labels.
    all_digits = all_digits.astype("float32") / 255.0
    all_digits = np.reshape(all_digits, (-1, 28, 28, 1))
    all_labels = keras.utils.to_categorical(all_labels, 10)
    assert all_digits.shape == (64, 28, 28, 1) and all_labels.shape == (64, 10)

    generator_in_channels = latent_dim + num_classes
    discriminator_in_channels = num_channels + num_classes

    # Create the discriminator.
    discriminator = keras.Sequential(
        [
            keras.layers.InputLayer((28, 28, discriminator_in_channels)),
            layers.Conv2D(8, (3, 3), strides=(2, 2), padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Conv2D(16, (3, 3), strides=(2, 2), padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            layers.GlobalMaxPooling2D(),
            layers.Dense(1),
        ],
        name="discriminator",
    )
    # Create the generator.
    generator = keras.Sequential(
        [
            keras.layers.InputLayer((generator_in_channels,)),
            # 7x7x(latent_dim + num_classes) coefficients
            layers.Dense(7 * 7 * generator_in_channels),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Reshape((7, 7, generator_in_channels)),
            layers.Conv2DTranspose(16, (4, 4), strides=(2, 2), padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Conv2DTranspose(16, (4, 4), strides=(2, 2), padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Conv2D(1, (7, 7), padding="same", activation="sigmoid"),
        ],
        name="generator",
    )
    assert generator.output_shape == (None, 28, 28, 1)
    assert discriminator.output_shape == (None, 1)

    cond_gan = ConditionalGAN(
        discriminator=discriminator, generator=generator, latent_dim=latent_dim
    )
    cond_gan.compile(
        d_optimizer=keras.optimizers.Adam(learning_rate=0.0003),
        g_optimizer=keras.optimizers.Adam(learning_rate=0.0003),
        loss_fn=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    g_before = [w.copy() for w in generator.get_weights()]
    d_before = [w.copy() for w in discriminator.get_weights()]
    history = cond_gan.fit(all_digits, all_labels, batch_size=batch_size, shuffle=True, epochs=2)
    assert set(history.history) == {"g_loss", "d_loss"}
    assert np.all(np.isfinite(history.history["g_loss"] + history.history["d_loss"]))
    # each optimizer moved its own network's weights
    assert all(not np.array_equal(a, b) for a, b in zip(g_before, generator.get_weights()))
    assert all(not np.array_equal(a, b) for a, b in zip(d_before, discriminator.get_weights()))

    # Interpolating between classes with the trained generator.
    trained_gen = cond_gan.generator
    num_interpolation = 9
    interpolation_noise = keras.random.normal(shape=(1, latent_dim))
    interpolation_noise = ops.repeat(interpolation_noise, repeats=num_interpolation)
    interpolation_noise = ops.reshape(interpolation_noise, (num_interpolation, latent_dim))

    def interpolate_class(first_number, second_number):
        # Convert the start and end labels to one-hot encoded vectors.
        first_label = keras.utils.to_categorical([first_number], num_classes)
        second_label = keras.utils.to_categorical([second_number], num_classes)
        first_label = ops.cast(first_label, "float32")
        second_label = ops.cast(second_label, "float32")
        # Calculate the interpolation vector between the two labels.
        percent_second_label = ops.linspace(0, 1, num_interpolation)[:, None]
        percent_second_label = ops.cast(percent_second_label, "float32")
        interpolation_labels = (
            first_label * (1 - percent_second_label) + second_label * percent_second_label
        )
        # Combine the noise and the labels and run inference with the generator.
        noise_and_labels = ops.concatenate([interpolation_noise, interpolation_labels], 1)
        fake = trained_gen.predict(noise_and_labels)
        return fake

    fake_images = interpolate_class(1, 5)
    assert fake_images.shape == (num_interpolation, 28, 28, 1)
    fake_images *= 255.0
    converted_images = fake_images.astype(np.uint8)
    assert converted_images.dtype == np.uint8
    assert np.all((fake_images >= 0) & (fake_images <= 255))
