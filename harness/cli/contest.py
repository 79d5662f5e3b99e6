"""``harness contest``: run a contest around the grader (``docs/organizers.md``, "Running a
contest").

``open`` makes the public/private split once; ``submit`` takes one version of a team's folder
(refused, answered from the ledger, or graded); ``pr`` does the same for a pull request's head
commit in a local clone, checking that it touches its team's folder only; ``choose`` records a
team's choice for the final board; ``status`` says where the contest stands; ``board`` writes
the public board, ``final`` the final one (after the freeze); ``integrity`` writes the
organizers' report into the state folder.

Exit status: 0 graded or answered, 1 refused, 2 a usage or configuration error. ``--now`` sets
the clock, for rehearsals and tests; without it, the machine's clock in UTC.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.contest.config import Contest
    from harness.contest.submit import Answer


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    contest = commands.add_parser(
        "contest", help="run a contest: phases, a sealed private split, quotas, boards",
        description="Run a contest described by a contest file (docs/organizers.md).")
    actions = contest.add_subparsers(dest="action", required=True)

    def action(name: str, help: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help, description=help)
        sub.add_argument("contest", metavar="CONTEST", help="the contest file (contest.toml)")
        sub.add_argument("--now", metavar="TIME",
                         help="the time to act at, in UTC (e.g. 2026-12-07T10:00:00Z; "
                              "default: now): rehearsals and tests")
        return sub

    action("open", "make the public/private split of the hidden sets (once)")
    submit = action("submit", "grade one version of a submission folder, quota permitting")
    submit.add_argument("folder", metavar="FOLDER", help="the submission folder")
    who = submit.add_mutually_exclusive_group(required=True)
    who.add_argument("--login", help="who submits it (must belong to the folder's team)")
    who.add_argument("--organizer", action="store_true",
                     help="an organizer submits it (reference entries: no phase, no quota)")
    pr = action("pr", "grade the submission a pull request's head commit changes")
    pr.add_argument("--repo", required=True, metavar="DIR", help="a clone holding both commits")
    pr.add_argument("--base", required=True, metavar="REF", help="the base branch's commit")
    pr.add_argument("--head", required=True, metavar="REF", help="the pull request's head")
    pr.add_argument("--login", required=True, help="the pull request's author")
    pr.add_argument("--reply", metavar="FILE",
                    help="write the answer (Markdown) here, unless the commit was answered "
                         "before")
    choose = action("choose", "choose a graded version for the final board (rule chosen)")
    choose.add_argument("version", metavar="VERSION", help="the version's digest (a prefix)")
    choose.add_argument("--login", required=True)
    action("status", "print the phase and each team's use of its quota")
    for name, help in (("board", "write the public board (public part only)"),
                       ("final", "write the final board (private part), after the freeze")):
        board = action(name, help)
        board.add_argument("--out", required=True, metavar="DIR")
    action("integrity", "write the organizers' integrity report into the state folder")
    contest.set_defaults(run=run)


def run(args: argparse.Namespace, passthrough: list[str]) -> int:
    from harness.contest.config import load_contest, parse_time

    contest = load_contest(Path(args.contest))
    moment = parse_time(args.now, "--now") if args.now else datetime.now(UTC)
    return ACTIONS[args.action](contest, moment, args)


def _open(contest: Contest, moment: datetime, args: argparse.Namespace) -> int:
    from harness.contest.submit import open_contest

    path = open_contest(contest)
    print(f"{contest.name}: split recorded in {path}; phases "
          + ", ".join(f"{phase.name} {phase.start:%Y-%m-%d %H:%M}-{phase.end:%Y-%m-%d %H:%M}Z"
                      for phase in contest.phases))
    return 0


def _print(answer: Answer) -> int:
    from harness.text import safe_line

    print(safe_line(answer.message))
    return answer.exit_code


def _submit(contest: Contest, moment: datetime, args: argparse.Namespace) -> int:
    from harness.contest.submit import submit

    return _print(submit(contest, Path(args.folder), login=None if args.organizer else args.login,
                         moment=moment))


def _pr(contest: Contest, moment: datetime, args: argparse.Namespace) -> int:
    from harness.contest.config import iso
    from harness.contest.pull import submit_pull_request
    from harness.text import fenced, markdown, safe_line

    answer = submit_pull_request(contest, Path(args.repo), base=args.base, head=args.head,
                                 login=args.login, moment=moment)
    if answer is None:
        print(f"commit {args.head} was answered before")
        return 0
    head = answer.entry["commit"] if answer.entry is not None else None
    if args.reply:
        Path(args.reply).write_text(
            f"**{markdown(contest.name)}** (backdoor-grader), commit `{str(head)[:12]}`, "
            f"{iso(moment)}:\n\n{fenced(safe_line(answer.message))}\n", encoding="utf-8")
    return _print(answer)


def _choose(contest: Contest, moment: datetime, args: argparse.Namespace) -> int:
    from harness.contest import ledger
    from harness.contest.config import iso
    from harness.contest.ledger import entry
    from harness.errors import ContestError

    team = contest.team_of_login(args.login)
    if team is None:
        raise ContestError(f"{args.login} is not a member of any team of the contest")
    if contest.rule != "chosen":
        raise ContestError(f"the contest's rule is {contest.rule}: teams choose nothing")
    if moment >= contest.closes:
        print(f"refused: the contest closed at {iso(contest.closes)}: choices are final")
        return 1
    with ledger.locked(contest.state) as book:
        matches = {line["version"] for line in book.entries
                   if line["kind"] == "graded" and line["team"] == team.name
                   and line["version"].startswith(args.version)}
        if len(matches) != 1:
            print(f"refused: {len(matches)} graded versions of {team.name} start with "
                  f"{args.version!r}; give one")
            return 1
        version = matches.pop()
        book.append(entry("chosen", time=iso(moment), team=team.name, login=args.login,
                          folder=team.folder, version=version,
                          phase=None if (phase := contest.phase_at(moment)) is None
                          else phase.name))
    print(f"{team.name} chose version {version[:12]} (the latest {contest.choices} choices "
          "count)")
    return 0


def _status(contest: Contest, moment: datetime, args: argparse.Namespace) -> int:
    from harness.contest import ledger
    from harness.contest.config import iso
    from harness.contest.rules import counts
    from harness.text import safe_line

    entries = ledger.read(contest.state)
    phase = contest.phase_at(moment)
    print(f"{safe_line(contest.name)} at {iso(moment)}: "
          + (f"phase {phase.name} until {iso(phase.end)}" if phase else "no phase open")
          + f"; {sum(line['kind'] == 'graded' for line in entries)} version(s) graded")
    for team in contest.teams:
        used = 0 if phase is None else sum(
            line["team"] == team.name and counts(line, phase) for line in entries)
        total = "-" if phase is None or phase.quota.total is None else phase.quota.total
        print(f"  {safe_line(team.name)} ({team.folder}): {used}/{total} versions this phase")
    return 0


def _board(contest: Contest, moment: datetime, args: argparse.Namespace) -> int:
    from harness.contest import ledger
    from harness.contest.boards import write_public_board

    write_public_board(contest, ledger.read(contest.state), Path(args.out), moment)
    print(f"public board written to {args.out}")
    return 0


def _final(contest: Contest, moment: datetime, args: argparse.Namespace) -> int:
    from harness.contest import ledger
    from harness.contest.boards import write_final_board

    write_final_board(contest, ledger.read(contest.state), Path(args.out), moment)
    print(f"final board written to {args.out}")
    return 0


def _integrity(contest: Contest, moment: datetime, args: argparse.Namespace) -> int:
    from harness.contest import ledger
    from harness.contest.integrity import write_report

    path, found = write_report(contest, ledger.read(contest.state))
    print(f"{found} finding(s); report (organizers only) in {path}")
    return 0


ACTIONS = {"open": _open, "submit": _submit, "pr": _pr, "choose": _choose, "status": _status,
           "board": _board, "final": _final, "integrity": _integrity}
