"""TensorBoard writes event files TensorBoard reads: checked with a reader written here (TFRecord
framing, both CRCs, the protobuf messages), against the history and Keras 3's tags and steps."""

import glob
import json
import os
import pathlib
import struct

import numpy as np
import pytest

import fastnn
from fastnn import callbacks, layers
from fastnn.tensorboard_events import crc32c, histogram_proto, masked_crc32c, tfrecord

# ---- a small reader, independent of the writer -------------------------------------------------


def read_records(path):
    """The payloads of a TFRecord file; both CRCs of every record are checked."""
    data = pathlib.Path(path).read_bytes()
    records, at = [], 0
    while at < len(data):
        header = data[at : at + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[at + 8 : at + 12])
        assert length_crc == masked_crc32c(header)
        payload = data[at + 12 : at + 12 + length]
        (payload_crc,) = struct.unpack("<I", data[at + 12 + length : at + 16 + length])
        assert payload_crc == masked_crc32c(payload)
        records.append(payload)
        at += 16 + length
    assert at == len(data)
    return records


def fields(message: bytes) -> list:
    """``(field number, value)`` pairs of a protobuf message: ints for varints, raw bytes for
    fixed-width and length-delimited fields."""
    out, at = [], 0

    def varint():
        nonlocal at
        value, shift = 0, 0
        while True:
            byte = message[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while at < len(message):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.append((number, varint()))
        elif wire == 1:
            out.append((number, message[at : at + 8]))
            at += 8
        elif wire == 5:
            out.append((number, message[at : at + 4]))
            at += 4
        elif wire == 2:
            length = varint()
            out.append((number, message[at : at + length]))
            at += length
        else:
            raise AssertionError(f"unexpected wire type {wire}")
    return out


def one(pairs, number, default=None):
    found = [value for n, value in pairs if n == number]
    assert len(found) <= 1
    return found[0] if found else default


def decode_histogram(message: bytes) -> dict:
    pairs = fields(message)
    double = lambda n: struct.unpack("<d", one(pairs, n))[0]  # noqa: E731
    return {
        "min": double(1),
        "max": double(2),
        "num": double(3),
        "sum": double(4),
        "sum_squares": double(5),
        "bucket_limit": np.frombuffer(one(pairs, 6), "<f8"),
        "bucket": np.frombuffer(one(pairs, 7), "<f8"),
    }


def read_events(folder):
    """Every event of the one event file in ``folder``: (wall_time, step, kind, payload)."""
    files = glob.glob(os.path.join(folder, "events.out.tfevents.*"))
    assert len(files) == 1, files
    events = []
    for record in read_records(files[0]):
        pairs = fields(record)
        wall_time = struct.unpack("<d", one(pairs, 1))[0]
        step = one(pairs, 2, 0)
        if one(pairs, 3) is not None:
            events.append((wall_time, step, "file_version", one(pairs, 3).decode()))
        for _, summary in [p for p in pairs if p[0] == 5]:
            for _, value in fields(summary):
                value_pairs = fields(value)
                tag = one(value_pairs, 1).decode()
                if one(value_pairs, 2) is not None:
                    payload = struct.unpack("<f", one(value_pairs, 2))[0]
                    events.append((wall_time, step, ("scalar", tag), payload))
                elif one(value_pairs, 5) is not None:
                    payload = decode_histogram(one(value_pairs, 5))
                    events.append((wall_time, step, ("histogram", tag), payload))
                else:
                    events.append((wall_time, step, ("tensor", tag), value_pairs))
    return events


def scalars(events, tag):
    return [(step, value) for _, step, kind, value in events if kind == ("scalar", tag)]


# ---- the encoding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", 0x00000000),
        (b"a", 0xC1D04330),
        (b"123456789", 0xE3069283),
        (bytes(32), 0x8A9136AA),
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
    ],
)
def test_crc32c_matches_the_published_test_vectors(data, expected):
    assert crc32c(data) == expected  # RFC 3720 B.4 and the usual "123456789" check value


def test_a_record_frames_its_payload_with_masked_crcs(tmp_path):
    record = tfrecord(b"hello")
    assert record[:8] == struct.pack("<Q", 5) and record[12:17] == b"hello"
    crc = crc32c(b"hello")
    masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    assert struct.unpack("<I", record[17:]) == (masked,)
    (tmp_path / "records").write_bytes(record + tfrecord(b""))
    assert read_records(tmp_path / "records") == [b"hello", b""]


def test_a_histogram_counts_every_value_in_equal_buckets():
    values = np.random.default_rng(1).normal(size=(7, 5))
    histogram = decode_histogram(histogram_proto(values))
    assert histogram["min"] == values.min() and histogram["max"] == values.max()
    assert histogram["num"] == 35 and histogram["bucket"].sum() == 35
    assert histogram["sum"] == pytest.approx(values.sum())
    assert histogram["sum_squares"] == pytest.approx((values**2).sum())
    counts, edges = np.histogram(values, bins=30)
    np.testing.assert_array_equal(histogram["bucket"], counts)
    np.testing.assert_allclose(histogram["bucket_limit"], edges[1:])
    constant = decode_histogram(histogram_proto(np.full(4, 2.5)))
    assert list(constant["bucket"]) == [4.0] and list(constant["bucket_limit"]) == [2.5]


# ---- the callback ------------------------------------------------------------------------------

X = np.random.default_rng(0).random((24, 3)).astype("float32")
Y = X.sum(axis=1, keepdims=True)


def small_model():
    fastnn.utils.set_random_seed(0)
    model = fastnn.Sequential(
        [fastnn.Input((3,)), layers.Dense(4, activation="tanh"), layers.Dense(1)]
    )
    model.compile(optimizer=fastnn.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    return model


def test_epoch_logs_become_train_and_validation_scalars(tmp_path):
    model = small_model()
    board = callbacks.TensorBoard(log_dir=tmp_path, histogram_freq=2)
    history = model.fit(
        X, Y, epochs=3, batch_size=8, validation_data=(X, Y), verbose=0, callbacks=[board]
    ).history
    train = read_events(tmp_path / "train")
    val = read_events(tmp_path / "validation")
    assert train[0][2:] == ("file_version", "brain.Event:2")
    assert val[0][2:] == ("file_version", "brain.Event:2")
    for key in ("loss", "mae"):
        got = scalars(train, f"epoch_{key}")
        assert [s for s, _ in got] == [0, 1, 2]
        np.testing.assert_allclose([v for _, v in got], history[key], rtol=1e-6)
        got = scalars(val, f"epoch_{key}")
        np.testing.assert_allclose([v for _, v in got], history[f"val_{key}"], rtol=1e-6)
    assert scalars(train, "epoch_learning_rate") == [(e, pytest.approx(0.05)) for e in range(3)]
    # as Keras: each validation also goes in at the optimizer's step count (3 steps an epoch)
    evaluation = scalars(val, "evaluation_loss_vs_iterations")
    assert [s for s, _ in evaluation] == [3, 6, 9]
    np.testing.assert_allclose([v for _, v in evaluation], history["val_loss"], rtol=1e-6)
    assert not [e for e in train if e[2][1].startswith("batch_")]  # update_freq="epoch"
    tags = {kind for _, _, kind, _ in train}
    assert ("tensor", "keras") in tags  # the model's JSON for the conceptual graph
    model_json = [v for _, _, kind, v in train if kind == ("tensor", "keras")][0]
    tensor = fields(one(model_json, 8))
    assert json.loads(one(tensor, 8))["class_name"] == "Sequential"
    plugin = fields(one(fields(one(model_json, 9)), 1))
    assert one(plugin, 1) == b"graph_keras_model"


def test_histograms_of_every_weight_every_histogram_freq_epochs(tmp_path):
    model = small_model()
    snapshots = []
    record = callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.append(model.get_weights())
    )
    board = callbacks.TensorBoard(log_dir=str(tmp_path), histogram_freq=2, write_graph=False)
    model.fit(X, Y, epochs=3, batch_size=8, verbose=0, callbacks=[record, board])
    train = read_events(tmp_path / "train")
    histograms = [(step, kind[1], h) for _, step, kind, h in train if kind[0] == "histogram"]
    paths = [w.path for w in model.weights]
    assert [(step, tag) for step, tag, _ in histograms] == [
        (epoch, f"{path}/histogram") for epoch in (0, 2) for path in paths
    ]
    for step, tag, histogram in histograms:
        weight = snapshots[step][paths.index(tag.removesuffix("/histogram"))]
        assert histogram["num"] == weight.size
        assert histogram["min"] == weight.min() and histogram["max"] == weight.max()
        assert histogram["sum"] == pytest.approx(float(weight.astype("float64").sum()))
    assert not os.path.exists(tmp_path / "validation")  # nothing to write there


@pytest.mark.parametrize("update_freq, steps", [("batch", [1, 2, 3, 4]), (3, [3])])
def test_batch_scalars_at_the_global_batch_count(tmp_path, update_freq, steps):
    model = small_model()
    batch_logs = []
    record = callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batch_logs.append(dict(logs))
    )
    board = callbacks.TensorBoard(
        log_dir=tmp_path, update_freq=update_freq, write_steps_per_second=True
    )
    model.fit(X, Y, epochs=2, batch_size=12, verbose=0, callbacks=[record, board])
    train = read_events(tmp_path / "train")
    got = scalars(train, "batch_loss")
    assert [s for s, _ in got] == steps
    np.testing.assert_allclose(
        [v for _, v in got], [batch_logs[s - 1]["loss"] for s in steps], rtol=1e-6
    )
    assert [s for s, _ in scalars(train, "batch_steps_per_second")] == steps
    per_second = scalars(train, "epoch_steps_per_second")
    assert [s for s, _ in per_second] == [0, 1] and all(v > 0 for _, v in per_second)


def test_evaluate_writes_its_results_at_the_optimizer_step(tmp_path):
    model = small_model()
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    board = callbacks.TensorBoard(log_dir=tmp_path, write_graph=False)
    result = model.evaluate(X, Y, verbose=0, callbacks=[board], return_dict=True)
    val = read_events(tmp_path / "validation")
    assert scalars(val, "evaluation_loss_vs_iterations") == [(3, pytest.approx(result["loss"]))]
    assert scalars(val, "evaluation_mae_vs_iterations") == [(3, pytest.approx(result["mae"]))]


def test_keras_writes_the_same_tags_and_steps(tmp_path):
    """Keras 3 needs tensorflow to write events: compare with the tags and steps its callback
    asks tf.summary for, recorded by a stand-in summary module."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    written = []

    class Writer:
        def __init__(self, folder):
            self.folder = os.path.basename(folder)

        def as_default(self, step=None):
            import contextlib

            @contextlib.contextmanager
            def default():
                Summary.current.append(self.folder)
                yield
                Summary.current.pop()

            return default()

        def flush(self):
            pass

        def close(self):
            pass

    class Summary:
        current = []

        @staticmethod
        def create_file_writer(folder):
            return Writer(folder)

        @staticmethod
        def scalar(name, value, step):
            if Summary.current:
                written.append((Summary.current[-1], name, int(step)))

        @staticmethod
        def histogram(name, value, step):
            written.append((Summary.current[-1], name, int(step)))

        @staticmethod
        def record_if(condition):
            import contextlib

            return contextlib.nullcontext()

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    board = keras.callbacks.TensorBoard(
        log_dir=str(tmp_path / "keras"), histogram_freq=2, write_graph=False, update_freq=2
    )
    board._summary_module = Summary
    model.fit(X, Y, epochs=3, batch_size=8, validation_data=(X, Y), verbose=0, callbacks=[board])

    fastnn_model = small_model()
    fastnn_board = callbacks.TensorBoard(
        log_dir=tmp_path / "fastnn", histogram_freq=2, write_graph=False, update_freq=2
    )
    fastnn_model.fit(
        X, Y, epochs=3, batch_size=8, validation_data=(X, Y), verbose=0, callbacks=[fastnn_board]
    )
    ours = [
        (folder, kind[1], step)
        for folder in ("train", "validation")
        for _, step, kind, _ in read_events(tmp_path / "fastnn" / folder)
        if kind != "file_version"
    ]
    # the weights' paths name the layers, which each library numbers its own way
    rename = {
        f"{ours}/histogram": f"{theirs}/histogram"
        for ours, theirs in zip(
            [w.path for w in fastnn_model.weights], [w.path for w in model.weights]
        )
    }
    ours = [(folder, rename.get(tag, tag), step) for folder, tag, step in ours]
    # Keras calls scalar() for every batch, but its record_if keeps only every update_freq-th
    keras_kept = [(f, t, s) for f, t, s in written if not (t.startswith("batch_") and s % 2)]
    assert {"batch_loss", "epoch_mae"} <= {t for _, t, _ in keras_kept}
    assert sum(t.endswith("/histogram") for _, t, _ in keras_kept) == 8  # 4 weights, 2 epochs
    assert sorted(ours) == sorted(keras_kept)


def test_only_logs_with_one_value_become_scalars(tmp_path):
    board = callbacks.TensorBoard(log_dir=tmp_path, write_graph=False)
    board.set_model(small_model())
    board.on_train_begin()
    logs = {"loss": 1.5, "f1": np.array([0.25, 0.5]), "one": np.array([3.0]), "n": 2}
    board.on_epoch_end(0, logs)
    board.on_train_end()
    train = read_events(tmp_path / "train")
    tags = {kind[1]: value for _, _, kind, value in train if kind != "file_version"}
    assert tags == {
        "epoch_loss": 1.5,
        "epoch_one": 3.0,
        "epoch_n": 2.0,
        "epoch_learning_rate": float(np.float32(0.05)),
    }


def test_arguments_fastnn_cannot_honour_warn_and_bad_ones_raise(tmp_path):
    for kwargs in ({"write_images": True}, {"profile_batch": 2}, {"embeddings_freq": 1}):
        with pytest.warns(UserWarning, match="fastnn does not write"):
            callbacks.TensorBoard(log_dir=tmp_path, **kwargs)
    with pytest.raises(ValueError, match="update_freq"):
        callbacks.TensorBoard(log_dir=tmp_path, update_freq="step")
    with pytest.raises(ValueError, match="histogram_freq"):
        callbacks.TensorBoard(log_dir=tmp_path, histogram_freq=-1)


def test_a_subclassed_model_writes_no_graph(tmp_path):
    class Subclassed(fastnn.Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(1)

        def call(self, inputs):
            return self.dense(inputs)

    model = Subclassed()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(X, Y, epochs=1, verbose=0, callbacks=[callbacks.TensorBoard(log_dir=tmp_path)])
    kinds = [kind for _, _, kind, _ in read_events(tmp_path / "train")]
    assert ("tensor", "keras") not in kinds and ("scalar", "epoch_loss") in kinds
