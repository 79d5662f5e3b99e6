"""The ledger: appended lines read back numbered and chained; a ledger whose lines were edited,
removed, reordered, cut or garbled is refused, naming the line; appends under the lock never
interleave, from threads or processes."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from harness.contest.ledger import GENESIS, LEDGER_FILE, entry, head, locked, read
from harness.errors import ContestError


def graded(n: int, team: str = "Team Alpha") -> dict[str, Any]:
    return entry("graded", time=f"2026-12-02T10:00:{n:02d}Z", phase="development", team=team,
                 login="alice", folder="alpha", version=f"{n:064x}", status="ok",
                 score=n / 10, tracks={"sunglasses": n / 10}, files={"eval.py": "ab" * 32})


def filled(state: Path, count: int) -> list[bytes]:
    """``count`` lines appended to the ledger in ``state``: its lines."""
    with locked(state) as ledger:
        for n in range(1, count + 1):
            ledger.append(graded(n))
    return (state / LEDGER_FILE).read_bytes().splitlines(keepends=True)


def refused_at(state: Path, lines: list[bytes], number: int) -> str:
    """The ledger made of ``lines`` is refused naming line ``number``: the message."""
    (state / LEDGER_FILE).write_bytes(b"".join(lines))
    with pytest.raises(ContestError) as caught:
        read(state)
    message = str(caught.value)
    assert f"{LEDGER_FILE}, line {number}:" in message
    assert "\n" not in message
    with pytest.raises(ContestError), locked(state):  # nor can anything be appended to it
        pass
    return message


def test_append_then_read(tmp_path: Path) -> None:
    """Appended lines read back as appended, numbered 1..n, each holding the previous line's
    sha256 (the first the genesis); the append returns the line written."""
    state = tmp_path / "state"
    with locked(state) as ledger:
        assert ledger.entries == []
        first = ledger.append(graded(1))
        second = ledger.append(entry("refused", time="2026-12-02T11:00:00Z", folder="beta",
                                     version="f" * 64, reason="quota"))
    with locked(state) as ledger:
        third = ledger.append(graded(3))
        assert ledger.entries == [first, second, third]
    entries = read(state)
    assert entries == [first, second, third]
    assert [line["seq"] for line in entries] == [1, 2, 3]
    assert entries[1]["kind"] == "refused"
    assert entries[1]["reason"] == "quota"
    assert entries[2]["score"] == 0.3
    raw = (state / LEDGER_FILE).read_bytes().splitlines(keepends=True)
    assert [line["prev"] for line in entries] == \
        [GENESIS, *(hashlib.sha256(line).hexdigest() for line in raw[:2])]
    assert [json.loads(line) for line in raw] == entries


@pytest.mark.parametrize("empty", [False, True])
def test_missing_or_empty_ledger_reads_as_nothing(tmp_path: Path, empty: bool) -> None:
    """No ledger yet (no state folder, or an empty file) is an empty history."""
    state = tmp_path / "state"
    if empty:
        state.mkdir()
        (state / LEDGER_FILE).write_bytes(b"")
    assert read(state) == []
    with locked(state) as ledger:
        assert ledger.append(graded(1))["prev"] == GENESIS


def test_edited_line_is_refused(tmp_path: Path) -> None:
    """A score changed on a line (written as the ledger would write it) breaks the next line's
    link: refused at that line."""
    state = tmp_path / "state"
    lines = filled(state, 3)
    edited = json.loads(lines[1])
    edited["score"] = 0.9
    lines[1] = (json.dumps(edited, sort_keys=True) + "\n").encode()
    assert "chain" in refused_at(state, lines, 3)


def test_reformatted_line_is_refused(tmp_path: Path) -> None:
    """A line with the same values written differently (spacing) is refused at that line."""
    state = tmp_path / "state"
    lines = filled(state, 3)
    lines[2] = (json.dumps(json.loads(lines[2]), sort_keys=True, indent=None,
                           separators=(",", ":")) + "\n").encode()
    assert "chain" in refused_at(state, lines, 3)


@pytest.mark.parametrize(("change", "number"), [
    pytest.param(lambda lines: [lines[0], *lines[2:]], 2, id="middle-line-removed"),
    pytest.param(lambda lines: lines[1:], 1, id="first-line-removed"),
    pytest.param(lambda lines: [lines[0], lines[2], lines[1], lines[3]], 2, id="lines-swapped"),
    pytest.param(lambda lines: [*lines, lines[3]], 5, id="line-repeated"),
    pytest.param(lambda lines: [*lines[:3], lines[3][:-1]], 4, id="last-newline-cut"),
    pytest.param(lambda lines: [*lines[:3], lines[3][:40]], 4, id="last-line-truncated"),
    pytest.param(lambda lines: [*lines[:2], b"not json\n", *lines[2:]], 3, id="garbage-line"),
    pytest.param(lambda lines: [*lines[:2], b"\n", *lines[2:]], 3, id="blank-line"),
    pytest.param(lambda lines: [*lines[:2], b"[1, 2]\n", *lines[2:]], 3, id="json-not-an-entry"),
])
def test_tampered_ledger_is_refused(tmp_path: Path, change: Any, number: int) -> None:
    """Lines removed, reordered, repeated, cut or garbled: refused, naming the first bad line."""
    state = tmp_path / "state"
    refused_at(state, change(filled(state, 4)), number)


@pytest.mark.parametrize("key", ["kind", "seq"])
def test_line_of_another_shape_is_refused(tmp_path: Path, key: str) -> None:
    """A line missing a key, or of an unknown kind, is not a ledger entry."""
    state = tmp_path / "state"
    lines = filled(state, 2)
    record = json.loads(lines[1])
    if key == "kind":
        record["kind"] = "deleted"
    else:
        del record["seq"]
    lines[1] = (json.dumps(record, sort_keys=True) + "\n").encode()
    assert "not a ledger entry" in refused_at(state, lines, 2)


def _append_slowly(state: Path, team: str, count: int) -> None:
    """Read, think, append: ``count`` times, each under the lock (the submit pattern)."""
    for n in range(count):
        with locked(state) as ledger:
            seen = len(ledger.entries)
            time.sleep(0.002)  # widen the window between reading and appending
            line = ledger.append(graded(n, team))
            assert line["seq"] == seen + 1


def _check_contiguous(state: Path, teams: list[str], count: int) -> None:
    entries = read(state)  # the chain and every seq checked
    assert [line["seq"] for line in entries] == list(range(1, len(teams) * count + 1))
    for team in teams:
        assert [line["time"] for line in entries if line["team"] == team] == \
            [graded(n)["time"] for n in range(count)]


def test_threads_append_without_interleaving(tmp_path: Path) -> None:
    """Two threads appending under the lock leave a whole, contiguous chain."""
    state = tmp_path / "state"
    teams = ["Team Alpha", "Team Beta"]
    errors: list[BaseException] = []

    def work(team: str) -> None:
        try:
            _append_slowly(state, team, 15)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(team,)) for team in teams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    _check_contiguous(state, teams, 15)


def test_processes_append_without_interleaving(tmp_path: Path) -> None:
    """Two processes appending under the lock leave a whole, contiguous chain."""
    state = tmp_path / "state"
    teams = ["Team Alpha", "Team Beta"]
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_append_slowly, args=(state, team, 15))
                 for team in teams]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0, 0]
    _check_contiguous(state, teams, 15)


def test_head_is_what_the_next_line_chains_to(tmp_path: Path) -> None:
    """The head a board states is the hash the next appended line records as ``prev``: a
    history rewritten after a board was published no longer leads to that head."""
    assert head([]) == GENESIS
    filled(tmp_path, 3)
    before = head(read(tmp_path))
    with locked(tmp_path) as ledger:
        appended = ledger.append(graded(4))
    assert appended["prev"] == before
    lines = (tmp_path / LEDGER_FILE).read_bytes().splitlines(keepends=True)
    assert head(read(tmp_path)) == hashlib.sha256(lines[-1]).hexdigest()
