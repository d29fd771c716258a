"""Harness rows of the shape, regularization and preprocessing layers (tests/layer_harness.py):
Permute, Identity, zero padding, cropping, up-sampling, spatial dropout, Gaussian noise and
dropout, activity regularization, Rescaling, Normalization, CategoryEncoding, IntegerLookup,
UnitNormalization.

A row per code path: each data format, argument form and interpolation; random layers in
training (``random=True``: compared with Keras at inference only) and with a zero rate (the
identity, compared in training too).
"""

from dataclasses import replace

from layer_harness import row

from fastnn import layers as L

PENALTY_IN_LOSS = (
    "backward adds the penalty's gradient, which the harness's objective (the outputs alone) "
    "leaves out: test_shaping_layers.py checks it with the penalty in the objective"
)


def lookup_row(shape, ids, **kwargs):
    """An IntegerLookup on ids in [0, ids): int64 outputs, no gradient, no Keras layer here
    (Keras's runs on TensorFlow, which the dev extra leaves out: test_lookup.py checks it
    against Keras where TensorFlow is installed, and against Keras's recorded outputs)."""
    return replace(
        row(L.IntegerLookup, shape, **kwargs),
        ids=ids,
        outputs_dtype="int64",
        no_gradient="indices have no gradient",
        no_keras_layer="Keras's IntegerLookup needs TensorFlow",
    )


ROWS = {
    # ---- reshaping
    "permute": row(L.Permute, (3, 4), (2, 1)),
    "permute-3d": row(L.Permute, (2, 3, 4), (3, 1, 2)),
    "identity": row(L.Identity, (3,)),
    "identity-list": row(L.Identity, [(3,), (2, 2)]),
    "zero_padding1d": row(L.ZeroPadding1D, (3, 2)),
    "zero_padding1d-uneven": row(L.ZeroPadding1D, (3, 2), (2, 0)),
    "zero_padding1d-channels_first": row(L.ZeroPadding1D, (2, 3), 1, "channels_first"),
    "zero_padding2d": row(L.ZeroPadding2D, (3, 2, 2)),
    "zero_padding2d-int": row(L.ZeroPadding2D, (2, 3, 1), 2),
    "zero_padding2d-pairs": row(L.ZeroPadding2D, (2, 3, 2), ((1, 0), (2, 1))),
    "zero_padding2d-channels_first": row(
        L.ZeroPadding2D, (2, 3, 2), (1, 2), data_format="channels_first"
    ),
    "cropping1d": row(L.Cropping1D, (4, 2)),
    "cropping1d-uneven": row(L.Cropping1D, (5, 2), (0, 2)),
    "cropping2d": row(L.Cropping2D, (3, 4, 2)),
    "cropping2d-int": row(L.Cropping2D, (4, 5, 2), 1),
    "cropping2d-pairs": row(L.Cropping2D, (4, 5, 2), ((1, 0), (0, 2))),
    "cropping2d-channels_first": row(
        L.Cropping2D, (2, 4, 5), ((0, 1), (2, 1)), data_format="channels_first"
    ),
    "up_sampling1d": row(L.UpSampling1D, (3, 2)),
    "up_sampling1d-size_3": row(L.UpSampling1D, (2, 3), 3),
    "up_sampling2d": row(L.UpSampling2D, (2, 3, 2)),
    "up_sampling2d-rect": row(L.UpSampling2D, (2, 2, 2), (2, 3)),
    "up_sampling2d-channels_first": row(
        L.UpSampling2D, (2, 2, 3), (3, 2), data_format="channels_first"
    ),
    "up_sampling2d-bilinear": row(L.UpSampling2D, (3, 4, 2), interpolation="bilinear"),
    "up_sampling2d-bilinear-rect": row(L.UpSampling2D, (3, 2, 2), (3, 2), interpolation="bilinear"),
    "up_sampling2d-bilinear-channels_first": row(
        L.UpSampling2D, (2, 3, 3), 2, "channels_first", "bilinear"
    ),
    # ---- regularization
    "spatial_dropout1d": replace(row(L.SpatialDropout1D, (4, 3), 0.5, seed=1), random=True),
    "spatial_dropout1d-rate_0": row(L.SpatialDropout1D, (4, 3), 0.0),
    "spatial_dropout2d": replace(row(L.SpatialDropout2D, (3, 3, 4), 0.5, seed=2), random=True),
    "spatial_dropout2d-channels_first": replace(
        row(L.SpatialDropout2D, (4, 3, 2), 0.4, "channels_first", seed=3), random=True
    ),
    "gaussian_noise": replace(row(L.GaussianNoise, (3, 2), 0.3, seed=4), random=True),
    "gaussian_noise-stddev_0": row(L.GaussianNoise, (3,), 0.0),
    "gaussian_dropout": replace(row(L.GaussianDropout, (3, 2), 0.4, seed=5), random=True),
    "gaussian_dropout-rate_0": row(L.GaussianDropout, (3,), 0.0),
    "activity_regularization": row(L.ActivityRegularization, (3, 2)),
    "activity_regularization-l1_l2": replace(
        row(L.ActivityRegularization, (4,), 0.01, 0.02), no_gradient=PENALTY_IN_LOSS
    ),
    # ---- preprocessing
    "rescaling": row(L.Rescaling, (3,), 1 / 255),
    "rescaling-offset-per_channel": row(L.Rescaling, (2, 3), [0.5, 2.0, -1.0], offset=[1, 0, 2]),
    "normalization": row(L.Normalization, (4,)),
    "normalization-axes": row(L.Normalization, (2, 3, 2), axis=(1, 3)),
    "normalization-axis_none": row(L.Normalization, (2, 3), axis=None),
    "normalization-given": row(L.Normalization, (3,), mean=[1.0, -2.0, 0.5], variance=[4, 1, 0.25]),
    "normalization-given-invert": row(L.Normalization, (2, 3), mean=0.5, variance=2.0, invert=True),
    "normalization-invert": row(L.Normalization, (3,), invert=True),
    "category_encoding": replace(row(L.CategoryEncoding, (3,), 5), ids=5),
    "integer_lookup": lookup_row((3,), 7, vocabulary=[0, 2, 4, 5]),
    "integer_lookup-mask-multi_hot": lookup_row(
        (4,), 5, mask_token=0, vocabulary=[1, 3], output_mode="multi_hot"
    ),
    "integer_lookup-two_oov-count": lookup_row(
        (3,), 6, num_oov_indices=2, vocabulary=[4, 1], output_mode="count"
    ),
    "category_encoding-one_hot": replace(row(L.CategoryEncoding, (1,), 4, "one_hot"), ids=4),
    "category_encoding-one_hot-sequence": replace(
        row(L.CategoryEncoding, (3,), 4, output_mode="one_hot"), ids=4
    ),
    "category_encoding-count": replace(row(L.CategoryEncoding, (6,), 3, "count"), ids=3),
    "unit_normalization": row(L.UnitNormalization, (4,)),
    "unit_normalization-axes": row(L.UnitNormalization, (2, 3, 2), axis=[1, 3]),
}
