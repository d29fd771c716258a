"""keras-io's guide "Customizing what happens in fit() with PyTorch"
(guides/custom_train_step_in_torch.py, Apache 2.0): its Keras-level code run on fastnn with
only the imports changed.

The guide's steps take gradients with torch's autograd (``self.zero_grad()``,
``loss.backward()``, ``v.value.grad``, ``torch.no_grad()``), which needs torch tensors for
weights; fastnn's weights are numpy arrays, so those lines are fastnn's tape here
(``fastnn.GradientTape``, as the guide's TensorFlow twin writes them) and ``torch.concat`` /
``torch.ones`` / ``torch.zeros`` are ``ops``. Everything else is the guide's: ``compute_loss``,
``optimizer.apply``, ``self.metrics``, ``test_step``, sample weights, the GAN with its own
``compile``, ``SeedGenerator`` and ``keras.random``, fed by a torch ``DataLoader`` over a
``TensorDataset``. Data: random arrays for MNIST; 256 samples instead of 1000; the GAN's
convolutions have 16 filters instead of 64/128 to keep the test fast.
"""

import numpy as np
import pytest

import fastnn as keras
from fastnn import layers, ops

torch = pytest.importorskip("torch")

X = np.random.random((256, 32))
Y = np.random.random((256, 1))


def test_a_first_simple_example_with_compute_loss():
    class CustomModel(keras.Model):
        def train_step(self, data):
            # Unpack the data. Its structure depends on your model and
            # on what you pass to `fit()`.
            x, y = data
            # torch's zero_grad()/backward() as fastnn's tape
            with keras.GradientTape() as tape:
                y_pred = self(x, training=True)  # Forward pass
                loss = self.compute_loss(y=y, y_pred=y_pred)
            trainable_weights = [v for v in self.trainable_weights]
            gradients = tape.gradient(loss, trainable_weights)
            # Update weights
            self.optimizer.apply(gradients, trainable_weights)
            # Update metrics (includes the metric that tracks the loss)
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss)
                else:
                    metric.update_state(y, y_pred)
            # Return a dict mapping metric names to current value
            # Note that it will include the loss (tracked in self.metrics).
            return {m.name: m.result() for m in self.metrics}

    # Construct and compile an instance of CustomModel
    inputs = keras.Input(shape=(32,))
    outputs = keras.layers.Dense(1)(inputs)
    model = CustomModel(inputs, outputs)
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    # Just use `fit` as usual
    history = model.fit(X, Y, epochs=3)
    assert sorted(history.history) == ["loss", "mae"]
    assert history.history["loss"][2] < history.history["loss"][0]
    # the custom step trains as the built-in one: same start, same batches
    twin = keras.Model(*_dense_graph())
    twin.set_weights(model.get_weights())
    model_again = CustomModel(*_dense_graph())
    model_again.set_weights(twin.get_weights())
    for m in (twin, model_again):
        m.compile(optimizer="adam", loss="mse", metrics=["mae"])
    keras.utils.set_random_seed(0)
    built_in = twin.fit(X, Y, epochs=1, verbose=0).history
    keras.utils.set_random_seed(0)
    custom = model_again.fit(X, Y, epochs=1, verbose=0).history
    np.testing.assert_allclose(custom["loss"], built_in["loss"], rtol=1e-5)
    for a, b in zip(model_again.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def _dense_graph():
    inputs = keras.Input(shape=(32,))
    return inputs, keras.layers.Dense(1)(inputs)


def test_going_lower_level_with_metrics_of_its_own():
    class CustomModel(keras.Model):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self.mae_metric = keras.metrics.MeanAbsoluteError(name="mae")
            self.loss_fn = keras.losses.MeanSquaredError()

        def train_step(self, data):
            x, y = data
            with keras.GradientTape() as tape:
                y_pred = self(x, training=True)  # Forward pass
                loss = self.loss_fn(y, y_pred)
            trainable_weights = [v for v in self.trainable_weights]
            gradients = tape.gradient(loss, trainable_weights)
            # Update weights
            self.optimizer.apply(gradients, trainable_weights)
            # Compute our own metrics
            self.loss_tracker.update_state(loss)
            self.mae_metric.update_state(y, y_pred)
            return {
                "loss": self.loss_tracker.result(),
                "mae": self.mae_metric.result(),
            }

        @property
        def metrics(self):
            # We list our `Metric` objects here so that `reset_states()` can be
            # called automatically at the start of each epoch
            # or at the start of `evaluate()`.
            return [self.loss_tracker, self.mae_metric]

    # Construct an instance of CustomModel
    inputs = keras.Input(shape=(32,))
    outputs = keras.layers.Dense(1)(inputs)
    model = CustomModel(inputs, outputs)
    # We don't pass a loss or metrics here.
    model.compile(optimizer="adam")
    # Just use `fit` as usual -- you can use callbacks, etc.
    history = model.fit(X, Y, epochs=5)
    assert sorted(history.history) == ["loss", "mae"]
    assert history.history["loss"][4] < history.history["loss"][0]


def test_supporting_sample_weight_and_class_weight():
    class CustomModel(keras.Model):
        def train_step(self, data):
            # Unpack the data. Its structure depends on your model and
            # on what you pass to `fit()`.
            if len(data) == 3:
                x, y, sample_weight = data
            else:
                sample_weight = None
                x, y = data
            with keras.GradientTape() as tape:
                y_pred = self(x, training=True)  # Forward pass
                loss = self.compute_loss(
                    y=y,
                    y_pred=y_pred,
                    sample_weight=sample_weight,
                )
            trainable_weights = [v for v in self.trainable_weights]
            gradients = tape.gradient(loss, trainable_weights)
            # Update weights
            self.optimizer.apply(gradients, trainable_weights)
            # Update metrics (includes the metric that tracks the loss)
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss)
                else:
                    metric.update_state(y, y_pred, sample_weight=sample_weight)
            return {m.name: m.result() for m in self.metrics}

    # Construct and compile an instance of CustomModel
    inputs = keras.Input(shape=(32,))
    outputs = keras.layers.Dense(1)(inputs)
    model = CustomModel(inputs, outputs)
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    # You can now use sample_weight argument
    sw = np.random.random((256, 1))
    history = model.fit(X, Y, sample_weight=sw, epochs=3)
    assert history.history["loss"][2] < history.history["loss"][0]
    # a zero weight leaves a sample out of the loss: the weights decide the step
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])  # (added) no momentum
    zero = np.zeros((256, 1))
    before = model.get_weights()
    model.fit(X, Y, sample_weight=zero, epochs=1, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_providing_your_own_evaluation_step():
    class CustomModel(keras.Model):
        def test_step(self, data):
            # Unpack the data
            x, y = data
            # Compute predictions
            y_pred = self(x, training=False)
            # Updates the metrics tracking the loss
            loss = self.compute_loss(y=y, y_pred=y_pred)
            # Update the metrics.
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss)
                else:
                    metric.update_state(y, y_pred)
            # Return a dict mapping metric names to current value.
            # Note that it will include the loss (tracked in self.metrics).
            return {m.name: m.result() for m in self.metrics}

    # Construct an instance of CustomModel
    inputs = keras.Input(shape=(32,))
    outputs = keras.layers.Dense(1)(inputs)
    model = CustomModel(inputs, outputs)
    model.compile(loss="mse", metrics=["mae"])
    # Evaluate with our custom test_step
    loss, mae = model.evaluate(X, Y)
    y_pred = model.predict(X, verbose=0)
    np.testing.assert_allclose(loss, np.mean((y_pred - Y) ** 2), rtol=1e-5)
    np.testing.assert_allclose(mae, np.mean(np.abs(y_pred - Y)), rtol=1e-5)


def test_an_end_to_end_gan_fed_by_a_torch_data_loader():
    # Create the discriminator
    discriminator = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(16, (3, 3), strides=(2, 2), padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Conv2D(16, (3, 3), strides=(2, 2), padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            layers.GlobalMaxPooling2D(),
            layers.Dense(1),
        ],
        name="discriminator",
    )
    # Create the generator
    latent_dim = 128
    generator = keras.Sequential(
        [
            keras.Input(shape=(latent_dim,)),
            # We want to generate 16 coefficients to reshape into a 7x7x16 map
            layers.Dense(7 * 7 * 16),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Reshape((7, 7, 16)),
            layers.Conv2DTranspose(16, (4, 4), strides=(2, 2), padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Conv2DTranspose(16, (4, 4), strides=(2, 2), padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Conv2D(1, (7, 7), padding="same", activation="sigmoid"),
        ],
        name="generator",
    )

    class GAN(keras.Model):
        def __init__(self, discriminator, generator, latent_dim):
            super().__init__()
            self.discriminator = discriminator
            self.generator = generator
            self.latent_dim = latent_dim
            self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
            self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
            self.seed_generator = keras.random.SeedGenerator(1337)
            self.built = True

        @property
        def metrics(self):
            return [self.d_loss_tracker, self.g_loss_tracker]

        def compile(self, d_optimizer, g_optimizer, loss_fn):
            super().compile()
            self.d_optimizer = d_optimizer
            self.g_optimizer = g_optimizer
            self.loss_fn = loss_fn

        def train_step(self, real_images):
            if isinstance(real_images, tuple):
                real_images = real_images[0]
            # Sample random points in the latent space
            batch_size = real_images.shape[0]
            random_latent_vectors = keras.random.normal(
                shape=(batch_size, self.latent_dim), seed=self.seed_generator
            )
            # Decode them to fake images
            generated_images = self.generator(random_latent_vectors)
            # Combine them with real images
            combined_images = ops.concatenate([generated_images, real_images], axis=0)
            # Assemble labels discriminating real from fake images
            labels = ops.concatenate(
                [ops.ones((batch_size, 1)), ops.zeros((batch_size, 1))], axis=0
            )
            # Add random noise to the labels - important trick!
            labels += 0.05 * keras.random.uniform(labels.shape, seed=self.seed_generator)

            # Train the discriminator
            with keras.GradientTape() as tape:
                predictions = self.discriminator(combined_images)
                d_loss = self.loss_fn(labels, predictions)
            grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
            self.d_optimizer.apply(grads, self.discriminator.trainable_weights)

            # Sample random points in the latent space
            random_latent_vectors = keras.random.normal(
                shape=(batch_size, self.latent_dim), seed=self.seed_generator
            )
            # Assemble labels that say "all real images"
            misleading_labels = ops.zeros((batch_size, 1))
            # Train the generator (note that we should *not* update the weights
            # of the discriminator)!
            with keras.GradientTape() as tape:
                predictions = self.discriminator(self.generator(random_latent_vectors))
                g_loss = self.loss_fn(misleading_labels, predictions)
            grads = tape.gradient(g_loss, self.generator.trainable_weights)
            self.g_optimizer.apply(grads, self.generator.trainable_weights)

            # Update metrics and return their value.
            self.d_loss_tracker.update_state(d_loss)
            self.g_loss_tracker.update_state(g_loss)
            return {
                "d_loss": self.d_loss_tracker.result(),
                "g_loss": self.g_loss_tracker.result(),
            }

    # Prepare the dataset: MNIST's digits as random pixels
    batch_size = 16
    all_digits = np.random.randint(0, 256, (48, 28, 28)).astype("float32") / 255.0
    all_digits = np.reshape(all_digits, (-1, 28, 28, 1))
    # Create a TensorDataset
    dataset = torch.utils.data.TensorDataset(
        torch.from_numpy(all_digits), torch.from_numpy(all_digits)
    )
    # Create a DataLoader
    dataloader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)

    gan = GAN(discriminator=discriminator, generator=generator, latent_dim=latent_dim)
    gan.compile(
        d_optimizer=keras.optimizers.Adam(learning_rate=0.0003),
        g_optimizer=keras.optimizers.Adam(learning_rate=0.0003),
        loss_fn=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    d_before = [w.numpy().copy() for w in discriminator.weights]
    g_before = [w.numpy().copy() for w in generator.weights]
    history = gan.fit(dataloader, epochs=1)
    assert sorted(history.history) == ["d_loss", "g_loss"]
    assert all(np.isfinite(v[0]) for v in history.history.values())
    # each network was trained by its own optimizer, three steps each
    assert gan.d_optimizer.iterations == gan.g_optimizer.iterations == 3
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(d_before, discriminator.weights))
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(g_before, generator.weights))
