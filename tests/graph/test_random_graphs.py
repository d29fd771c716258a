"""Random Functional graphs: forward (model(x) and batched predict) against plain numpy, float64.

Hypothesis draws an image part (Conv2D, shared Conv2D, MaxPooling2D, AveragePooling2D, Add,
Multiply, Concatenate over 1-2 image inputs, with fan-out), flattens it into the vector DAG of
tests/graph/test_gradients.py (its ``dag_recipes`` strategy: Dense, shared Dense, merges, a second
input) and outputs 1-3 tensors of mixed ranks. The same graph is evaluated by numpy from the
layers' weights and configs. test_gradients.py checks the gradients of such DAGs.
"""

from __future__ import annotations

import numpy as np
from gradcheck import randomize_weights
from hypothesis import given, settings
from hypothesis import strategies as st
from test_gradients import F64, dag_recipes, dense

import fastnn
from fastnn import layers

ACTIVATIONS = ["linear", "relu", "sigmoid", "tanh"]


# ---------------------------------------------------------------- numpy reference


def activate(name, x):
    if name == "relu":
        return np.maximum(x, 0)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    if name == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    assert name == "linear", name
    return x


def pads(size, window, stride, padding):
    """(output size, padding before, padding after), TensorFlow's 'same' rule."""
    if padding == "valid":
        return (size - window) // stride + 1, 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, total // 2, total - total // 2


def windows(x, window, strides, padding, fill):
    """Yield (i, j, slab): the (n, oh, ow, c) values at offset (i, j) of every window."""
    (oh, top, bottom), (ow, left, right) = (
        pads(x.shape[1], window[0], strides[0], padding),
        pads(x.shape[2], window[1], strides[1], padding),
    )
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    for i in range(window[0]):
        for j in range(window[1]):
            yield (
                i,
                j,
                xp[:, i : i + strides[0] * oh : strides[0], j : j + strides[1] * ow : strides[1]],
            )


def np_dense(layer, x):
    y = x @ layer.kernel.value + (layer.bias.value if layer.use_bias else 0)
    return activate(layer.get_config()["activation"], y)


def np_conv(layer, x):
    cfg = layer.get_config()
    kernel = layer.kernel.value
    out = 0
    for i, j, slab in windows(x, cfg["kernel_size"], cfg["strides"], cfg["padding"], 0.0):
        out = out + np.einsum("nhwc,cf->nhwf", slab, kernel[i, j])
    return activate(cfg["activation"], out + (layer.bias.value if cfg["use_bias"] else 0))


def np_pool(layer, x):
    cfg = layer.get_config()
    args = cfg["pool_size"], cfg["strides"], cfg["padding"]
    if isinstance(layer, layers.MaxPooling2D):
        return np.max([s for _, _, s in windows(x, *args, -np.inf)], axis=0)
    total = sum(s for _, _, s in windows(x, *args, 0.0))
    count = sum(s for _, _, s in windows(np.ones_like(x), *args, 0.0))
    return total / count  # 'same' padding is not counted, as Keras


NUMPY = {
    layers.Dense: np_dense,
    layers.Conv2D: np_conv,
    layers.MaxPooling2D: np_pool,
    layers.AveragePooling2D: np_pool,
    layers.Add: lambda layer, a, b: a + b,
    layers.Multiply: lambda layer, a, b: a * b,
    layers.Concatenate: lambda layer, a, b: np.concatenate([a, b], axis=-1),
    layers.Flatten: lambda layer, x: x.reshape(len(x), -1),
    layers.GlobalAveragePooling2D: lambda layer, x: x.mean(axis=(1, 2)),
}


class Twin:
    """One graph built twice: fastnn tensors, and the steps numpy replays on the same layers."""

    def __init__(self):
        self.tensors, self.steps, self.inputs = [], [], []

    def input(self, shape) -> int:
        self.inputs.append(len(self.tensors))
        self.tensors.append(fastnn.Input(shape, dtype=F64))
        self.steps.append(None)
        return len(self.tensors) - 1

    def __call__(self, layer, *args: int) -> int:
        given = [self.tensors[a] for a in args]
        self.tensors.append(layer(given if len(given) > 1 else given[0]))
        self.steps.append((layer, args))
        return len(self.tensors) - 1

    def shape(self, i) -> tuple:
        return self.tensors[i].shape

    def run(self, arrays, outputs) -> list[np.ndarray]:
        values = dict(zip(self.inputs, arrays))
        for i, step in enumerate(self.steps):
            if step is not None:
                layer, args = step
                values[i] = NUMPY[type(layer)](layer, *[values[a] for a in args])
        return [values[i] for i in outputs]


# ---------------------------------------------------------------- random graphs


@st.composite
def image_recipes(draw):
    """Input shapes (h, w, c) and steps over image tensors; every step is valid by construction."""
    size = draw(st.tuples(st.integers(3, 6), st.integers(3, 6)))
    inputs = [(*size, draw(st.integers(1, 3))) for _ in range(draw(st.integers(1, 2)))]
    steps = []
    for _ in range(draw(st.integers(2, 6))):
        op = draw(st.sampled_from(["conv", "shared", "maxpool", "avgpool", "add", "mul", "concat"]))
        a = draw(st.integers(0, len(inputs) + len(steps) - 1))
        b = draw(st.integers(0, len(inputs) + len(steps) - 1))
        if op == "conv":
            steps.append(
                (
                    op,
                    a,
                    draw(st.integers(1, 3)),  # filters
                    draw(st.tuples(st.integers(1, 3), st.integers(1, 3))),  # kernel
                    draw(st.tuples(st.integers(1, 2), st.integers(1, 2))),  # strides
                    draw(st.sampled_from(["same", "valid"])),
                    draw(st.sampled_from(ACTIVATIONS)),
                )
            )
        elif op in ("maxpool", "avgpool"):
            strides = draw(st.sampled_from([None, 1]))
            steps.append((op, a, strides, draw(st.sampled_from(["same", "valid"]))))
        else:
            steps.append((op, a, b))  # made valid when built: see build_image_part
    return inputs, steps


def fits(twin, i, window, padding) -> bool:
    return padding == "same" or all(s >= k for s, k in zip(twin.shape(i)[1:3], window))


def build_image_part(twin, inputs, steps):
    """Image tensors of ``steps``; a step that would not fit its input becomes a 1x1 Conv2D, and
    a merge of tensors of different sizes merges its first tensor with itself (fan-out)."""
    tensors = [twin.input(shape) for shape in inputs]
    convs = []

    def project(i, channels):
        if twin.shape(i)[-1] == channels:
            return i
        return twin(layers.Conv2D(channels, 1, dtype=F64), i)

    for step in steps:
        op, a = step[0], tensors[step[1]]
        if op == "conv" and not fits(twin, a, step[3], step[5]):
            op, step = "conv", ("conv", step[1], step[2], (1, 1), (1, 1), "valid", step[6])
        if op == "conv":
            convs.append(
                layers.Conv2D(
                    step[2],
                    step[3],
                    strides=step[4],
                    padding=step[5],
                    activation=step[6],
                    dtype=F64,
                )
            )
            tensors.append(twin(convs[-1], a))
        elif op == "shared" and convs:
            layer = convs[len(tensors) % len(convs)]
            channels = layer.kernel.shape[2]
            if fits(twin, a, layer.kernel_size, layer.padding):
                tensors.append(twin(layer, project(a, channels)))
            else:
                tensors.append(twin(layers.Conv2D(2, 1, dtype=F64), a))
        elif op in ("maxpool", "avgpool") and fits(twin, a, (2, 2), step[3]):
            cls = layers.MaxPooling2D if op == "maxpool" else layers.AveragePooling2D
            tensors.append(twin(cls(2, strides=step[2], padding=step[3], dtype=F64), a))
        elif op in ("add", "mul", "concat"):
            b = tensors[step[2]]
            if twin.shape(b)[1:3] != twin.shape(a)[1:3]:
                b = a
            if op == "concat":
                tensors.append(twin(layers.Concatenate(dtype=F64), a, b))
            else:
                merge = layers.Add if op == "add" else layers.Multiply
                tensors.append(twin(merge(dtype=F64), a, project(b, twin.shape(a)[-1])))
        else:  # a shared conv before any conv, or a pool on a too-small tensor
            tensors.append(twin(layers.Conv2D(2, 1, activation="tanh", dtype=F64), a))
    return tensors


def build_vector_part(twin, first, in_widths, steps):
    """test_gradients.build_dag's steps, on ``first`` (projected) and a second Input if any."""
    tensors = [twin(dense(in_widths[0], "linear"), first)]
    tensors += [twin.input((w,)) for w in in_widths[1:]]
    denses = []

    def project(i, width):
        return i if twin.shape(i)[-1] == width else twin(dense(width, "linear"), i)

    for step in steps:
        op, a = step[0], tensors[step[1]]
        if op == "dense":
            denses.append(dense(step[2], step[3]))
            tensors.append(twin(denses[-1], a))
        elif op == "shared":
            layer = denses[step[2]]
            tensors.append(twin(layer, project(a, layer.kernel.shape[0])))
        elif op == "concat":
            tensors.append(twin(layers.Concatenate(dtype=F64), a, tensors[step[2]]))
        else:
            merge = layers.Add if op == "add" else layers.Multiply
            tensors.append(twin(merge(dtype=F64), a, project(tensors[step[2]], twin.shape(a)[-1])))
    return tensors


@settings(max_examples=25, deadline=None)
@given(
    image=image_recipes(),
    vector=dag_recipes(),
    flatten=st.booleans(),
    image_output=st.booleans(),
    batch=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_random_functional_graph_forward_matches_numpy(
    image, vector, flatten, image_output, batch, seed
):
    twin = Twin()
    image_tensors = build_image_part(twin, *image)
    head = layers.Flatten(dtype=F64) if flatten else layers.GlobalAveragePooling2D(dtype=F64)
    features = twin(head, image_tensors[-1])
    in_widths, steps, outputs = vector
    vector_tensors = build_vector_part(twin, features, in_widths, steps)
    outputs = [vector_tensors[i] for i in outputs]
    if image_output:
        outputs.append(image_tensors[seed % len(image_tensors)])
    model = fastnn.Model([twin.tensors[i] for i in twin.inputs], [twin.tensors[i] for i in outputs])
    randomize_weights(model, seed)
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal((batch, *twin.shape(i)[1:])) for i in twin.inputs]

    expected = twin.run(xs, outputs)
    called = model(xs)
    predicted = model.predict(xs, batch_size=2, verbose=0)
    for want, got, batched in zip(expected, called, predicted):
        assert got.dtype == np.float64 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(batched, want, rtol=1e-9, atol=1e-12)


def test_a_model_deeper_than_pythons_recursion_limit_builds_and_runs():
    """Ordering the graph walks it with a stack: 3000 layers deep is no RecursionError."""
    x = fastnn.Input((2,))
    y = x
    for _ in range(3000):
        y = layers.Activation("linear")(y)
    model = fastnn.Model(x, layers.Dense(1)(y))
    assert len(model.layers) == 3002
    assert model.predict(np.ones((3, 2)), verbose=0).shape == (3, 1)
