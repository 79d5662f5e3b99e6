"""Whether a version is graded: who may submit, when, and how often, decided from the contest
file and the ledger alone (no clock but the one passed in, no state but the ledger's lines).

Refusals are one line that says why and, for a quota, when the next slot opens. A version whose
folder digest the team already had graded is answered from the ledger: never graded again and
never counted twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from harness.contest.config import Contest, Phase, Team, iso
from harness.contest.ledger import Entry


@dataclass(frozen=True)
class Admitted:
    """Grade the version now, in ``phase`` (None: an organizers' reference entry)."""

    phase: Phase | None
    team: Team | None


@dataclass(frozen=True)
class Refused:
    reason: str


@dataclass(frozen=True)
class Unchanged:
    """The team had this very folder graded already: the answer is that grading's."""

    earlier: Entry


def _next_phase(contest: Contest, moment: datetime) -> Phase | None:
    return next((phase for phase in contest.phases if phase.start > moment), None)


def _closed_answer(contest: Contest, moment: datetime) -> str:
    if moment < contest.opens:
        return f"the contest opens at {iso(contest.opens)}"
    if moment >= contest.closes:
        return f"the contest closed at {iso(contest.closes)}: submissions are frozen"
    upcoming = _next_phase(contest, moment)
    assert upcoming is not None, "between phases with no phase ahead"
    return f"no phase is open; phase {upcoming.name} opens at {iso(upcoming.start)}"


def counts(entry: Entry, phase: Phase) -> bool:
    """Whether a ledger line uses one of its team's slots in ``phase``."""
    return entry["kind"] == "graded" and entry["phase"] == phase.name and \
        (entry["status"] == "ok" or phase.quota.count_failed)


def _next_slot(contest: Contest, phase: Phase, moment: datetime, daily: bool) -> str:
    """When the team may submit again: the next UTC midnight within the phase (a daily quota),
    else the next phase's start, else never."""
    if daily:
        midnight = datetime.combine(moment.date() + timedelta(days=1), datetime.min.time(),
                                    tzinfo=moment.tzinfo)
        if midnight < phase.end:
            return f"the next slot opens at {iso(midnight)}"
    upcoming = _next_phase(contest, moment)
    if upcoming is None:
        return "no slot opens before the contest closes"
    return f"the next slot opens when phase {upcoming.name} starts, at {iso(upcoming.start)}"


def _quota_answer(contest: Contest, phase: Phase, team: Team, entries: Sequence[Entry],
                  moment: datetime) -> str | None:
    used = [entry for entry in entries if entry["team"] == team.name and counts(entry, phase)]
    quota = phase.quota
    if quota.total is not None and len(used) >= quota.total:
        return (f"quota: {team.name} used all {quota.total} versions of phase {phase.name}; "
                + _next_slot(contest, phase, moment, daily=False))
    today = iso(moment)[:10]
    used_today = [entry for entry in used if entry["time"][:10] == today]
    if quota.per_day is not None and len(used_today) >= quota.per_day:
        return (f"quota: {team.name} used its {quota.per_day} version(s) of {today} (UTC) in "
                f"phase {phase.name}; " + _next_slot(contest, phase, moment, daily=True))
    return None


def admit(contest: Contest, entries: Sequence[Entry], *, folder: str, login: str | None,
          version: str, moment: datetime, reference: bool
          ) -> Admitted | Refused | Unchanged:
    """Decide a version of ``folder`` submitted by ``login`` at ``moment`` (``login`` None: the
    organizers, who alone submit reference entries, at any time and without quota).
    ``reference`` is what the folder's manifest claims."""
    if folder in contest.references:
        if login is not None:
            return Refused(f"{folder} is an organizers' reference entry; teams cannot submit it")
        return Admitted(None, None)
    team = contest.team_of_folder(folder)
    if team is None:
        return Refused(f"no team of the contest submits from the folder {folder}")
    if login is not None and login not in team.logins:
        return Refused(f"{login} may not submit for {team.name}")
    if reference:
        return Refused("a team's submission cannot claim reference = true")
    phase = contest.phase_at(moment)
    if phase is None:
        return Refused(_closed_answer(contest, moment))
    for earlier in reversed(entries):
        if earlier["kind"] == "graded" and earlier["team"] == team.name and \
                earlier["version"] == version:
            return Unchanged(earlier)
    over = _quota_answer(contest, phase, team, entries, moment)
    return Refused(over) if over is not None else Admitted(phase, team)
