"""``model.summary()``: Keras's table of layers, output shapes and parameter counts."""

from __future__ import annotations


def _shape_text(layer, model) -> str:
    nodes = [n for n in layer._inbound_nodes if n in _model_nodes(model)] or layer._inbound_nodes
    if not nodes:
        return "?"
    shapes = [t.shape for n in nodes[:1] for t in n.outputs]
    return str(shapes[0]) if len(shapes) == 1 else str(shapes)


def _model_nodes(model):
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


def print_summary(model, line_length=None, print_fn=None) -> None:
    """Print (or pass to ``print_fn`` line by line) the summary table of ``model``."""
    print_fn = print_fn or print
    layers = model.layers
    functional = type(model).__name__ != "Sequential" and any(
        len([t for n in lay._inbound_nodes for t in n.inputs]) > 1 for lay in layers
    )
    headers = ["Layer (type)", "Output Shape", "Param #"] + (["Connected to"] if functional else [])
    rows = []
    for layer in layers:
        params = layer.count_params() if layer.built else 0
        row = [f"{layer.name} ({type(layer).__name__})", _shape_text(layer, model), f"{params:,}"]
        if functional:
            row.append(_connected_to(layer, model))
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) + 2 for i, h in enumerate(headers)]
    total_width = line_length or sum(widths)
    rule = "━" * total_width

    def fmt(cells):
        return "".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    print_fn(f'Model: "{model.name}"')
    print_fn(rule)
    print_fn(fmt(headers))
    print_fn(rule)
    for i, row in enumerate(rows):
        print_fn(fmt(row))
        if i < len(rows) - 1:
            print_fn("─" * total_width)
    print_fn(rule)
    trainable = sum(w.value.size for w in model.trainable_weights)
    total = sum(w.value.size for w in model.weights)
    for label, count in (
        ("Total params", total),
        ("Trainable params", trainable),
        ("Non-trainable params", total - trainable),
    ):
        print_fn(f" {label}: {count:,} ({_bytes_text(count * 4)})")


def _bytes_text(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.2f} GB"
