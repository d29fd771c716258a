"""Pictures: model_to_dot / plot_model write DOT without Graphviz; plot_history draws curves."""

import os
import re
import shutil
import stat
import sys

import numpy as np
import pytest

import fastnn
from fastnn import callbacks, layers, plotting
from fastnn.utils import model_to_dot, plot_history, plot_model

QUOTED = r'"(?:[^"\\]|\\.)*"'
NODE_LINE = re.compile(rf"^\s*{QUOTED} \[label=<.*>\];$")
EDGE_LINE = re.compile(rf"^\s*{QUOTED} -> {QUOTED};$")


def all_nodes(graph) -> dict:
    nodes = dict(graph.nodes)
    for sub in graph.subgraphs:
        nodes.update(all_nodes(sub))
    return nodes


def all_edges(graph) -> set:
    edges = set(graph.edges)
    for sub in graph.subgraphs:
        edges |= all_edges(sub)
    return edges


def assert_well_formed(source: str) -> None:
    """Every line is a header, an attribute, a node, an edge or a closing brace; quotes balance."""
    assert source.startswith("digraph ") and source.rstrip().endswith("}")
    assert source.count("{") == source.count("}")
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith(("digraph ", "subgraph ")):
            assert re.fullmatch(rf"(digraph|subgraph) {QUOTED} \{{", stripped), line
        elif "[label=<" in stripped:
            assert NODE_LINE.match(line), line
        elif " -> " in stripped:
            assert EDGE_LINE.match(line), line
        elif stripped not in ("}",) and not stripped.startswith(("graph [", "node [", "edge [")):
            assert re.fullmatch(rf"\w+={QUOTED};", stripped), line


def sequential_model():
    return fastnn.Sequential(
        [
            layers.Dense(8, activation="relu", input_shape=(4,), name="hidden"),
            layers.Dropout(0.1, name="drop"),
            layers.Dense(3, activation="softmax", name="probs"),
        ],
        name="seq",
    )


def two_branch_model():
    info = fastnn.Input(shape=(10,), name="user_info")
    behavior = fastnn.Input(shape=(5,), name="user_behavior")
    x1 = layers.Dense(32, activation="relu", name="info_dense")(info)
    x2 = layers.Dense(16, activation="relu", name="behavior_dense")(behavior)
    merged = layers.Concatenate(name="merge")([x1, x2])
    out = layers.Dense(1, activation="sigmoid", name="purchase_prob")(merged)
    return fastnn.Model(inputs=[info, behavior], outputs=out, name="two_branch")


def test_sequential_is_a_chain_without_its_input_layer():
    graph = model_to_dot(sequential_model())
    assert list(graph.nodes) == ["hidden", "drop", "probs"]
    assert graph.edges == [("hidden", "drop"), ("drop", "probs")]
    source = graph.to_string()
    assert_well_formed(source)
    assert str(graph) == source
    assert '"hidden" -> "drop";' in source
    assert 'rankdir="TB";' in source and 'dpi="200";' in source and 'splines="ortho";' in source
    assert "<b>hidden</b> (Dense)" in graph.nodes["hidden"]


def test_two_branch_model_joins_at_the_concatenate():
    graph = model_to_dot(two_branch_model(), rankdir="LR", dpi=96)
    assert set(graph.nodes) == {
        "user_info",
        "user_behavior",
        "info_dense",
        "behavior_dense",
        "merge",
        "purchase_prob",
    }
    assert set(graph.edges) == {
        ("user_info", "info_dense"),
        ("user_behavior", "behavior_dense"),
        ("info_dense", "merge"),
        ("behavior_dense", "merge"),
        ("merge", "purchase_prob"),
    }
    source = graph.to_string()
    assert_well_formed(source)
    assert 'rankdir="LR";' in source and 'dpi="96";' in source
    assert "(InputLayer)" in graph.nodes["user_info"]


def test_multi_output_layer_has_an_edge_to_each_head():
    inputs = fastnn.Input(shape=(6,), name="x")
    trunk = layers.Dense(8, activation="relu", name="trunk")(inputs)
    age = layers.Dense(1, name="age")(trunk)
    gender = layers.Dense(1, activation="sigmoid", name="gender")(trunk)
    model = fastnn.Model(inputs, [age, gender], name="heads")
    graph = model_to_dot(model)
    assert set(graph.edges) == {("x", "trunk"), ("trunk", "age"), ("trunk", "gender")}
    assert_well_formed(graph.to_string())


def test_shared_layer_is_one_node_with_several_edges():
    left = fastnn.Input(shape=(4,), name="left")
    right = fastnn.Input(shape=(4,), name="right")
    shared = layers.Dense(3, name="shared")
    merged = layers.Add(name="add")([shared(left), shared(right)])
    model = fastnn.Model([left, right], merged, name="siamese")
    graph = model_to_dot(model, show_shapes=True)
    assert list(graph.nodes).count("shared") == 1
    assert set(graph.edges) == {("left", "shared"), ("right", "shared"), ("shared", "add")}
    # both calls read (None, 4): the shapes are still known
    assert "Input shape: <b>(None, 4)</b>" in graph.nodes["shared"]


def test_shared_layer_called_on_different_shapes_says_multiple():
    short = fastnn.Input(shape=(4,), name="short")
    long = fastnn.Input(shape=(8,), name="long")
    act = layers.Activation("relu", name="act")
    model = fastnn.Model([short, long], [act(short), act(long)], name="two_shapes")
    label = model_to_dot(model, show_shapes=True).nodes["act"]
    assert "Input shape: <b>multiple</b>" in label and "Output shape: <b>multiple</b>" in label


def nested_model():
    inner_in = fastnn.Input(shape=(4,), name="inner_in")
    inner_out = layers.Dense(2, name="inner_dense")(layers.Dense(8, name="inner_hidden")(inner_in))
    inner = fastnn.Model(inner_in, inner_out, name="encoder")
    stack = fastnn.Sequential([layers.Dense(3, name="s1"), layers.Dense(1, name="s2")], name="head")
    x = fastnn.Input(shape=(4,), name="x")
    out = stack(inner(layers.Dense(4, name="pre")(x)))
    return fastnn.Model(x, out, name="outer")


def test_nested_models_are_one_node_each_by_default():
    graph = model_to_dot(nested_model())
    assert list(graph.nodes) == ["x", "pre", "encoder", "head"]
    assert graph.edges == [("x", "pre"), ("pre", "encoder"), ("encoder", "head")]
    assert "<b>encoder</b> (Functional)" in graph.nodes["encoder"]
    assert "<b>head</b> (Sequential)" in graph.nodes["head"]
    assert not graph.subgraphs


def test_expand_nested_draws_clusters_and_edges_into_them():
    graph = model_to_dot(nested_model(), expand_nested=True, show_shapes=True)
    assert [sub.name for sub in graph.subgraphs] == ["encoder", "head"]
    encoder, head = graph.subgraphs
    assert list(encoder.nodes) == [
        "encoder/inner_in",
        "encoder/inner_hidden",
        "encoder/inner_dense",
    ]
    assert list(head.nodes) == ["head/s1", "head/s2"]  # a Sequential's InputLayer is not drawn
    assert all_edges(graph) == {
        ("x", "pre"),
        ("pre", "encoder/inner_in"),  # into a Functional: its InputLayer
        ("encoder/inner_in", "encoder/inner_hidden"),
        ("encoder/inner_hidden", "encoder/inner_dense"),
        ("encoder/inner_dense", "head/s1"),  # out of the layer that makes the output
        ("head/s1", "head/s2"),
    }
    source = graph.to_string()
    assert_well_formed(source)
    assert 'subgraph "cluster_encoder" {' in source and 'style="dashed";' in source
    assert "Output shape: <b>(None, 2)</b>" in all_nodes(graph)["encoder/inner_dense"]


def test_subgraph_returns_a_cluster():
    cluster = model_to_dot(sequential_model(), subgraph=True)
    assert cluster.cluster
    assert cluster.to_string().startswith('subgraph "cluster_seq" {')


def test_odd_names_are_escaped():
    odd = 'in "quotes" \\ <b>&amp;'
    inputs = fastnn.Input(shape=(3,), name=odd)
    out = layers.Dense(1, name="a->b;{x}")(inputs)
    model = fastnn.Model(inputs, out, name='model "m"')
    graph = model_to_dot(model)
    source = graph.to_string()
    assert_well_formed(source)
    assert source.startswith('digraph "model \\"m\\"" {')
    quoted = '"in \\"quotes\\" \\\\ <b>&amp;"'
    assert f"{quoted} -> " in source and '"a->b;{x}";' in source
    label = graph.nodes[odd]
    assert "in &quot;" not in label  # text needs no quote escaping in HTML-like labels
    assert '<b>in "quotes" \\ &lt;b&gt;&amp;amp;</b>' in label


def test_show_options_fill_the_table():
    model = two_branch_model()
    model.get_layer("info_dense").trainable = False
    graph = model_to_dot(
        model,
        show_shapes=True,
        show_dtype=True,
        show_layer_activations=True,
        show_trainable=True,
    )
    merge = graph.nodes["merge"]
    assert "Input shape: <b>[(None, 32), (None, 16)]</b>" in merge
    assert "Output shape: <b>(None, 48)</b>" in merge and "Output dtype: <b>float32</b>" in merge
    assert "Trainable" not in merge  # no weights, no badge
    source_node = graph.nodes["user_info"]
    assert "Input shape" not in source_node and "Output shape: <b>(None, 10)</b>" in source_node
    assert "Activation: <b>sigmoid</b>" in graph.nodes["purchase_prob"]
    assert "<b>Non-trainable</b>" in graph.nodes["info_dense"]
    assert "<b>Trainable</b>" in graph.nodes["behavior_dense"]
    plain = model_to_dot(model).nodes["merge"]
    assert "shape" not in plain and "Activation" not in plain
    nameless = model_to_dot(model, show_layer_names=False).nodes["merge"]
    assert "merge" not in nameless and "<b>Concatenate</b>" in nameless


def test_model_to_dot_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"rankdir.*got rankdir='XY'"):
        model_to_dot(sequential_model(), rankdir="XY")
    with pytest.raises(TypeError, match="expects a fastnn Model"):
        model_to_dot(layers.Dense(3))
    with pytest.raises(ValueError, match="'unbuilt' has not been built"):
        model_to_dot(fastnn.Sequential([layers.Dense(3)], name="unbuilt"))


def test_plot_model_writes_dot_source_without_graphviz(tmp_path, monkeypatch):
    monkeypatch.setattr(plotting.shutil, "which", lambda prog: None)
    path = tmp_path / "model.dot"
    assert plot_model(two_branch_model(), to_file=path, show_shapes=True) is None
    source = path.read_text()
    assert_well_formed(source)
    assert '"merge" -> "purchase_prob";' in source and "Output shape" in source
    assert "<b>merge</b>" not in source  # Keras 3's plot_model: show_layer_names=False


def test_plot_model_to_png_names_graphviz_when_dot_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    path = tmp_path / "model.png"
    with pytest.raises(ImportError, match=r"needs Graphviz: the `dot` executable is not on PATH"):
        plot_model(sequential_model(), to_file=path)
    assert not path.exists()


def fake_dot(directory, script: str):
    directory.mkdir()
    program = directory / "dot"
    program.write_text("#!/bin/sh\n" + script)
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    return f"{directory}{os.pathsep}{os.environ['PATH']}"  # first on PATH; sh still finds cat


@pytest.mark.skipif(sys.platform == "win32", reason="a shell-script stand-in for dot")
def test_create_and_write_run_the_dot_executable(tmp_path, monkeypatch):
    # A stand-in for Graphviz that echoes its format argument and the DOT source it reads.
    monkeypatch.setenv("PATH", fake_dot(tmp_path / "bin", 'printf "rendered %s\\n" "$1"; cat\n'))
    graph = model_to_dot(sequential_model())
    assert graph.create(format="svg") == b"rendered -Tsvg\n" + graph.to_string().encode()
    plot_model(sequential_model(), to_file=tmp_path / "model.pdf")
    assert (tmp_path / "model.pdf").read_bytes().startswith(b"rendered -Tpdf\n")
    plot_model(sequential_model(), to_file=tmp_path / "no_suffix")
    assert (tmp_path / "no_suffix").read_bytes().startswith(b"rendered -Tpng\n")


@pytest.mark.skipif(sys.platform == "win32", reason="a shell-script stand-in for dot")
def test_a_failing_dot_raises_with_its_message(tmp_path, monkeypatch):
    script = 'cat > /dev/null; echo "Format: bad" >&2; exit 1\n'
    monkeypatch.setenv("PATH", fake_dot(tmp_path / "bin", script))
    with pytest.raises(OSError, match=r"`dot -Tbad` failed with exit code 1: Format: bad"):
        model_to_dot(sequential_model()).create(format="bad")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_real_graphviz_renders_svg(tmp_path):
    path = tmp_path / "model.svg"
    plot_model(two_branch_model(), to_file=path, show_shapes=True, expand_nested=True)
    assert "<svg" in path.read_text()


# ---- plot_history ------------------------------------------------------------------------------
def fitted_history():
    fastnn.utils.set_random_seed(0)
    model = sequential_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 4)).astype("float32"), rng.integers(0, 3, 64)
    return model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0)


def test_plot_history_writes_a_png_of_a_real_fit(tmp_path):
    pytest.importorskip("matplotlib")
    had_pyplot = "matplotlib.pyplot" in sys.modules
    history = fitted_history()
    path = tmp_path / "history.png"
    figure = plot_history(history, path)
    assert path.read_bytes().startswith(b"\x89PNG") and os.path.getsize(path) > 1000
    titles = [axes.get_title() for axes in figure.axes]
    assert titles == ["loss", "accuracy"]
    for axes in figure.axes:
        assert [line.get_label() for line in axes.get_lines()] == ["training", "validation"]
        assert list(axes.get_lines()[0].get_xdata()) == [1, 2, 3]
    np.testing.assert_allclose(
        figure.axes[0].get_lines()[1].get_ydata(), history.history["val_loss"]
    )
    if not had_pyplot:
        assert "matplotlib.pyplot" not in sys.modules  # the user's pyplot state is left alone


def test_plot_history_takes_a_dict_and_picks_metrics(tmp_path):
    pytest.importorskip("matplotlib")
    logs = {"loss": [1.0, 0.5], "val_loss": [1.2, 0.8], "accuracy": [0.5, 0.7]}
    figure = plot_history(logs, tmp_path / "h.svg", metrics="accuracy")
    assert [a.get_title() for a in figure.axes] == ["accuracy"]
    assert "<svg" in (tmp_path / "h.svg").read_text()
    only_val = plot_history(logs, metrics=["val_loss"])
    assert [line.get_label() for line in only_val.axes[0].get_lines()] == ["validation"]
    plot_history(logs, tmp_path / "h.pdf")
    assert (tmp_path / "h.pdf").read_bytes().startswith(b"%PDF")


def test_plot_history_errors():
    pytest.importorskip("matplotlib")
    logs = {"loss": [1.0], "val_loss": [1.1], "accuracy": [0.5], "val_accuracy": [0.4]}
    with pytest.raises(ValueError, match=r"no metric 'acc'.*available: \['loss', 'accuracy'\]"):
        plot_history(logs, metrics=["acc"])
    with pytest.raises(ValueError, match="the history is empty"):
        plot_history(callbacks.History())
    with pytest.raises(ValueError, match="the history is empty"):
        plot_history({})
    with pytest.raises(TypeError, match="expects the History returned by fit"):
        plot_history([1.0, 0.5])


def test_plot_history_without_matplotlib_names_the_extra(monkeypatch):
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r'pip install "fastnn\[plot\]"'):
        plot_history({"loss": [1.0, 0.5]})
