"""Models: a Functional ``Model(inputs, outputs)`` over the layer graph, and ``Sequential``."""

from __future__ import annotations

import json

import numpy as np

from fastnn import runtime
from fastnn.export import export_model
from fastnn.graph import Graph
from fastnn.layers import custom
from fastnn.layers.base import Layer, Variable, assign_all, is_builtin_class, snake_case
from fastnn.layers.core import InputLayer
from fastnn.naming import unique_name
from fastnn.nodes import Node, SymbolicTensor, is_symbolic
from fastnn.ops import tape as tape_module
from fastnn.ops.core import cast as ops_cast
from fastnn.saving import api as saving_api
from fastnn.saving.registry import register_builtins
from fastnn.saving.serialization import deserialize_layer, serialize_layer
from fastnn.summary import print_summary
from fastnn.training import Trainer


def _as_list(value):
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


class Model(Trainer, Layer):
    """A Functional model: the graph from ``inputs`` to ``outputs``; also usable as a layer.
    A subclass that writes ``__init__`` and ``call()`` instead is a subclassed model: its
    ``call()`` runs as one ``call()`` layer (gradients from a tape), its graph that one node.

    Example::

        inputs = fastnn.Input(shape=(10,))
        outputs = fastnn.layers.Dense(1, activation="sigmoid")(inputs)
        model = fastnn.Model(inputs=inputs, outputs=outputs)
    """

    #: A subclassed model (``call()``); its graph, one node of itself, is made from the first
    #: data or ``build``.
    _subclassed = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._runs_call = cls.call is not Layer.call  # a subclass's call() is its computation
        cls._takes_mask = cls._runs_call and custom.call_arguments(cls)[1]
        cls._tracks_layers = cls._runs_call or not is_builtin_class(cls)
        if cls._runs_call:  # not a built-in under the user's call() (Layer's reading): its
            # call() on its inputs as it was built from them (a dict's keys kept)
            cls.forward, cls.backward, cls._builtin_pass = Model.forward, Model.backward, None

    def __init__(self, inputs=None, outputs=None, name: str | None = None, **kwargs):
        if inputs is None and outputs is None and (self._runs_call or type(self) is not Model):
            super().__init__(name=name or unique_name(snake_case(type(self).__name__)), **kwargs)
            self._subclassed = True
            self._graph = None
            return
        if inputs is None or outputs is None:
            raise TypeError(
                "fastnn builds Functional models: pass both `inputs=` and `outputs=` "
                "(e.g. Model(inputs=fastnn.Input(shape=(10,)), outputs=y)), or use Sequential, "
                "or subclass Model and write call()."
            )
        # Keras 3 names Functional models 'functional', 'functional_1', ...
        super().__init__(name=name or unique_name("functional"), **kwargs)
        self._init_graph(inputs, outputs)

    def _init_graph(self, inputs, outputs) -> None:
        self._inputs_struct = inputs
        self._outputs_struct = outputs
        input_list = _as_list(inputs)
        if isinstance(outputs, dict):  # Keras flattens a dict in the order of its keys
            output_list = [outputs[key] for key in _sorted_output_keys(outputs)]
        else:
            output_list = _as_list(outputs)
        self._graph = Graph(input_list, output_list)
        self.inputs: list[SymbolicTensor] = input_list
        self.outputs: list[SymbolicTensor] = output_list
        if isinstance(inputs, dict):
            self.input_names = list(inputs)
        else:
            self.input_names = [t.name or f"input_{i}" for i, t in enumerate(input_list)]
        if isinstance(outputs, dict):
            self.output_names = _sorted_output_keys(outputs)
        else:
            self.output_names = _unique_output_names(output_list)
        self.built = True

    # ---- symbolic inputs and outputs, as Keras's Functional exposes them ------------------------
    def _as_given(self, tensors, struct):
        if isinstance(struct, dict):
            return dict(zip(struct, tensors))
        return tensors if isinstance(struct, (list, tuple)) else tensors[0]

    @property
    def input(self):
        return self._as_given(self.inputs, self._inputs_struct)

    @property
    def output(self):
        if isinstance(self._outputs_struct, dict):
            return dict(self._outputs_struct)  # the dict as written, as Keras's `output`
        return self._as_given(self.outputs, self._outputs_struct)

    @property
    def input_shape(self):
        return self._as_given([t.shape for t in self.inputs], self._inputs_struct)

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.outputs]
        if isinstance(self._outputs_struct, dict):  # Keras: a list, in the outputs' order
            return shapes if len(shapes) > 1 else shapes[0]
        return self._as_given(shapes, self._outputs_struct)

    def _outputs_as_written(self, tensors):
        """A symbolic call's output tensors (one per output, in ``outputs`` order) keyed as the
        model's ``outputs=`` dict was written, as Keras returns them; otherwise unchanged."""
        if not isinstance(self._outputs_struct, dict):
            return tensors
        flat = dict(zip(self.output_names, tensors if isinstance(tensors, list) else [tensors]))
        return {key: flat[key] for key in self._outputs_struct}

    # ---- layers and weights --------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        if self._subclassed:  # the layers it holds as attributes, as Keras lists them
            return [layer for _, layer in Layer.sublayers(self)]
        return list(self._graph.layers)

    @property
    def samples_independent(self) -> bool:
        return Layer.samples_independent.fget(self) and all(
            layer.samples_independent for layer in self.layers
        )

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """The layer called ``name`` (or at ``index`` in ``layers``)."""
        layers = self.layers
        if index is not None:
            if not -len(layers) <= index < len(layers):
                raise ValueError(
                    f"Model '{self.name}' has {len(layers)} layers; index {index} is out of range"
                )
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(
            f"No such layer: {name!r}. Existing layers are: {[lay.name for lay in layers]}"
        )

    def sublayers(self):
        if self._subclassed:
            return Layer.sublayers(self)
        return [(layer.name, layer) for layer in self.layers]

    def _unique(self, attribute: str) -> list[Variable]:
        seen, result = set(), []
        for layer in self.layers:
            for var in getattr(layer, attribute):
                if id(var) not in seen:
                    seen.add(id(var))
                    result.append(var)
        return result

    @property
    def weights(self) -> list[Variable]:
        if self._subclassed:
            return Layer.weights.fget(self)
        return self._unique("weights")

    @property
    def trainable_weights(self) -> list[Variable]:
        if self._subclassed:
            return Layer.trainable_weights.fget(self)
        return self._unique("trainable_weights") if self.trainable else []

    @property
    def non_trainable_weights(self) -> list[Variable]:
        if self._subclassed:
            return Layer.non_trainable_weights.fget(self)
        if not self.trainable:
            return self.weights
        return self._unique("non_trainable_weights")

    def regularization_losses(self):
        if self._subclassed:
            return Layer.regularization_losses(self)
        seen, pairs = set(), []
        for layer in self.layers:
            for var, reg in layer.regularization_losses():
                if id(var) not in seen:
                    seen.add(id(var))
                    pairs.append((var, reg))
        return pairs

    def set_weights(self, weights) -> None:
        """Assign all weights in ``get_weights()`` order; shapes are checked before any change."""
        assign_all(self.weights, weights, f"Model '{self.name}':", lambda var: var.path)

    def summary(
        self,
        line_length: int | None = None,
        print_fn=None,
        expand_nested: bool = False,
        show_trainable: bool = False,
    ) -> None:
        """Print the layer table with output shapes and parameter counts, as Keras does
        (``expand_nested``: nested models' layers too; ``show_trainable``: a Y/N column)."""
        if self._subclassed and not self.built:
            raise ValueError(
                f"Model '{self.name}' has not been built yet, so it has no summary: call it on "
                "data, fit it, or call build(input_shape) first"
            )
        print_summary(self, line_length, print_fn, expand_nested, show_trainable)

    @property
    def may_add_losses(self) -> bool:
        if self._subclassed:
            return True
        return self._graph.may_add_losses

    def added_losses(self, ctx) -> list:
        if self._subclassed:
            return Layer.added_losses(self, ctx)
        return self._graph.added_losses(ctx)

    # ---- the model as a layer ------------------------------------------------------------------
    def compute_output_shape(self, input_shape):
        if self._subclassed:
            return Layer.compute_output_shape(self, input_shape)
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        self.check_input_shape(shapes)
        out = self._output_shapes_for(shapes)
        return out if len(out) > 1 or isinstance(self._outputs_struct, (list, tuple)) else out[0]

    def _output_shapes_for(self, input_shapes) -> list[tuple]:
        """The outputs' shapes given more specific input shapes (a nested model called on
        Input((224, 224, 3)) whose own input is (None, None, 3)), as Keras infers them; the
        model's own output shapes where a layer cannot tell (a call() layer, an error)."""
        own = [t.shape for t in self.outputs]
        if all(tuple(s) == t.shape for s, t in zip(input_shapes, self.inputs)):
            return own
        known = {id(t): tuple(s) for t, s in zip(self.inputs, input_shapes)}
        for node in self._graph.nodes:
            if node.is_input:
                continue
            if node.layer._runs_call:
                return own
            given = node.pack_inputs([known.get(id(t), t.shape) for t in node.inputs])
            try:
                found = node.layer.compute_output_shape(given)
            except Exception:
                return own
            found = found if node.outputs_are_list else [found]
            for tensor, shape in zip(node.outputs, found):
                if not _compatible(tensor.shape, tuple(shape)):
                    return own
                known[id(tensor)] = tuple(shape)
        return [known.get(id(t), t.shape) for t in self.outputs]

    def check_input_shape(self, input_shape) -> None:
        if self._subclassed:
            return
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        if len(shapes) != len(self.inputs):
            raise ValueError(
                f"Model '{self.name}' expects {len(self.inputs)} inputs {self.input_names}, "
                f"got {len(shapes)}"
            )
        for name, tensor, shape in zip(self.input_names, self.inputs, shapes):
            if not _compatible(tensor.shape, shape):
                raise ValueError(
                    f"Model '{self.name}': input '{name}' expects shape {tensor.shape}, "
                    f"got {tuple(shape)}"
                )

    @property
    def output_dtype(self):
        if self._subclassed:
            return self.outputs[0].dtype if self._graph is not None else self.dtype
        return self.outputs[0].dtype

    @property
    def uses_workspace(self) -> bool:
        """A functional model nested in another reuses its layers' arrays from call to call in
        the workspace its caller hands it (fresh ones cost their page faults: a nested ResNet
        trained 40% slower)."""
        return not self._subclassed

    def forward(self, inputs, training, workspace=None, **kwargs):
        if self._subclassed:
            return custom.forward(self, self._as_call_inputs(inputs), training, **kwargs)
        arrays = inputs if isinstance(inputs, list) else [inputs]
        outputs, tape = self._graph.forward(arrays, training, reuse=workspace)
        return self._as_forwarded(outputs), tape

    def _as_forwarded(self, outputs: list):
        """The graph's outputs as ``forward`` gives them: the one array of a model with one
        output (not in a list), else the list."""
        if len(outputs) == 1 and not isinstance(self._outputs_struct, (list, tuple)):
            return outputs[0]
        return outputs

    inference_call_at_none = False

    def inference_call(self, inputs):
        """A nested functional model's steps by their own inference calls (``Graph.infer``),
        its calls and arrays kept for this call site; training False only."""
        if self._subclassed:
            return None
        kept = {}

        def call(inputs):
            arrays = inputs if isinstance(inputs, list) else [inputs]
            return self._as_forwarded(self._graph.infer(arrays, training=False, kept=kept))

        return call

    def _inferred(self, arrays: list, training):
        """The outputs of a functional model's call on arrays with ``training`` False or None
        (``Graph.infer``), as ``forward``'s."""
        outputs = [np.array(out) for out in self._graph.infer(arrays, "call", training)]
        return self._as_forwarded(outputs)

    skips_input_grad = True

    def backward(self, ctx, grad_outputs, need_input_grad=True):
        if self._subclassed:
            grads = custom.backward(self, ctx, grad_outputs, need_input_grad=need_input_grad)
            if need_input_grad and isinstance(grads, dict):
                return [grads[name] for name in self.input_names]
            return grads
        grads = grad_outputs if isinstance(grad_outputs, list) else [grad_outputs]
        input_grads = self._graph.backward(ctx, grads, need_input_grad)
        return input_grads if len(input_grads) > 1 else input_grads[0]

    def __call__(self, inputs, *args, training=None, **kwargs):
        if self._subclassed:
            return Layer.__call__(self, inputs, *args, training=training, **kwargs)
        if args:
            raise TypeError(f"Model '{self.name}' got unexpected call arguments {args}")
        if is_symbolic(inputs) or (isinstance(inputs, dict) and is_symbolic(list(inputs.values()))):
            if isinstance(inputs, dict):
                inputs = self._order_by_input_name(inputs, "call")
            if isinstance(inputs, list) and len(inputs) == 1:
                inputs = inputs[0]
            tensors = super().__call__(inputs, training=training, **kwargs)
            return self._outputs_as_written(tensors)
        if kwargs:
            raise TypeError(f"Model '{self.name}' got unexpected call arguments {sorted(kwargs)}")
        self._ensure_built_for_data(inputs)
        if training is None:  # None still, outside any call: each layer's own default (Keras's)
            training = custom.TRAINING.get()
        if tape_module.STATE.tapes:  # each layer a tape entry (call() layers: their ops)
            given = inputs
            if isinstance(inputs, dict):
                given = self._order_by_input_name(inputs, "call")
            values = [
                _on_tape(x, t.dtype) if tape_module.tracked(x) else a
                for x, a, t in zip(_as_list(given), self._standardize_x(inputs), self.inputs)
            ]
            with runtime.serial_blas():
                outputs = self._graph.run(values, training)
            return self._pack_outputs(outputs)
        arrays = self._standardize_x(inputs)
        with runtime.serial_blas():  # once per call on arrays (see fastnn.runtime)
            if training:
                outputs, _ = self.forward(arrays if len(arrays) > 1 else arrays[0], training)
            else:  # as predict: the steps' inference calls, their buffers copied out
                outputs = self._inferred(arrays, training)
        if isinstance(self._outputs_struct, dict):  # a dict in the outputs' order, as Keras
            return self._pack_outputs(outputs if isinstance(outputs, list) else [outputs])
        return outputs

    # ---- a subclassed model's graph: one node of itself ---------------------------------------
    def build(self, input_shape=None) -> None:
        """A subclassed model: build its layers and its graph for inputs of ``input_shape``
        (batch axis included; a list or dict of shapes for several inputs)."""
        if not self._subclassed:
            self.built = True
            return
        if input_shape is None:
            raise ValueError(f"Model '{self.name}'.build() needs the input shape")
        self._build_graph(_standardize_shapes(input_shape), None)

    def _build_graph(self, shapes, dtypes) -> None:
        """Inputs of ``shapes`` (a shape, or a list or dict of them), and the graph of one node
        running ``call()`` on them; the output shapes come from running it on zeros."""
        if isinstance(shapes, dict):
            names = list(shapes)
            shape_list = [shapes[n] for n in names]
        else:
            names = None
            shape_list = shapes if isinstance(shapes, list) else [shapes]
        dtype_list = dtypes or [self.dtype] * len(shape_list)
        inputs = []
        for i, (shape, dtype) in enumerate(zip(shape_list, dtype_list)):
            name = names[i] if names else f"{self.name}_input" + (f"_{i}" if i else "")
            layer = InputLayer(batch_shape=(None, *shape[1:]), dtype=dtype, name=name)
            inputs.append(layer.output_tensor)
        batch_shapes = [t.shape for t in inputs]
        if names:
            structure = dict(zip(names, batch_shapes))
            dtype_structure = dict(zip(names, dtype_list))
        elif isinstance(shapes, list):
            structure, dtype_structure = batch_shapes, dtype_list
        else:
            structure, dtype_structure = batch_shapes[0], dtype_list[0]
        out_shapes, out_dtype = custom.output_shapes(self, structure, dtype_structure)
        node = Node(self, inputs if isinstance(shapes, (list, dict)) else inputs[0], out_shapes,
                    out_dtype)  # fmt: skip
        self._inbound_nodes.remove(node)  # the model's own graph, not a call of the model
        outputs = node.outputs if node.outputs_are_list else node.outputs[0]
        self._graph = Graph(inputs, node.outputs)
        self._inputs_struct = (
            dict(zip(names, inputs))
            if names
            else (inputs if isinstance(shapes, list) else inputs[0])
        )
        self._outputs_struct = outputs
        self.inputs, self.outputs = inputs, list(node.outputs)
        self.input_names = names or [t.name for t in inputs]
        self.output_names = _unique_output_names(self.outputs)
        self._build_input_shape = shapes
        self.built = True

    def _as_call_inputs(self, inputs):
        """A graph's inputs as ``call()`` takes them: a dict by input name if built from one."""
        if isinstance(self._inputs_struct, dict) and isinstance(inputs, list):
            return dict(zip(self.input_names, inputs))
        return inputs

    def get_build_config(self) -> dict | None:
        """``{"input_shape": ...}`` of a built subclassed model (saved beside its config)."""
        shapes = getattr(self, "_build_input_shape", None)
        if not self._subclassed or shapes is None:
            return None
        return {"input_shape": _jsonable_shapes(shapes)}

    def build_from_config(self, config: dict) -> None:
        """Build as ``get_build_config()`` says."""
        self.build(_standardize_shapes(config["input_shape"]))

    def _ensure_built_for_data(self, x) -> None:
        """A subclassed model: its graph for inputs like ``x`` (made once, or again if ``x``'s
        dtypes are of another kind, e.g. token ids where floats were assumed)."""
        if not self._subclassed or not self._runs_call:  # without call(): no graph (a GAN)
            return
        graph = self._graph
        if isinstance(x, dict):
            arrays = {k: np.asarray(v) for k, v in x.items()}
            shapes = {k: a.shape for k, a in arrays.items()}
            dtypes = [self._input_dtype(a) for a in arrays.values()]
        elif isinstance(x, (list, tuple)):
            arrays = [np.asarray(v) for v in x]
            shapes = [a.shape for a in arrays]
            dtypes = [self._input_dtype(a) for a in arrays]
        else:
            array = np.asarray(x)
            shapes, dtypes = array.shape, [self._input_dtype(array)]
        if graph is not None and [t.dtype.kind for t in self.inputs] == [
            np.dtype(d).kind for d in dtypes
        ]:
            return
        if not self.built and type(self).build is not Model.build:
            self._maybe_build(shapes)  # the user's build first, as Keras calls it
        self._build_graph(shapes, dtypes)

    def _input_dtype(self, array: np.ndarray) -> str:
        return self.dtype if array.dtype.kind == "f" else array.dtype.name

    def _order_by_input_name(self, mapping: dict, what: str) -> list:
        unknown = sorted(set(mapping) - set(self.input_names))
        missing = [n for n in self.input_names if n not in mapping]
        if unknown or missing:
            raise ValueError(
                f"{what}: x has keys {sorted(mapping)} but the model's inputs are "
                f"{self.input_names}"
            )
        return [mapping[n] for n in self.input_names]

    # ---- saving --------------------------------------------------------------------------------
    def save(self, filepath, overwrite: bool = True, include_optimizer: bool = True) -> None:
        """Save architecture, weights, compile arguments and optimizer state to ``filepath``:
        ``.fastnn`` (fastnn's zip) or ``.keras`` (Keras 3's format, needs h5py)."""
        saving_api.save_model(self, filepath, overwrite, include_optimizer)

    def save_weights(self, filepath, overwrite: bool = True) -> None:
        """Save the weights: ``.weights.npz`` (numpy only) or ``.weights.h5`` (Keras's layout)."""
        saving_api.save_weights(self, filepath, overwrite)

    def load_weights(self, filepath, skip_mismatch: bool = False, *, by_name=None) -> None:
        """Load weights saved by ``save_weights`` (or Keras's ``.weights.h5``, or Keras 2's
        ``.h5``, by layer name with ``by_name=True``); every shape is checked before any weight
        changes."""
        saving_api.load_weights(self, filepath, skip_mismatch, by_name=by_name)

    def export(self, filepath, format: str = "onnx", verbose=None, input_signature=None,
               **kwargs):  # fmt: skip
        """Write the model for use outside fastnn: ``format="onnx"`` (needs the onnx package;
        ``opset=``, ``batch_size=``, ``assume_post_padding=`` as ``fastnn.export.onnx``)."""
        return export_model(self, filepath, format, verbose, input_signature, **kwargs)

    def to_json(self, **kwargs) -> str:
        """The architecture (no weights) as JSON; ``fastnn.models.model_from_json`` reads it."""
        return json.dumps(serialize_layer(self), **kwargs)

    def get_config(self) -> dict:
        """Keras 3's Functional config: every layer's config with the calls that wire it (a
        subclassed model writes its own, with its constructor's arguments)."""
        if self._subclassed:
            return Layer.get_config(self)
        nodes = [*(t.node for t in self.inputs), *self._graph.nodes]
        node_index = _node_indices(self.layers, nodes)
        tensor_ref = _tensor_ref(node_index, self.name)
        layers = []
        for layer in self.layers:
            calls = [n for n in layer._inbound_nodes if id(n) in node_index and not n.is_input]
            layers.append(
                {
                    **serialize_layer(layer),
                    "name": layer.name,
                    "inbound_nodes": [_call_record(layer, n, tensor_ref) for n in calls],
                }
            )
        return {
            "name": self.name,
            "trainable": self.trainable,
            "layers": layers,
            "input_layers": _io_refs(tensor_ref, self._inputs_struct),
            "output_layers": _io_refs(tensor_ref, self._outputs_struct),
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> Model:
        """The model ``get_config()`` describes, with fresh weights."""
        if cls._runs_call and "layers" not in config:  # a subclassed model: its constructor's
            return cls(**config)
        return _functional_from_config(
            cls, config, lambda data: deserialize_layer(data, custom_objects)
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


def _node_indices(layers, nodes) -> dict:
    """Each node's index among its layer's calls that belong to this model (Keras's numbering)."""
    in_model = {id(n) for n in nodes}
    index = {}
    for layer in layers:
        own = [n for n in layer._inbound_nodes if id(n) in in_model]
        index.update((id(n), i) for i, n in enumerate(own))
    return index


def _tensor_ref(node_index: dict, model_name: str):
    def ref(tensor: SymbolicTensor) -> list:
        if tensor.node is None or id(tensor.node) not in node_index:
            raise ValueError(
                f"Model '{model_name}' cannot be serialized: tensor {tensor} does not come from "
                "a layer of the model (model inputs must be fastnn.Input tensors)"
            )
        return [tensor.node.layer.name, node_index[id(tensor.node)], tensor.index]

    return ref


def _call_record(layer, node, tensor_ref) -> dict:
    """Keras's record of one call: the node's inputs as one argument, or as the layer's
    ``call_record`` spreads them with keyword options (the attention layers)."""
    inputs = node.pack_inputs(node.inputs)
    args, kwargs = layer.call_record(inputs) if hasattr(layer, "call_record") else ([inputs], {})
    if node.training is not None:  # base(x, training=False)
        kwargs = {**kwargs, "training": node.training}
    return {"args": _map_tensors(tensor_ref, args), "kwargs": _map_tensors(tensor_ref, kwargs)}


def _map_tensors(ref, structure):
    """Replace each symbolic tensor of a call's (nested) arguments by Keras's tensor record."""
    if isinstance(structure, dict):
        return {k: _map_tensors(ref, v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [_map_tensors(ref, v) for v in structure]
    if not isinstance(structure, SymbolicTensor):  # a plain option (use_causal_mask=True)
        return structure
    return {
        "class_name": "__keras_tensor__",
        "config": {
            "shape": list(structure.shape),
            "dtype": structure.dtype.name,
            "keras_history": ref(structure),
        },
    }


def _io_refs(ref, structure):
    """Model inputs/outputs as ``[layer_name, node_index, tensor_index]`` triples, keeping a
    dict or list; a single tensor is a list of one, as in Keras."""
    if isinstance(structure, dict):
        return {k: ref(v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [ref(v) for v in structure]
    return [ref(structure)]


class _NotProducedYet(KeyError):
    """A call's input comes from a layer call that has not been replayed yet."""


def _functional_from_config(cls, config: dict, make_layer):
    """Make each layer with ``make_layer(layer_data)``, then replay the calls in order once
    their inputs exist."""
    created: dict[str, Layer] = {}
    pending: dict[str, list] = {}
    outputs: dict[tuple, list] = {}  # (layer name, node index) -> output tensors
    for layer_data in config["layers"]:
        layer = make_layer(layer_data)
        name = layer_data.get("name", layer.name)
        created[name] = layer
        pending[name] = list(layer_data.get("inbound_nodes", []))
        if isinstance(layer, InputLayer):
            outputs[(name, 0)] = [layer.output_tensor]

    def tensor(history) -> SymbolicTensor:
        name, node_index, tensor_index = history
        if (name, node_index) not in outputs:
            raise _NotProducedYet((name, node_index))
        return outputs[(name, node_index)][tensor_index]

    def resolve(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            return tensor(value["config"]["keras_history"])
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [resolve(v) for v in value]
        return value

    calls_made = dict.fromkeys(pending, 0)
    progress = True
    while progress and any(pending.values()):
        progress = False
        for name, calls in pending.items():
            while calls:
                try:
                    args, kwargs = resolve(calls[0]["args"]), resolve(calls[0].get("kwargs", {}))
                except _NotProducedYet:  # replayed once the layer producing it has been called
                    break
                calls.pop(0)
                result = created[name](*args, **kwargs)
                if isinstance(result, dict):  # a dict-output model: by the tensors' positions
                    result = sorted(result.values(), key=lambda t: t.index)
                outputs[(name, calls_made[name])] = result if isinstance(result, list) else [result]
                calls_made[name] += 1
                progress = True
    stuck = [name for name, calls in pending.items() if calls]
    if stuck:
        raise ValueError(f"Model config has calls whose inputs are never produced: layers {stuck}")

    def io(refs):
        if isinstance(refs, dict):
            return {k: tensor(v) for k, v in refs.items()}
        tensors = [tensor(v) for v in refs]
        return tensors[0] if len(tensors) == 1 else tensors

    return cls(
        inputs=io(config["input_layers"]),
        outputs=io(config["output_layers"]),
        name=config.get("name"),
        trainable=config.get("trainable", True),
    )


def _on_tape(x, dtype):
    """A tracked input in the input's dtype (cast on the tape)."""
    return ops_cast(x, dtype) if x.dtype.kind == "f" and x.dtype != dtype else x


def _is_shape(value) -> bool:
    return isinstance(value, (tuple, list)) and all(
        d is None or isinstance(d, (int, np.integer)) for d in value
    )


def _standardize_shapes(shapes):
    """A shape as a tuple, or a list or dict of them."""
    if isinstance(shapes, dict):
        return {k: tuple(v) for k, v in shapes.items()}
    if _is_shape(shapes):
        return tuple(None if d is None else int(d) for d in shapes)
    return [_standardize_shapes(s) for s in shapes]


def _jsonable_shapes(shapes):
    if isinstance(shapes, dict):
        return {k: list(v) for k, v in shapes.items()}
    if _is_shape(shapes):
        return [None if d is None else int(d) for d in shapes]
    return [_jsonable_shapes(s) for s in shapes]


def _compatible(expected, given) -> bool:
    return len(expected) == len(given) and all(
        e is None or g is None or e == g for e, g in zip(expected, given)
    )


def _sorted_output_keys(outputs: dict) -> list[str]:
    """The keys of an ``outputs=`` dict in Keras's order (sorted): the output names."""
    for key in outputs:
        if not isinstance(key, str):
            raise TypeError(
                f"Model outputs= dict keys name the outputs and must be strings; got {key!r} "
                f"({type(key).__name__}) among the keys {list(outputs)}"
            )
    return sorted(outputs)


def _unique_output_names(outputs) -> list[str]:
    names = []
    for t in outputs:
        base = t.node.layer.name if t.node is not None else (t.name or "output")
        name, k = base, 1
        while name in names:
            name = f"{base}_{k}"
            k += 1
        names.append(name)
    return names


class Sequential(Model):
    """A linear stack of layers; a Functional model built from a list (or ``add``).

    Example::

        model = fastnn.Sequential([
            fastnn.layers.Dense(64, activation="relu", input_shape=(10,)),
            fastnn.layers.Dense(1),
        ])
    """

    def __init__(self, layers=None, name: str | None = None, trainable: bool = True):
        Layer.__init__(self, name=name, trainable=trainable)
        self.built = False
        self._layers: list[Layer] = []
        self._input_layer: InputLayer | None = None
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._maybe_build_from_declared_shape()

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    def add(self, layer, rebuild: bool = True) -> None:
        """Append a layer (or start with ``fastnn.Input(...)``)."""
        if isinstance(layer, SymbolicTensor) and layer.node is not None and layer.node.is_input:
            layer = layer.node.layer
        if isinstance(layer, InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError(
                    f"Sequential '{self.name}': an Input may only be the first element"
                )
            self._input_layer = layer
        elif isinstance(layer, Layer):
            if any(existing.name == layer.name for existing in self._layers):
                raise ValueError(
                    f"Sequential '{self.name}': all layers added must have unique names; "
                    f"'{layer.name}' is already in the model"
                )
            self._layers.append(layer)
        else:
            raise TypeError(
                f"Sequential.add() expects a Layer or fastnn.Input; got {type(layer).__name__}"
            )
        if rebuild:
            try:
                self._maybe_build_from_declared_shape()
            except Exception:
                if self._layers and self._layers[-1] is layer:  # a failed add changes nothing
                    self._layers.pop()
                raise

    def pop(self) -> Layer:
        """Remove and return the last layer."""
        if not self._layers:
            raise ValueError(f"Sequential '{self.name}' has no layers to pop")
        layer = self._layers.pop()
        self.built = False
        self._maybe_build_from_declared_shape()
        return layer

    def _declared_batch_shape(self):
        if self._input_layer is not None:
            return self._input_layer.batch_shape
        if self._layers and self._layers[0]._input_shape_arg is not None:
            first = self._layers[0]
            return (first._batch_size_arg, *first._input_shape_arg)
        return None

    def _maybe_build_from_declared_shape(self) -> None:
        shape = self._declared_batch_shape()
        if shape is not None and self._layers:
            self.build(shape)
        else:
            self.built = False

    def build(self, input_shape=None) -> None:
        """Build the graph for inputs of ``input_shape`` (batch axis included)."""
        if input_shape is None:
            input_shape = self._declared_batch_shape()
        if input_shape is None:
            raise ValueError(
                f"Sequential '{self.name}' needs an input shape: give the first layer "
                "`input_shape=`, start with fastnn.Input(...), or call fit/predict on data."
            )
        if not self._layers:
            raise ValueError(f"Sequential '{self.name}' has no layers to build")
        old_graph = getattr(self, "_graph", None)
        input_layer = self._input_layer
        if input_layer is None or tuple(input_layer.batch_shape) != tuple(input_shape):
            dtype = input_layer.dtype if input_layer else self._layers[0].dtype
            input_layer = InputLayer(
                batch_shape=input_shape, dtype=dtype, name=f"{self.name}_input"
            )
        x = input_layer.output_tensor
        marks = [len(layer._inbound_nodes) for layer in self._layers]
        try:
            for layer in self._layers:
                x = layer(x)
                if isinstance(x, list):
                    raise ValueError(
                        f"Sequential '{self.name}': layer '{layer.name}' has several outputs; "
                        "use the Functional API for multi-output layers"
                    )
        except Exception:
            for layer, mark in zip(self._layers, marks):  # a failed build leaves no stray calls
                del layer._inbound_nodes[mark:]
            raise
        self._input_layer = input_layer
        if old_graph is not None:
            _drop_nodes_of(old_graph)
        self._init_graph(self._input_layer.output_tensor, x)

    def _ensure_built_for_data(self, x) -> None:
        if not self.built:
            first = x[0] if isinstance(x, (list, tuple)) else x
            self.build((None, *np.shape(first)[1:]))

    def get_config(self) -> dict:
        """Keras 3's Sequential config: the layers in order, an InputLayer first once built."""
        layers = [self._input_layer] if self._input_layer is not None else []
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "layers": [serialize_layer(layer) for layer in [*layers, *self._layers]],
        }
        if self.built:
            config["build_input_shape"] = list(self.inputs[0].shape)
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> Sequential:
        """The Sequential ``get_config()`` describes, with fresh weights."""
        return _sequential_from_config(
            cls, config, lambda data: deserialize_layer(data, custom_objects)
        )


def _sequential_from_config(cls, config: dict, make_layer) -> Sequential:
    model = cls(name=config.get("name"), trainable=config.get("trainable", True))
    for layer_data in config["layers"]:
        model.add(make_layer(layer_data), rebuild=False)
    shape = config.get("build_input_shape")
    if model._declared_batch_shape() is None and shape is not None:
        model.build(tuple(shape))
    else:
        model._maybe_build_from_declared_shape()
    return model


def _drop_nodes_of(graph: Graph) -> None:
    """Forget the nodes of a replaced Sequential graph so layers keep only current calls."""
    stale = {id(n) for n in graph.nodes}
    for layer in graph.layers:
        layer._inbound_nodes = [n for n in layer._inbound_nodes if id(n) not in stale]


# Saved configs name models by these (Keras 3 saves a Model as 'Functional').
register_builtins({"Functional": Model, "Model": Model, "Sequential": Sequential})


# ---- loading and copying models ----
#: The model saved at a path (``.fastnn`` or Keras 3's ``.keras``): one function with
#: ``fastnn.saving.load_model``, as Keras's keras.models and keras.saving share theirs.
load_model = saving_api.load_model


def model_from_json(json_string: str, custom_objects: dict | None = None) -> Model:
    """The model (fresh weights) that ``Model.to_json()`` described."""
    try:
        config = json.loads(json_string)
    except (TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"model_from_json(): not valid JSON ({error})") from None
    model = deserialize_layer(config, custom_objects)
    if not isinstance(model, Model):
        raise ValueError(f"model_from_json(): the JSON describes a {type(model).__name__}")
    return model


def clone_model(model: Model, input_tensors=None, clone_function=None) -> Model:
    """A new model with the same architecture and fresh weights (as Keras's ``clone_model``).

    ``clone_function(layer) -> layer`` makes each new layer (default: the layer class's
    ``from_config(layer.get_config())``); inputs are recreated from their configs.
    """
    if input_tensors is not None:
        raise NotImplementedError("clone_model(input_tensors=...) is not supported")
    if not isinstance(model, Model):
        raise ValueError(f"clone_model() expects a fastnn Model; got {type(model).__name__}")
    clone = clone_function or (lambda layer: type(layer).from_config(layer.get_config()))
    # The config lists the layers in model.layers' order (a user's get_config may omit "name").
    originals = iter([layer for layer in model.layers if not isinstance(layer, InputLayer)])

    def make_layer(data):
        if data["class_name"] == "InputLayer":
            return deserialize_layer(data)
        return clone(next(originals))

    rebuild = _sequential_from_config if isinstance(model, Sequential) else _functional_from_config
    return rebuild(type(model), model.get_config(), make_layer)
