"""TensorBoard event files written by hand: TFRecord framing, CRC32C and the few protobuf
messages (Event, Summary, HistogramProto, TensorProto) the TensorBoard callback needs.

A record is ``uint64 length | masked CRC32C of the length | data | masked CRC32C of the data``
(little-endian); the data is one serialized ``tensorflow.Event``. The messages are encoded
field by field (varint, 64-bit, 32-bit and length-delimited wire types), so neither
tensorflow, tensorboard nor protobuf is needed.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time

import numpy as np

# ---- CRC32C (Castagnoli), table-driven ----------------------------------------------------------

_CRC32C_POLY = 0x82F63B78  # the reflected Castagnoli polynomial


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC32C_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC32C of ``data`` (``crc32c(b"123456789") == 0xE3069283``)."""
    crc, table = 0xFFFFFFFF, _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The CRC TFRecord stores: rotated right by 15 bits plus a constant, modulo 2**32."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """``data`` framed as one TFRecord."""
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


# ---- protobuf wire format ------------------------------------------------------------------------

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 values take ten bytes, as protobuf writes them
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _int_field(field: int, value: int) -> bytes:
    return _key(field, _VARINT) + _varint(int(value))


def _double_field(field: int, value: float) -> bytes:
    return _key(field, _FIXED64) + struct.pack("<d", value)


def _float_field(field: int, value: float) -> bytes:
    return _key(field, _FIXED32) + struct.pack("<f", value)


def _bytes_field(field: int, value: bytes | str) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8")
    return _key(field, _BYTES) + _varint(len(value)) + value


def _packed_doubles(field: int, values) -> bytes:
    return _bytes_field(field, np.asarray(values, "<f8").tobytes())


# ---- messages (field numbers from tensorflow/core/util/event.proto and framework/summary.proto) --


def event(wall_time: float, step: int = 0, summary: bytes | None = None, file_version=None):
    """An Event: ``wall_time`` (1), ``step`` (2), then ``file_version`` (3) or ``summary`` (5)."""
    data = _double_field(1, wall_time)
    if step:
        data += _int_field(2, step)
    if file_version is not None:
        data += _bytes_field(3, file_version)
    if summary is not None:
        data += _bytes_field(5, summary)
    return data


def scalar_value(tag: str, value: float) -> bytes:
    """A Summary.Value with ``tag`` (1) and ``simple_value`` (2, float32)."""
    return _bytes_field(1, tag) + _float_field(2, value)


def histogram_value(tag: str, values: np.ndarray, buckets: int = 30) -> bytes:
    """A Summary.Value with ``tag`` (1) and ``histo`` (5): ``buckets`` equal-width buckets
    between the values' min and max, as ``tf.summary.histogram`` makes them."""
    return _bytes_field(1, tag) + _bytes_field(5, histogram_proto(values, buckets))


def histogram_proto(values: np.ndarray, buckets: int = 30) -> bytes:
    """HistogramProto: min (1), max (2), num (3), sum (4), sum_squares (5), then each bucket's
    right edge (6, packed) and count (7, packed); the first bucket starts at min."""
    values = np.asarray(values, np.float64).ravel()
    if values.size == 0:
        low = high = 0.0
        limits, counts = [0.0], [0.0]
    else:
        low, high = float(values.min()), float(values.max())
        if low == high:
            limits, counts = [high], [float(values.size)]
        else:
            counts, edges = np.histogram(values, bins=buckets, range=(low, high))
            limits, counts = edges[1:], counts.astype(np.float64)
    return (
        _double_field(1, low)
        + _double_field(2, high)
        + _double_field(3, float(values.size))
        + _double_field(4, float(values.sum()))
        + _double_field(5, float(np.dot(values, values)))
        + _packed_doubles(6, limits)
        + _packed_doubles(7, counts)
    )


def text_tensor_value(tag: str, text: str, plugin_name: str, content: bytes) -> bytes:
    """A Summary.Value with ``tag`` (1), ``metadata`` (9: plugin_data with plugin_name and
    content) and ``tensor`` (8): a scalar DT_STRING TensorProto holding ``text``."""
    plugin_data = _bytes_field(1, plugin_name) + _bytes_field(2, content)
    metadata = _bytes_field(1, plugin_data)
    dt_string = 7
    tensor = _int_field(1, dt_string) + _bytes_field(2, b"") + _bytes_field(8, text)
    return _bytes_field(1, tag) + _bytes_field(9, metadata) + _bytes_field(8, tensor)


def summary(*values: bytes) -> bytes:
    """A Summary of encoded Summary.Value messages (repeated field 1)."""
    return b"".join(_bytes_field(1, value) for value in values)


# ---- the writer ----------------------------------------------------------------------------------

_writer_ids = itertools.count()


class EventFileWriter:
    """Appends events to ``<log_dir>/events.out.tfevents.<time>.<host>.<pid>.<n>.v2``.

    The folder and file are made on the first write; the file starts with the
    ``brain.Event:2`` version event TensorBoard expects. Each record is flushed as written.
    """

    def __init__(self, log_dir: str):
        self.log_dir = os.fspath(log_dir)
        self.path = None
        self._file = None

    def _open(self) -> None:
        os.makedirs(self.log_dir, exist_ok=True)
        now = time.time()
        name = (
            f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}."
            f"{os.getpid()}.{next(_writer_ids)}.v2"
        )
        self.path = os.path.join(self.log_dir, name)
        self._file = open(self.path, "ab")  # noqa: SIM115 - held open across many writes
        self._file.write(tfrecord(event(now, file_version="brain.Event:2")))

    def add_summary(self, step: int, *values: bytes) -> None:
        """Write one Event holding a Summary of ``values`` at ``step``."""
        if not values:
            return
        if self._file is None:
            self._open()
        self._file.write(tfrecord(event(time.time(), step, summary=summary(*values))))
        self._file.flush()

    def add_scalars(self, step: int, scalars: dict) -> None:
        """Write ``{tag: float}`` as simple_value scalars at ``step``."""
        self.add_summary(step, *(scalar_value(tag, value) for tag, value in scalars.items()))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
