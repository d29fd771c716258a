"""Harness rows of the image preprocessing layers (tests/layer_harness.py): Resizing,
CenterCrop, RandomFlip, RandomCrop, RandomRotation, RandomZoom, RandomTranslation,
RandomContrast, RandomBrightness.

The random layers have two kinds of row: a factor range of a single value (deterministic: its
outputs and gradients are checked in training too, against Keras as well) and a true range
(``random=True``: compared with Keras at inference only, where they are the identity).
Behaviour beyond the harness is in test_preprocessing_image.py.
"""

from dataclasses import replace

from layer_harness import row

from fastnn import layers as L

RANDOM_CROP_AT_INFERENCE = (
    "Keras 3 returns RandomCrop's input uncropped at inference (against its own docstring and "
    "compute_output_shape); fastnn crops the centre (test_preprocessing_image.py)"
)

ROWS = {
    "resizing": row(L.Resizing, (5, 7, 2), 3, 4),
    "resizing-up": row(L.Resizing, (3, 2, 2), 5, 7),
    "resizing-nearest": row(L.Resizing, (5, 4, 2), 3, 7, interpolation="nearest"),
    "resizing-crop": row(L.Resizing, (6, 4, 2), 3, 3, crop_to_aspect_ratio=True),
    "resizing-pad": row(L.Resizing, (4, 6, 1), 4, 4, pad_to_aspect_ratio=True, fill_value=1.5),
    "resizing-channels_first": row(L.Resizing, (2, 5, 3), 4, 2, data_format="channels_first"),
    "center_crop": row(L.CenterCrop, (5, 6, 2), 3, 2),
    "center_crop-smaller": row(L.CenterCrop, (4, 3, 2), 5, 5),
    "center_crop-channels_first": row(L.CenterCrop, (2, 5, 4), 2, 3, "channels_first"),
    "random_flip": replace(row(L.RandomFlip, (3, 4, 2), seed=1), random=True),
    "random_flip-horizontal": replace(row(L.RandomFlip, (3, 4, 2), "horizontal", 2), random=True),
    "random_flip-vertical-channels_first": replace(
        row(L.RandomFlip, (2, 3, 4), "vertical", 3, "channels_first"), random=True
    ),
    "random_crop": replace(
        row(L.RandomCrop, (5, 6, 2), 3, 4, seed=4),
        random=True,
        no_keras_parity=RANDOM_CROP_AT_INFERENCE,
    ),
    "random_crop-smaller": replace(
        row(L.RandomCrop, (3, 4, 2), 4, 4, seed=5), no_keras_parity=RANDOM_CROP_AT_INFERENCE
    ),
    "random_rotation": replace(row(L.RandomRotation, (4, 5, 2), 0.2, seed=6), random=True),
    "random_rotation-fixed": row(L.RandomRotation, (4, 5, 2), (0.1, 0.1)),
    "random_rotation-fixed-constant-nearest": row(
        L.RandomRotation, (5, 4, 1), (-0.15, -0.15), "constant", "nearest", fill_value=0.5
    ),
    "random_rotation-fixed-wrap-channels_first": row(
        L.RandomRotation, (2, 4, 5), (0.3, 0.3), "wrap", data_format="channels_first"
    ),
    "random_zoom": replace(row(L.RandomZoom, (4, 5, 2), 0.3, seed=7), random=True),
    "random_zoom-fixed": row(L.RandomZoom, (4, 5, 2), (0.2, 0.2)),
    "random_zoom-fixed-in-nearest": row(
        L.RandomZoom, (5, 4, 2), (-0.3, -0.3), (0.1, 0.1), "nearest", "nearest"
    ),
    "random_zoom-fixed-constant": row(
        L.RandomZoom, (4, 4, 1), (0.4, 0.4), fill_mode="constant", fill_value=-1.0
    ),
    "random_translation": replace(
        row(L.RandomTranslation, (4, 5, 2), 0.2, 0.3, seed=8), random=True
    ),
    "random_translation-fixed": row(L.RandomTranslation, (4, 5, 2), (0.3, 0.3), (-0.1, -0.1)),
    "random_translation-fixed-wrap-nearest": row(
        L.RandomTranslation, (5, 4, 1), (-0.25, -0.25), (0.5, 0.5), "wrap", "nearest"
    ),
    "random_contrast": replace(
        row(L.RandomContrast, (3, 4, 2), 0.5, value_range=(-3, 3), seed=9), random=True
    ),
    "random_contrast-fixed": row(L.RandomContrast, (3, 4, 2), (-0.4, 0.4), (-3, 3)),
    "random_brightness": replace(
        row(L.RandomBrightness, (3, 4, 2), 0.2, (-3, 3), seed=10), random=True
    ),
    "random_brightness-fixed": row(L.RandomBrightness, (3, 4, 2), (0.1, 0.1), (-3, 3)),
}
