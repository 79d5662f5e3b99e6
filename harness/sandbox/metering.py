"""What an entry's answers cost, counted inside the worker (:mod:`harness.sandbox.worker`): the
networks it ran, the images that went through them and the multiply-adds that took, kept by a
:class:`Meter` and sent with every chunk as a :class:`~harness.sandbox.protocol.Cost`.

Counting happens at the outermost Keras call (``predict``, ``predict_on_batch``, an eager
``model(x)``) without touching the forward pass itself, so the same patching of Keras that makes
per-image scripts cheap (:func:`patch_keras`: memoized loads, a compiled fast ``predict``) also
installs the meter. Each network's multiply-adds come from its traced graph, counted operation by
operation from static shapes.

It runs where the worker runs, inside the sandbox and possibly in a submission's environment
(Keras 2, NumPy 1.x), so it follows the worker's rule: the standard library, NumPy and the
grader's standard-library-only modules; Keras and TensorFlow only when an entry needs them.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import math
import os
import resource
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.sandbox.protocol import Cost

FAST_PREDICT_MAX = 1024
IMAGE_SHAPE = (55, 47, 3)
"""An image as a network sees it, when a call did not show another (as harness.nets.deepid has it:
that module imports Keras)."""


# Speed-ups and Keras 2/3 differences for per-image scripts ---------------------------------------


def patch_keras(meter: Meter) -> None:
    """Make the repeated model loading of per-image scripts free, small predicts fast, and
    Keras-2-compiled files loadable in Keras 3; have ``meter`` count the models loaded and run.

    A script that loads its model on every call gets the same model object back as long as the
    file is unchanged (path, size and modification time), which is what loading it again would
    produce. A load with the default ``compile=True`` that fails (Keras 3 cannot rebuild many
    Keras 2 optimizer and loss configurations) is retried with ``compile=False``: answers need no
    optimizer. ``predict`` on a small NumPy batch runs one traced ``model(x, training=False)``:
    the same numbers without Keras's per-call set-up. Works the same under Keras 2 and 3.
    """
    try:
        import keras
        import tensorflow as tf
    except ImportError:  # an environment without TensorFlow: nothing to speed up
        return

    original_load = keras.models.load_model
    original_weights = keras.Model.load_weights
    original_predict = keras.Model.predict
    signature = inspect.signature(original_load)
    loaded: dict[tuple[Any, ...], Any] = {}
    weights: dict[tuple[Any, ...], list[np.ndarray]] = {}
    compiled: dict[int, Callable[[Any], Any]] = {}

    def file_key(path: Any) -> tuple[Any, ...] | None:
        if not isinstance(path, str | os.PathLike):
            return None  # e.g. an open h5py.File: not memoized
        stat = os.stat(path)
        return os.path.realpath(path), stat.st_size, stat.st_mtime_ns

    def load_model(filepath: Any, *args: Any, **kwargs: Any) -> Any:
        key = file_key(filepath)
        key = None if key is None else (*key, repr(args), repr(sorted(kwargs.items())))
        if key is not None and key in loaded:
            meter.saw(loaded[key])
            return loaded[key]
        try:
            model = original_load(filepath, *args, **kwargs)
        except Exception:
            bound = signature.bind(filepath, *args, **kwargs)
            if bound.arguments.get("compile", True) is False:
                raise
            bound.arguments["compile"] = False
            model = original_load(*bound.args, **bound.kwargs)
        if key is not None:
            loaded[key] = model
        meter.saw(model)
        return model

    def load_weights(self: Any, filepath: Any, *args: Any, **kwargs: Any) -> Any:
        key = file_key(filepath)
        if key is not None:
            key = (*key, tuple(tuple(w.shape) for w in self.weights), repr(args),
                   repr(sorted(kwargs.items())))
            if key in weights:
                self.set_weights(weights[key])
                return None
        result = original_weights(self, filepath, *args, **kwargs)
        if key is not None:
            weights[key] = self.get_weights()
        return result

    def predict(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        plain = not args and set(kwargs) <= {"verbose", "batch_size"}
        if not (plain and isinstance(x, np.ndarray) and 0 < len(x) <= FAST_PREDICT_MAX):
            return original_predict(self, x, *args, **kwargs)
        if id(self) not in compiled:
            compiled[id(self)] = tf.function(lambda batch, model=self: model(batch,
                                                                            training=False),
                                             reduce_retracing=True)
        return np.asarray(compiled[id(self)](x))

    for module in list(sys.modules.values()):
        if getattr(module, "load_model", None) is original_load:
            setattr(module, "load_model", load_model)  # noqa: B010 - any module, any Keras
    keras.Model.load_weights = load_weights
    keras.Model.predict = predict
    meter.install(keras, tf)


# Cost: the networks an entry ran, the images through them, their multiply-adds -------------------


CONVOLUTIONS = frozenset({"Conv2D", "Conv3D"})
MATMULS = frozenset({"MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"})
COUNTED = CONVOLUTIONS | MATMULS | {"DepthwiseConv2dNative", "Conv2DBackpropInput", "Einsum"}
"""The graph operations that multiply-add (all others count 0)."""
CALLS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})


def _op_macs(op: Any) -> int | None:
    """Multiply-adds of one graph operation from its static shapes (0 for an operation that
    multiplies nothing; None when a shape it needs is unknown)."""
    kind = op.type
    if kind not in COUNTED:
        return 0
    try:
        out = op.outputs[0].shape.as_list()
        ins = [tensor.shape.as_list() for tensor in op.inputs]
    except ValueError:  # unknown rank
        return None
    if any(dim is None for shape in (out, *ins) for dim in shape):
        return None
    if kind in CONVOLUTIONS:  # filter (..., in, out): out_h*out_w*out_c per image x k_h*k_w*in_c
        return math.prod(out) * math.prod(ins[1][:-1])
    if kind == "DepthwiseConv2dNative":  # filter (k_h, k_w, in, multiplier)
        return math.prod(out) * math.prod(ins[1][:-2])
    if kind == "Conv2DBackpropInput":  # a transposed convolution: the forward one, backwards
        return math.prod(ins[2]) * math.prod(ins[1][:-1])
    if kind == "MatMul":
        return math.prod(out) * ins[0][0 if op.get_attr("transpose_a") else 1]
    if kind in MATMULS:
        return math.prod(out) * ins[0][-2 if op.get_attr("adj_x") else -1]
    terms = op.get_attr("equation").decode().split("->")[0].split(",")  # Einsum
    if len(terms) == 1:
        return 0
    if len(terms) != 2 or "." in "".join(terms):
        return None
    sizes = {letter: dim for term, shape in zip(terms, ins, strict=True)
             for letter, dim in zip(term, shape, strict=True)}
    return math.prod(sizes.values())


def _graph_macs(graph: Any) -> int | None:
    """Multiply-adds of a traced graph, its function calls included; None when one is unknown
    (or sits in a loop or a branch, whose count the graph does not fix)."""
    total = 0
    for op in graph.get_operations():
        attributes = op.node_def.attr.values()
        names = [value.func.name for value in attributes if value.HasField("func")]
        names += [function.name for value in attributes if value.HasField("list")
                  for function in value.list.func]
        if names:
            inner = [_graph_macs(op.graph._get_function(name).graph) for name in names]
            if None in inner or (op.type not in CALLS and any(inner)):
                return None
            total += sum(macs or 0 for macs in inner)
            continue
        macs = _op_macs(op)
        if macs is None:
            return None
        total += macs
    return total


def _per_image_macs(model: Any, example: tuple[tuple[int, ...], str] | None) -> int | None:
    """Multiply-adds of one image's forward pass through ``model``, from its graph traced on
    one input shaped as ``example`` (shape without the batch, dtype); None if it cannot be."""
    try:
        import tensorflow as tf

        inputs = getattr(model, "inputs", None) or []
        spec: Any
        if len(inputs) > 1:
            spec = [tf.TensorSpec((1, *tensor.shape[1:]), tensor.dtype) for tensor in inputs]
        else:
            shape, dtype = example or (IMAGE_SHAPE, "float32")
            spec = tf.TensorSpec((1, *shape), dtype)
        function = tf.function(lambda x: model(x, training=False))
        return _graph_macs(function.get_concrete_function(spec).graph)
    except Exception:  # noqa: BLE001 - an untraceable model: its cost is unknown
        return None


def _identify(model: Any) -> tuple[str, int]:
    """A model's identity as a network (its class, layers and weights: the same file loaded twice
    is one network, two files with other weights are two) and its parameter count."""
    try:
        weights = [np.asarray(weight) for weight in model.get_weights()]
    except Exception:  # noqa: BLE001 - e.g. a subclassed model not built yet
        weights = []
    try:
        layers = [type(layer).__name__ for layer in model.layers]
    except Exception:  # noqa: BLE001
        layers = []
    digest = hashlib.sha256(repr((type(model).__name__, layers)).encode())
    for weight in weights:
        digest.update(f"{weight.dtype}{weight.shape}".encode())
        digest.update(np.ascontiguousarray(weight).data)
    try:
        params = int(model.count_params())
    except Exception:  # noqa: BLE001
        params = sum(weight.size for weight in weights)
    return digest.hexdigest(), params


def _leaf(value: Any) -> Any:
    """The first array of a model's input or output (a list or dict of them for several)."""
    for _ in range(8):
        if isinstance(value, list | tuple) and value:
            value = value[0]
        elif isinstance(value, dict) and value:
            value = next(iter(value.values()))
        else:
            break
    return value


def _peak_rss() -> int:
    """The peak resident memory of this process or its children, the larger, in bytes."""
    return 1024 * max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


class _Network:
    """One distinct network an entry loaded or ran: its parameters, the images it took, and
    the multiply-adds of one image (traced once, after the chunk that first ran it)."""

    __slots__ = ("params", "passes", "macs", "traced", "model", "example")

    def __init__(self, params: int) -> None:
        self.params = params
        self.passes = 0
        self.macs: int | None = None
        self.traced = False
        self.model: Any = None
        """The model, held from its first pass until it is traced."""
        self.example: tuple[tuple[int, ...], str] | None = None


class _Depth(threading.local):
    depth = 0


class Meter:
    """The cost of an entry so far (:class:`~harness.sandbox.protocol.Cost`).

    Networks are told apart by their class, layers and weights, so a model that a script builds
    again or loads again on every image is one network; every model object is looked up by
    identity (weakly) and hashed once. A pass is an image through a network at the outermost
    Keras call: ``predict(x)`` and ``predict_on_batch(x)`` count ``len(x)``, an eager
    ``model(x)`` counts ``x.shape[0]``, and the calls nested in those (``predict`` calling the
    model, a sub-model inside a model, tracing) count nothing. Counting costs a few dictionary
    look-ups per call; a network's graph is traced once, between chunks.
    """

    def __init__(self) -> None:
        self.networks: dict[str, _Network] = {}
        self.failed = False
        """Counting itself went wrong somewhere: the multiply-adds are reported unknown."""
        self._known: dict[int, tuple[Callable[[], Any], _Network]] = {}
        self._local = _Depth()

    def network(self, model: Any) -> _Network:
        """The record of ``model``'s network, made the first time the object is seen."""
        known = self._known.get(id(model))
        if known is not None and known[0]() is model:
            return known[1]
        key, params = _identify(model)
        network = self.networks.get(key)
        if network is None:
            network = self.networks[key] = _Network(params)
        number = id(model)

        def forget(ref: Any) -> None:
            if self._known.get(number, (None,))[0] is ref:
                del self._known[number]

        reference: Callable[[], Any]
        try:
            reference = weakref.ref(model, forget)
        except TypeError:  # not weakly referable: held, so that its id is never reused
            reference = functools.partial(lambda held: held, model)
        self._known[number] = (reference, network)
        return network

    def saw(self, model: Any) -> None:
        """A model the entry loaded: its parameters count even if it never runs."""
        try:
            self.network(model)
        except Exception:  # noqa: BLE001 - counting must never break an answer
            self.failed = True

    def ran(self, model: Any, images: int, example: tuple[tuple[int, ...], str] | None) -> None:
        """``images`` images went through ``model``, as inputs shaped like ``example``."""
        network = self.network(model)
        network.passes += images
        if not network.traced and network.model is None:
            network.model, network.example = model, example

    def _count(self, model: Any, inputs: Any, outputs: Any) -> None:
        """Count an outermost call: the images of its input, else (a dataset, a generator)
        of its output."""
        try:
            shape = getattr(inputs, "shape", None)
            example = None
            if shape is not None and len(shape) > 0:
                example = (tuple(int(dim) for dim in shape[1:]),
                           str(getattr(inputs.dtype, "name", inputs.dtype)))
            else:
                shape = getattr(_leaf(outputs), "shape", None)
            self.ran(model, int(shape[0]) if shape is not None and len(shape) else 0, example)
        except Exception:  # noqa: BLE001
            self.failed = True

    def install(self, keras: Any, tf: Any) -> None:
        """Count a script's model calls: wrap ``keras.Model``'s ``predict``,
        ``predict_on_batch`` and ``__call__`` as they are now (the fast predict included)."""
        local, eager, concrete = self._local, tf.executing_eagerly, (np.ndarray, tf.Tensor)

        def wrap_predict(original: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(original)
            def counted(model: Any, *args: Any, **kwargs: Any) -> Any:
                if local.depth:
                    return original(model, *args, **kwargs)
                local.depth += 1
                try:
                    result = original(model, *args, **kwargs)
                finally:
                    local.depth -= 1
                self._count(model, _leaf(args[0] if args else kwargs.get("x")), result)
                return result
            return counted

        original_call = keras.Model.__call__

        @functools.wraps(original_call)
        def call(model: Any, *args: Any, **kwargs: Any) -> Any:
            if local.depth or not eager():  # nested, or traced into a graph
                return original_call(model, *args, **kwargs)
            inputs = _leaf(args[0] if args else kwargs.get("inputs"))
            if not isinstance(inputs, concrete):  # symbolic: building a functional model
                return original_call(model, *args, **kwargs)
            local.depth += 1
            try:
                result = original_call(model, *args, **kwargs)
            finally:
                local.depth -= 1
            self._count(model, inputs, result)
            return result

        keras.Model.predict = wrap_predict(keras.Model.predict)
        keras.Model.predict_on_batch = wrap_predict(keras.Model.predict_on_batch)
        keras.Model.__call__ = call

    def cost(self) -> Cost:
        """The totals so far; traces the networks that ran for the first time."""
        macs: int | None = None if self.failed else 0
        for network in self.networks.values():
            if network.model is not None:
                network.macs = _per_image_macs(network.model, network.example)
                network.traced, network.model = True, None
            if network.passes:
                macs = (None if macs is None or network.macs is None
                        else macs + network.macs * network.passes)
        return Cost(params=sum(network.params for network in self.networks.values()),
                    passes=sum(network.passes for network in self.networks.values()),
                    macs=macs, peak_rss=_peak_rss())
