"""keras-io's example "Imbalanced classification: credit card fraud detection"
(examples/structured_data/imbalanced_classification.py, Apache 2.0) run on fastnn with only the
imports changed.

Changed besides the imports: Kaggle's creditcard.csv (284,807 rows, 30 features, 0.17%
frauds) is a CSV this test writes in Kaggle's format: 2000 rows, 30 features, about 2% frauds
that depend on two features; 3 epochs instead of 30.
"""

import os

import numpy as np
import pytest

import fastnn as keras


@pytest.fixture
def fname(tmp_path, monkeypatch):
    """A creditcard.csv: quoted header, 30 float features, a quoted 0/1 "Class" last."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2000, 30))
    fraud = (features[:, 1] + features[:, 2] > 2.9).astype(int)
    path = tmp_path / "creditcard.csv"
    with open(path, "w") as f:
        f.write(",".join(f'"V{i}"' for i in range(30)) + ',"Class"\n')
        for row, label in zip(features, fraud):
            f.write(",".join(f"{v:.6f}" for v in row) + f',"{label}"\n')
    return str(path)


def test_imbalanced_classification(fname, capsys):
    all_features = []
    all_targets = []
    with open(fname) as f:
        for i, line in enumerate(f):
            if i == 0:
                print("HEADER:", line.strip())
                continue  # Skip header
            fields = line.strip().split(",")
            all_features.append([float(v.replace('"', "")) for v in fields[:-1]])
            all_targets.append([int(fields[-1].replace('"', ""))])
            if i == 1:
                print("EXAMPLE FEATURES:", all_features[-1])

    features = np.array(all_features, dtype="float32")
    targets = np.array(all_targets, dtype="uint8")
    print("features.shape:", features.shape)
    print("targets.shape:", targets.shape)

    num_val_samples = int(len(features) * 0.2)
    train_features = features[:-num_val_samples]
    train_targets = targets[:-num_val_samples]
    val_features = features[-num_val_samples:]
    val_targets = targets[-num_val_samples:]
    print("Number of training samples:", len(train_features))
    print("Number of validation samples:", len(val_features))

    counts = np.bincount(train_targets[:, 0])
    print(
        "Number of positive samples in training data: {} ({:.2f}% of total)".format(  # noqa: UP032
            counts[1], 100 * float(counts[1]) / len(train_targets)
        )
    )
    weight_for_0 = 1.0 / counts[0]
    weight_for_1 = 1.0 / counts[1]

    mean = np.mean(train_features, axis=0)
    train_features -= mean
    val_features -= mean
    std = np.std(train_features, axis=0)
    train_features /= std
    val_features /= std

    model = keras.Sequential(
        [
            keras.Input(shape=train_features.shape[1:]),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.summary()

    metrics = [
        keras.metrics.FalseNegatives(name="fn"),
        keras.metrics.FalsePositives(name="fp"),
        keras.metrics.TrueNegatives(name="tn"),
        keras.metrics.TruePositives(name="tp"),
        keras.metrics.Precision(name="precision"),
        keras.metrics.Recall(name="recall"),
    ]
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", metrics=metrics
    )
    callbacks = [keras.callbacks.ModelCheckpoint("fraud_model_at_epoch_{epoch}.keras")]
    class_weight = {0: weight_for_0, 1: weight_for_1}
    history = model.fit(
        train_features,
        train_targets,
        batch_size=2048,
        epochs=3,
        verbose=2,
        callbacks=callbacks,
        validation_data=(val_features, val_targets),
        class_weight=class_weight,
    )

    out = capsys.readouterr().out
    assert "features.shape: (2000, 30)" in out and "targets.shape: (2000, 1)" in out
    assert sorted(os.listdir(".")) == [
        "creditcard.csv",
        *(f"fraud_model_at_epoch_{e}.keras" for e in (1, 2, 3)),
    ]
    logs = {k: np.array(v) for k, v in history.history.items()}
    # the confusion counts cover every sample each epoch (class weights weigh the loss only)
    np.testing.assert_array_equal(logs["tp"] + logs["fn"], counts[1])
    np.testing.assert_array_equal(logs["tn"] + logs["fp"], counts[0])
    positives = int(val_targets.sum())
    np.testing.assert_array_equal(logs["val_tp"] + logs["val_fn"], positives)
    np.testing.assert_allclose(logs["val_recall"], logs["val_tp"] / positives, rtol=1e-6)
    np.testing.assert_allclose(
        logs["val_precision"],
        logs["val_tp"] / np.maximum(logs["val_tp"] + logs["val_fp"], 1),
        rtol=1e-6,
    )
    assert logs["loss"][-1] < logs["loss"][0]  # one step an epoch at batch_size=2048
