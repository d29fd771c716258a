"""Export models to other formats: ONNX (``fastnn.export.onnx``), needing only the ``onnx``
package (``pip install "fastnn[onnx]"``), imported when an export runs."""

from __future__ import annotations

import os

from fastnn.export.builder import ExportError

#: The formats ``Model.export`` writes.
FORMATS = ("onnx",)


def onnx(
    model,
    path: str | os.PathLike,
    opset: int | None = None,
    batch_size: int | None = None,
    *,
    assume_post_padding: bool = False,
):
    """Write ``model`` (Functional or Sequential, built) as an ONNX file at ``path``.

    Args:
        model: the model; its input and output names become the graph's.
        path: where to write the ``.onnx`` file.
        opset: the ONNX opset to declare (default: the newest the installed onnx knows, at
            most 21); an opset too old for a layer is refused naming the layer.
        batch_size: None for a dynamic batch axis, or an int to fix it.
        assume_post_padding: export a mask (Embedding(mask_zero=True), Masking) reaching a
            recurrent layer as ONNX's ``sequence_lens``: exact for inputs padded at the end
            only; the file gives NaN for a sample padded elsewhere. Without it such a model is
            refused.

    Returns: the ``onnx.ModelProto`` written. Raises ``ExportError`` (a ValueError) naming the
    layer that cannot export, before any file is written.
    """
    # Here, not at the top: the converters cost ~10 ms of `import fastnn` that no model needs
    # until it is exported (tests/robustness/test_import_graph.py, DELIBERATELY_LAZY).
    from fastnn.export import walker

    return walker.export_onnx(model, path, opset, batch_size, assume_post_padding)


def export_model(model, filepath, format: str = "onnx", verbose=None, input_signature=None,
                 **kwargs):  # fmt: skip
    """``Model.export``: Keras 3's signature; ``format="onnx"`` is the one fastnn writes. Says
    where it saved unless ``verbose=False``, as Keras."""
    if format not in FORMATS:
        raise ValueError(
            f"Model '{model.name}'.export: format={format!r} is not supported; fastnn exports "
            f"format={FORMATS[0]!r} only (Keras's 'tf_saved_model', 'openvino', 'litert' and "
            "'torch' need those frameworks)"
        )
    if input_signature is not None:
        raise ValueError(
            f"Model '{model.name}'.export: input_signature is not supported; the ONNX graph "
            "takes the model's own inputs (pass batch_size= to fix the batch axis)"
        )
    opset = kwargs.pop("opset", None)
    opset_version = kwargs.pop("opset_version", None)
    if opset is not None and opset_version is not None and opset != opset_version:
        raise ValueError(
            f"Model '{model.name}'.export: opset={opset} and opset_version={opset_version} "
            "disagree; pass one"
        )
    known = {"batch_size", "assume_post_padding"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(
            f"Model '{model.name}'.export got unexpected arguments {unknown}; it takes opset "
            f"(or opset_version), {sorted(known)}"
        )
    proto = onnx(model, filepath, opset if opset is not None else opset_version, **kwargs)
    if verbose is None or verbose:  # Keras's message, on by default
        print(f"Saved artifact at '{filepath}'.")
    return proto


__all__ = ["FORMATS", "ExportError", "export_model", "onnx"]
