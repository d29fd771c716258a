"""summary(show_trainable=True, expand_nested=True): the rows Keras 3 prints (names, shapes,
parameter counts, the Trainable column and nested layers' rows), as the transfer learning guide
shows them. Keras pads and wraps its cells to the terminal's width; the cells are compared."""

import pytest
from keras_twin import keras_module


def summary_rows(model, **options) -> list[tuple]:
    """The table's rows as cell tuples (cells wrapped over several lines joined), the ANSI
    colours Keras may print removed."""
    lines = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line), **options)
    rows, cells = [], None
    for line in "\n".join(lines).splitlines():
        if line.startswith("│"):
            parts = [c.strip() for c in line.split("│")[1:-1]]
            cells = parts if cells is None else [f"{a} {b}".strip() for a, b in zip(cells, parts)]
        elif cells is not None:
            rows.append(tuple(c.replace("…", "") for c in cells))
            cells = None
    return rows


def frozen_base_model(k):
    base = k.Sequential(
        [k.Input((4,)), k.layers.Dense(3), k.layers.BatchNormalization()], name="base"
    )
    base.trainable = False
    inputs = k.Input((4,), name="x")
    outputs = k.layers.Dense(1, name="head")(k.layers.Dropout(0.1, name="drop")(base(inputs)))
    return k.Model(inputs, outputs, name="top")


@pytest.mark.parametrize("expand_nested", [False, True])
def test_trainable_column_and_nested_rows_match_keras(expand_nested):
    import fastnn

    keras = keras_module()
    theirs = summary_rows(
        frozen_base_model(keras), show_trainable=True, expand_nested=expand_nested
    )
    ours = summary_rows(frozen_base_model(fastnn), show_trainable=True, expand_nested=expand_nested)
    # layer names may differ by their auto-numbering: compare each row without the name's id
    assert [row[1:] for row in ours] == [row[1:] for row in theirs]
    assert [row[-1] for row in ours] == ["-", "N", *(["N", "N"] * expand_nested), "-", "Y"]
    assert [row[0].split(" (")[-1] for row in ours] == [row[0].split(" (")[-1] for row in theirs]
