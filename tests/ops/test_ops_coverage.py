"""fastnn.ops has keras.ops's names: every public name of keras.ops, keras.ops.nn,
keras.ops.numpy, keras.ops.linalg and keras.ops.image (Keras 3 on torch, installed) is a
callable of the same name in fastnn.ops and its submodule of that name."""

from __future__ import annotations

import inspect

import pytest

from fastnn import ops


@pytest.mark.parametrize("namespace", ["", "nn", "numpy", "linalg", "image"])
def test_every_keras_op_has_a_fastnn_op(keras_ops, namespace):
    theirs = getattr(keras_ops, namespace) if namespace else keras_ops
    ours = getattr(ops, namespace) if namespace else ops
    wanted = [n for n in dir(theirs) if not n.startswith("_")]
    missing = [n for n in wanted if not hasattr(ours, n)]
    assert not missing, f"fastnn.ops{'.' + namespace if namespace else ''} lacks {missing}"


@pytest.mark.parametrize("namespace", ["", "linalg", "image"])
def test_arguments_have_kerass_names_and_order(keras_ops, namespace):
    """Each op's parameters start with Keras's, in Keras's order (fastnn may take more)."""
    theirs = getattr(keras_ops, namespace) if namespace else keras_ops
    ours = getattr(ops, namespace) if namespace else ops
    wrong = []
    for name in dir(theirs):
        keras_fn, fastnn_fn = getattr(theirs, name), getattr(ours, name, None)
        if name.startswith("_") or not inspect.isfunction(keras_fn) or fastnn_fn is None:
            continue
        try:
            expected = list(inspect.signature(keras_fn).parameters)
            got = list(inspect.signature(fastnn_fn).parameters)
        except (TypeError, ValueError):
            continue
        if got[: len(expected)] != expected and not _variadic(fastnn_fn):
            wrong.append(f"{name}: Keras {expected}, fastnn {got}")
    assert not wrong, "\n".join(wrong)


def _variadic(fn) -> bool:
    kinds = {p.kind for p in inspect.signature(fn).parameters.values()}
    return inspect.Parameter.VAR_POSITIONAL in kinds
