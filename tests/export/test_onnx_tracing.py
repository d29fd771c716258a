"""Python code the exporter traces: subclassed models, users' call() layers and Lambdas run
once on symbolic tensors, their layers and ops converted node by node, equal to ``predict``;
code that needs values refused by name, and nothing of the trace left on the model."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_check import assert_matches, export_and_check
from test_onnx_layers import RNG, with_random_weights

import fastnn
from fastnn import layers, ops
from fastnn.export import ExportError
from fastnn.export.builder import Value
from fastnn.export.registry import CONVERTERS, converter


def values(*shape):
    return RNG.uniform(-1, 1, (3, *shape)).astype(np.float32)


class Residual(fastnn.layers.Layer):
    """A user's layer: layers it holds, a weight of its own on either side of an operator, a
    branch on ``training``."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(units)
        self.norm = layers.LayerNormalization()

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

    def call(self, x, training=False):
        h = self.scale * self.dense(x) + self.scale
        if training:
            h = h + 1.0
        return self.norm(ops.relu(h) + x)


class Net(fastnn.Model):
    def __init__(self):
        super().__init__()
        self.first, self.second = Residual(6), Residual(6)
        self.dropout = layers.Dropout(0.3)
        self.head = layers.Dense(3, activation="softmax")

    def call(self, x, training=False):
        return self.head(self.dropout(self.second(self.first(x)), training=training))


def test_a_subclassed_model_exports(tmp_path):
    model = Net()
    model.predict(values(6), verbose=0)
    with_random_weights(model)
    proto = assert_matches(model, values(6), tmp_path)
    assert [i.name for i in proto.graph.input] == model.input_names
    assert [o.name for o in proto.graph.output] == model.output_names


def test_a_user_layer_in_a_functional_model_exports(tmp_path):
    inputs = fastnn.Input((6,))
    model = fastnn.Model(inputs, layers.Dense(2)(Residual(6)(inputs)))
    assert_matches(with_random_weights(model), values(6), tmp_path)


class TokenAndPosition(layers.Layer):
    """keras-io's text classification with a transformer: positions from ops.shape."""

    def __init__(self, maxlen, vocab, dim):
        super().__init__()
        self.tokens = layers.Embedding(vocab, dim)
        self.positions = layers.Embedding(maxlen, dim)

    def call(self, x):
        positions = self.positions(ops.arange(0, ops.shape(x)[-1], 1))
        return self.tokens(x) + positions


class TransformerBlock(layers.Layer):
    def __init__(self, dim, heads, hidden, rate=0.1):
        super().__init__()
        self.att = layers.MultiHeadAttention(num_heads=heads, key_dim=dim)
        self.ffn = fastnn.Sequential([layers.Dense(hidden, activation="relu"), layers.Dense(dim)])
        self.norm1 = layers.LayerNormalization(epsilon=1e-6)
        self.norm2 = layers.LayerNormalization(epsilon=1e-6)
        self.drop1, self.drop2 = layers.Dropout(rate), layers.Dropout(rate)

    def call(self, inputs, training=False):
        attended = self.drop1(self.att(inputs, inputs), training=training)
        out1 = self.norm1(inputs + attended)
        return self.norm2(out1 + self.drop2(self.ffn(out1), training=training))


def test_keras_io_transformer_classifier_exports(tmp_path):
    inputs = layers.Input(shape=(12,))
    x = TokenAndPosition(12, 50, 8)(inputs)
    x = layers.GlobalAveragePooling1D()(TransformerBlock(8, 2, 16)(x))
    model = fastnn.Model(inputs, layers.Dense(2, activation="softmax")(x))
    ids = RNG.integers(0, 50, (3, 12)).astype(np.float32)
    assert_matches(with_random_weights(model), ids, tmp_path)


class TwoInputs(fastnn.Model):
    def __init__(self):
        super().__init__()
        self.image, self.meta, self.out = layers.Dense(4), layers.Dense(4), layers.Dense(1)

    def call(self, inputs):
        both = [self.image(inputs["image"]), self.meta(inputs["meta"])]
        return self.out(ops.concatenate(both, axis=-1))


def test_a_subclassed_model_on_a_dict_keeps_its_input_names(tmp_path):
    model = TwoInputs()
    model.predict({"image": values(5), "meta": values(2)}, verbose=0)
    proto = assert_matches(with_random_weights(model), [values(5), values(2)], tmp_path)
    assert [i.name for i in proto.graph.input] == ["image", "meta"]


def test_a_lambda_of_ops_exports(tmp_path):
    inputs = fastnn.Input((4,))
    halve = layers.Lambda(lambda x, k: ops.sum(x * k, axis=-1, keepdims=True), arguments={"k": 0.5})
    model = fastnn.Model(inputs, layers.Dense(2)(halve(inputs)))
    assert_matches(with_random_weights(model), values(4), tmp_path)


def test_a_nested_subclassed_model_exports(tmp_path):
    inner = Net()
    inner.predict(values(6), verbose=0)
    inputs = fastnn.Input((6,))
    model = fastnn.Model(inputs, layers.Dense(2)(inner(inputs)))
    assert_matches(with_random_weights(model), values(6), tmp_path)


def test_tracing_leaves_the_model_as_it_was(tmp_path):
    class Penalized(fastnn.layers.Layer):
        def call(self, x):
            self.add_loss(ops.mean(ops.square(x)))
            return x * 2.0

    inputs = fastnn.Input((4,))
    penalized, dense = Penalized(), layers.Dense(2)
    model = fastnn.Model(inputs, dense(penalized(inputs)))
    model.predict(values(4), verbose=0)
    losses = [float(loss) for loss in model.losses]
    nodes = len(dense._inbound_nodes)
    config = model.get_config()
    export_and_check(model, tmp_path)
    assert [float(loss) for loss in model.losses] == losses
    assert len(dense._inbound_nodes) == nodes
    assert model.get_config() == config


def test_a_registered_converter_is_used_rather_than_the_trace(tmp_path):
    class Doubling(fastnn.layers.Layer):
        def call(self, x):
            return x * 2.0

    @converter(Doubling)
    def _doubling(call):
        b = call.builder
        two = b.const(2.0, f"{call.hint}/two")
        return [Value(b.op("Mul", [call.x.name, two], call.hint), call.output_shapes[0])]

    try:
        inputs = fastnn.Input((4,))
        model = fastnn.Model(inputs, Doubling()(inputs))
        proto = assert_matches(model, values(4), tmp_path)
        assert [node.op_type for node in proto.graph.node] == ["Mul", "Identity"]
    finally:
        del CONVERTERS[Doubling]


def refused(model, tmp_path, match):
    with pytest.raises(ExportError, match=match):
        fastnn.export.onnx(model, tmp_path / "refused.onnx")
    assert not (tmp_path / "refused.onnx").exists()


def test_a_branch_on_a_value_is_refused_and_leaves_no_calls(tmp_path):
    class Branch(fastnn.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = layers.Dense(4)

        def call(self, x):
            x = self.dense(x)  # traced before the branch fails
            if ops.sum(x) > 0:
                return x
            return -x

    inputs = fastnn.Input((4,))
    branch = Branch(name="branch")
    model = fastnn.Model(inputs, branch(inputs))
    model.predict(values(4), verbose=0)
    refused(model, tmp_path, r"Branch 'branch' cannot be .* cannot be used as a boolean")
    assert branch.dense._inbound_nodes == []


def test_numpy_on_a_tensor_is_refused(tmp_path):
    inputs = fastnn.Input((4,))
    model = fastnn.Model(inputs, layers.Lambda(lambda x: np.tanh(x), name="np_tanh")(inputs))
    refused(model, tmp_path, r"Lambda 'np_tanh' cannot be exported to ONNX: its code could not run")


def test_a_mask_reaching_traced_code_is_refused(tmp_path):
    class Pass(fastnn.layers.Layer):
        def call(self, x, mask=None):
            return x

    inputs = fastnn.Input((5,))
    x = layers.Embedding(7, 3, mask_zero=True)(inputs)
    model = fastnn.Model(inputs, Pass(name="pass")(x))
    refused(model, tmp_path, r"Pass 'pass' cannot be exported to ONNX: a mask")


def test_a_subclassed_model_without_call_is_refused(tmp_path):
    class Holder(fastnn.Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(2)

    refused(Holder(), tmp_path, r"Holder '\w+' cannot be exported to ONNX: .*without call\(\)")


def test_symbolic_tensors_cannot_be_booleans():
    x = fastnn.Input((3,))
    with pytest.raises(TypeError, match="cannot be used as a boolean"):
        bool(x > 0)
