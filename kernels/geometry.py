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
