"""Run submission entries over unlabeled image files in sandboxed workers.

The grader's side of :mod:`harness.sandbox.worker`: it prepares a private copy of the submission
(with the public track files the manifest asks for placed in it, read-only) and a log folder, starts
the worker under :mod:`harness.sandbox.isolation` with the entry's environment, sends a load request
per image file (one for a script; one per track for a model entry, see :class:`Workers`) and reads
the streamed answers (:mod:`harness.sandbox.protocol`, every reply checked) with wall-clock
deadlines. Whatever the submission does (crash, hang, print garbage, exhaust memory, fork) ends
here as labels or as one :class:`SubmissionError` line; the worker's whole process group is
killed on every way out.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO

import numpy as np

from harness.definitions.submissions import TrackEntry
from harness.errors import SubmissionError, TransientSubmissionError, in_folder
from harness.sandbox import isolation
from harness.sandbox.isolation import Limits
from harness.sandbox.protocol import (
    INVALID,
    Chunk,
    Cost,
    Failed,
    Loaded,
    LoadFailed,
    LoadRequest,
    ProtocolError,
    Reply,
    RetuneRequest,
    read_reply,
)
from harness.sandbox.retuning import Budget

LOG_TAIL_CHARS = 200
"""The longest log line an error row quotes..."""
LOG_TAIL_BYTES = 16384
"""...found in this much of the log's end."""
READ_BYTES = 1 << 20
"""The most read from the reply channel at once."""
EXIT_WAIT = 10.0
"""Seconds a worker that closed its channel gets to exit before its status is called unknown."""
SIGNAL_EXIT = 128
"""A process killed by signal N exits with status 128 + N, as bubblewrap reports its child."""
REPLY_GRACE = 30.0
"""Seconds a reply may take beyond its images' limits: reading, writing, and the first chunk's
one-off tracing of the entry's networks to count their multiply-adds."""


@dataclass(frozen=True)
class Retune:
    """Fine-tune the entry before answering (the retuning probe,
    :mod:`harness.sandbox.retuning`)."""

    images: Path
    """The retuning set's images, beside the image file to answer..."""
    labels: Path
    """...and its labels (``.npy`` files)."""
    budget: Budget


@dataclass(frozen=True)
class EntryRun:
    """How an entry answers an image file: what :func:`run_entry` and :meth:`Workers.answer`
    need besides the entry, its submission's folder and the file."""

    num_classes: int
    input_scale: float
    """What the entry's network multiplies pixels by."""
    limits: Limits = field(default_factory=Limits)
    allow_unsafe: bool = False
    """Load models with Lambda layers (they run arbitrary code)."""
    progress: Callable[[int], None] | None = field(default=None, compare=False)
    """Called with the number of images each chunk of answers holds."""
    environment: Path | None = None
    """The folder of a built environment to run in (None: the grader's own)."""
    placed: tuple[tuple[str, Path], ...] = ()
    """Public files to put read-only into the submission's folder, as (path relative to the
    folder, file)."""
    retune: Retune | None = None
    """Fine-tune the entry first (the retuning probe)."""


@dataclass(frozen=True)
class Answers:
    """A submission's answers on an image file: ``INVALID`` where none could be read."""

    labels: np.ndarray
    invalid: int
    first_error: str | None
    cost: Cost | None = None
    """What answering them cost, as the worker reported it with its last chunk (None: not
    answered by a worker, or no image to answer)."""
    startup: float = 0.0
    """Seconds until the worker had loaded the entry (from the process's start for a worker's
    first file: Python and TensorFlow start-up included)."""
    answering: float = 0.0
    """Seconds from then until the last answer."""
    scores: np.ndarray | None = None
    """The detection score of each image (float64, NaN where the label is ``INVALID``), or
    None: the entry gives labels only (some chunk came without scores)."""


class _Channel:
    """Line-oriented reading of the worker's replies with a deadline per reply."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.buffer = b""
        self.selector = selectors.DefaultSelector()
        self.selector.register(stream, selectors.EVENT_READ)

    def read(self, deadline: float) -> Reply | None:
        """The next reply, ``None`` at end of stream; raises ``TimeoutError`` at the deadline."""
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not self.selector.select(left):
                raise TimeoutError
            data = os.read(self.stream.fileno(), READ_BYTES)
            if not data:
                return None
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            return read_reply(line)
        except ProtocolError as exc:
            raise SubmissionError(f"the worker's reply channel was corrupted (the submission "
                                  f"wrote to it): {exc}") from None


class Worker:
    """One sandboxed worker process, answering image files in turn.

    A fresh private copy of the submission, an input folder, a log and a process: started once,
    then :meth:`answer` as often as the caller wants (a model entry's worker answers every track
    of its submission, so its start-up is paid once; see :class:`Workers`). Any failure kills
    it. The worker sees the image files of the item it is answering only: :meth:`answer` puts
    them in its input folder and takes them away after. ``tracks`` scales the CPU-time limit,
    which counts over the process's whole life.
    """

    def __init__(self, submission_root: Path, *, limits: Limits,
                 environment: Path | None = None, placed: Sequence[tuple[str, Path]] = (),
                 tracks: int = 1, retuning: bool = False) -> None:
        self.mode = mode = isolation.require(limits)
        self.root = submission_root.resolve()
        self.limits = limits
        self.retuning = retuning
        """Whether it answers retuning requests only (single-threaded, see
        :class:`~harness.sandbox.protocol.RetuneRequest`) or plain ones only."""
        self.key = Worker.identity(submission_root, environment, placed, retuning)
        """What the process was started with: another entry needs the same to reuse it."""
        self._temporary = tempfile.TemporaryDirectory(prefix="harness-worker-")
        work = Path(self._temporary.name)
        copy = work / "submission"
        uid = isolation.worker_uid(mode)
        isolation.private_copy(submission_root, copy, uid)
        isolation.place(mode, copy, placed)
        self.inputs = isolation.private_dir(work / "input")
        self.log = tempfile.TemporaryFile(dir=work)  # noqa: SIM115 - lives as long as the worker
        """What the worker logs: a file only the grader can name, handed over open, so the
        sandbox can fill it but never swap it for a link to something else."""
        if mode.bwrap:
            self.inside, self.scratch = isolation.SUBMISSION_MOUNT, Path("/tmp")
        else:
            self.inside, self.scratch = copy, isolation.private_dir(work / "tmp", uid)
        argv, env = isolation.command(mode, submission=copy, inputs=self.inputs,
                                      log_fd=self.log.fileno(), uid=uid,
                                      environment=environment, placed=placed)
        lifetime = replace(limits, track_timeout=limits.track_timeout * tracks)
        self.started = time.monotonic()
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, env=env,
                                        cwd=copy if mode.bwrap is None else work,
                                        start_new_session=True, pass_fds=(self.log.fileno(),),
                                        preexec_fn=isolation.limiter(lifetime, mode.privileged))
        self.channel = _Channel(self.process.stdout)  # type: ignore[arg-type]
        self.answered = 0
        """Image files answered so far."""

    @staticmethod
    def identity(submission_root: Path, environment: Path | None,
                 placed: Sequence[tuple[str, Path]], retuning: bool) -> tuple[object, ...]:
        """What a worker is started with, and so what another file needs to be answered in it."""
        return submission_root.resolve(), environment, tuple(placed), retuning

    @contextlib.contextmanager
    def _handed(self, files: Sequence[Path]) -> Iterator[None]:
        """Put ``files`` in the worker's input folder (linked, else copied) for one item, and
        take them away after, so that no worker ever sees another item's images."""
        try:
            for path in files:
                target = self.inputs / path.name
                try:
                    os.link(path, target)
                except OSError:
                    shutil.copyfile(path, target)
            yield
        finally:
            for path in files:
                with contextlib.suppress(FileNotFoundError):
                    (self.inputs / path.name).unlink()

    def answer(self, entry: TrackEntry, images: Path, run: EntryRun) -> Answers:
        """Answer every image of ``images`` (a ``.npy`` of uint8 (n, 55, 47, 3)) with
        ``entry``, fine-tuned first with ``run.retune`` when given (the worker's limits,
        environment and placed files are those it was started with). Raises
        :class:`SubmissionError` when the entry cannot be loaded (or fine-tuned) or the worker
        dies, :class:`TransientSubmissionError` when it runs out of time; the worker is dead
        after either."""
        num_classes, retune = run.num_classes, run.retune
        if (retune is not None) != self.retuning:
            raise ValueError("a worker answers retuning requests only, or plain ones only")
        mounted = isolation.inputs_inside(self.mode, self.inputs)

        def inside(path: Path) -> str:
            return str(mounted / path.name)

        workdir = (entry.workdir or self.root).relative_to(self.root)
        request = LoadRequest(
            kind=entry.kind, path=str(self.inside / entry.path.resolve().relative_to(self.root)),
            num_classes=num_classes, input_scale=run.input_scale, args=list(entry.args),
            architecture=entry.architecture, allow_unsafe=run.allow_unsafe,
            image_timeout=self.limits.image_timeout, scratch=str(self.scratch),
            workdir=str(self.inside / workdir), batch=entry.batch, images=inside(images))
        handed = [images]
        if retune is not None:
            request = RetuneRequest(
                **asdict(request), retuning_images=inside(retune.images),
                retuning_labels=inside(retune.labels), epochs=retune.budget.epochs,
                batch_size=retune.budget.batch_size, learning_rate=retune.budget.learning_rate,
                seed=retune.budget.seed)
            handed += [retune.images, retune.labels]
        count = len(np.load(images, mmap_mode="r"))
        # The first file's start-up counts from the process's start: Python, TensorFlow.
        since = self.started if self.answered == 0 else time.monotonic()
        try:
            with self._handed(handed):
                answers = self._converse(request, count, num_classes, since, run.progress)
        except SubmissionError as exc:
            self.close()
            raise type(exc)(in_folder(str(exc), self.inside)) from None
        except BaseException:
            self.close()
            raise
        self.answered += 1
        if answers.first_error:
            answers = replace(answers, first_error=in_folder(answers.first_error, self.inside))
        return answers

    def _converse(self, request: LoadRequest, count: int, num_classes: int, since: float,
                  progress: Callable[[int], None] | None) -> Answers:
        process, limits, channel = self.process, self.limits, self.channel
        assert process.stdin is not None
        started = time.monotonic()
        track_deadline = started + limits.track_timeout
        try:
            process.stdin.write(request.to_line().encode())
            process.stdin.flush()
        except BrokenPipeError:
            pass
        reply = _next(channel, process, min(track_deadline, started + limits.startup_timeout),
                      self.log, "loading")
        if isinstance(reply, LoadFailed):
            doing = "fine-tune" if isinstance(request, RetuneRequest) else "load"
            raise SubmissionError(f"cannot {doing}: {reply.error}")
        if not isinstance(reply, Loaded) or reply.images != count or reply.chunk < 1:
            raise SubmissionError("the worker's reply channel was corrupted (a wrong load reply)")
        loaded = time.monotonic()
        labels: list[int] = []
        scores: list[float] | None = []
        invalid, first_error, cost = 0, None, None
        while len(labels) < count:
            deadline = min(track_deadline,
                           time.monotonic() + limits.image_timeout * reply.chunk + REPLY_GRACE)
            answer = _next(channel, process, deadline, self.log,
                           f"answering (after {len(labels)} of {count} images)")
            if isinstance(answer, Failed):
                kind = TransientSubmissionError if answer.timed_out else SubmissionError
                raise kind(f"failed while answering: {answer.failed}")
            if not isinstance(answer, Chunk):
                raise SubmissionError("the worker's reply channel was corrupted (an unexpected "
                                      "reply)")
            try:
                answer.check(num_classes, count - len(labels), reply.chunk)
            except ProtocolError as exc:
                raise SubmissionError(f"the worker sent a malformed reply: {exc}") from None
            labels += answer.labels
            scores = None if scores is None or answer.scores is None else scores + answer.scores
            invalid += answer.invalid
            first_error = first_error or answer.error
            cost = answer.cost  # cumulative: the last chunk's is the whole run's
            if invalid > limits.invalid_fraction * count:  # no later answer can make it pass
                raise SubmissionError(invalid_message(invalid, count, first_error, len(labels)))
            if progress is not None:
                progress(len(answer.labels))
        array = np.asarray(labels, dtype=np.int64)
        scored = None if scores is None or count == 0 else np.where(
            array == INVALID, np.nan, np.asarray(scores, dtype=np.float64))
        return Answers(array, invalid, first_error, cost, startup=loaded - since,
                       answering=time.monotonic() - loaded, scores=scored)

    def close(self) -> None:
        """Kill the process group and remove the private copy and the log."""
        _kill(self.process)
        self.log.close()
        self._temporary.cleanup()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def invalid_message(invalid: int, total: int, first_error: str | None,
                    answered: int | None = None) -> str:
    """Why a track with too many unreadable answers is an error row, said one way whether
    answering stopped early (``answered`` of ``total`` images) or ran to the end."""
    stopped = "" if answered is None or answered == total else (
        f" after {answered} images, so the track cannot pass the limit of "
        f"{Limits.invalid_fraction:.0%}; stopped")
    return f"{invalid} of {total} answers invalid{stopped}; first: {first_error}"


def run_entry(entry: TrackEntry, submission_root: Path, images: Path, run: EntryRun) -> Answers:
    """Answer every image of ``images`` with ``entry`` in a worker of its own, which sees that
    file only (and the retuning set, with ``run.retune``), started in ``run.environment`` with
    ``run.placed``. Errors as :meth:`Worker.answer`.
    """
    with Worker(submission_root, limits=run.limits, environment=run.environment,
                placed=run.placed, retuning=run.retune is not None) as worker:
        return worker.answer(entry, images, run)


class Workers:
    """At most one live worker, kept for the next file of the same submission in the same
    environment with the same placed files: a model entry's worker answers every track of its
    submission, so its start-up (Python, TensorFlow: seconds) is paid once per submission.

    Only entries that run no code of the submission's may share a worker (:func:`shareable`):
    a script could remember one track's images and compare them with the next track's (the
    clean test images are the same on every track) and so tell clean from poisoned ones. A
    failure on one track kills the shared worker, so the next track starts a fresh one.
    """

    def __init__(self) -> None:
        self.current: Worker | None = None

    def answer(self, entry: TrackEntry, submission_root: Path, images: Path, run: EntryRun, *,
               tracks: int) -> Answers:
        """:func:`run_entry` in the kept worker, if it was started as ``run`` needs (else in a
        fresh one, kept instead, its CPU-time limit scaled for ``tracks``)."""
        retuning = run.retune is not None
        key = Worker.identity(submission_root, run.environment, run.placed, retuning)
        if self.current is not None and (self.current.key != key
                                         or self.current.process.poll() is not None
                                         or self.current.limits != run.limits):
            self.close()
        if self.current is None:
            self.current = Worker(submission_root, limits=run.limits,
                                  environment=run.environment, placed=run.placed, tracks=tracks,
                                  retuning=retuning)
        worker = self.current
        try:
            return worker.answer(entry, images, run)
        except BaseException:
            self.current = None  # answer() killed it
            raise

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None


def shareable(entry: TrackEntry, allow_unsafe: bool) -> bool:
    """Whether ``entry`` runs no code of the submission's, so its worker may answer several
    tracks: a model or weights file (Lambda layers, which are code, only load with
    ``allow_unsafe``) in an environment the submission did not fill (the packages its own
    requirements name are code it chose)."""
    return entry.kind in ("model", "weights") and not allow_unsafe and entry.requirements is None


def _next(channel: _Channel, process: subprocess.Popen[bytes], deadline: float, log: IO[bytes],
          doing: str) -> Reply:
    """The worker's next reply, or the one-line reason there is none."""
    try:
        reply = channel.read(deadline)
    except TimeoutError:
        _kill(process)
        raise TransientSubmissionError(f"timed out while {doing}") from None
    if reply is None:
        raise SubmissionError(f"worker died while {doing}: {_death(process, log)}")
    return reply


def _death(process: subprocess.Popen[bytes], log: IO[bytes]) -> str:
    """Why the worker ended: its exit status or signal, and the last line it logged."""
    try:
        code = process.wait(timeout=EXIT_WAIT)
    except subprocess.TimeoutExpired:
        code = None
    if code is None:
        how = "no exit status"
    elif code < 0 or code > SIGNAL_EXIT:
        number = -code if code < 0 else code - SIGNAL_EXIT
        name = signal.Signals(number).name if number in signal.valid_signals() else number
        hint = {"SIGKILL": " (memory or CPU limit, or killed)",
                "SIGXCPU": " (CPU time limit)"}.get(str(name), "")
        how = f"killed by {name}{hint}"
    else:
        how = f"exit status {code}"
    tail = _log_tail(log)
    return f"{how}; last line of its log: {tail}" if tail else how


def _log_tail(log: IO[bytes]) -> str:
    """The most telling line of the worker's log: where in the submission's own code a crash
    happened (faulthandler's trace), else the last line. Read through the grader's own
    descriptor, at most :data:`LOG_TAIL_BYTES`, without moving the offset the worker writes at."""
    try:
        size = os.fstat(log.fileno()).st_size
        start = max(0, size - LOG_TAIL_BYTES)
        data = os.pread(log.fileno(), size - start, start)
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").strip().splitlines()
    own = [line for line in lines if f'File "{isolation.SUBMISSION_MOUNT}{os.sep}' in line]
    line = own[0] if own else (lines[-1] if lines else "")
    return " ".join(line.split())[:LOG_TAIL_CHARS]


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Kill the worker's whole process group (bwrap takes its PID namespace down with it)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None and not stream.closed:
            stream.close()
