"""The contest file: what a valid one reads as, and a one-line ContestError naming the key at
fault for each kind of mistake (no benchmark needed: nothing here reads it)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.contest.config import Quota, Team, iso, load_contest, parse_time
from harness.errors import ContestError
from tests.contest.conftest import CONTEST_TOML


def template(rule: str = "last") -> str:
    return CONTEST_TOML.format(rule=rule)


def variant(old: str, new: str, rule: str = "last") -> str:
    """The template with its first ``old`` replaced by ``new`` (which must be there)."""
    text = template(rule)
    assert old in text, old
    return text.replace(old, new, 1)


def write(folder: Path, text: str) -> Path:
    path = folder / "contest.toml"
    path.write_text(text, encoding="utf-8")
    return path


def refused(folder: Path, text: str) -> str:
    """The message of the ContestError that loading ``text`` raises, checked to be one line."""
    with pytest.raises(ContestError) as caught:
        load_contest(write(folder, text))
    message = str(caught.value)
    assert "\n" not in message
    return message


def utc(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, second, tzinfo=UTC)


def test_template_loads(tmp_path: Path) -> None:
    """Every field of the template, paths relative to the contest file's folder."""
    contest = load_contest(write(tmp_path, template("best_public")))
    assert contest.name == "Tiny contest"
    assert contest.path == tmp_path / "contest.toml"
    assert contest.benchmark == tmp_path / "bench"
    assert contest.state == tmp_path / "state"
    assert (contest.seed, contest.public_share) == (11, 0.4)
    assert (contest.sample, contest.retune) == (None, True)
    assert (contest.rule, contest.choices) == ("best_public", 2)
    assert contest.references == ("no-defense",)
    assert contest.teams == (Team("Team Alpha", "alpha", ("alice",)),
                             Team("Team Beta", "beta", ("bob", "bea")),
                             Team("Team Gamma", "gamma", ("gus",)))
    development, test = contest.phases
    assert (development.name, development.start, development.end, development.show) == \
        ("development", utc(1), utc(4), "public")
    assert (test.name, test.start, test.end, test.show) == ("test", utc(4), utc(6), "nothing")
    assert development.quota == Quota(per_day=2, total=4, count_failed=False)
    assert test.quota == Quota(per_day=1, total=2, count_failed=True)
    assert (contest.opens, contest.closes) == (utc(1), utc(6))
    assert all(moment.utcoffset().total_seconds() == 0 for phase in contest.phases
               for moment in (phase.start, phase.end))


@pytest.mark.parametrize(("override", "expected"), [
    ("{ total = 3 }", Quota(per_day=2, total=3, count_failed=False)),
    ("{ per_day = 5 }", Quota(per_day=5, total=4, count_failed=False)),
    ("{ count_failed = true }", Quota(per_day=2, total=4, count_failed=True)),
    ("{}", Quota(per_day=2, total=4, count_failed=False)),
])
def test_phase_quota_inherits_unset_keys(tmp_path: Path, override: str,
                                         expected: Quota) -> None:
    """A phase's quota table overrides the keys it sets; the others come from [quota]."""
    text = variant("quota = { per_day = 1, total = 2, count_failed = true }",
                   f"quota = {override}")
    assert load_contest(write(tmp_path, text)).phase("test").quota == expected


def test_no_quota_means_no_limit(tmp_path: Path) -> None:
    """Without [quota] a phase that sets none has no limit and does not count failures."""
    text = variant("[quota]\nper_day = 2\ntotal = 4\n", "")
    assert load_contest(write(tmp_path, text)).phase("development").quota == Quota()


@pytest.mark.parametrize("start", [
    'start = "2026-12-01T02:00:00+02:00"',
    'start = 2026-12-01T02:00:00+02:00',
    'start = "2026-11-30T19:00:00-05:00"',
    'start = 2026-12-01T00:00:00Z',
])
def test_times_with_a_zone_are_read_as_utc(tmp_path: Path, start: str) -> None:
    """A time with any offset, quoted or a TOML offset date-time, is the same UTC moment."""
    contest = load_contest(write(tmp_path, variant('start = "2026-12-01T00:00:00Z"', start)))
    assert contest.opens == utc(1)
    assert contest.opens.tzinfo == UTC
    assert iso(contest.opens) == "2026-12-01T00:00:00Z"


def _without(text: str, first: str, until: str | None) -> str:
    """``text`` less the part from ``first`` up to ``until`` (None: the end)."""
    return text[:text.index(first)] + ("" if until is None else text[text.index(until):])


@pytest.mark.parametrize(("text", "named"), [
    pytest.param(variant('name = "Tiny contest"', 'colour = "red"\nname = "Tiny contest"'),
                 "colour", id="unknown-top-level-key"),
    pytest.param(variant('name = "development"', 'name = "development"\nvenue = "online"'),
                 "venue", id="unknown-phase-key"),
    pytest.param(variant("total = 4", "total = 4\nweekly = 1"), "weekly",
                 id="unknown-quota-key"),
    pytest.param(variant('start = "2026-12-01T00:00:00Z"', 'start = "2026-12-01T00:00:00"'),
                 "start", id="naive-time-string"),
    pytest.param(variant('start = "2026-12-01T00:00:00Z"', "start = 2026-12-01T00:00:00"),
                 "start", id="naive-toml-datetime"),
    pytest.param(variant('end = "2026-12-04T00:00:00Z"', 'end = "2026-12-04"'),
                 "end", id="date-without-time"),
    pytest.param(variant('start = "2026-12-01T00:00:00Z"', 'start = "first of december"'),
                 "start", id="not-a-time"),
    pytest.param(variant('end = "2026-12-04T00:00:00Z"', 'end = "2026-12-01T00:00:00Z"'),
                 "'development'", id="start-equals-end"),
    pytest.param(variant('end = "2026-12-04T00:00:00Z"', 'end = "2026-11-30T00:00:00Z"'),
                 "'development'", id="start-after-end"),
    pytest.param(variant('start = "2026-12-04T00:00:00Z"', 'start = "2026-12-03T23:00:00Z"'),
                 "'test'", id="overlapping-phases"),
    pytest.param(variant('start = "2026-12-04T00:00:00Z"\nend = "2026-12-06T00:00:00Z"',
                         'start = "2026-11-20T00:00:00Z"\nend = "2026-11-25T00:00:00Z"'),
                 "phases follow each other", id="phases-out-of-order"),
    pytest.param(variant('name = "development"', 'name = "test"'), "repeat",
                 id="repeated-phase-name"),
    pytest.param(variant('show = "nothing"', 'show = "private"'), "show", id="bad-show"),
    pytest.param(template("random"), "final.rule", id="bad-rule"),
    pytest.param(variant("[final]", "[final]\nchoices = 0"), "final.choices",
                 id="zero-choices"),
    pytest.param(variant("public = 0.4", "public = 0"), "split.public", id="share-0"),
    pytest.param(variant("public = 0.4", "public = 1"), "split.public", id="share-1"),
    pytest.param(variant("public = 0.4", "public = 1.5"), "split.public", id="share-1.5"),
    pytest.param(variant("public = 0.4", 'public = "0.4"'), "split.public",
                 id="share-string"),
    pytest.param(variant("public = 0.4", "public = true"), "split.public", id="share-bool"),
    pytest.param(variant("seed = 11", "seed = -1"), "split.seed", id="negative-seed"),
    pytest.param(variant("seed = 11", 'seed = "11"'), "split.seed", id="string-seed"),
    pytest.param(variant("per_day = 2", "per_day = 0"), "quota.per_day", id="zero-per-day"),
    pytest.param(variant("count_failed = true", 'count_failed = "yes"'), "count_failed",
                 id="count-failed-string"),
    pytest.param(variant('logins = ["gus"]', 'logins = ["gus", "bob"]'), "'bob'",
                 id="login-in-two-teams"),
    pytest.param(variant('folder = "gamma"', 'folder = "alpha"'), "'alpha'",
                 id="folder-in-two-teams"),
    pytest.param(variant('folder = "gamma"', 'folder = "gam/ma"'), "folder",
                 id="folder-with-slash"),
    pytest.param(variant('folder = "gamma"', 'folder = "gam ma"'), "folder",
                 id="folder-with-space"),
    pytest.param(variant('folder = "gamma"', 'folder = "../gamma"'), "folder",
                 id="folder-climbing-out"),
    pytest.param(variant('logins = ["gus"]', 'logins = ["g us"]'), "logins",
                 id="login-with-space"),
    pytest.param(variant('logins = ["gus"]', "logins = []"), "logins", id="no-logins"),
    pytest.param(variant('references = ["no-defense"]', 'references = ["beta"]'),
                 "references", id="reference-is-a-team-folder"),
    pytest.param(variant('references = ["no-defense"]', 'references = ["no defense"]'),
                 "references", id="reference-not-a-plain-name"),
    pytest.param(_without(template(), "[[phases]]", "[[teams]]"), "phases", id="no-phases"),
    pytest.param(_without(template(), "[[teams]]", None), "teams", id="no-teams"),
    pytest.param(_without(template(), "[split]", "[quota]"), "split", id="no-split"),
    pytest.param(variant('state = "state"', ""), "state", id="no-state"),
])
def test_invalid_contest_is_one_line_naming_the_key(tmp_path: Path, text: str,
                                                    named: str) -> None:
    """Each mistake is refused with one line that names the file and what is wrong."""
    message = refused(tmp_path, text)
    where = f"{tmp_path / 'contest.toml'}: "
    assert message.startswith(where)
    assert named in message.removeprefix(where)


def test_invalid_toml_is_one_line(tmp_path: Path) -> None:
    """A file that is not TOML is refused as unreadable, in one line naming the file."""
    message = refused(tmp_path, template() + "\n[[teams]\nname = \n")
    assert "cannot read contest file" in message
    assert str(tmp_path / "contest.toml") in message


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    """A contest file that does not exist is a ContestError, not an OSError."""
    path = tmp_path / "nowhere" / "contest.toml"
    with pytest.raises(ContestError, match="cannot read contest file") as caught:
        load_contest(path)
    assert "\n" not in str(caught.value)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(("moment", "phase"), [
    (datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC), None),
    (utc(1), "development"),
    (utc(3, 23, 59, 59), "development"),
    (utc(4), "test"),
    (utc(5, 23, 59, 59), "test"),
    (utc(6), None),
    (utc(7), None),
])
def test_phase_at_boundaries(tmp_path: Path, moment: datetime, phase: str | None) -> None:
    """A phase holds its start and not its end: the end belongs to the next phase, or none."""
    contest = load_contest(write(tmp_path, template()))
    found = contest.phase_at(moment)
    assert (found.name if found else None) == phase


def test_team_lookups(tmp_path: Path) -> None:
    """Teams are found by any of their logins and by their folder; strangers by neither."""
    contest = load_contest(write(tmp_path, template()))
    beta = contest.teams[1]
    assert contest.team_of_login("bob") is beta
    assert contest.team_of_login("bea") is beta
    assert contest.team_of_login("Bob") is None
    assert contest.team_of_login("mallory") is None
    assert contest.team_of_folder("beta") is beta
    assert contest.team_of_folder("Team Beta") is None
    assert contest.team_of_folder("no-defense") is None


def test_parse_time_and_iso() -> None:
    """Times with a zone become UTC, written to the second with a Z; no zone is refused."""
    assert parse_time("2026-12-07T11:30:00+01:00") == datetime(2026, 12, 7, 10, 30, tzinfo=UTC)
    assert iso(parse_time(" 2026-12-07T10:00:00.750Z ")) == "2026-12-07T10:00:00Z"
    assert iso(datetime(2026, 12, 7, 23, 30, tzinfo=UTC)) == "2026-12-07T23:30:00Z"
    with pytest.raises(ContestError, match=r"--now: .* has no time zone"):
        parse_time("2026-12-07T10:00:00", "--now")
    with pytest.raises(ContestError, match="--now: not an ISO time"):
        parse_time("yesterday", "--now")
