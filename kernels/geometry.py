"""Window arithmetic of convolutions and poolings: output sizes and padding, in plain Python.

Layers compute output shapes with these when a model is built, so this family imports no Numba
and loads with fastnn; the conv and pooling kernels take its results as arguments.
"""


def padding_amounts(in_size, k, stride, padding):
    """(out_size, pad_before, pad_after) along one axis, by TensorFlow's 'valid' / 'same' rule."""
    if padding == "same":
        out = -(-in_size // stride)
        total = max((out - 1) * stride + k - in_size, 0)
        before = total // 2
        return out, before, total - before
    if padding == "valid":
        return (in_size - k) // stride + 1, 0, 0
    raise ValueError(f"padding must be 'valid' or 'same'; got {padding!r}")


def conv_geometry(x_shape, kernel_shape, strides, padding):
    """(out_h, out_w, pad_top, pad_left) of a conv of x (N,H,W,C) with kernel (kh,kw,C,F)."""
    _, h, w, _ = x_shape
    kh, kw = kernel_shape[0], kernel_shape[1]
    out_h, pad_top, _ = padding_amounts(h, kh, strides[0], padding)
    out_w, pad_left, _ = padding_amounts(w, kw, strides[1], padding)
    return out_h, out_w, pad_top, pad_left


def transpose_axis(
    size: int | None, kernel: int, stride: int, dilation: int, padding: str, output_padding
) -> tuple[int | None, int]:
    """(output size, crop) of a transposed conv along one axis, by Keras 3's rules: the output is
    the full one ((size-1)*stride + extent rows) less ``crop`` rows before it, cut or extended
    with zeros after it to the output size; output_padding None or an int. The size is None for
    an unknown size."""
    extent = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(extent, stride) - extent if output_padding is None else output_padding
        return None if size is None else (size - 1) * stride + extent + extra, 0
    # Keras pads the stride-dilated input by `before` and `total - before` for a conv by the
    # flipped kernel: the full output has extent - 1 of padding before, so `crop` rows are cut
    if output_padding is None:
        total = stride + extent - 2
        out = None if size is None else size * stride
    else:
        total = extent + extent % 2 - 2 + output_padding
        out = None if size is None else (size - 1) * stride + extent % 2 + output_padding
    before = min(total // 2 + total % 2, extent - 1)
    return out, extent - 1 - before
