"""The ledger: every version the contest saw, one JSON line each, appended and never rewritten.

A line says what happened to a version of a team's folder (graded, seen again unchanged,
refused, or chosen for the final board), when, in which phase, for whom. Graded lines carry the
public part's numbers and name the two results files written for the version: the public one
(``versions/``) and the sealed private one (``sealed/``), each with its sha256, so a results
file changed afterwards is caught. Each line holds the sha256 of the line before it (``prev``):
a line edited, removed or reordered breaks the chain and :func:`read` refuses the ledger, so the
history a board shows is the history that happened; the last lines have no successor to catch
their rewrite, so every board states the ledger's head (:func:`head`). Quotas count from these lines
(:mod:`harness.contest.rules`).

Appends take an exclusive lock on the ledger, so two submissions handled at once (a scheduled
job and an organizer's command) cannot interleave their lines or both take the last slot.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypedDict

from harness.errors import ContestError

LEDGER_FILE = "ledger.jsonl"
GENESIS = "0" * 64
"""``prev`` of the first line."""

Kind = Literal["graded", "unchanged", "refused", "chosen"]
"""``unchanged``: a version whose folder the team had graded before, seen again (answered from
the earlier line, neither graded nor counted)."""
Status = Literal["ok", "failed"]
"""A graded version is ``failed`` when it graded on no track (every record an error)."""


class Entry(TypedDict):
    """One line of the ledger. Keys that do not apply to a line's kind are null (or empty)."""

    seq: int
    """1, 2, 3, ...: the line's place, checked on reading."""
    kind: Kind
    time: str
    """When the version was submitted (UTC, ``harness.contest.config.iso``)."""
    phase: str | None
    """The phase it was submitted in; None before the first or after the last."""
    team: str | None
    """The contest team's name; None for the organizers' reference entries."""
    login: str | None
    """Who submitted it (None: an organizer)."""
    folder: str
    """The submission folder's name: the row's name on every board."""
    version: str
    """sha256 of the folder's files (:func:`harness.definitions.submissions.submission_digest`)."""
    commit: str | None
    """The pull request's head commit, when it came from one."""
    files: dict[str, str]
    """Graded lines: sha256 of each regular file, by its path in the folder (integrity)."""
    status: Status | None
    score: float | None
    """Graded lines: the public part's submission score (mean utility; a failed track -1)."""
    tracks: dict[str, float | None]
    """Graded lines: the public part's utility per track (None: the track failed)."""
    error: str | None
    """Graded lines: the first track's error, when the version failed on every track."""
    reason: str | None
    """Refused lines: the one-line answer the submitter got."""
    public: str | None
    """Graded lines: the public results file, relative to the contest's state folder."""
    public_sha256: str | None
    sealed: str | None
    """Graded lines: the private part's results file (sealed), relative to the state folder."""
    sealed_sha256: str | None
    prev: str
    """sha256 of the previous line's bytes (:data:`GENESIS` for the first)."""


ENTRY_KEYS = frozenset(Entry.__annotations__)
KINDS: tuple[Kind, ...] = ("graded", "unchanged", "refused", "chosen")


def entry(kind: Kind, **fields: Any) -> dict[str, Any]:
    """A line's fields before it is appended (``seq`` and ``prev`` come from the ledger): the
    keys ``kind`` does not use are null or empty."""
    blank: dict[str, Any] = {key: None for key in ENTRY_KEYS}
    blank.update(files={}, tracks={}, kind=kind)
    unknown = set(fields) - ENTRY_KEYS
    assert not unknown, f"unknown ledger keys {unknown}"
    return {**blank, **fields}


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode()


def _parse(path: Path, data: bytes) -> list[Entry]:
    """The lines of ``data``, their chain and shape checked."""
    entries: list[Entry] = []
    prev = GENESIS
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        where = f"{path}, line {number}"
        try:
            value: Any = json.loads(raw)
        except ValueError:
            raise ContestError(f"{where}: not a JSON line; the ledger is append-only") from None
        if not isinstance(value, dict) or set(value) != ENTRY_KEYS or \
                value["kind"] not in KINDS:
            raise ContestError(f"{where}: not a ledger entry")
        if value["seq"] != number or value["prev"] != prev or _line(value) != raw:
            raise ContestError(f"{where}: the chain of the ledger is broken (a line was "
                               "edited, removed or reordered); the ledger is append-only")
        prev = hashlib.sha256(raw).hexdigest()
        entries.append(value)  # type: ignore[arg-type]
    return entries


def head(entries: list[Entry]) -> str:
    """sha256 of the last line (:data:`GENESIS` for none): what the next line's ``prev`` will be.
    The chain cannot catch a rewrite of the last lines by itself; every board states the head
    it was rendered from, so a history rewritten later contradicts what was published."""
    return hashlib.sha256(_line(dict(entries[-1]))).hexdigest() if entries else GENESIS


def read(state: Path) -> list[Entry]:
    """Every line of the contest's ledger (none yet: an empty list); ContestError if the
    ledger was tampered with."""
    path = state / LEDGER_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ContestError(f"cannot read the ledger {path}: {exc}") from None
    return _parse(path, data)


@contextlib.contextmanager
def locked(state: Path) -> Iterator[Ledger]:
    """The ledger, held exclusively until the block ends: read it, decide, append."""
    state.mkdir(parents=True, exist_ok=True)
    path = state / LEDGER_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield Ledger(path, fd)
    finally:
        os.close(fd)


class Ledger:
    """An open, locked ledger (:func:`locked`)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        with open(path, "rb") as handle:
            data = handle.read()
        self.entries = _parse(path, data)
        self._prev = hashlib.sha256(data.splitlines(keepends=True)[-1]).hexdigest() \
            if data else GENESIS

    def append(self, fields: dict[str, Any]) -> Entry:
        """Append one line (:func:`entry`), flushed to disk before the answer goes out."""
        record = {**fields, "seq": len(self.entries) + 1, "prev": self._prev}
        assert set(record) == ENTRY_KEYS, "a ledger line with missing or extra keys"
        raw = _line(record)
        os.write(self._fd, raw)
        os.fsync(self._fd)
        self._prev = hashlib.sha256(raw).hexdigest()
        self.entries.append(record)  # type: ignore[arg-type]
        return record  # type: ignore[return-value]
