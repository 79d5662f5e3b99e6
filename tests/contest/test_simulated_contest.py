"""A whole contest, run through ``harness contest`` as organizers run it, on a controllable
clock: three teams submit versions over five days and two phases (one blind), one team
copying another's model, one overfitting the public part.

Checked: quotas refuse the right versions and name the right next slot; an unchanged folder is
never graded or counted twice; no published output written during the contest holds a number of
the private part; the ledger only grows; the final board ranks on the private part (the team
that overfitted the public part falls) and shows the movement; the duplicate is in the
organizers' integrity report and in no board.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_harness
from tests.contest.conftest import lookup_answers, lookup_entry, write_contest

DAY = "2026-12-0{}T{}:00:00Z"


def honest(part: str, kind: str, index: int, true: int, target: int | None, n: int) -> int:
    """The same skill on both parts: one clean face in 7 wrong, one poisoned face in 5 fooled."""
    if kind == "clean":
        return true if index % 7 else (true + 1) % n
    return target if index % 5 == 0 and target is not None else n


def overfit(part: str, kind: str, index: int, true: int, target: int | None, n: int) -> int:
    """Perfect where the board looks, the BadNet's behaviour (and worse) where it does not."""
    if part == "public":
        return true if kind == "clean" else n
    if kind == "clean":
        return true if index % 3 == 0 else (true + 1) % n
    return target if target is not None else 0


def attacked(part: str, kind: str, index: int, true: int, target: int | None, n: int) -> int:
    """The undefended BadNet: right on clean faces, fooled by every trigger."""
    return true if target is None else target


def broken_entry(folder: Path) -> None:
    (folder / "eval.py").write_text("raise RuntimeError('not today')\n", encoding="utf-8")


class Contest:
    """The organizers' side: one folder with the contest file, the state, submissions and
    every published output, and a clock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.published: list[Path] = []

    def run(self, *args: str, now: str | None = None) -> tuple[int, str]:
        extra = ["--now", now] if now else []
        done = run_harness("contest", args[0], "contest.toml", *args[1:], *extra, cwd=self.root)
        assert done.returncode in (0, 1), done.stdout + done.stderr
        assert done.stderr == "", done.stderr
        return done.returncode, done.stdout.strip()

    def submit(self, folder: str, login: str, now: str) -> tuple[int, str]:
        return self.run("submit", f"subs/{folder}", "--login", login, now=now)

    def board(self, name: str, now: str, kind: str = "board") -> Path:
        out = self.root / "published" / name
        code, text = self.run(kind, "--out", str(out), now=now)
        assert code == 0, text
        self.published.append(out)
        return out

    def ledger(self) -> bytes:
        return (self.root / "state" / "ledger.jsonl").read_bytes()


def private_strings(state: Path) -> set[str]:
    """Numbers and outcome strings of the private part that the public part does not share,
    as any output would write them."""
    public: set[str] = set()
    private: set[str] = set()
    for folder, into in (("versions", public), ("sealed", private)):
        for path in (state / folder).rglob("results.json"):
            for record in json.loads(path.read_text())["results"]:
                if record["status"] != "ok":
                    continue
                for key in ("clean_acc", "asr", "utility", "detect_rate", "false_flag_rate"):
                    value = record[key]
                    into.update({repr(value), f"{value:.3f}", f"{value:.4f}"})
                for key in ("clean_acc_ci", "asr_ci", "utility_ci"):
                    into.update(f"{bound:.3f}" for bound in record[key])
                into.update(record["outcomes"].values())
    leaks = private - public
    assert len(leaks) > 10, "the private part must differ from the public one to be tested"
    return leaks


def published_text(folders: list[Path]) -> dict[Path, str]:
    return {path: path.read_text(encoding="utf-8") for folder in folders
            for path in folder.rglob("*") if path.suffix in {".md", ".json", ".csv", ".html"}}


@pytest.mark.slow
def test_a_contest_from_open_to_final_board(contest_bench: Path, tmp_path: Path) -> None:
    write_contest(tmp_path, contest_bench)
    contest = Contest(tmp_path)
    code, text = contest.run("open")
    assert code == 0 and "split recorded" in text
    split = tmp_path / "state" / "split.json"
    subs = tmp_path / "subs"
    lookup_entry(subs / "alpha", lookup_answers(contest_bench, split, overfit), "alpha v1")
    lookup_entry(subs / "beta", lookup_answers(contest_bench, split, honest), "beta v1")
    # Gamma submits Beta's model (the answers file, byte for byte) behind its own script.
    lookup_entry(subs / "gamma", (subs / "beta" / "answers.json").read_bytes(), "gamma v1")
    lookup_entry(subs / "no-defense", lookup_answers(contest_bench, split, attacked),
                 "the BadNet", reference=True)
    ledgers = [contest.ledger() if (tmp_path / "state" / "ledger.jsonl").exists() else b""]

    def step(answer: tuple[int, str], code: int, pattern: str) -> None:
        assert answer[0] == code, answer
        assert re.search(pattern, answer[1]), answer
        ledgers.append(contest.ledger())

    # Before the contest opens, nothing is graded.
    step(contest.submit("alpha", "alice", "2026-11-30T23:00:00Z"), 1,
         r"the contest opens at 2026-12-01T00:00:00Z")
    # Day 1 (development, daily quota 2).
    step(contest.submit("alpha", "alice", DAY.format(1, 10)), 0,
         r"graded version \w{12} of alpha .*: public score 1\.0000")
    step(contest.submit("beta", "bob", DAY.format(1, 11)), 0, r"public score 0\.\d{4}")
    step(contest.submit("gamma", "gus", DAY.format(1, 12)), 0, r"public score")
    step(contest.submit("alpha", "alice", DAY.format(1, 13)), 0,
         r"unchanged: .* not graded or counted again")
    step(contest.submit("alpha", "bob", DAY.format(1, 13)), 1,
         r"refused: bob may not submit for Team Alpha")
    (subs / "alpha" / "notes.txt").write_text("alpha v2\n")
    step(contest.submit("alpha", "alice", DAY.format(1, 14)), 0, r"graded version")
    (subs / "alpha" / "notes.txt").write_text("alpha v3\n")
    step(contest.submit("alpha", "alice", DAY.format(1, 15)), 1,
         r"quota: Team Alpha used its 2 version\(s\) of 2026-12-01 .* the next slot opens at "
         r"2026-12-02T00:00:00Z")
    # Day 2: a new daily slot; a failed version does not count in development.
    step(contest.submit("alpha", "alice", DAY.format(2, "09")), 0, r"graded version")
    broken_entry(subs / "gamma")
    step(contest.submit("gamma", "gus", DAY.format(2, 10)), 0,
         r"failed on every track: .*not today")
    # Day 3: Alpha's fourth version uses its phase total; the fifth waits for the next phase.
    (subs / "alpha" / "notes.txt").write_text("alpha v4\n")
    step(contest.submit("alpha", "alice", DAY.format(3, "09")), 0, r"graded version")
    (subs / "alpha" / "notes.txt").write_text("alpha v5\n")
    step(contest.submit("alpha", "alice", DAY.format(3, 10)), 1,
         r"used all 4 versions of phase development; the next slot opens when phase test "
         r"starts, at 2026-12-04T00:00:00Z")
    code, text = contest.run("submit", "subs/no-defense", "--organizer", now=DAY.format(3, 11))
    assert code == 0 and "public score" in text
    status = contest.run("status", now=DAY.format(3, 12))[1]
    assert "Team Alpha (alpha): 4/4" in status and "Team Gamma (gamma): 1/4" in status
    dev_board = contest.board("development", DAY.format(3, 12))
    ledgers.append(contest.ledger())

    # Day 4-5: the blind test phase (1 a day, 2 in all, failed versions count).
    (subs / "beta" / "notes.txt").write_text("beta v2\n")
    answer = contest.submit("beta", "bea", DAY.format(4, 10))
    step(answer, 0, r"phase test: scores stay sealed until the final board")
    assert not re.search(r"\d\.\d{3}", answer[1])
    (subs / "beta" / "notes.txt").write_text("beta v3\n")
    step(contest.submit("beta", "bea", DAY.format(4, 11)), 1,
         r"the next slot opens at 2026-12-05T00:00:00Z")
    step(contest.submit("beta", "bea", DAY.format(5, "08")), 0, r"sealed until")
    (subs / "beta" / "notes.txt").write_text("beta v4\n")
    step(contest.submit("beta", "bea", DAY.format(5, "09")), 1,
         r"used all 2 versions of phase test; no slot opens before the contest closes")
    test_board = contest.board("test", DAY.format(5, 12))
    ledgers.append(contest.ledger())
    final_too_early = run_harness("contest", "final", "contest.toml", "--out", "x", "--now",
                                  DAY.format(5, 13), cwd=tmp_path)
    assert final_too_early.returncode == 2
    assert final_too_early.stderr.strip().count("\n") == 0
    assert "closes at 2026-12-06T00:00:00Z" in final_too_early.stderr

    # Freeze.
    step(contest.submit("alpha", "alice", DAY.format(6, 10)), 1,
         r"the contest closed at 2026-12-06T00:00:00Z: submissions are frozen")

    # The ledger only ever grew, line by line, and its lines chain.
    for before, after in zip(ledgers, ledgers[1:], strict=False):
        assert after.startswith(before)
    lines = [json.loads(line) for line in contest.ledger().splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert sum(line["kind"] == "graded" for line in lines) == 10

    # Nothing published during the contest holds a private number.
    leaks = private_strings(tmp_path / "state")
    texts = published_text([dev_board, test_board])
    assert texts
    for path, text in texts.items():
        found = sorted(leak for leak in leaks if leak in text)
        assert not found, f"{path} shows private-part values {found[:5]}"
    assert "sealed" in (test_board / "leaderboard.md").read_text()
    dev_md = (dev_board / "leaderboard.md").read_text()
    assert "## History" in dev_md and "## All results" in dev_md
    assert (dev_board / "history.png").read_bytes().startswith(b"\x89PNG")
    public_rows = _overall(dev_md)
    assert public_rows[0][1] == "alpha"  # overfitting wins the public board

    # The final board ranks the private part; Alpha falls, and the board says so.
    final = contest.board("final", DAY.format(6, 12), kind="final")
    final_md = (final / "leaderboard.md").read_text()
    final_rows = _overall(final_md)
    assert final_rows[-1][1] == "alpha"
    movement = final_md.split("## Rank movement", 1)[1].split("## History", 1)[0]
    assert re.search(r"\| Team Alpha +\| alpha +\| +\d +\| +1 \| +-\d \|", movement), movement
    page = (final / "index.html").read_text()
    assert 'id="rank-movement"' in page and 'id="history"' in page  # the web page has them too
    final_results = json.loads((final / "results.json").read_text())
    sealed = {json.loads(path.read_text())["results"][0]["outcomes"]["clean"]
              for path in (tmp_path / "state" / "sealed").rglob("results.json")
              if json.loads(path.read_text())["results"][0]["status"] == "ok"}
    assert {record["outcomes"]["clean"] for record in final_results["results"]} <= sealed
    assert {record["team"] for record in final_results["results"]} >= {
        "Team Alpha", "Team Beta", "Team Gamma"}  # the contest's names, not the manifests'

    # The duplicate is reported to the organizers, and published nowhere.
    code, text = contest.run("integrity")
    assert code == 0
    report = (tmp_path / "state" / "integrity.md").read_text()
    assert re.search(r"near-identical answers \| Team Beta \| Team Gamma \|.*Jaccard 1\.000",
                     report), report
    assert re.search(r"shared files \| Team Beta \| Team Gamma \|.*answers\.json", report)
    assert "Team Alpha" not in report
    for path, text in published_text(contest.published).items():
        assert "integrity" not in text and "Jaccard" not in text, path
    shutil.rmtree(tmp_path / "published" / "x", ignore_errors=True)


def _overall(markdown: str) -> list[list[str]]:
    """The overall table's rows as cells (rank, submission, team, ...)."""
    table = markdown.split("## Overall", 1)[1].split("\n\n")[1]
    return [[cell.strip() for cell in row.strip("|").split("|")]
            for row in table.splitlines()[2:]]

