"""A pull request's version: the submission folder its head commit holds, taken out of git.

The organizers' job (``.github/scripts/contest-poll.sh``) runs this on its own clone, into
which it fetched the pull request's commits. Nothing of the pull request is checked out or run
here: the changed paths are read from ``git diff``, and the one folder is read from ``git
archive`` and unpacked with :mod:`tarfile`'s ``data`` filter (no absolute paths, no links
leading out, no devices). A pull request may change its team's folder and nothing else; its
author must be one of the team's logins. Every answer, refusals included, is a ledger line
naming the head commit, so a commit is answered once however often the job polls.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from datetime import datetime
from pathlib import Path

from harness.contest.config import Contest, iso
from harness.contest.ledger import entry, locked, read
from harness.contest.submit import Answer, submit
from harness.errors import ContestError
from harness.text import safe_line

SUBMISSIONS = "submissions"


def _git(repo: Path, *args: str) -> bytes:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                              check=True).stdout
    except subprocess.CalledProcessError as exc:
        raise ContestError(f"git {args[0]}: {safe_line(exc.stderr.decode(errors='replace'))}"
                           ) from None


def answered(contest: Contest, head: str) -> bool:
    return any(line["commit"] == head for line in read(contest.state))


def _refuse(contest: Contest, reason: str, *, folder: str, login: str, head: str,
            moment: datetime) -> Answer:
    team = contest.team_of_login(login)
    phase = contest.phase_at(moment)
    with locked(contest.state) as ledger:
        line = ledger.append(entry(
            "refused", time=iso(moment), phase=None if phase is None else phase.name,
            team=None if team is None else team.name, login=login, folder=folder, version="",
            commit=head, reason=reason))
    return Answer("refused", f"refused: {reason}", line)


def submit_pull_request(contest: Contest, repo: Path, *, base: str, head: str, login: str,
                        moment: datetime) -> Answer | None:
    """Answer the pull request whose head is ``head`` (None: that commit was answered before)."""
    head = _git(repo, "rev-parse", "--verify", f"{head}^{{commit}}").decode().strip()
    if answered(contest, head):
        return None
    changed = [path for path in _git(repo, "diff", "--name-only", "-z", f"{base}...{head}")
               .decode(errors="replace").split("\0") if path]
    team = contest.team_of_login(login)
    folders = sorted({parts[1] if len(parts) > 2 and parts[0] == SUBMISSIONS
                      else "files outside submissions/"
                      for parts in (path.split("/") for path in changed)})
    if team is None:
        return _refuse(contest, f"{login} is not a member of any team of the contest",
                       folder="", login=login, head=head, moment=moment)
    if folders != [team.folder]:
        listed = ", ".join(safe_line(folder) for folder in folders) or "nothing"
        return _refuse(contest, f"a pull request of {team.name} may change "
                       f"{SUBMISSIONS}/{team.folder}/ only; this one changes {listed}",
                       folder=team.folder, login=login, head=head, moment=moment)
    archive = _git(repo, "archive", "--format=tar", head, f"{SUBMISSIONS}/{team.folder}")
    with tempfile.TemporaryDirectory() as work:
        try:
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                tar.extractall(work, filter="data")
        except tarfile.TarError as exc:
            return _refuse(contest, f"the folder cannot be unpacked safely: {safe_line(exc)}",
                           folder=team.folder, login=login, head=head, moment=moment)
        return submit(contest, Path(work) / SUBMISSIONS / team.folder, login=login,
                      moment=moment, commit=head)
