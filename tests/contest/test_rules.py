"""Who may have a version graded, when, and how often: :func:`harness.contest.rules.admit` on
the template contest and ledgers built in memory (the benchmark is never read).

The template: phase development 12-01..12-04 (2 a day, 4 in all, failures free), phase test
12-04..12-06 (blind; 1 a day, 2 in all, failures count); Team Alpha (alice) in ``alpha``, Team
Beta (bob, bea) in ``beta``; the organizers' reference entry ``no-defense``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.contest.config import Contest, load_contest, parse_time
from harness.contest.ledger import entry
from harness.contest.rules import Admitted, Refused, Unchanged, admit, counts
from tests.contest.conftest import CONTEST_TOML


def contest_from(folder: Path, text: str | None = None) -> Contest:
    path = folder / "contest.toml"
    path.write_text(text if text is not None else CONTEST_TOML.format(rule="last"),
                    encoding="utf-8")
    return load_contest(path)


@pytest.fixture
def contest(tmp_path: Path) -> Contest:
    return contest_from(tmp_path)


def line(kind: str, time: str, version: str, *, team: str = "Team Alpha",
         phase: str | None = "development", status: str | None = "ok") -> dict[str, Any]:
    """A ledger line as :mod:`harness.contest.submit` appends it (what ``admit`` reads)."""
    return entry(kind, time=time, version=version, team=team, phase=phase,
                 status=status if kind == "graded" else None, folder="alpha", login="alice")


def graded(time: str, version: str, **keys: Any) -> dict[str, Any]:
    return line("graded", time, version, **keys)


def numbered(*lines: dict[str, Any]) -> list[dict[str, Any]]:
    """The lines with the seq and prev keys a ledger gives them."""
    return [{**fields, "seq": seq, "prev": f"{seq - 1:064d}"}
            for seq, fields in enumerate(lines, start=1)]


def decide(contest: Contest, entries: list[dict[str, Any]], when: str, *,
           folder: str = "alpha", login: str | None = "alice", version: str = "v-new",
           reference: bool = False) -> Admitted | Refused | Unchanged:
    return admit(contest, entries, folder=folder, login=login,
                 version=version, moment=parse_time(when), reference=reference)


def reason(decision: Admitted | Refused | Unchanged) -> str:
    assert isinstance(decision, Refused), decision
    assert "\n" not in decision.reason
    return decision.reason


def test_admitted_in_the_phase_for_the_team(contest: Contest) -> None:
    """A team's login, in a phase, under its quota: graded in that phase, for that team."""
    decision = decide(contest, [], "2026-12-02T10:00:00Z", folder="beta", login="bea")
    assert decision == Admitted(contest.phase("development"), contest.teams[1])
    decision = decide(contest, [], "2026-12-04T00:00:00Z")
    assert decision == Admitted(contest.phase("test"), contest.teams[0])


@pytest.mark.parametrize("when", ["2026-11-30T23:59:59Z", "2026-01-01T00:00:00Z"])
def test_before_the_contest_opens(contest: Contest, when: str) -> None:
    """Before the first phase: refused, saying when the contest opens."""
    assert reason(decide(contest, [], when)) == "the contest opens at 2026-12-01T00:00:00Z"


@pytest.mark.parametrize("when", ["2026-12-06T00:00:00Z", "2027-03-01T12:00:00Z"])
def test_after_the_contest_closes(contest: Contest, when: str) -> None:
    """From the last phase's end on: refused, frozen."""
    text = reason(decide(contest, [], when))
    assert "closed at 2026-12-06T00:00:00Z" in text
    assert "frozen" in text


def test_between_phases_names_the_next_phase(tmp_path: Path) -> None:
    """In a gap between phases: refused, naming the next phase and when it starts."""
    old = 'start = "2026-12-04T00:00:00Z"'
    text = CONTEST_TOML.format(rule="last")
    assert old in text
    contest = contest_from(tmp_path, text.replace(old, 'start = "2026-12-04T12:00:00Z"'))
    answer = reason(decide(contest, [], "2026-12-04T06:00:00Z"))
    assert answer == "no phase is open; phase test opens at 2026-12-04T12:00:00Z"
    assert isinstance(decide(contest, [], "2026-12-04T12:00:00Z"), Admitted)


@pytest.mark.parametrize(("folder", "login"), [("alpha", "bob"), ("beta", "alice"),
                                               ("alpha", "mallory")])
def test_a_login_submits_only_for_its_team(contest: Contest, folder: str, login: str) -> None:
    """A login that is not one of the folder's team's is refused."""
    team = contest.team_of_folder(folder)
    assert team is not None
    assert reason(decide(contest, [], "2026-12-02T10:00:00Z", folder=folder, login=login)) \
        == f"{login} may not submit for {team.name}"


@pytest.mark.parametrize("login", ["alice", None])
def test_unknown_folder_is_refused(contest: Contest, login: str | None) -> None:
    """A folder no team submits from is refused, for teams and organizers alike."""
    text = reason(decide(contest, [], "2026-12-02T10:00:00Z", folder="delta", login=login))
    assert "delta" in text


@pytest.mark.parametrize("login", ["alice", None])
def test_team_cannot_claim_reference(contest: Contest, login: str | None) -> None:
    """A team's folder whose manifest says reference = true is refused."""
    text = reason(decide(contest, [], "2026-12-02T10:00:00Z", login=login, reference=True))
    assert "reference" in text


@pytest.mark.parametrize("when", ["2026-11-01T00:00:00Z", "2026-12-02T10:00:00Z",
                                  "2026-12-24T00:00:00Z"])
@pytest.mark.parametrize("reference", [True, False])
def test_organizers_submit_references_any_time(contest: Contest, when: str,
                                               reference: bool) -> None:
    """The organizers (no login) submit a reference folder outside any phase, without quota."""
    entries = [line("graded", f"2026-12-02T0{hour}:00:00Z", f"r{hour}", team=None,
                    phase=None) for hour in range(9)]
    decision = decide(contest, entries, when, folder="no-defense", login=None,
                      reference=reference)
    assert decision == Admitted(None, None)


@pytest.mark.parametrize("login", ["alice", "bob", "mallory"])
def test_team_login_cannot_submit_a_reference(contest: Contest, login: str) -> None:
    """A login submitting a reference folder is refused."""
    text = reason(decide(contest, [], "2026-12-02T10:00:00Z", folder="no-defense",
                         login=login))
    assert "no-defense" in text


def test_unchanged_version_is_answered_from_the_ledger(contest: Contest) -> None:
    """The team's version graded before is Unchanged, with the latest line grading it."""
    first = graded("2026-12-01T10:00:00Z", "v1")
    entries = numbered(first, graded("2026-12-01T11:00:00Z", "v2"))
    decision = decide(contest, entries, "2026-12-02T09:00:00Z", version="v1")
    assert decision == Unchanged(entries[0])
    # in another phase too, and even when failed: it is never graded again
    failed = numbered(graded("2026-12-01T10:00:00Z", "v1", status="failed"))
    assert decide(contest, failed, "2026-12-05T09:00:00Z", version="v1") == Unchanged(failed[0])


@pytest.mark.parametrize("other", [
    pytest.param(line("refused", "2026-12-01T10:00:00Z", "v1"), id="refused-line"),
    pytest.param(graded("2026-12-01T10:00:00Z", "v1", team="Team Beta"), id="other-team"),
])
def test_unchanged_needs_the_teams_own_graded_line(contest: Contest,
                                                   other: dict[str, Any]) -> None:
    """A version refused before, or graded for another team, is graded (not Unchanged)."""
    decision = decide(contest, numbered(other), "2026-12-01T12:00:00Z", version="v1")
    assert isinstance(decision, Admitted)


def test_unchanged_version_is_not_counted(contest: Contest) -> None:
    """Seeing a graded version again uses no slot: a new version still has the day's second."""
    entries = numbered(graded("2026-12-01T10:00:00Z", "v1"))
    decision = decide(contest, entries, "2026-12-01T11:00:00Z", version="v1")
    assert isinstance(decision, Unchanged)
    entries = numbered(entries[0], line("unchanged", "2026-12-01T11:00:00Z", "v1"),
                       line("unchanged", "2026-12-01T11:30:00Z", "v1"))
    assert isinstance(decide(contest, entries, "2026-12-01T12:00:00Z", version="v2"), Admitted)
    entries = numbered(*entries, graded("2026-12-01T12:00:00Z", "v2"))
    assert reason(decide(contest, entries, "2026-12-01T13:00:00Z", version="v3")) \
        .startswith("quota:")


def test_per_day_quota_names_next_midnight(contest: Contest) -> None:
    """Two versions graded on a day of development: the third waits for the next UTC day."""
    entries = numbered(graded("2026-12-02T00:00:00Z", "v1"), graded("2026-12-02T09:00:00Z", "v2"))
    text = reason(decide(contest, entries, "2026-12-02T23:59:59Z", version="v3"))
    assert text == ("quota: Team Alpha used its 2 version(s) of 2026-12-02 (UTC) in phase "
                    "development; the next slot opens at 2026-12-03T00:00:00Z")
    assert isinstance(decide(contest, entries, "2026-12-03T00:00:00Z", version="v3"), Admitted)


def test_per_day_quota_is_per_team(contest: Contest) -> None:
    """Another team's versions use none of this team's slots."""
    entries = numbered(*(graded(f"2026-12-02T0{hour}:00:00Z", f"b{hour}", team="Team Beta")
                         for hour in range(4)))
    assert isinstance(decide(contest, entries, "2026-12-02T10:00:00Z"), Admitted)
    assert reason(decide(contest, entries, "2026-12-02T10:00:00Z", folder="beta", login="bob")) \
        .startswith("quota: Team Beta used all 4 versions of phase development")


def test_per_day_quota_on_the_phase_last_day(contest: Contest) -> None:
    """On a phase's last day the next midnight is its end: the next slot is the next phase."""
    entries = numbered(graded("2026-12-03T01:00:00Z", "v1"), graded("2026-12-03T02:00:00Z", "v2"))
    text = reason(decide(contest, entries, "2026-12-03T20:00:00Z", version="v3"))
    assert text.endswith("the next slot opens when phase test starts, at 2026-12-04T00:00:00Z")


def test_per_day_quota_on_the_contest_last_day(contest: Contest) -> None:
    """On the last phase's last day no slot opens again."""
    entries = numbered(graded("2026-12-05T01:00:00Z", "v1", phase="test"))
    text = reason(decide(contest, entries, "2026-12-05T20:00:00Z", version="v2"))
    assert text == ("quota: Team Alpha used its 1 version(s) of 2026-12-05 (UTC) in phase test; "
                    "no slot opens before the contest closes")


def test_total_quota_names_next_phase(contest: Contest) -> None:
    """All 4 versions of development used (on 2 days): the next slot is phase test's start."""
    entries = numbered(*(graded(f"2026-12-0{day}T0{hour}:00:00Z", f"v{day}{hour}")
                         for day in (1, 2) for hour in (1, 2)))
    text = reason(decide(contest, entries, "2026-12-03T10:00:00Z", version="v5"))
    assert text == ("quota: Team Alpha used all 4 versions of phase development; the next "
                    "slot opens when phase test starts, at 2026-12-04T00:00:00Z")
    assert isinstance(decide(contest, entries, "2026-12-04T00:00:00Z", version="v5"), Admitted)


def test_total_quota_in_the_last_phase(contest: Contest) -> None:
    """All 2 versions of the last phase used: no slot opens before the contest closes."""
    entries = numbered(graded("2026-12-04T10:00:00Z", "v1", phase="test"),
                       graded("2026-12-05T00:00:00Z", "v2", phase="test"))
    text = reason(decide(contest, entries, "2026-12-05T10:00:00Z", version="v3"))
    assert text == ("quota: Team Alpha used all 2 versions of phase test; no slot opens "
                    "before the contest closes")


def test_earlier_phase_versions_do_not_count(contest: Contest) -> None:
    """A phase counts only its own versions: development's four leave test's quota whole."""
    entries = numbered(*(graded(f"2026-12-03T0{hour}:00:00Z", f"v{hour}") for hour in range(4)))
    assert isinstance(decide(contest, entries, "2026-12-04T00:00:01Z"), Admitted)


def test_failed_versions_are_free_without_count_failed(contest: Contest) -> None:
    """In development (count_failed false) failed versions use no slot, ok ones do."""
    failed = [graded(f"2026-12-02T0{hour}:00:00Z", f"f{hour}", status="failed")
              for hour in range(5)]
    entries = numbered(*failed, graded("2026-12-02T06:00:00Z", "v1"))
    assert isinstance(decide(contest, entries, "2026-12-02T07:00:00Z"), Admitted)
    entries = numbered(*entries, graded("2026-12-02T07:00:00Z", "v2"))
    assert reason(decide(contest, entries, "2026-12-02T08:00:00Z")).startswith("quota:")


def test_failed_versions_count_with_count_failed(contest: Contest) -> None:
    """In test (count_failed true) a failed version uses its slot."""
    entries = numbered(graded("2026-12-04T01:00:00Z", "f1", phase="test", status="failed"))
    assert reason(decide(contest, entries, "2026-12-04T02:00:00Z")).startswith("quota:")
    entries = numbered(entries[0], graded("2026-12-05T01:00:00Z", "f2", phase="test",
                                          status="failed"))
    assert "all 2 versions of phase test" in reason(decide(contest, entries,
                                                           "2026-12-05T02:00:00Z"))


@pytest.mark.parametrize("phase", ["development", "test"])
def test_refused_and_chosen_lines_never_use_slots(contest: Contest, phase: str) -> None:
    """Refused (and chosen, unchanged) lines of the team use no slot, whatever count_failed."""
    day = "2026-12-02" if phase == "development" else "2026-12-04"
    entries = numbered(*(line(kind, f"{day}T0{hour}:00:00Z", f"x{hour}", phase=phase)
                         for hour, kind in enumerate(["refused"] * 5 + ["chosen", "unchanged"])))
    assert isinstance(decide(contest, entries, f"{day}T09:00:00Z"), Admitted)
    assert not any(counts(fields, contest.phase(phase)) for fields in entries)
