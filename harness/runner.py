"""Run one submission entry over one unlabeled image file in a sandboxed worker.

The grader's side of :mod:`harness.worker`: it prepares a private copy of the submission (with
the public track files the manifest asks for placed in it, read-only) and a log folder, starts the
worker under :mod:`harness.sandbox` with the entry's environment, sends the one load request and
reads the streamed answers (:mod:`harness.protocol`, every reply checked) with wall-clock
deadlines. Whatever the submission does (crash, hang, print garbage, exhaust memory, fork) ends
here as labels or as one :class:`SubmissionError` line; the worker's whole process group is
killed on every way out.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import numpy as np

from harness import sandbox
from harness.errors import SubmissionError, TransientSubmissionError
from harness.protocol import (
    Chunk,
    Cost,
    Failed,
    Loaded,
    LoadFailed,
    LoadRequest,
    ProtocolError,
    Reply,
    read_reply,
)
from harness.sandbox import Limits
from harness.submissions import TrackEntry

LOG_TAIL_CHARS = 200


@dataclass(frozen=True)
class Answers:
    """A submission's answers on an image file: ``INVALID`` where none could be read."""

    labels: np.ndarray
    invalid: int
    first_error: str | None
    cost: Cost | None = None
    """What answering them cost, as the worker reported it with its last chunk (None: not
    answered by a worker, or no image to answer)."""


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
            data = os.read(self.stream.fileno(), 1 << 20)
            if not data:
                return None
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            return read_reply(line)
        except ProtocolError as exc:
            raise SubmissionError(f"the worker's reply channel was corrupted (the submission "
                                  f"wrote to it): {exc}") from None


def run_entry(entry: TrackEntry, submission_root: Path, images: Path, *, num_classes: int,
              input_scale: float, limits: Limits, allow_unsafe: bool = False,
              progress: Callable[[int], None] | None = None, environment: Path | None = None,
              placed: Sequence[tuple[str, Path]] = ()) -> Answers:
    """Answer every image of ``images`` (a ``.npy`` of uint8 (n, 55, 47, 3)) with ``entry``.

    ``environment`` is the folder of a built environment to run in (None: the grader's own);
    ``placed`` names public files to put read-only into the submission's folder, as (path
    relative to the folder, file). Raises :class:`SubmissionError` when the entry cannot be
    loaded or the worker dies, and :class:`TransientSubmissionError` when it runs out of time.
    """
    mode = sandbox.detect()
    count = len(np.load(images, mmap_mode="r"))
    with tempfile.TemporaryDirectory(prefix="harness-worker-") as temporary:
        work = Path(temporary)
        copy = work / "submission"
        uid = sandbox.worker_uid(mode)
        sandbox.private_copy(submission_root, copy, uid)
        sandbox.place(mode, copy, placed)
        logs = sandbox.writable_dir(work / "log", uid)
        log = logs / "worker.log"
        root = submission_root.resolve()
        if mode.bwrap:
            inside, scratch = sandbox.SUBMISSION_MOUNT, Path("/tmp")
        else:
            inside, scratch = copy, sandbox.writable_dir(work / "tmp", uid)
        workdir = (entry.workdir or root).relative_to(root)
        request = LoadRequest(
            kind=entry.kind, path=str(inside / entry.path.resolve().relative_to(root)),
            num_classes=num_classes, input_scale=input_scale, args=list(entry.args),
            architecture=entry.architecture, allow_unsafe=allow_unsafe,
            image_timeout=limits.image_timeout, scratch=str(scratch),
            workdir=str(inside / workdir), batch=entry.batch)
        argv, env = sandbox.command(mode, submission=copy, images=images, log=log, uid=uid,
                                    environment=environment, placed=placed)
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, env=env,
                                   cwd=copy if mode.bwrap is None else work,
                                   start_new_session=True,
                                   preexec_fn=sandbox.limiter(limits, mode.privileged))
        try:
            answers = _converse(process, request, count, num_classes, limits, log,
                                progress)
        except SubmissionError as exc:
            raise type(exc)(_relative(str(exc), inside)) from None
        finally:
            _kill(process)
    if answers.first_error:
        answers = replace(answers, first_error=_relative(answers.first_error, inside))
    return answers


def _relative(message: str, inside: Path) -> str:
    """Paths as the submission's author knows them: relative to the submission folder."""
    return message.replace(f"{inside}{os.sep}", "")


def _converse(process: subprocess.Popen[bytes], request: LoadRequest, count: int,
              num_classes: int, limits: Limits, log: Path,
              progress: Callable[[int], None] | None) -> Answers:
    assert process.stdin is not None and process.stdout is not None
    started = time.monotonic()
    track_deadline = started + limits.track_timeout
    channel = _Channel(process.stdout)
    try:
        process.stdin.write(request.to_line().encode())
        process.stdin.close()
    except BrokenPipeError:
        pass
    reply = _next(channel, process, min(track_deadline, started + limits.startup_timeout),
                  log, "loading")
    if isinstance(reply, LoadFailed):
        raise SubmissionError(f"cannot load: {reply.error}")
    if not isinstance(reply, Loaded) or reply.images != count or reply.chunk < 1:
        raise SubmissionError("the worker's reply channel was corrupted (a wrong load reply)")
    labels: list[int] = []
    invalid, first_error, cost = 0, None, None
    while len(labels) < count:
        deadline = min(track_deadline, time.monotonic() + limits.image_timeout * reply.chunk + 30)
        answer = _next(channel, process, deadline, log,
                       f"answering (after {len(labels)} of {count} images)")
        if isinstance(answer, Failed):
            raise SubmissionError(f"failed while answering: {answer.failed}")
        if not isinstance(answer, Chunk):
            raise SubmissionError("the worker's reply channel was corrupted (an unexpected "
                                  "reply)")
        try:
            answer.check(num_classes, count - len(labels), reply.chunk)
        except ProtocolError as exc:
            raise SubmissionError(f"the worker sent a malformed reply: {exc}") from None
        labels += answer.labels
        invalid += answer.invalid
        first_error = first_error or answer.error
        cost = answer.cost  # cumulative: the last chunk's is the whole run's
        if progress is not None:
            progress(len(answer.labels))
    array = np.asarray(labels, dtype=np.int64)
    return Answers(array, invalid, first_error, cost)


def _next(channel: _Channel, process: subprocess.Popen[bytes], deadline: float, log: Path,
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


def _death(process: subprocess.Popen[bytes], log: Path) -> str:
    """Why the worker ended: its exit status or signal, and the last line it logged."""
    try:
        code = process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        code = None
    if code is None:
        how = "no exit status"
    elif code < 0 or code > 128:
        number = -code if code < 0 else code - 128
        name = signal.Signals(number).name if number in signal.valid_signals() else number
        hint = {"SIGKILL": " (memory or CPU limit, or killed)",
                "SIGXCPU": " (CPU time limit)"}.get(str(name), "")
        how = f"killed by {name}{hint}"
    else:
        how = f"exit status {code}"
    tail = _log_tail(log)
    return f"{how}; last line of its log: {tail}" if tail else how


def _log_tail(log: Path) -> str:
    """The most telling line of the worker's log: where in the submission's own code a crash
    happened (faulthandler's trace), else the last line."""
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, os.path.getsize(log) - 16384))
            lines = handle.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    own = [line for line in lines if f'File "{sandbox.SUBMISSION_MOUNT}{os.sep}' in line]
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
