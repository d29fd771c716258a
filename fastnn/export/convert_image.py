"""ONNX converters of the image layers that resample at inference: Resizing, CenterCrop and
RandomCrop (its inference crop); the random augmentations are identities there (convert_core).

A resize is written as Gathers of the rows and columns each output reads and their weights:
the taps fastnn's own kernels compute (``kernels.resize.linear_taps``,
``kernels.affine.nearest_taps``), so the file computes what ``predict`` does, whatever
coordinate rounding a runtime's Resize would use.
"""

from __future__ import annotations

from fastnn import kernels
from fastnn.export.builder import GraphBuilder, Value, position
from fastnn.export.registry import Call, converter
from fastnn.layers import preprocessing_image as image


def _spatial(call: Call, x: Value) -> tuple:
    """(height position, width position, height, width) of ``x`` as stored."""
    h_axis, w_axis = (-2, -1) if call.layer.data_format == "channels_first" else (-3, -2)
    h, w = x.shape[h_axis], x.shape[w_axis]
    if h is None or w is None:
        raise call.refuse(
            f"it needs the input's height and width, which are not known (input shape {x.shape})"
        )
    return position(x, h_axis), position(x, w_axis), h, w


def _resampled(b: GraphBuilder, x: str, axis: int, rank: int, sizes: tuple, how: str, hint):
    """``x`` resized along ``axis`` from ``sizes`` (in, out) by ``how`` (nearest or
    bilinear): the identity at the same size."""
    in_size, out_size = sizes
    if in_size == out_size:
        return x
    if how == "nearest":
        taps = b.ints(kernels.affine.nearest_taps(in_size, out_size), f"{hint}/taps")
        return b.op("Gather", [x, taps], hint, axis=axis)
    lo, hi, frac = kernels.resize.linear_taps(in_size, out_size, b.dtype)
    weight_shape = (out_size,) + (1,) * (rank - 1 - axis)
    low = b.op("Gather", [x, b.ints(lo, f"{hint}/lo")], hint, axis=axis)
    high = b.op("Gather", [x, b.ints(hi, f"{hint}/hi")], hint, axis=axis)
    low = b.op("Mul", [low, b.const((1 - frac).reshape(weight_shape), f"{hint}/w_lo")], hint)
    high = b.op("Mul", [high, b.const(frac.reshape(weight_shape), f"{hint}/w_hi")], hint)
    return b.op("Add", [low, high], hint)


def _crop_and_resize(call: Call, box: tuple, how: str = "bilinear", padding=(0, 0)):
    """The call's input padded by ``padding`` (rows, columns on each side, with the layer's
    ``fill_value``), cropped to ``box`` (top, left, height, width) of that and resized to the
    layer's (height, width)."""
    b, x, layer, hint = call.builder, call.x, call.layer, call.hint
    h_pos, w_pos, h, w = _spatial(call, x)
    name = x.name
    if any(padding):
        pads = [0] * (2 * x.rank)
        pads[h_pos] = pads[x.rank + h_pos] = padding[0]
        pads[w_pos] = pads[x.rank + w_pos] = padding[1]
        fill = b.const(layer.fill_value, f"{hint}/fill")
        name = b.op("Pad", [name, b.ints(pads, f"{hint}/pads"), fill], hint, mode="constant")
    top, left, crop_h, crop_w = box
    if (crop_h, crop_w) != (h + 2 * padding[0], w + 2 * padding[1]):
        ends = [top + crop_h, left + crop_w]
        name = b.slice(name, [top, left], ends, [h_pos, w_pos], hint)
    name = _resampled(b, name, h_pos, x.rank, (crop_h, layer.height), how, f"{hint}/rows")
    name = _resampled(b, name, w_pos, x.rank, (crop_w, layer.width), how, f"{hint}/cols")
    return [Value(name, call.output_shapes[0], x.layout)]


@converter(image.Resizing)
def _resizing(call: Call):
    layer = call.layer
    _, _, h, w = _spatial(call, call.x)
    size = (layer.height, layer.width)
    if layer.crop_to_aspect_ratio:
        return _crop_and_resize(call, image._aspect_crop_box(h, w, *size), layer.interpolation)
    padding = image._aspect_pad(h, w, *size) if layer.pad_to_aspect_ratio else (0, 0)
    box = (0, 0, h + 2 * padding[0], w + 2 * padding[1])
    return _crop_and_resize(call, box, layer.interpolation, padding)


@converter(image.CenterCrop, image.RandomCrop)
def _crop(call: Call):
    """CenterCrop, and RandomCrop at inference: the layer's crop, resized where it is smaller
    than the layer's size."""
    _, _, h, w = _spatial(call, call.x)
    return _crop_and_resize(call, call.layer.inference_box(h, w))
