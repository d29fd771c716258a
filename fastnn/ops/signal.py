"""keras.ops' Fourier transforms on numpy.fft: complex values as (real, imag) pairs, as Keras
passes them; fft, fft2, ifft2, rfft, irfft, stft and istft, and extract_sequences.

The transforms compute forward only: given a value a recording tape tracks they raise rather
than return an array the tape would silently treat as a constant. extract_sequences is a
recorded gather, differentiable.
"""

from __future__ import annotations

import numpy as np

from fastnn.ops import numpy as fnp
from fastnn.ops.numpy import _float
from fastnn.ops.tape import OpError, as_array, tracked, unwrap

__all__ = ["extract_sequences", "fft", "fft2", "ifft2", "irfft", "istft", "rfft", "stft"]


def forward_only(name: str, *values) -> None:
    """Refuse values a recording tape tracks: ``name`` has no gradient in fastnn."""
    if any(tracked(v) for v in values):
        raise OpError(
            f"{name}: fastnn computes it forward only (no gradient); call it on "
            "ops.stop_gradient(x) or outside the GradientTape"
        )


def _complex(name: str, x) -> np.ndarray:
    if not isinstance(x, (tuple, list)) or len(x) != 2:
        raise OpError(f"{name}: x must be a (real, imag) pair of tensors; got {type(x).__name__}")
    forward_only(name, *x)
    real, imag = _float(x[0]), _float(x[1])
    if real.shape != imag.shape:
        raise OpError(
            f"{name}: real and imag must have the same shape; got {real.shape} and {imag.shape}"
        )
    return real + 1j * imag.astype(real.dtype)


def _pair(values: np.ndarray, dtype) -> tuple:
    return np.real(values).astype(dtype), np.imag(values).astype(dtype)


def fft(x) -> tuple:
    """The discrete Fourier transform over the last axis of (real, imag)."""
    values = _complex("fft", x)
    return _pair(np.fft.fft(values, axis=-1), values.real.dtype)


def fft2(x) -> tuple:
    """The 2-D discrete Fourier transform over the last two axes of (real, imag)."""
    values = _complex("fft2", x)
    return _pair(np.fft.fft2(values), values.real.dtype)


def ifft2(x) -> tuple:
    """The inverse of ``fft2``."""
    values = _complex("ifft2", x)
    return _pair(np.fft.ifft2(values), values.real.dtype)


def rfft(x, fft_length=None) -> tuple:
    """The Fourier transform of a real signal over its last axis: (..., n) ->
    (..., fft_length // 2 + 1) real and imag parts."""
    forward_only("rfft", x)
    values = _float(x)
    return _pair(np.fft.rfft(values, n=fft_length, axis=-1), values.dtype)


def irfft(x, fft_length=None):
    """The inverse of ``rfft``: (real, imag) of (..., m) -> (..., fft_length)."""
    values = _complex("irfft", x)
    return np.fft.irfft(values, n=fft_length, axis=-1).astype(values.real.dtype)


def extract_sequences(x, sequence_length: int, sequence_stride: int):
    """Frames of ``sequence_length`` every ``sequence_stride`` along the last axis:
    (..., n) -> (..., frames, sequence_length)."""
    n = np.shape(unwrap(x))[-1] if np.ndim(unwrap(x)) else 0
    if sequence_length < 1 or sequence_stride < 1 or n < sequence_length:
        raise OpError(
            f"extract_sequences: cannot take frames of {sequence_length} every "
            f"{sequence_stride} from shape {np.shape(unwrap(x))}"
        )
    frames = (n - sequence_length) // sequence_stride + 1
    index = np.arange(frames)[:, None] * sequence_stride + np.arange(sequence_length)
    return fnp.take(x, index, axis=-1)


def _window(name: str, window, sequence_length: int, fft_length: int, dtype) -> np.ndarray:
    """The window, periodic as scipy's get_window, centred in fft_length with zeros."""
    if fft_length < sequence_length:
        raise OpError(
            f"{name}: `fft_length` must equal or larger than `sequence_length`. Received: "
            f"sequence_length={sequence_length}, fft_length={fft_length}"
        )
    n = np.arange(sequence_length)
    if window is None:
        win = np.ones(fft_length)
        return win.astype(dtype)
    if isinstance(window, str):
        if window not in ("hann", "hamming"):
            raise OpError(f"{name}: window must be 'hann', 'hamming', an array or None; got "
                          f"{window!r}")  # fmt: skip
        a = 0.5 if window == "hann" else 0.54
        win = a - (1 - a) * np.cos(2 * np.pi * n / sequence_length)
    else:
        win = np.asarray(as_array(window), np.float64)
        if win.shape != (sequence_length,):
            raise OpError(
                f"{name}: The shape of `window` must be equal to [sequence_length]. Received: "
                f"window shape={win.shape}"
            )
    before = (fft_length - sequence_length) // 2
    return np.pad(win, (before, fft_length - sequence_length - before)).astype(dtype)


def stft(x, sequence_length, sequence_stride, fft_length, window="hann", center=True) -> tuple:
    """The short-time Fourier transform over the last axis: (..., n) -> real and imag parts
    of (..., frames, fft_length // 2 + 1)."""
    forward_only("stft", x)
    values = as_array(x)
    if values.dtype not in (np.float32, np.float64):
        raise OpError(f"stft: expected float32 or float64 input; got {values.dtype}")
    win = _window("stft", window, sequence_length, fft_length, values.dtype)
    if center:
        pad = [(0, 0)] * (values.ndim - 1) + [(fft_length // 2, fft_length // 2)]
        values = np.pad(values, pad, mode="reflect")
    frames = extract_sequences(values, fft_length, sequence_stride)
    return _pair(np.fft.rfft(frames * win, axis=-1), values.dtype)


def istft(x, sequence_length, sequence_stride, fft_length, length=None, window="hann", center=True):
    """The inverse of ``stft`` by windowed overlap-add: real and imag parts of
    (..., frames, bins) -> (..., samples)."""
    values = _complex("istft", x)
    dtype = values.real.dtype
    win = _window("istft", window, sequence_length, fft_length, dtype)
    frames = np.fft.irfft(values, n=fft_length, axis=-1) * win  # (..., f, fft_length)
    count = frames.shape[-2]
    total = fft_length + sequence_stride * (count - 1)
    signal = np.zeros((*frames.shape[:-2], total), dtype)
    norm = np.zeros(total, dtype)
    for i in range(count):  # overlap-add: a loop over frames, each a vector op
        start = i * sequence_stride
        signal[..., start : start + fft_length] += frames[..., i, :]
        norm[start : start + fft_length] += win * win
    signal /= np.where(norm > 1e-10, norm, 1.0)
    if window is None:
        signal *= fft_length / sequence_stride
    start = fft_length // 2 if center else 0
    if length is not None:
        end = start + int(length)
    else:
        end = total - fft_length // 2 if center else total
    return signal[..., start:end]
