"""fastnn.ops.signal (fft family, stft, extract_sequences) and ops.vectorize /
ops.associative_scan: keras.ops parity (torch backend), numpy references, gradients where the
ops have them, and the forward-only refusals."""

from __future__ import annotations

import numpy as np
import pytest
from test_ops_gradients import check_grads

from fastnn import ops
from fastnn.ops import GradientTape

RNG = np.random.default_rng(0)
S = RNG.standard_normal((2, 40)).astype(np.float32)
C = (RNG.standard_normal((2, 8)).astype(np.float32), RNG.standard_normal((2, 8)).astype(np.float32))
C2 = tuple(RNG.standard_normal((2, 4, 6)).astype(np.float32) for _ in range(2))


PARITY = {
    "fft_real": lambda o: o.fft(C)[0], "fft_imag": lambda o: o.fft(C)[1],
    "fft2": lambda o: o.fft2(C2)[1], "ifft2": lambda o: o.ifft2(C2)[0],
    "rfft": lambda o: o.rfft(S)[1], "rfft_length": lambda o: o.rfft(S, 16)[0],
    "irfft": lambda o: o.irfft(C), "irfft_length": lambda o: o.irfft(C, 10),
    "stft_real": lambda o: o.stft(S, 8, 4, 16)[0], "stft_imag": lambda o: o.stft(S, 8, 4, 16)[1],
    "stft_hamming": lambda o: o.stft(S, 10, 3, 10, "hamming", center=False)[1],
    "stft_no_window": lambda o: o.stft(S, 8, 4, 8, None)[0],
    "stft_array_window": lambda o: o.stft(S, 8, 4, 8, np.arange(8, dtype="float32"))[0],
    "istft": lambda o: o.istft(o.stft(S, 8, 4, 16), 8, 4, 16),
    "istft_length": lambda o: o.istft(o.stft(S, 8, 4, 16), 8, 4, 16, length=30),
    "extract_sequences": lambda o: o.extract_sequences(S, 7, 3),
    "associative_scan": lambda o: o.associative_scan(lambda a, b: a + b, S, axis=1),
    "associative_scan_reverse": lambda o: o.associative_scan(
        lambda a, b: a * b, S[:, :5] * 0.5 + 1, reverse=True, axis=1),
    "associative_scan_pairs": lambda o: o.associative_scan(
        lambda a, b: (a[0] + b[0], o.maximum(a[1], b[1])), (S[0], S[1]))[1],
    "vectorize": lambda o: o.vectorize(lambda a: a * 2 + 1)(S[:, :6]),
    "vectorize_signature": lambda o: o.vectorize(
        lambda a, b: o.sum(a * b), signature="(n),(n)->()")(S.reshape(2, 5, 8), S[0, :8]),
}  # fmt: skip


@pytest.mark.parametrize("name", PARITY)
def test_forward_matches_keras(keras_ops, name):
    ours, theirs = PARITY[name](ops), keras_ops.convert_to_numpy(PARITY[name](keras_ops))
    assert np.shape(ours) == theirs.shape
    assert np.result_type(ours) == theirs.dtype, f"dtype {np.result_type(ours)} vs {theirs.dtype}"
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_istft_inverts_stft():
    """Without centring, torch's istft (Keras's torch backend) drops the last frames'
    samples; the overlap-add here reconstructs every sample the frames cover."""
    x = RNG.standard_normal((2, 40))
    for args, kwargs in (((10, 3, 10), {"window": "hamming", "center": False}),
                         ((8, 4, 16), {})):  # fmt: skip
        spectrum = ops.stft(x, *args, **kwargs)
        back = ops.istft(spectrum, *args, **kwargs)
        np.testing.assert_allclose(back, x[..., : back.shape[-1]], atol=1e-10)
    np.testing.assert_allclose(ops.rfft(x)[0] + 1j * ops.rfft(x)[1], np.fft.rfft(x))


def test_gradients_of_the_differentiable_ones():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 9))
    check_grads(lambda v: ops.extract_sequences(v, 4, 2), x, rng=rng)
    check_grads(lambda v: ops.associative_scan(lambda a, b: a * b + a, v, axis=1), x, rng=rng)
    check_grads(
        lambda v: ops.vectorize(lambda row: ops.sum(row * row), signature="(n)->()")(v), x,
        rng=rng,
    )  # fmt: skip


@pytest.mark.parametrize(
    "call",
    [
        lambda w: ops.rfft(w),
        lambda w: ops.fft((w, w)),
        lambda w: ops.stft(w, 4, 2, 4),
        lambda w: ops.irfft((w, w)),
    ],  # fmt: skip
)
def test_transforms_refuse_tracked_values(call):
    with GradientTape() as tape:
        w = tape.watch(np.ones((2, 8)))
        with pytest.raises(ValueError, match="forward only"):
            call(w)
    call(ops.stop_gradient(w))  # the value alone is fine


ERRORS = {
    "fft_pair": (lambda: ops.fft(S), "fft.*pair"),
    "fft_shapes": (lambda: ops.fft((S, S[:1])), r"fft.*\(2, 40\) and \(1, 40\)"),
    "stft_lengths": (lambda: ops.stft(S, 16, 4, 8), "stft.*fft_length"),
    "stft_window": (lambda: ops.stft(S, 8, 4, 8, "kaiser"), "stft.*window"),
    "stft_dtype": (lambda: ops.stft(np.arange(10), 4, 2, 4), "stft.*int64"),
    "extract_sequences": (lambda: ops.extract_sequences(S, 50, 1), r"extract_sequences.*\(2, 40\)"),
    "associative_scan": (lambda: ops.associative_scan(lambda a, b: a, (S, S[:, :3]), axis=1),
                         r"associative_scan.*\(2, 40\).*\(2, 3\)"),
    "vectorize": (lambda: ops.vectorize(np.sum, signature="(n)->()")(S, S), "vectorize"),
}  # fmt: skip


@pytest.mark.parametrize("name", ERRORS)
def test_errors_name_the_op_and_shapes(name):
    fn, match = ERRORS[name]
    with pytest.raises(ValueError, match=match):
        fn()
