"""Error types that the grader turns into one-line report entries.

Every failure that is the fault of a submission becomes a :class:`SubmissionError` (an error row in
the leaderboard, the run goes on); every failure of the benchmark itself (a corrupt or missing data
file, a bad track file) becomes a :class:`BenchmarkError`, and a command's bad argument a
:class:`UsageError` (both: exit status 2, answered once, by :func:`harness.cli.main`). Messages
are one line (:func:`harness.text.safe_line`: they often quote a submission's code or log) and
name the file at fault, because they are printed verbatim in the leaderboard.
"""

from __future__ import annotations

import argparse
import os

from harness.text import safe_line


class HarnessError(Exception):
    """Base class: an expected failure with a one-line, user-facing message."""

    def __init__(self, message: str) -> None:
        super().__init__(safe_line(message))


class SubmissionError(HarnessError):
    """A submission cannot be loaded or run, or gave invalid output."""


class BenchmarkError(HarnessError):
    """A benchmark (track file or data file) is missing, corrupt or inconsistent."""


class UsageError(HarnessError):
    """A command names what is not there (a folder, a track, a defense) or combines options that
    exclude each other: like a broken benchmark, it stops the command before anything is read or
    written, with exit status 2."""


class SandboxError(BenchmarkError):
    """This machine cannot isolate submissions (no bubblewrap, no namespaces, no setpriv for
    root): like a broken benchmark, it stops the run before any submission runs (exit status 2),
    unless the organizer allowed resource limits only."""


class ContestError(BenchmarkError):
    """A contest file, its split record or its ledger is missing, invalid or inconsistent: the
    organizers' configuration, so a usage error (exit status 2) like a broken benchmark."""


class TransientSubmissionError(SubmissionError):
    """A submission failed for a reason that may not recur (a timeout on a busy machine).

    It is reported like any SubmissionError, but its record is never cached: the next run must
    try the submission again rather than repeat a failure that was the grader's circumstance.
    """


LINE_CHARS = 300
"""The longest line a message from outside the grader (a library, a tool, a submission's code)
is given in a row or a note."""


def clipped(text: str, limit: int = LINE_CHARS) -> str:
    """Someone else's text as one safe line of at most ``limit`` characters."""
    return safe_line(text)[:limit]


def one_line(exc: BaseException) -> str:
    """An exception as a leaderboard line: our own messages as they are, anything else (Keras,
    TensorFlow, a submission's code) as ``Type: message``, collapsed and cut to
    :data:`LINE_CHARS`."""
    if isinstance(exc, HarnessError):
        return str(exc)
    text = clipped(str(exc))
    return clipped(f"{type(exc).__name__}: {text}") if text else type(exc).__name__


def in_folder(message: str, folder: str | os.PathLike[str]) -> str:
    """``message`` with the paths under ``folder`` relative to it: a row names a submission's
    files as its author knows them, and does not depend on where the grader put the folder."""
    return message.replace(f"{folder}{os.sep}", "")


def positive_int(text: str) -> int:
    """A count given on the command line (``--sample K``): ``harness grade`` and the plugin's own
    option both refuse anything below 1 in one line, so ``--sample 0`` is never read as "all"."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value
