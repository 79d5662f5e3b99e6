"""The organizers' trusted grading path: .github/scripts/contest-poll.sh, the script the
workflow contest-grade.yml runs, run here against local git repositories (an ``origin`` that
holds pull requests under refs/pull/N/head, as GitHub's does) with a stand-in for ``gh`` that
lists the pull requests and records the comments, on a controllable clock.

The contest's file, hidden benchmark, split and ledger live in a folder outside the checkout,
as on the organizers' runner; the pull requests are the attackers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_harness
from tests.contest.conftest import lookup_entry, write_contest

SCRIPT = REPO / ".github" / "scripts" / "contest-poll.sh"
WORKFLOW = REPO / ".github" / "workflows" / "contest-grade.yml"
NOW = "2026-12-02T10:00:00Z"
FAKE_GH = r'''#!/usr/bin/env bash
# gh, as far as contest-poll.sh uses it: `pr list --json ... --jq EXPR` and `pr comment N
# --body-file FILE`.
set -euo pipefail
here="$(dirname "$0")"
if [ "$1 $2" = "pr list" ]; then
    while [ "$#" -gt 0 ]; do
        if [ "$1" = "--jq" ]; then jq -r "$2" "$here/pulls.json"; exit 0; fi
        shift
    done
    exit 3
fi
if [ "$1 $2" = "pr comment" ]; then
    n="$(ls "$here/comments" | wc -l)"
    cp "$5" "$here/comments/$(printf %03d "$n")-pr$3.md"
    exit 0
fi
exit 3
'''


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout.strip()


class GitHub:
    """``origin`` with its pull requests, the organizers' checkout, and the gh stand-in."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.origin = root / "origin.git"
        self.bin = root / "bin"
        (self.bin / "comments").mkdir(parents=True)
        (self.bin / "gh").write_text(FAKE_GH)
        (self.bin / "gh").chmod(0o755)
        self.pulls: list[dict[str, object]] = []
        git(root, "init", "-q", "--bare", "-b", "main", str(self.origin))
        seed = root / "seed"
        git(root, "clone", "-q", str(self.origin), str(seed))
        self.configure(seed)
        (seed / "submissions").mkdir()
        (seed / "submissions" / "README.md").write_text("one folder per team\n")
        git(seed, "add", "-A")
        git(seed, "commit", "-q", "-m", "contest opens")
        git(seed, "push", "-q", "origin", "main")
        self.base = git(seed, "rev-parse", "HEAD")
        self.checkout = root / "checkout"  # the workflow's checkout of the default branch
        git(root, "clone", "-q", str(self.origin), str(self.checkout))
        self.write_pulls()

    @staticmethod
    def configure(clone: Path) -> None:
        git(clone, "config", "user.email", "team@example.com")
        git(clone, "config", "user.name", "team")

    def open_pull_request(self, login: str, change: object) -> int:
        """A team's clone of main, changed by ``change(clone)``, pushed as the next pull
        request's head."""
        number = len(self.pulls) + 1
        clone = self.root / f"pr{number}"
        git(self.root, "clone", "-q", str(self.origin), str(clone))
        self.configure(clone)
        change(clone)  # type: ignore[operator]
        git(clone, "add", "-A")
        git(clone, "commit", "-q", "-m", f"pull request {number}")
        git(clone, "push", "-q", "origin", f"HEAD:refs/pull/{number}/head")
        self.pulls.append({"number": number, "headRefOid": git(clone, "rev-parse", "HEAD"),
                           "baseRefOid": self.base, "author": {"login": login}})
        self.write_pulls()
        return number

    def write_pulls(self) -> None:
        (self.bin / "pulls.json").write_text(json.dumps(self.pulls))

    def comments(self) -> list[tuple[int, str]]:
        return [(int(path.stem.split("-pr")[1]), path.read_text())
                for path in sorted((self.bin / "comments").iterdir())]

    def poll(self, contest: Path, now: str = NOW) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHON": sys.executable,
               "CONTEST": str(contest), "REPO_DIR": str(self.checkout), "CONTEST_NOW": now,
               "GH": str(self.bin / "gh")}
        return subprocess.run(["bash", str(SCRIPT)], cwd=self.checkout, env=env,
                              capture_output=True, text=True, timeout=900)


def team_folder(name: str, answers: bytes) -> object:
    def change(clone: Path) -> None:
        lookup_entry(clone / "submissions" / name, answers, f"{name} entry")
    return change


def test_workflow_runs_the_tested_script_on_the_organizers_runner_only() -> None:
    text = WORKFLOW.read_text()
    assert "pull_request" not in text.split("\njobs:", 1)[0].split("\non:", 1)[1]
    assert "workflow_run" not in text
    for needed in ("schedule:", "runs-on: [self-hosted, contest-grader]", "permissions: {}",
                   "pull-requests: write", "persist-credentials: false",
                   "python -m harness sandbox", ".github/scripts/contest-poll.sh",
                   "CONTEST: ${{ vars.CONTEST_FILE }}"):
        assert needed in text, needed
    assert text.index("harness sandbox") < text.index("contest-poll.sh\n")
    assert os.access(SCRIPT, os.X_OK)


@pytest.mark.slow
def test_pull_requests_are_graded_on_hidden_data_once_and_answered(
        contest_bench: Path, tmp_path: Path) -> None:
    organizers = tmp_path / "organizers"  # the runner's private folder, outside the checkout
    organizers.mkdir()
    contest = write_contest(organizers, contest_bench)
    opened = run_harness("contest", "open", str(contest), cwd=organizers)
    assert opened.returncode == 0, opened.stderr
    hub = GitHub(tmp_path / "github")
    answers = b'{"0": 1}'  # no hidden image: every answer is 0, a poor but valid entry

    def evil_error(clone: Path) -> None:
        folder = clone / "submissions" / "beta"
        lookup_entry(folder, answers, "beta")
        (folder / "eval.py").write_text(
            "raise RuntimeError('<img src=x onerror=alert(1)> [win](https://evil.example) "
            "@organizer\\n::error::forged')\n")

    def escaping_link(clone: Path) -> None:
        folder = clone / "submissions" / "gamma"
        lookup_entry(folder, answers, "gamma")
        (folder / "answers.json").unlink()
        (folder / "answers.json").symlink_to("/etc/passwd")

    def also_the_grader(clone: Path) -> None:
        team_folder("alpha", answers)(clone)
        (clone / "harness").mkdir()
        (clone / "harness" / "__init__.py").write_text("raise SystemExit('owned')\n")

    graded = hub.open_pull_request("alice", team_folder("alpha", answers))
    outside = hub.open_pull_request("alice", also_the_grader)
    stranger = hub.open_pull_request("mallory", team_folder("alpha", answers))
    wrong_team = hub.open_pull_request("bob", team_folder("alpha", answers))
    failing = hub.open_pull_request("bob", evil_error)
    link = hub.open_pull_request("gus", escaping_link)
    done = hub.poll(contest)
    assert done.returncode == 0, done.stdout + done.stderr
    comments = dict(hub.comments())
    assert sorted(comments) == [graded, outside, stranger, wrong_team, failing, link]
    assert re.search(r"graded version \w{12} of alpha at 2026-12-02T10:00:00Z: public score",
                     comments[graded])
    assert "may change submissions/alpha/ only; this one changes alpha, files outside" \
        in comments[outside]
    assert "mallory is not a member of any team" in comments[stranger]
    assert "may change submissions/beta/ only; this one changes alpha" in comments[wrong_team]
    assert "failed on every track" in comments[failing]
    assert "cannot be unpacked safely" in comments[link]
    # Team text reaches the comment as one line in a code block: no HTML, link, mention or
    # workflow command acts, and nothing closes the block early.
    body = comments[failing].split("\n```\n", 1)
    assert len(body) == 2 and body[1].count("\n") == 2 and body[1].endswith("\n```\n")
    assert "<img src=x" in body[1] and "<img" not in body[0] and "@organizer" not in body[0]
    assert "\n::error::" not in done.stdout

    # The ledger, outside the checkout, answers each commit once: polling again says nothing.
    ledger = (organizers / "state" / "ledger.jsonl").read_bytes()
    lines = [json.loads(line) for line in ledger.splitlines()]
    heads = {str(pull["headRefOid"]) for pull in hub.pulls}
    assert {line["commit"] for line in lines} == heads
    again = hub.poll(contest, now="2026-12-02T11:00:00Z")
    assert again.returncode == 0, again.stderr
    assert len(hub.comments()) == len(heads)
    assert (organizers / "state" / "ledger.jsonl").read_bytes() == ledger
    assert not (hub.checkout / "state").exists()

    # A listing in an unexpected shape (a login that is a shell command) is skipped, loudly.
    hub.pulls.append({"number": 99, "headRefOid": hub.pulls[0]["headRefOid"],
                      "baseRefOid": hub.base, "author": {"login": "$(touch pwned)"}})
    hub.write_pulls()
    odd = hub.poll(contest, now="2026-12-02T12:00:00Z")
    assert odd.returncode == 2 and "unexpected shape" in odd.stderr
    assert not list(tmp_path.rglob("pwned"))
