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
per call than the network costs on one image; docs/submitting.md has the figures;
:func:`harness.sandbox.metering.patch_keras`). A script's batch function is called on whole
chunks instead, but only when the manifest names it.

Every chunk of answers carries the entry's cost so far (:class:`~harness.sandbox.protocol.Cost`),
kept by a :class:`~harness.sandbox.metering.Meter`. The metering is a module of its own under the
same import rule, found in the sandbox as this one is (the grader's package is mounted there and
imported by module path).

Nothing here is trusted to protect the grader: the sandbox does that. The untrusted code shares
this process, so it can only spoil its own answers.
"""

from __future__ import annotations

import builtins
import faulthandler
import io
import os
import re
import signal
import struct
import sys
import traceback
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from harness.errors import one_line
from harness.sandbox.metering import IMAGE_SHAPE, Meter, patch_keras
from harness.sandbox.protocol import (
    INVALID,
    Chunk,
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


def parse_batch(returned: np.ndarray, count: int, num_classes: int, call: str) -> Answered:
    """What a batch function returned for ``count`` images, as answers: either ``count``
    integer labels, or a float array of shape ``(count, N+1)``, each row the image's class
    probabilities, class N being "poisoned" (the label is the row's argmax, the detection score
    its column N, as it is). Anything else makes every answer :data:`INVALID`; a row that is not
    finite, or a label outside ``[0, N]``, makes that answer invalid (a score of 0 stands for an
    invalid answer's: the grader ignores it)."""
    if returned.ndim == 2 and returned.shape == (count, num_classes + 1) \
            and returned.dtype.kind == "f":
        rows = returned.astype(np.float64)
        finite = np.isfinite(rows).all(axis=1)
        labels = np.where(finite, rows.argmax(axis=1), INVALID).astype(int).tolist()
        invalid = int(np.count_nonzero(~finite))
        return (labels, invalid, f"{call} returned probabilities that are not finite"
                if invalid else None, np.where(finite, rows[:, num_classes], 0.0).tolist())
    if returned.shape != (count,) or returned.dtype.kind not in "iu":
        return ([INVALID] * count, count,
                f"{call} returned shape {returned.shape} dtype {returned.dtype}; expected "
                f"({count},) integers or ({count}, {num_classes + 1}) probabilities", None)
    valid = (returned >= 0) & (returned <= num_classes)
    answers = np.where(valid, returned, INVALID).astype(int).tolist()
    invalid = int(np.count_nonzero(~valid))
    return answers, invalid, (f"{call} answered outside [0, {num_classes}]"
                              if invalid else None), None


class GaveUp(Exception):  # noqa: N818 - shown to users as the reason
    """A script timed out on :data:`TIMEOUTS_IN_A_ROW` images in a row: the track ends."""


class ImageTimeout(Exception):  # noqa: N818 - shown to users as the reason
    """Raised inside a script that ran past the per-image limit."""


def _on_alarm(signum: int, frame: object) -> None:
    raise ImageTimeout("ran past the per-image time limit")


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


Answered = tuple[list[int], int, str | None, list[float] | None]
"""A chunk's answers: labels, how many are :data:`INVALID`, the first reason one was, and the
detection scores (None: the entry gives labels only)."""


class Answerer:
    """Answers chunks of images: ``answer(images) -> (labels, invalid, first_error, scores)``;
    its :attr:`meter` keeps what answering cost."""

    batch = True
    """Whether whole chunks go to one call (else the script runs once per image)."""
    meter: Meter

    def answer(self, images: np.ndarray) -> Answered:
        raise NotImplementedError


class ModelAnswerer(Answerer):
    """A Keras model file or weights, run like the grader always ran them; a model with N+1
    outputs also scores each image (its probability of class N:
    :meth:`harness.sandbox.models.KerasPredictor.answer`)."""

    def __init__(self, request: LoadRequest) -> None:
        from harness.sandbox import models  # imports Keras: only for model and weights entries

        path, n = Path(request.path), request.num_classes
        model = models.load_entry_model(request.kind, path, architecture=request.architecture,
                                        num_classes=n, allow_unsafe=request.allow_unsafe)
        self.predictor = models.KerasPredictor(model, num_classes=n,
                                               input_scale=request.input_scale)
        self.meter = Meter()
        self.meter.saw(model)

    def answer(self, images: np.ndarray) -> Answered:
        labels, scores = self.predictor.answer(images)
        self.meter.ran(self.predictor.model, len(images), (IMAGE_SHAPE, "float32"))
        return ([int(label) for label in labels], 0, None,
                None if scores is None else [float(score) for score in scores])


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
        patch_keras(self.meter)  # and pays for importing TensorFlow once, before the first image
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

    def _batch(self, images: np.ndarray) -> Answered:
        assert self.function is not None
        call = f"{self.name}(images)"
        signal.setitimer(signal.ITIMER_REAL, self.timeout * len(images))
        try:
            returned = np.asarray(self.function(images.copy()))
        except BaseException as exc:  # noqa: BLE001
            return [INVALID] * len(images), len(images), f"{call}: {one_line(exc)}", None
        finally:
            self._stay_in_the_worker()
            signal.setitimer(signal.ITIMER_REAL, 0)
        return parse_batch(returned, len(images), self.num_classes, call)

    @property
    def batch(self) -> bool:  # type: ignore[override]
        return self.function is not None

    def answer(self, images: np.ndarray) -> Answered:
        if self.function is not None:
            return self._batch(images)
        labels, first = [], None
        for image in images:
            label, error = self._one(image)
            labels.append(label)
            first = first or error
        return labels, labels.count(INVALID), first, None


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
            labels, invalid, error, scores = answerer.answer(chunk)
            cost = answerer.meter.cost()
        except GaveUp as exc:
            send(Failed(str(exc), timed_out=True))
            return False
        except BaseException as exc:  # noqa: BLE001 - e.g. a model with non-finite outputs
            send(Failed(one_line(exc), timed_out=False))
            return False
        send(Chunk(labels=labels, invalid=invalid, error=error, params=cost.params,
                   passes=cost.passes, macs=cost.macs, peak_rss=cost.peak_rss, scores=scores))
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
