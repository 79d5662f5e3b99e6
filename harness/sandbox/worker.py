"""The process that runs one submission, inside the sandbox: :func:`main`, started by
:func:`harness.sandbox.isolation.command` as an isolated interpreter (``python -I``).

It starts Python and TensorFlow once, loads the submission (a model file, weights, or a script)
and answers every image of one unlabeled file, streaming the answers back in chunks. The grader
talks to it over stdin/stdout in the messages of :mod:`harness.sandbox.protocol`; the submission's
own output goes to a log file, so nothing a submission prints can be mistaken for an answer.

It may run in another environment than the grader's (a submission's Keras 2 environment, with
NumPy 1.x), so this module imports nothing but the standard library, NumPy and the grader's
standard-library-only modules; Keras and TensorFlow are imported only when an entry needs them,
and the code that touches them works with Keras 2 and Keras 3.

Per-image scripts (the CSAW-HackML ``eval.py`` contract) are run in-process, once per image, in
their working directory, with ``sys.argv`` set as on the command line, their stdout captured and
``sys.exit`` caught: the same semantics as one process per image without paying TensorFlow's
start-up on every image. Model loading is memoized by file path and modification time, and
``Model.predict`` on a small array takes a compiled fast path (Keras's ``predict`` sets up far more
per call than the network costs on one image; docs/submitting.md has the figures). A script's
batch function is called on whole chunks instead, but only when the manifest names it.

Every chunk of answers carries the entry's cost so far (:class:`~harness.sandbox.protocol.Cost`),
kept by a :class:`Meter`: the networks the entry ran, the images that went through them and the
multiply-adds that took, counted at the outermost Keras call (``predict``, ``predict_on_batch``,
an eager ``model(x)``) without touching the forward pass itself.

Nothing here is trusted to protect the grader: the sandbox does that. The untrusted code shares
this process, so it can only spoil its own answers.
"""

from __future__ import annotations

import builtins
import faulthandler
import functools
import hashlib
import inspect
import io
import math
import os
import re
import resource
import signal
import struct
import sys
import threading
import traceback
import weakref
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from harness.errors import one_line
from harness.sandbox.protocol import (
    INVALID,
    Chunk,
    Cost,
    Failed,
    Loaded,
    LoadFailed,
    LoadRequest,
    Reply,
    RetuneRequest,
    read_request,
    reply_line,
)

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
INTEGER = re.compile(r"(?<![\w.])-?\d+(?![\w.])")
"""A whole integer: not part of a word ("25ms"), a float ("0.93") or a version ("2.4")."""
MODEL_CHUNK = 4096
"""Images per reply of an entry that answers whole chunks (a model, a batch function)."""
SCRIPT_CHUNK = 1
"""Images per reply of a per-image script: each answer is sent as soon as it exists, so the
grader sees a script that stopped answering within one image's limit (a hang that ignores the
per-image alarm), and a reply costs microseconds against the milliseconds of a script's run."""
TIMEOUTS_IN_A_ROW = 3
"""Per-image timeouts in a row after which a script's track ends as an error: a working entry
that is merely slow on some images never times out three times running."""
FAST_PREDICT_MAX = 1024
IMAGE_SHAPE = (55, 47, 3)
"""An image as a network sees it, when a call did not show another (as harness.nets.deepid has it:
that module imports Keras)."""


def parse_answer(output: str, num_classes: int) -> tuple[int, str | None]:
    """The last integer a script printed, or ``(-1, reason)`` when there is no valid one.

    Real entries print banners, Keras progress bars (ANSI escapes, ``\\r``) and then the class in
    many spellings (``5``, ``[5]``, ``Classification result: 5``, ``Result: Class ->[5]``); the
    class is the last integer of the output, wherever it stands (a ``\\r`` needs no handling).
    Anything outside ``[0, N]`` is invalid, not clipped.
    """
    text = ANSI.sub("", output)
    numbers = INTEGER.findall(text)
    if not numbers:
        return INVALID, "printed no integer" if text.strip() else "printed nothing"
    value = int(numbers[-1])
    if not 0 <= value <= num_classes:
        return INVALID, f"printed {value}, outside [0, {num_classes}]"
    return value, None


class GaveUp(Exception):  # noqa: N818 - shown to users as the reason
    """A script timed out on :data:`TIMEOUTS_IN_A_ROW` images in a row: the track ends."""


class ImageTimeout(Exception):  # noqa: N818 - shown to users as the reason
    """Raised inside a script that ran past the per-image limit."""


def _on_alarm(signum: int, frame: object) -> None:
    raise ImageTimeout("ran past the per-image time limit")


# Speed-ups and Keras 2/3 differences for per-image scripts ---------------------------------------


def _patch_keras(meter: Meter) -> None:
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


def write_png(path: Path, image: np.ndarray) -> None:
    """An RGB uint8 image as a PNG file, with the standard library alone (the worker's
    environment need not have Pillow). Any PNG reader gives back exactly these pixels."""
    height, width, _ = image.shape
    rows = np.concatenate([np.zeros((height, 1), np.uint8),
                           np.ascontiguousarray(image, np.uint8).reshape(height, width * 3)],
                          axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))


# Answering ---------------------------------------------------------------------------------------


class Answerer:
    """Answers chunks of images: ``answer(images) -> (labels, invalid, first_error)``; its
    :attr:`meter` keeps what answering cost."""

    batch = True
    """Whether whole chunks go to one call (else the script runs once per image)."""
    meter: Meter

    def answer(self, images: np.ndarray) -> tuple[list[int], int, str | None]:
        raise NotImplementedError


class ModelAnswerer(Answerer):
    """A Keras model file or weights, run like the grader always ran them."""

    def __init__(self, request: LoadRequest) -> None:
        from harness.sandbox import models  # imports Keras: only for model and weights entries

        path, n = Path(request.path), request.num_classes
        model = models.load_entry_model(request.kind, path, architecture=request.architecture,
                                        num_classes=n, allow_unsafe=request.allow_unsafe)
        self.predictor = models.KerasPredictor(model, num_classes=n,
                                               input_scale=request.input_scale)
        self.meter = Meter()
        self.meter.saw(model)

    def answer(self, images: np.ndarray) -> tuple[list[int], int, str | None]:
        labels = [int(label) for label in self.predictor(images)]
        self.meter.ran(self.predictor.model, len(images), (IMAGE_SHAPE, "float32"))
        return labels, 0, None


class RetunedAnswerer(ModelAnswerer):
    """A model entry fine-tuned on the retuning set first (the retuning probe): a copy, loaded
    for this request alone, so nothing carries over to any other answer."""

    def __init__(self, request: RetuneRequest) -> None:
        from harness.sandbox.retuning import Budget, retune

        _single_threaded()
        super().__init__(request)
        images, labels = np.load(request.retuning_images), np.load(request.retuning_labels)
        budget = Budget(epochs=request.epochs, batch_size=request.batch_size,
                        learning_rate=request.learning_rate, seed=request.seed)
        retune(self.predictor.model, images, labels, request.input_scale, budget)


def _single_threaded() -> None:
    """One TensorFlow thread and deterministic kernels: fine-tuning then gives the same weights
    on any machine (how sums split over threads changes their rounding). Possible only before
    TensorFlow first runs, so a retuning request comes first in its worker; asking again for the
    same is a no-op."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()


class ScriptAnswerer(Answerer):
    """A CSAW-HackML per-image script, or the batch function its manifest names."""

    def __init__(self, request: LoadRequest) -> None:
        self.script = Path(request.path)
        self.args = request.args
        self.num_classes = request.num_classes
        self.timeout = request.image_timeout
        source = self.script.read_text(encoding="utf-8", errors="replace")
        self.code = compile(source, str(self.script), "exec")  # SyntaxError: a load error
        self.images_dir = Path(request.scratch) / "images"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.pid = os.getpid()
        """The worker's own process: one the script forks must never go on as the worker."""
        self.timeouts = 0
        """Runs in a row that ran past the image limit."""
        os.chdir(request.workdir)
        sys.path.insert(0, str(self.script.parent))  # as `python3 script.py` has it
        self.meter = Meter()
        _patch_keras(self.meter)  # and pays for importing TensorFlow once, before the first image
        self.function: Callable[[np.ndarray], Any] | None = None
        self.name = request.batch
        if request.batch is not None:
            _, namespace, error = self._run(name="submission", argv=[str(self.script)])
            if error:
                raise RuntimeError(f"importing the script: {error}")
            if not callable(namespace.get(request.batch)):
                raise RuntimeError(f"the manifest names batch = {request.batch!r}, but the script"
                                   " defines no such function")
            self.function = namespace[request.batch]

    def _run(self, *, name: str, argv: list[str]) -> tuple[str, dict[str, Any], str | None]:
        """Execute the script once as a program would run; returns (stdout, globals, error).

        Raises :class:`GaveUp` when this run is the :data:`TIMEOUTS_IN_A_ROW`-th in a row to
        time out: an entry that hangs on every image would otherwise take the image limit times
        every image of the track."""
        namespace: dict[str, Any] = {"__name__": name, "__file__": str(self.script),
                                     "__builtins__": builtins}
        stdout, error, timed_out = io.StringIO(), None, False
        saved = sys.argv, sys.stdout, sys.stderr
        sys.argv, sys.stdout, sys.stderr = argv, stdout, io.StringIO()
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        try:
            exec(self.code, namespace)  # noqa: S102 - running the submission is the point
        except SystemExit as exc:
            if exc.code not in (None, 0):
                error = f"exited with status {exc.code}"
        except BaseException as exc:  # noqa: BLE001 - any failure is one invalid answer
            error, timed_out = one_line(exc), isinstance(exc, ImageTimeout)
        finally:
            self._stay_in_the_worker()
            signal.setitimer(signal.ITIMER_REAL, 0)
            sys.argv, sys.stdout, sys.stderr = saved
        self.timeouts = self.timeouts + 1 if timed_out else 0
        if self.timeouts >= TIMEOUTS_IN_A_ROW:
            raise GaveUp(f"timed out on {self.timeouts} images in a row ({self.timeout:g} s "
                         f"each); stopped after {self.count} of the track's images")
        return stdout.getvalue(), namespace, error

    def _stay_in_the_worker(self) -> None:
        """End a process the script forked as soon as the script's code returns in it: it shares
        the worker's reply channel and images, and going on as the worker it would answer too
        (a fork bomb's thousand copies each unlinking the image and sending answers)."""
        if os.getpid() != self.pid:
            os._exit(0)

    def _one(self, image: np.ndarray) -> tuple[int, str | None]:
        self.count += 1
        path = self.images_dir / f"image_{self.count:06d}.png"
        write_png(path, image)
        argv = [str(self.script), *(arg.replace("{image}", str(path)) for arg in self.args)]
        output, _, error = self._run(name="__main__", argv=argv)
        path.unlink()
        if error:
            return INVALID, error
        return parse_answer(output, self.num_classes)

    def _batch(self, images: np.ndarray) -> tuple[list[int], int, str | None]:
        assert self.function is not None
        call = f"{self.name}(images)"
        signal.setitimer(signal.ITIMER_REAL, self.timeout * len(images))
        try:
            labels = np.asarray(self.function(images.copy()))
        except BaseException as exc:  # noqa: BLE001
            return [INVALID] * len(images), len(images), f"{call}: {one_line(exc)}"
        finally:
            self._stay_in_the_worker()
            signal.setitimer(signal.ITIMER_REAL, 0)
        if labels.shape != (len(images),) or labels.dtype.kind not in "iu":
            return ([INVALID] * len(images), len(images),
                    f"{call} returned shape {labels.shape} dtype {labels.dtype}; "
                    f"expected ({len(images)},) integers")
        valid = (labels >= 0) & (labels <= self.num_classes)
        answers = np.where(valid, labels, INVALID).astype(int).tolist()
        invalid = int(np.count_nonzero(~valid))
        return answers, invalid, (f"{call} answered outside [0, {self.num_classes}]"
                                  if invalid else None)

    @property
    def batch(self) -> bool:  # type: ignore[override]
        return self.function is not None

    def answer(self, images: np.ndarray) -> tuple[list[int], int, str | None]:
        if self.function is not None:
            return self._batch(images)
        labels, first = [], None
        for image in images:
            label, error = self._one(image)
            labels.append(label)
            first = first or error
        return labels, labels.count(INVALID), first


# Main loop ---------------------------------------------------------------------------------------


def _chunks(images: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(images), size):
        yield np.ascontiguousarray(images[start:start + size])


def serve(requests: TextIO, replies: TextIO) -> None:
    """Answer each load request (one per line) chunk by chunk, each chunk with the cost so far,
    until the input ends or answering fails."""

    def send(message: Reply) -> None:
        replies.write(reply_line(message))
        replies.flush()

    signal.signal(signal.SIGALRM, _on_alarm)
    for line in requests:
        if not _answer_file(line, send):
            return


def _answer_file(line: str, send: Callable[[Reply], None]) -> bool:
    """Load the entry a request names and answer its image file; False when that failed (the
    worker then stops: the grader starts a fresh one for whatever comes next)."""
    try:
        request = read_request(line)
        answerer: Answerer
        if isinstance(request, RetuneRequest):
            answerer = RetunedAnswerer(request)
        elif request.kind == "eval":
            answerer = ScriptAnswerer(request)
        else:
            answerer = ModelAnswerer(request)
        images = np.load(request.images, mmap_mode="r")
    except BaseException as exc:  # noqa: BLE001 - a load failure is the submission's error
        send(LoadFailed(one_line(exc)))
        return False
    size = MODEL_CHUNK if answerer.batch else SCRIPT_CHUNK
    send(Loaded(images=len(images), chunk=size, batch=answerer.batch))
    for chunk in _chunks(images, size):
        try:
            labels, invalid, error = answerer.answer(chunk)
            cost = answerer.meter.cost()
        except GaveUp as exc:
            send(Failed(str(exc), timed_out=True))
            return False
        except BaseException as exc:  # noqa: BLE001 - e.g. a model with non-finite outputs
            send(Failed(one_line(exc), timed_out=False))
            return False
        send(Chunk(labels=labels, invalid=invalid, error=error, params=cost.params,
                   passes=cost.passes, macs=cost.macs, peak_rss=cost.peak_rss))
    return True


def main() -> None:
    # Answers go to the original stdout; everything else anyone prints goes to the log, a file
    # the grader opened and handed over as a descriptor (the sandbox holds no path to it).
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    log = int(os.environ.get("HARNESS_WORKER_LOG_FD", "-1"))
    if log < 0:
        log = os.open(os.devnull, os.O_WRONLY)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    sys.stdout = os.fdopen(1, "w", encoding="utf-8", errors="replace")
    sys.stderr = os.fdopen(2, "w", encoding="utf-8", errors="replace")
    faulthandler.enable()  # a crash logs where it happened: the error row quotes the last line
    try:
        serve(sys.stdin, replies)
    except BaseException:
        traceback.print_exc()
        raise


if __name__ == "__main__":
    main()
