"""Pictures: training curves (``plot_history``), the layer graph (``model_to_dot``, ``plot_model``).

Neither tool is needed to import this module: matplotlib is imported when ``plot_history`` runs,
and ``model_to_dot`` writes DOT source itself, so only rendering an image runs Graphviz's ``dot``.
"""

from __future__ import annotations

import html
import math
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from fastnn.layers.core import InputLayer
from fastnn.models import Model, Sequential
from fastnn.summary import _model_nodes, _type_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from fastnn.callbacks import History

#: Formats written as DOT source, without Graphviz.
SOURCE_FORMATS = ("dot", "gv", "raw")


# ---- training curves ---------------------------------------------------------------------------
def plot_history(
    history: History | Mapping[str, Sequence[float]],
    path: str | os.PathLike | None = None,
    metrics: str | Sequence[str] | None = None,
) -> Figure:
    """Plot loss and metrics per epoch, training next to ``val_``; save to ``path``; return it.

    Args:
        history: what ``fit()`` returns (a ``History``), or its ``.history`` dict.
        path: file to write; the suffix picks the format (``.png``, ``.svg``, ``.pdf``).
            ``None`` only returns the figure.
        metrics: the names to plot, one subplot each (``"loss"``, ``"accuracy"``, or a
            ``"val_..."`` key alone). Default: every name in the history, loss first.

    Example: ``plot_history(model.fit(x, y, validation_split=0.2), "history.png")``.
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, Mapping):
        raise TypeError(
            "plot_history() expects the History returned by fit() or its .history dict; "
            f"got {type(history).__name__}"
        )
    logs = {key: [float(v) for v in values] for key, values in logs.items() if len(values)}
    if not logs:
        raise ValueError("plot_history(): the history is empty; train with fit() first")
    panels = _history_panels(logs, metrics)
    figure_class, canvas_class, integer_ticks = _matplotlib()

    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    figure = figure_class(figsize=(4.5 * cols, 3.4 * rows), layout="constrained")
    # An Agg canvas of this figure's own: pyplot, its figures and its backend stay as they are.
    canvas_class(figure)
    epochs = [e + 1 for e in getattr(history, "epoch", [])]
    for i, (title, series) in enumerate(panels):
        axes = figure.add_subplot(rows, cols, i + 1)
        for label, key in series:
            values = logs[key]
            x = epochs if len(epochs) == len(values) else range(1, len(values) + 1)
            axes.plot(x, values, marker="o" if len(values) <= 30 else None, label=label)
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(integer_ticks(integer=True))
        axes.grid(alpha=0.3)
        if len(series) > 1:
            axes.legend()
    if path is not None:
        figure.savefig(os.fspath(path))
    return figure


def _history_panels(logs: dict, metrics) -> list[tuple[str, list[tuple[str, str]]]]:
    """(title, [(legend label, history key), ...]) for each subplot."""
    names = list(dict.fromkeys(k[4:] if k.startswith("val_") else k for k in logs))
    if "loss" in names:
        names.insert(0, names.pop(names.index("loss")))
    wanted = names if metrics is None else [metrics] if isinstance(metrics, str) else list(metrics)
    if not wanted:
        raise ValueError(f"plot_history(): `metrics` is empty; available: {names}")
    panels = []
    for name in wanted:
        if name in names:
            pairs = (("training", name), ("validation", f"val_{name}"))
            panels.append((name, [(label, key) for label, key in pairs if key in logs]))
        elif isinstance(name, str) and name in logs:  # e.g. "val_loss" on its own
            panels.append((name, [("validation" if name.startswith("val_") else "training", name)]))
        else:
            raise ValueError(
                f"plot_history(): no metric {name!r} in the history; available: {names}"
            )
    return panels


def _matplotlib():
    """matplotlib's Figure, Agg canvas and integer tick locator, or an ImportError that says how."""
    try:  # here, not at module level: matplotlib is optional
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as error:
        raise ImportError(
            'plot_history() needs matplotlib, which is not installed: pip install "fastnn[plot]"'
        ) from error
    return Figure, FigureCanvasAgg, MaxNLocator


# ---- the layer graph ---------------------------------------------------------------------------
class DotGraph:
    """A Graphviz graph held as DOT source; ``create``/``write`` render it with ``dot``.

    ``nodes`` maps node ids to HTML-like labels, ``edges`` lists (source id, target id) pairs and
    ``subgraphs`` holds the clusters of nested models (``expand_nested=True``).
    """

    def __init__(self, name: str, attributes: dict | None = None, cluster: bool = False):
        self.name = name
        self.attributes = dict(attributes or {})
        self.cluster = cluster
        self.nodes: dict[str, str] = {}
        self.edges: list[tuple[str, str]] = []
        self.subgraphs: list[DotGraph] = []

    def to_string(self) -> str:
        """The DOT source of the graph."""
        return "\n".join(self._lines("")) + "\n"

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        kind = "cluster" if self.cluster else "graph"
        return f"<DotGraph {kind} {self.name!r}: {len(self.nodes)} nodes, {len(self.edges)} edges>"

    def _lines(self, pad: str) -> list[str]:
        if self.cluster:
            lines = [f"{pad}subgraph {_quote('cluster_' + self.name)} {{"]
        else:
            lines = [f"{pad}digraph {_quote(self.name)} {{"]
        inner = pad + "  "
        lines += [f"{inner}{key}={_quote(value)};" for key, value in self.attributes.items()]
        if not self.cluster:
            lines.append(f'{inner}graph [fontname="Helvetica"];')
            lines.append(f'{inner}node [shape=plaintext, fontname="Helvetica"];')
            lines.append(f"{inner}edge [penwidth=2];")
        lines += [f"{inner}{_quote(node)} [label=<{label}>];" for node, label in self.nodes.items()]
        for subgraph in self.subgraphs:
            lines += subgraph._lines(inner)
        lines += [f"{inner}{_quote(src)} -> {_quote(dst)};" for src, dst in self.edges]
        lines.append(pad + "}")
        return lines

    def create(self, prog: str = "dot", format: str = "png") -> bytes:
        """Render with Graphviz's ``prog`` executable into ``format`` (png, svg, pdf, ...)."""
        executable = shutil.which(prog)
        if executable is None:
            raise ImportError(
                f"Rendering a model plot needs Graphviz: the `{prog}` executable is not on PATH. "
                "Install Graphviz (https://graphviz.org/download/, e.g. `apt install graphviz` or "
                "`brew install graphviz`), or write DOT source instead: "
                "plot_model(model, to_file='model.dot')."
            )
        source = _as_digraph(self) if self.cluster else self.to_string()
        done = subprocess.run(
            [executable, f"-T{format}"], input=source.encode("utf-8"), capture_output=True
        )
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip()
            raise OSError(
                f"Graphviz `{prog} -T{format}` failed with exit code {done.returncode}: {message}"
            )
        return done.stdout

    def write(self, path: str | os.PathLike, format: str | None = None) -> None:
        """Write to ``path``: DOT source for .dot/.gv, else an image in the suffix's format."""
        path = os.fspath(path)
        format = (format or os.path.splitext(path)[1][1:] or "png").lower()
        if format in SOURCE_FORMATS:
            data = self.to_string().encode("utf-8")
        else:
            data = self.create(format=format)  # before opening: a failure leaves no empty file
        with open(path, "wb") as file:
            file.write(data)


def _as_digraph(cluster: DotGraph) -> str:
    """A cluster on its own (``subgraph=True``) wrapped in a digraph so Graphviz can render it."""
    return f"digraph {_quote(cluster.name)} {{\n" + "\n".join(cluster._lines("  ")) + "\n}\n"


def _quote(value) -> str:
    """A DOT double-quoted string: backslash and quote escaped, newlines as ``\\n``."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def model_to_dot(
    model: Model,
    show_shapes: bool = False,
    show_dtype: bool = False,
    show_layer_names: bool = True,
    rankdir: str = "TB",
    expand_nested: bool = False,
    dpi: int = 200,
    subgraph: bool = False,
    show_layer_activations: bool = False,
    show_trainable: bool = False,
    splines: str = "ortho",
) -> DotGraph:
    """The model's layer graph as a ``DotGraph``: one node per layer, one edge per connection.

    Args are Keras 3's: ``show_shapes`` adds input/output shapes to each node, ``show_dtype`` the
    output dtype, ``show_layer_names`` the name next to the class, ``rankdir`` "TB" (vertical) or
    "LR" (horizontal), ``expand_nested`` draws nested models as clusters of their layers,
    ``dpi`` the image resolution, ``subgraph`` returns the graph as a cluster,
    ``show_layer_activations`` the activation, ``show_trainable`` whether the weights train,
    ``splines`` how edges are drawn ("ortho", "curved", "polyline", "spline", "line").
    No pydot or Graphviz needed: ``str(graph)`` is the DOT source.
    """
    _check_model(model, "model_to_dot()")
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise ValueError(f"`rankdir` must be 'TB', 'LR', 'BT' or 'RL'; got rankdir={rankdir!r}")
    show = {
        "shapes": show_shapes,
        "dtype": show_dtype,
        "names": show_layer_names,
        "activations": show_layer_activations,
        "trainable": show_trainable,
    }
    if subgraph:
        graph = DotGraph(model.name, _cluster_attributes(model), cluster=True)
    else:
        attributes = {"rankdir": rankdir, "concentrate": "true", "dpi": dpi, "splines": splines}
        graph = DotGraph(model.name, attributes)
    _add_model(graph, model, show, expand_nested, {}, "")
    return graph


def plot_model(
    model: Model,
    to_file: str | os.PathLike = "model.png",
    show_shapes: bool = False,
    show_dtype: bool = False,
    show_layer_names: bool = False,
    rankdir: str = "TB",
    expand_nested: bool = False,
    dpi: int = 200,
    show_layer_activations: bool = False,
    show_trainable: bool = False,
    splines: str = "ortho",
) -> None:
    """Draw the model's layer graph into ``to_file``: png/svg/pdf via Graphviz, .dot as source.

    Arguments as ``model_to_dot`` (Keras 3's, including ``show_layer_names=False`` by default).
    Raises ImportError naming Graphviz when an image is asked for and ``dot`` is not on PATH.
    """
    graph = model_to_dot(
        model,
        show_shapes=show_shapes,
        show_dtype=show_dtype,
        show_layer_names=show_layer_names,
        rankdir=rankdir,
        expand_nested=expand_nested,
        dpi=dpi,
        show_layer_activations=show_layer_activations,
        show_trainable=show_trainable,
        splines=splines,
    )
    graph.write(to_file)


def _check_model(model, caller: str) -> None:
    if not isinstance(model, Model):
        raise TypeError(
            f"{caller} expects a fastnn Model or Sequential; got {type(model).__name__}"
        )
    if not model.built:
        raise ValueError(
            f"{caller}: model '{model.name}' has not been built yet. Build it first: give the "
            "first layer `input_shape=`, start with fastnn.Input(...), call build(input_shape), "
            "or call it on a batch of data."
        )


def _cluster_attributes(model) -> dict:
    return {"label": model.name, "labeljust": "l", "style": "dashed"}


def _add_model(graph: DotGraph, model, show: dict, expand: bool, ids: dict, prefix: str) -> None:
    """Add ``model``'s layers as nodes (or clusters) of ``graph``, and its connections as edges.

    ``ids`` maps id(layer) to its node id across the whole drawing; node ids are the layer
    names, prefixed by the enclosing model names when nested models are expanded.
    """
    layers = model.layers
    for layer in layers:
        if id(layer) in ids:  # one layer, one node, however many models share it
            continue
        if expand and isinstance(layer, Model):
            ids[id(layer)] = None  # drawn as its layers; edges resolve to them
            cluster = DotGraph(prefix + layer.name, _cluster_attributes(layer), cluster=True)
            _add_model(cluster, layer, show, expand, ids, f"{prefix}{layer.name}/")
            graph.subgraphs.append(cluster)
        else:
            ids[id(layer)] = prefix + layer.name
            graph.nodes[prefix + layer.name] = _label(layer, model, show)
    drawn = {id(layer) for layer in layers}  # a Sequential's own InputLayer is not drawn
    for node in model._graph.nodes:
        if id(node.layer) not in drawn:
            continue
        for position, tensor in enumerate(node.inputs):
            source = tensor.node.layer
            if id(source) not in drawn:
                continue
            if expand:
                source = _producer(source, tensor.index)
                target = _consumer(node.layer, position)
            else:
                target = node.layer
            edge = (ids.get(id(source)), ids.get(id(target)))
            if None not in edge and edge not in graph.edges:
                graph.edges.append(edge)


def _producer(layer, index: int):
    """The innermost layer that computes output ``index`` of ``layer`` (a model or a layer)."""
    while isinstance(layer, Model):
        tensor = layer.outputs[index]
        layer, index = tensor.node.layer, tensor.index
    return layer


def _consumer(layer, position: int):
    """The innermost layer that reads input ``position`` of ``layer`` (a model or a layer)."""
    while isinstance(layer, Model):
        if isinstance(layer, Sequential):  # its InputLayer is not drawn: go to the first layer
            layer, position = layer.layers[0], 0
        else:
            layer = layer.inputs[position].node.layer
    return layer


def _label(layer, model, show: dict) -> str:
    """An HTML-like table: name and class, then activation, shapes, dtype, trainable."""
    calls = [n for n in layer._inbound_nodes if n in _model_nodes(model)]
    kind = html.escape(_type_name(layer), quote=False)
    if show["names"]:
        title = f"<b>{html.escape(layer.name, quote=False)}</b> ({kind})"
    else:
        title = f"<b>{kind}</b>"
    cells = []  # (text, background color or None)
    if show["shapes"]:
        if not isinstance(layer, InputLayer):
            cells.append((f"Input shape: <b>{_calls_text(calls, 'inputs', _shape)}</b>", None))
        cells.append((f"Output shape: <b>{_calls_text(calls, 'outputs', _shape)}</b>", None))
    if show["dtype"]:
        cells.append((f"Output dtype: <b>{_calls_text(calls, 'outputs', _dtype)}</b>", None))
    if show["trainable"] and layer.weights:
        word, color = (
            ("Trainable", "forestgreen") if layer.trainable else ("Non-trainable", "firebrick")
        )
        cells.append((f'<font color="white"><b>{word}</b></font>', color))
    span = max(1, len(cells))
    rows = [
        f'<tr><td colspan="{span}" bgcolor="#262626"><font color="white">{title}</font></td></tr>'
    ]
    activation = getattr(layer, "activation", None) if show["activations"] else None
    if activation is not None:
        name = html.escape(str(getattr(activation, "__name__", activation)), quote=False)
        rows.append(f'<tr><td colspan="{span}">Activation: <b>{name}</b></td></tr>')
    if cells:
        tds = [
            f'<td bgcolor="{color}">{text}</td>' if color else f"<td>{text}</td>"
            for text, color in cells
        ]
        rows.append(f"<tr>{''.join(tds)}</tr>")
    table = '<table border="0" cellborder="1" cellspacing="0" cellpadding="6">'
    return table + "".join(rows) + "</table>"


def _shape(tensor) -> str:
    return str(tensor.shape)


def _dtype(tensor) -> str:
    return tensor.dtype.name


def _calls_text(calls, side: str, describe) -> str:
    """What the layer's calls in this model read or return; 'multiple' when the calls differ."""
    texts = set()
    for node in calls:
        parts = [describe(t) for t in getattr(node, side)]
        as_list = node.inputs_are_list if side == "inputs" else node.outputs_are_list
        texts.add(f"[{', '.join(parts)}]" if as_list else ", ".join(parts))
    if not texts:
        return "?"
    return html.escape(texts.pop() if len(texts) == 1 else "multiple", quote=False)
