"""The contest file: what an organizer writes once (``contest.toml``) to run a contest around
the grader, read and checked like a track file, every problem one line.

It names the hidden benchmark, the organizers' private folder (``state``: the split record, the
ledger and the sealed private results), the public/private split of every hidden set, the
grading options every version is graded with (one setting for all, so that every row of a board
compares like with like), the phases with their times (UTC) and what each shows, the quotas, the
rule that picks each team's version at the end, the teams with the logins that may submit for
them, and the organizers' reference entries. ``docs/organizers.md`` describes a contest's life.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from harness.errors import ContestError

Show = Literal["public", "nothing"]
"""What a phase's board and answers show of a version: its public-part numbers, or nothing
(a blind phase: versions are graded and counted, their numbers stay sealed until the end)."""
Rule = Literal["last", "best_public", "chosen"]
"""Which of a team's versions counts at the end: its last, its best on the public part, or the
best on the private part among those it chose (its best public one if it chose none)."""
RULES: tuple[Rule, ...] = ("last", "best_public", "chosen")
SHOWS: tuple[Show, ...] = ("public", "nothing")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""A plain name: folder names, logins, phase names (no path, no markup, no spaces)."""


@dataclass(frozen=True)
class Quota:
    """How many versions a team may have graded in one phase."""

    per_day: int | None = None
    """Per UTC calendar day (None: no daily limit)."""
    total: int | None = None
    """In the whole phase (None: no limit)."""
    count_failed: bool = False
    """Whether a version that graded on no track (it failed everywhere) uses a slot."""


@dataclass(frozen=True)
class Phase:
    name: str
    start: datetime
    end: datetime
    """Exclusive: a version submitted at ``end`` belongs to the next phase, or to none."""
    show: Show
    quota: Quota

    def holds(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


@dataclass(frozen=True)
class Team:
    name: str
    """As boards show it: the organizers' spelling, never the manifest's."""
    folder: str
    """The team's submission folder's name (``submissions/<folder>/``)."""
    logins: tuple[str, ...]
    """Who may submit for the team (their GitHub logins, say)."""


@dataclass(frozen=True)
class Contest:
    name: str
    path: Path
    """The contest file; relative paths in it are relative to its folder."""
    benchmark: Path
    state: Path
    """The organizers' private folder: never published, never reachable by a pull request."""
    seed: int
    public_share: float
    """The share of every hidden set that is public: scored and shown during the contest."""
    sample: int | None
    retune: bool
    phases: tuple[Phase, ...]
    rule: Rule
    choices: int
    """With rule ``chosen``: how many versions a team may choose."""
    teams: tuple[Team, ...]
    references: tuple[str, ...]
    """Folder names of the organizers' reference entries, shown on every board."""

    @property
    def opens(self) -> datetime:
        return self.phases[0].start

    @property
    def closes(self) -> datetime:
        """When the last phase ends: the freeze, after which nothing is graded for ranking."""
        return self.phases[-1].end

    def phase_at(self, moment: datetime) -> Phase | None:
        return next((phase for phase in self.phases if phase.holds(moment)), None)

    def phase(self, name: str) -> Phase:
        return next(phase for phase in self.phases if phase.name == name)

    def team_of_folder(self, folder: str) -> Team | None:
        return next((team for team in self.teams if team.folder == folder), None)

    def team_of_login(self, login: str) -> Team | None:
        return next((team for team in self.teams if login in team.logins), None)


def utc(moment: datetime) -> datetime:
    """A moment in UTC; a naive one is refused by the callers that read one."""
    return moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    """How times are written everywhere (ledger, answers, boards): UTC, to the second."""
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, what: str = "time") -> datetime:
    """An ISO time with a zone (``2026-12-07T10:00:00Z``), as UTC; a time without a zone would
    mean whatever the machine's zone is, so it is refused."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ContestError(f"{what}: not an ISO time: {text!r}") from None
    if moment.tzinfo is None:
        raise ContestError(f"{what}: {text!r} has no time zone; write it in UTC, e.g. "
                           "2026-12-07T10:00:00Z")
    return utc(moment)


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ContestError(f"{where}: expected a table, got {type(value).__name__}")
    return value


def _known(table: dict[str, Any], keys: set[str], where: str) -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        raise ContestError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _count(value: Any, where: str, *, optional: bool = True) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ContestError(f"{where}: expected a positive integer, got {value!r}")
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ContestError(f"{where}: expected a plain name (letters, digits, '.', '_', '-'), "
                           f"got {value!r}")
    return value


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ContestError(f"{where}: expected true or false, got {value!r}")
    return value


def _moment(value: Any, where: str) -> datetime:
    if isinstance(value, str):
        return parse_time(value, where)
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ContestError(f"{where}: expected a time with a zone, e.g. 2026-12-07T10:00:00Z, "
                           f"got {value!r}")
    return utc(value)


def _quota(value: Any, where: str, default: Quota) -> Quota:
    table = _table(value, where)
    _known(table, {"per_day", "total", "count_failed"}, where)
    return Quota(
        per_day=_count(table.get("per_day", default.per_day), f"{where}.per_day"),
        total=_count(table.get("total", default.total), f"{where}.total"),
        count_failed=_flag(table.get("count_failed", default.count_failed),
                           f"{where}.count_failed"))


def _phases(values: Any, where: str, quota: Quota) -> tuple[Phase, ...]:
    if not isinstance(values, list) or not values:
        raise ContestError(f"{where}: needs at least one [[phases]] table")
    phases = []
    for index, value in enumerate(values):
        here = f"{where}[{index}]"
        table = _table(value, here)
        _known(table, {"name", "start", "end", "show", "quota"}, here)
        name = _name(table.get("name"), f"{here}.name")
        here = f"phase {name!r}"
        start, end = (_moment(table.get(key), f"{here}.{key}") for key in ("start", "end"))
        if not start < end:
            raise ContestError(f"{here}: start {iso(start)} is not before end {iso(end)}")
        show = table.get("show", "public")
        if show not in SHOWS:
            raise ContestError(f"{here}.show: expected one of {', '.join(SHOWS)}, got {show!r}")
        phase_quota = _quota(table["quota"], f"{here}.quota", quota) if "quota" in table \
            else quota
        phases.append(Phase(name, start, end, show, phase_quota))
    for before, after in zip(phases, phases[1:], strict=False):
        if after.start < before.end:
            raise ContestError(f"phase {after.name!r} starts at {iso(after.start)}, before phase "
                               f"{before.name!r} ends ({iso(before.end)}): phases follow each "
                               "other in the file")
    names = [phase.name for phase in phases]
    if len(set(names)) != len(names):
        raise ContestError(f"{where}: phase names repeat: {names}")
    return tuple(phases)


def _teams(values: Any, references: tuple[str, ...]) -> tuple[Team, ...]:
    if not isinstance(values, list) or not values:
        raise ContestError("teams: needs at least one [[teams]] table")
    teams: list[Team] = []
    for index, value in enumerate(values):
        here = f"teams[{index}]"
        table = _table(value, here)
        _known(table, {"name", "folder", "logins"}, here)
        name = table.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 80 or \
                "\n" in name:
            raise ContestError(f"{here}.name: expected a one-line name, got {name!r}")
        folder = _name(table.get("folder"), f"{here}.folder")
        logins = table.get("logins")
        if not isinstance(logins, list) or not logins:
            raise ContestError(f"{here}.logins: expected a list of logins")
        teams.append(Team(name, folder,
                          tuple(_name(login, f"{here}.logins") for login in logins)))
    for what, values_of in (("name", lambda t: [t.name]), ("folder", lambda t: [t.folder]),
                            ("login", lambda t: list(t.logins))):
        seen: set[str] = set()
        for team in teams:
            for item in values_of(team):
                if item in seen:
                    raise ContestError(f"teams: the {what} {item!r} belongs to two teams")
                seen.add(item)
    clash = sorted({team.folder for team in teams} & set(references))
    if clash:
        raise ContestError(f"references: {', '.join(clash)} is also a team's folder")
    return tuple(teams)


def load_contest(path: Path) -> Contest:
    """Read and check a contest file; :class:`ContestError` (one line) if it is not valid."""
    where = str(path)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ContestError(f"{where}: cannot read contest file: {exc}") from None
    try:
        return _contest(table, path)
    except ContestError as exc:
        raise ContestError(f"{where}: {exc}") from None


def _contest(table: dict[str, Any], path: Path) -> Contest:
    _known(table, {"name", "benchmark", "state", "references", "split", "grading", "quota",
                   "final", "phases", "teams"}, "contest")
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ContestError("name: expected the contest's name")
    folder = path.parent
    paths = {}
    for key in ("benchmark", "state"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise ContestError(f"{key}: expected a folder (relative to the contest file)")
        paths[key] = folder / table[key]
    references = table.get("references", [])
    if not isinstance(references, list):
        raise ContestError("references: expected a list of folder names")
    references = tuple(_name(reference, "references") for reference in references)
    split = _table(table.get("split"), "split")
    _known(split, {"seed", "public"}, "split")
    seed = split.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ContestError(f"split.seed: expected a non-negative integer, got {seed!r}")
    share = split.get("public")
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share < 1:
        raise ContestError(f"split.public: expected the public share, between 0 and 1 "
                           f"(e.g. 0.3), got {share!r}")
    grading = _table(table.get("grading", {}), "grading")
    _known(grading, {"sample", "retune"}, "grading")
    quota = _quota(table.get("quota", {}), "quota", Quota())
    final = _table(table.get("final", {}), "final")
    _known(final, {"rule", "choices"}, "final")
    rule = final.get("rule", "last")
    if rule not in RULES:
        raise ContestError(f"final.rule: expected one of {', '.join(RULES)}, got {rule!r}")
    choices = _count(final.get("choices", 2), "final.choices", optional=False)
    assert choices is not None
    return Contest(
        name=name.strip(), path=path, benchmark=paths["benchmark"], state=paths["state"],
        seed=seed, public_share=float(share),
        sample=_count(grading.get("sample"), "grading.sample"),
        retune=_flag(grading.get("retune", True), "grading.retune"),
        phases=_phases(table.get("phases"), "phases", quota), rule=rule, choices=choices,
        teams=_teams(table.get("teams"), references), references=references)
