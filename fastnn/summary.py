"""``model.summary()``: Keras's table of layers, output shapes and parameter counts."""

from __future__ import annotations

from collections import Counter

import numpy as np


def _shape_text(layer, model) -> str:
    nodes = [n for n in layer._inbound_nodes if n in _model_nodes(model)] or layer._inbound_nodes
    if not nodes:
        return "?"
    shapes = [t.shape for n in nodes[:1] for t in n.outputs]
    return str(shapes[0]) if len(shapes) == 1 else str(shapes)


def _model_nodes(model):
    if not model.built or getattr(model, "_graph", None) is None:  # no graph (yet)
        return set()
    nodes = getattr(model, "_node_set", None)
    if nodes is None or nodes[0] is not model._graph:
        nodes = (model._graph, {*model._graph.nodes, *(t.node for t in model._graph.inputs)})
        model._node_set = nodes
    return nodes[1]


def _connected_to(layer, model) -> str:
    in_graph = _model_nodes(model)
    sources = []
    for node in layer._inbound_nodes:
        if node not in in_graph:
            continue
        for t in node.inputs:
            parent = t.node.layer if t.node is not None else None
            if parent is not None:
                index = parent._inbound_nodes.index(t.node)
                sources.append(f"{parent.name}[{index}][{t.index}]")
    return ", ".join(sources) or "-"


def _sequential_like(model) -> bool:
    """Keras's test for leaving out 'Connected to': a Sequential, or a graph with one node per
    depth (depth = longest path to an output), each reading one tensor, and no layer called twice.
    """
    if type(model).__name__ == "Sequential" or getattr(model, "_subclassed", False):
        return True
    graph = model._graph
    nodes = list(dict.fromkeys([*(t.node for t in graph.inputs), *graph.nodes]))
    depth = {}
    for node in reversed(nodes):  # consumers before producers
        d = depth.setdefault(id(node), 0)
        for t in node.inputs:
            depth[id(t.node)] = max(depth.get(id(t.node), 0), d + 1)
    per_depth = Counter(depth[id(n)] for n in nodes)
    if max(per_depth.values()) > 1 or any(len(n.inputs) > 1 for n in nodes):
        return False
    return len({id(n.layer) for n in nodes}) == len(nodes)


#: The layers Keras builds when they are made (it has no weights to create for them): in the
#: summary of a model not built yet they show 0 parameters, the others "0 (unbuilt)".
_KERAS_BUILT_AT_INIT = frozenset(
    [
        "Activation",
        "Dropout",
        "Masking",
        "Reshape",
        *(f"{kind}Pooling{d}D" for kind in ("Max", "Average") for d in (1, 2)),
        *(f"Global{kind}Pooling{d}D" for kind in ("Max", "Average") for d in (1, 2)),
    ]
)


def _params_text(layer) -> str:
    if layer.built:
        return f"{layer.count_params():,}"
    return "0" if type(layer).__name__ in _KERAS_BUILT_AT_INIT else "0 (unbuilt)"


def _type_name(layer) -> str:
    """The class name Keras shows; a Functional model is a ``Model`` instance in fastnn."""
    name = type(layer).__name__
    return "Functional" if name == "Model" else name


def print_summary(
    model, line_length=None, print_fn=None, expand_nested=False, show_trainable=False
) -> None:
    """Print (or pass to ``print_fn`` line by line) the summary table of ``model``; with
    ``expand_nested``, a nested model's layers follow it, indented; with ``show_trainable``, a
    last column says whether each layer with weights is trainable (Y/N), as Keras's does."""
    print_fn = print_fn or print
    print_fn(f'Model: "{model.name}"')
    functional = not _sequential_like(model)
    headers = ["Layer (type)", "Output Shape", "Param #"] + (["Connected to"] if functional else [])
    if show_trainable:
        headers.append("Trainable")
    rows = []
    for layer, parent, level in _listed_layers(model, expand_nested):
        prefix = "   " * level + "└ " if level else ""
        row = [
            f"{prefix}{layer.name} ({_type_name(layer)})",
            _shape_text(layer, parent),
            _params_text(layer),
        ]
        if functional:
            row.append(_connected_to(layer, parent))
        if show_trainable:
            row.append(("Y" if layer.trainable else "N") if layer.weights else "-")
        rows.append(row)
    for line in _box_table(headers, rows, line_length):
        print_fn(line)
    sections = [
        ("Trainable params", _size(w.value for w in model.trainable_weights)),
        ("Non-trainable params", _size(w.value for w in model.non_trainable_weights)),
    ]
    optimizer = getattr(model, "optimizer", None)
    if getattr(model, "compiled", False) and optimizer is not None and optimizer.built:
        # once built, Keras counts the optimizer's state too: iterations, learning rate, slots
        sections.append(("Optimizer params", _size(optimizer.variables)))
    total = (sum(c for _, (c, _) in sections), sum(b for _, (_, b) in sections))
    for label, (count, nbytes) in [("Total params", total), *sections]:
        print_fn(f" {label}: {count:,} ({_bytes_text(nbytes)})")


def _listed_layers(model, expand_nested: bool, level: int = 0):
    """``(layer, the model holding it, nesting level)`` of each row, a nested model's layers
    right after it when ``expand_nested``."""
    for layer in model.layers:
        yield layer, model, level
        if expand_nested and getattr(layer, "layers", None):
            yield from _listed_layers(layer, True, level + 1)


def _box_table(headers, rows, line_length=None) -> list[str]:
    """Keras's table drawing: heavy header box, a rule between rows, numbers right-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    if line_length:  # stretch the first column so the table spans line_length, as Keras does
        widths[0] = max(widths[0], line_length - sum(w + 3 for w in widths[1:]) - 4)
    right = {headers.index("Param #")}
    centered = {headers.index("Trainable")} if "Trainable" in headers else set()

    def align(i, cell, width):
        if i in right:
            return cell.rjust(width)
        return cell.center(width) if i in centered else cell.ljust(width)

    def line(cells, edge):
        padded = [align(i, c, w) for i, (c, w) in enumerate(zip(cells, widths))]
        return edge + f" {edge} ".join(padded).join("  ") + edge

    def rule(left, mid, right_, fill):
        return left + mid.join(fill * (w + 2) for w in widths) + right_

    out = [rule("┏", "┳", "┓", "━"), line(headers, "┃"), rule("┡", "╇", "┩", "━")]
    for i, row in enumerate(rows):
        if i:
            out.append(rule("├", "┼", "┤", "─"))
        out.append(line(row, "│"))
    out.append(rule("└", "┴", "┘", "─"))
    return out


def _size(arrays) -> tuple[int, int]:
    """Element count and bytes of ``arrays``; integer counters take 4 bytes, as Keras's int32."""
    count = nbytes = 0
    for a in arrays:
        a = np.asarray(a)
        count += a.size
        nbytes += a.size * (4 if a.dtype.kind in "iu" else a.itemsize)
    return count, nbytes


def _bytes_text(n: float) -> str:
    """Keras's readable_memory_size: two decimals and the largest unit below 1024."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024:
            return f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} PB"
