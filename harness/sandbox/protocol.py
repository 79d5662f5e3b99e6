"""The messages between the grader and its sandboxed worker, as types both sides share.

The worker may run in another Python environment than the grader (a team's ``keras2``
environment, with another NumPy and Keras), so this module imports the standard library only, and
every message is plain JSON, one per line: the grader writes one :class:`LoadRequest` (or
:class:`RetuneRequest`: fine-tune the model first, see :mod:`harness.sandbox.retuning`) to the
worker's stdin; the worker answers with :class:`Loaded` or :class:`LoadFailed`, then one
:class:`Chunk` per chunk of images, or :class:`Failed` when answering breaks down. A worker that
answered a whole file reads the next request (a model entry's worker answers every track of its
submission in turn); end of input ends it. Each chunk also
carries the entry's :class:`Cost` so far (cumulative), so the last chunk holds the whole run's.

Everything the worker sends is untrusted (the submission shares its process and could write to
the channel): :func:`read_reply` checks the shape and types of each reply, and
:meth:`Chunk.check` checks its labels against the class count and the images still unanswered,
its detection scores (if any) for one finite number per label, and its cost for negative
numbers. The cost is what the worker measured in the submission's own
process, so a submission could forge it: it is reported, never scored.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, Literal

INVALID = -1
"""Label standing for an unparseable answer: never correct, never the target, never a flag."""

EntryKind = Literal["model", "weights", "eval"]


class ProtocolError(ValueError):
    """A message that is not what the protocol allows (the submission wrote to the channel)."""


@dataclass(frozen=True)
class LoadRequest:
    """What the worker loads and how it answers; paths are as the worker sees them."""

    kind: EntryKind
    path: str
    """The model, weights or script file."""
    num_classes: int
    input_scale: float
    args: list[str]
    """A script's command-line arguments, ``{image}`` standing for the image file."""
    architecture: str | None
    allow_unsafe: bool
    image_timeout: float
    scratch: str
    """A writable folder for the image files handed to a script."""
    workdir: str
    """The working directory a script runs in."""
    batch: str | None
    """The script's batch function named in the manifest (None: one run per image)."""
    images: str
    """The image file to answer (a ``.npy`` of uint8 (n, 55, 47, 3))."""

    def to_line(self) -> str:
        tag = "retune" if isinstance(self, RetuneRequest) else "load"
        return json.dumps({"type": tag, **asdict(self)}) + "\n"


@dataclass(frozen=True)
class RetuneRequest(LoadRequest):
    """Load a model entry, fine-tune it on the retuning set within the budget
    (:func:`harness.sandbox.retuning.retune`), then answer ``images`` with the fine-tuned model.

    The worker that gets one runs TensorFlow single-threaded with op determinism, so the same
    request gives the same weights on any machine: it must be the first request of its worker
    (TensorFlow fixes its threads when it first runs)."""

    retuning_images: str
    """The retuning set's images, a ``.npy`` of uint8 (n, 55, 47, 3)..."""
    retuning_labels: str
    """...and the labels to fine-tune towards, a ``.npy`` of n integers."""
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int


def read_request(line: str | bytes) -> LoadRequest:
    """Parse one request line (a :class:`LoadRequest` or a :class:`RetuneRequest`)."""
    message = _object(line)
    kind = {"load": LoadRequest, "retune": RetuneRequest}.get(message.pop("type", None))
    if kind is None:
        raise ProtocolError("a request of no known type")
    return kind(**_fields(kind, message))


@dataclass(frozen=True)
class Loaded:
    """The entry loaded; answers follow in chunks of ``chunk`` images."""

    images: int
    chunk: int
    batch: bool
    """Whether whole chunks go to one call (a model, or a script's named batch function)."""


@dataclass(frozen=True)
class LoadFailed:
    error: str


@dataclass(frozen=True)
class Cost:
    """What answering cost, from the first image up to some point.

    ``params``, ``passes`` and ``macs`` are deterministic (the same entry on the same images
    gives the same numbers); ``peak_rss`` is not.
    """

    params: int
    """Parameters of the networks the entry used: a model entry's ``count_params()``; for a
    script, the sum over the distinct Keras models it loaded or called (0: it used none)."""
    passes: int
    """Images that went through a network: one per image per outermost model call
    (``predict``, ``predict_on_batch`` or an eager ``model(x)``), so a script that runs two
    models on each image makes two per image."""
    macs: int | None
    """Multiply-adds of those passes: for each network, those of one image's forward pass
    (its Conv, depthwise Conv, MatMul and Einsum ops, from the static shapes of its traced
    graph) times its passes. None when some network that ran could not be traced."""
    peak_rss: int
    """The worker's peak resident memory in bytes (``ru_maxrss``: its own or its children's,
    the larger)."""


@dataclass(frozen=True)
class Chunk:
    """Answers to the next ``len(labels)`` images: labels in ``[0, N]`` or :data:`INVALID`,
    with a detection score per image where the entry exposes one; and the :class:`Cost` of every
    image answered so far, this chunk's included."""

    labels: list[int]
    invalid: int
    error: str | None
    """The first reason an answer was invalid, if any was."""
    # The cost so far, cumulative: the fields of :class:`Cost`.
    params: int
    passes: int
    macs: int | None
    peak_rss: int
    scores: list[float] | None = None
    """A detection score per image, aligned with ``labels`` (higher: more likely poisoned; the
    probability of class N where the entry gives probabilities), or None: the entry gives labels
    only. Every image has one, finite; an image whose label is :data:`INVALID` carries any value
    (the grader ignores it). Optional on the wire: a reply without it gives labels only."""

    @property
    def cost(self) -> Cost:
        return Cost(params=self.params, passes=self.passes, macs=self.macs,
                    peak_rss=self.peak_rss)

    def check(self, num_classes: int, remaining: int, chunk: int) -> None:
        """Refuse a reply that a correct worker cannot send: no labels, more than the chunk or
        the images left, a label out of range, an ``invalid`` count that does not add up, a
        negative cost, scores for some images and not others or a score that is not finite."""
        size = len(self.labels)
        if not 0 < size <= min(chunk, remaining):
            raise ProtocolError(f"{size} answers for a chunk of {min(chunk, remaining)} images")
        if any(label != INVALID and not 0 <= label <= num_classes for label in self.labels):
            raise ProtocolError(f"an answer outside [0, {num_classes}]")
        if self.invalid != self.labels.count(INVALID):
            raise ProtocolError("the count of invalid answers does not add up")
        if self.scores is not None:
            if len(self.scores) != size:
                raise ProtocolError(f"{len(self.scores)} scores for {size} answers")
            if not all(map(_finite, self.scores)):
                raise ProtocolError("a detection score that is not finite")
        for name in ("params", "passes", "macs", "peak_rss"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ProtocolError(f"a negative cost ({name} = {value})")


def _finite(value: float) -> bool:
    """A number a float holds, finite (an integer past a float's range is not)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


@dataclass(frozen=True)
class Failed:
    """Answering broke down (e.g. a model with non-finite outputs); the worker stops."""

    failed: str
    timed_out: bool
    """It broke down by running out of time (several images in a row), which may not recur."""


Reply = Loaded | LoadFailed | Chunk | Failed
_TAGS: dict[str, type[Loaded | LoadFailed | Chunk | Failed]] = {
    "loaded": Loaded, "load_failed": LoadFailed, "chunk": Chunk, "failed": Failed}


def reply_line(reply: Reply) -> str:
    """A reply as one line of JSON, tagged with its type."""
    tag = next(name for name, kind in _TAGS.items() if isinstance(reply, kind))
    return json.dumps({"type": tag, **asdict(reply)}) + "\n"


def read_reply(line: str | bytes) -> Reply:
    """Parse and type-check one reply line; anything else raises :class:`ProtocolError`."""
    message = _object(line)
    kind = _TAGS.get(message.pop("type", None))
    if kind is None:
        raise ProtocolError("a reply of no known type")
    return kind(**_fields(kind, message))


def _object(line: str | bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError:
        raise ProtocolError("a reply that is not JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("a reply that is not a JSON object")
    return message


_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
    "str | None": (str, type(None)), "int | None": (int, type(None)),
    "list[str]": (list,), "list[int]": (list,), "list[float] | None": (list, type(None)),
    "EntryKind": (str,)}
_ITEMS: dict[str, tuple[type, ...]] = {
    "list[str]": (str,), "list[int]": (int,), "list[float] | None": (int, float)}


def _fields(kind: type, message: dict[str, Any]) -> dict[str, Any]:
    """The message's values for ``kind``'s fields, each of the declared type (bool is not int);
    a field with a default may be left out (a reply from before it existed)."""
    names = {field.name: str(field.type) for field in fields(kind)}
    required = {field.name for field in fields(kind) if field.default is MISSING}
    if not required <= set(message) <= set(names):
        raise ProtocolError(f"{kind.__name__} with fields {sorted(message)}")
    for name, declared in names.items():
        if name not in message:
            continue
        value = message[name]
        allowed = _TYPES[declared]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ProtocolError(f"{kind.__name__}.{name} is not {declared}")
        if declared.startswith("list[") and value is not None:
            item = _ITEMS[declared]
            if not all(isinstance(v, item) and not isinstance(v, bool) for v in message[name]):
                raise ProtocolError(f"{kind.__name__}.{name} is not {declared}")
    return message
