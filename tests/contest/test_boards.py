"""Which version of a team counts, and what the boards show, from a ledger and results files
written by hand (no grading): the three rules, blind phases, tampered results files, versions
graded on other data, the public board's content and the final board's timing."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from harness.contest import boards
from harness.contest.config import Contest, load_contest, parse_time
from harness.contest.ledger import Entry, entry, locked, read
from harness.errors import ContestError
from harness.results.io import write_results
from harness.results.record import ok_record
from tests.conftest import BENCHMARK, meta, scores
from tests.contest.conftest import CONTEST_TOML

HEADER = {**BENCHMARK, "tracks": ["sunglasses"]}
TEAMS = {"alpha": "Team Alpha", "beta": "Team Beta"}


def contest_with(tmp_path: Path, rule: str) -> Contest:
    path = tmp_path / "contest.toml"
    path.write_text(CONTEST_TOML.format(rule=rule), encoding="utf-8")
    return load_contest(path)


def version(contest: Contest, folder: str, tag: str, time: str, public: float, private: float,
            header: dict[str, Any] = HEADER) -> Entry:
    """A graded version of ``folder`` (its clean accuracy on each part; no attack succeeds),
    its two results files written and its ledger line appended."""
    digest = hashlib.sha256(f"{folder}:{tag}".encode()).hexdigest()
    paths = {}
    for part, clean in (("versions", public), ("sealed", private)):
        relative = f"{part}/{folder}/{digest[:16]}/results.json"
        target = contest.state / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        write_results(target, header, [ok_record(meta(folder, team="manifest team"),
                                                 "sunglasses",
                                                 scores(clean, {"sunglasses": 0.0}))])
        paths[part] = relative
    files = {part: hashlib.sha256((contest.state / relative).read_bytes()).hexdigest()
             for part, relative in paths.items()}
    phase = contest.phase_at(parse_time(time))
    with locked(contest.state) as ledger:
        return ledger.append(entry(
            "graded", time=time, phase=None if phase is None else phase.name,
            team=TEAMS.get(folder), login="x", folder=folder, version=digest, status="ok",
            score=public, tracks={"sunglasses": public}, public=paths["versions"],
            public_sha256=files["versions"], sealed=paths["sealed"],
            sealed_sha256=files["sealed"]))


def choose(contest: Contest, line: Entry) -> None:
    with locked(contest.state) as ledger:
        ledger.append(entry("chosen", time=line["time"], team=line["team"], login="x",
                            folder=line["folder"], version=line["version"]))


def picked(contest: Contest, final: bool) -> dict[str, str]:
    return {folder: line["version"] for folder, line
            in boards.counted(contest, read(contest.state), final=final).items()}


@pytest.mark.parametrize(("rule", "expected"), [("last", "v3"), ("best_public", "v1")])
def test_last_and_best_public(tmp_path: Path, rule: str, expected: str) -> None:
    """``last`` counts the latest version, ``best_public`` the best public one (the first of
    equals); neither looks at the private part."""
    contest = contest_with(tmp_path, rule)
    lines = {tag: version(contest, "alpha", tag, f"2026-12-0{day}T10:00:00Z", public, private)
             for tag, day, public, private in (("v1", 1, 0.90, 0.50), ("v2", 2, 0.90, 0.99),
                                               ("v3", 3, 0.80, 0.70))}
    assert picked(contest, final=True) == {"alpha": lines[expected]["version"]}


def test_chosen_ranks_the_choices_on_the_private_part_only_at_the_end(tmp_path: Path) -> None:
    contest = contest_with(tmp_path, "chosen")
    v1 = version(contest, "alpha", "v1", "2026-12-01T10:00:00Z", 0.95, 0.60)
    v2 = version(contest, "alpha", "v2", "2026-12-02T10:00:00Z", 0.90, 0.90)
    v3 = version(contest, "alpha", "v3", "2026-12-03T10:00:00Z", 0.85, 0.95)
    beta = version(contest, "beta", "b1", "2026-12-01T11:00:00Z", 0.70, 0.70)
    # No choice yet: the best public version, for the public board and the final one.
    assert picked(contest, final=True) == {"alpha": v1["version"], "beta": beta["version"]}
    choose(contest, v2)
    choose(contest, v3)
    assert picked(contest, final=False)["alpha"] == v2["version"]  # best public of the two
    assert picked(contest, final=True)["alpha"] == v3["version"]  # best private of the two
    choose(contest, v1)  # the latest two choices count: v3 and v1
    assert boards.choices(contest, read(contest.state), contest.teams[0]) == \
        [v3["version"], v1["version"]]
    assert picked(contest, final=True)["alpha"] == v3["version"]


def test_a_blind_phase_is_left_off_the_public_board_until_the_end(tmp_path: Path) -> None:
    """The test phase shows nothing: its versions count at the end, not before, and the
    public board lists them as sealed."""
    contest = contest_with(tmp_path, "last")
    dev = version(contest, "alpha", "dev", "2026-12-02T10:00:00Z", 0.80, 0.80)
    blind = version(contest, "alpha", "blind", "2026-12-04T10:00:00Z", 0.9137, 0.9243)
    assert picked(contest, final=False) == {"alpha": dev["version"]}
    assert picked(contest, final=True) == {"alpha": blind["version"]}
    out = tmp_path / "board"
    boards.write_public_board(contest, read(contest.state), out,
                              parse_time("2026-12-05T00:00:00Z"))
    text = (out / "leaderboard.md").read_text()
    assert "sealed" in text and "0.9137" not in text and "0.914" not in text
    assert "0.924" not in text and "0.9243" not in text
    assert "Team Alpha" in text and "manifest team" not in text  # the contest's name


def test_final_board_waits_for_the_freeze(tmp_path: Path) -> None:
    contest = contest_with(tmp_path, "last")
    version(contest, "alpha", "v1", "2026-12-02T10:00:00Z", 0.80, 0.70)
    with pytest.raises(ContestError, match="closes at 2026-12-06T00:00:00Z"):
        boards.write_final_board(contest, read(contest.state), tmp_path / "final",
                                 parse_time("2026-12-05T23:59:59Z"))
    assert not (tmp_path / "final").exists()


def test_rank_movement_compares_the_same_versions_on_both_parts(tmp_path: Path) -> None:
    contest = contest_with(tmp_path, "last")
    version(contest, "alpha", "a", "2026-12-02T10:00:00Z", 0.95, 0.60)
    version(contest, "beta", "b", "2026-12-02T11:00:00Z", 0.80, 0.85)
    out = tmp_path / "final"
    boards.write_final_board(contest, read(contest.state), out,
                             parse_time("2026-12-06T00:00:00Z"))
    text = (out / "leaderboard.md").read_text()
    movement = text.split("## Rank movement", 1)[1].split("## History", 1)[0]
    rows = [[cell.strip() for cell in row.strip("|").split("|")]
            for row in movement.strip().splitlines() if row.startswith("| Team")]
    assert rows == [["Team Beta", "beta", "1", "2", "+1", "0.8500"],
                    ["Team Alpha", "alpha", "2", "1", "-1", "0.6000"]]


def test_a_results_file_changed_after_the_fact_is_refused(tmp_path: Path) -> None:
    contest = contest_with(tmp_path, "last")
    line = version(contest, "alpha", "v1", "2026-12-02T10:00:00Z", 0.80, 0.70)
    sealed = contest.state / str(line["sealed"])
    sealed.write_text(sealed.read_text().replace("0.7", "0.9"))
    with pytest.raises(ContestError, match="changed after it was recorded in the ledger"):
        boards.write_final_board(contest, read(contest.state), tmp_path / "final",
                                 parse_time("2026-12-06T00:00:00Z"))


def test_versions_graded_on_other_data_are_not_ranked_together(tmp_path: Path) -> None:
    contest = contest_with(tmp_path, "last")
    version(contest, "alpha", "v1", "2026-12-02T10:00:00Z", 0.80, 0.70)
    other = {**HEADER, "data_hashes": {name: "0" * 64 for name in HEADER["data_hashes"]}}
    version(contest, "beta", "v1", "2026-12-02T11:00:00Z", 0.80, 0.70, header=other)
    with pytest.raises(ContestError, match="graded on other tracks or data"):
        boards.write_public_board(contest, read(contest.state), tmp_path / "board",
                                  parse_time("2026-12-03T00:00:00Z"))
