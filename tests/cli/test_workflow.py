"""The pull-request grading job: .github/scripts/grade-pr.sh, the script the workflow runs, run
here on a temporary git repository laid out like the project's (submissions/, a committed
results.json), with the tiny benchmark cut to one track to keep the sandboxed workers few."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.definitions.tracks import load_benchmark
from tests.conftest import REPO, benchmark_subset, run_harness, write_submission

SCRIPT = REPO / ".github" / "scripts" / "grade-pr.sh"
WORKFLOW = REPO / ".github" / "workflows" / "grade-submissions.yml"
PAGES = REPO / ".github" / "workflows" / "publish-board.yml"
TRACK = "sunglasses"


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture(scope="module")
def bench(tiny_benchmark: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return benchmark_subset(tiny_benchmark, tmp_path_factory.mktemp("wf-bench") / "b", [TRACK])


@pytest.fixture(scope="module")
def repo(bench: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Branch ``main``, laid out like the project: the grader's code (``harness/``), a benchmark
    (``bench/``), submission alpha with its graded results.json and leaderboard.md, and an owners
    file naming alpha's owner."""
    root = tmp_path_factory.mktemp("wf") / "repo"
    shutil.copytree(REPO / "harness", root / "harness",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(bench, root / "bench")
    badnet = load_benchmark(root / "bench").track(TRACK).badnet
    write_submission(root / "submissions", "alpha", {TRACK: {"model": "m.h5"}}, {"m.h5": badnet})
    (root / ".gitignore").write_text(".harness-cache/\n")
    (root / ".github").mkdir()
    (root / ".github" / "CODEOWNERS").write_text("# owners of submission folders\n"
                                                 "/submissions/alpha/ @alpha-team @organizer\n")
    graded = run_harness("grade", "submissions", "--benchmark", "bench", "--no-cache", cwd=root)
    assert graded.returncode == 0, graded.stdout + graded.stderr
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "test@example.com")
    git(root, "config", "user.name", "test")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base: alpha graded")
    return root


def pull_request(repo: Path, branch: str, change: Callable[[Path], object]) -> None:
    """Check out a new branch off main, make ``change`` in it and commit it."""
    git(repo, "checkout", "-q", "-f", "main")
    git(repo, "clean", "-q", "-fdx")
    git(repo, "checkout", "-q", "-b", branch)
    change(repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", branch)


def add(name: str, repo: Path) -> None:
    badnet = load_benchmark(repo / "bench").track(TRACK).badnet
    write_submission(repo / "submissions", name, {TRACK: {"model": "m.h5"}}, {"m.h5": badnet})


def run_script(repo: Path, summary: Path, base: str = "main",
               author: str = "") -> tuple[subprocess.CompletedProcess[str], Path]:
    """The script as the workflow runs it: in a fresh checkout of the base (its ``harness`` is
    the one imported), with the pull request's checkout (``repo`` at the branch) as PR_DIR."""
    checkout = repo.parent / f"base-{len(list(repo.parent.glob('base-*')))}"
    git(repo, "worktree", "add", "-q", "--detach", str(checkout), "main")
    env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHON": sys.executable, "BASE_REF": base,
           "PR_DIR": str(repo), "PR_AUTHOR": author, "SUMMARY": str(summary),
           "BENCHMARK": "bench"}
    env.pop("GITHUB_STEP_SUMMARY", None)
    result = subprocess.run(["bash", str(SCRIPT)], cwd=checkout / "submissions", env=env,
                            capture_output=True, text=True, timeout=600)
    return result, checkout


def test_workflow_runs_the_tested_script():
    text = WORKFLOW.read_text()
    for needed in ("pull_request:", '"submissions/**"', "fetch-depth: 0", 'python-version: "3.11"',
                   "pip install -e '.[dev]'\n", "PR_DIR: .pull-request",
                   "ref: ${{ github.event.pull_request.base.sha }}",
                   "ref: ${{ github.event.pull_request.head.sha }}",
                   "BASE_REF: ${{ github.event.pull_request.base.sha }}",
                   'SUMMARY="$GITHUB_STEP_SUMMARY" bash .github/scripts/grade-pr.sh',
                   "actions/upload-artifact@", "results.json", "leaderboard.md", "grade.xml",
                   "persist-credentials: false", "permissions: {}"):
        assert needed in text, needed
    uses = re.findall(r"uses: (\S+)(.*)", text)
    assert uses and all(re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", action)
                        and re.fullmatch(r"  # v\d+\.\d+\.\d+", comment)
                        for action, comment in uses), uses
    assert os.access(SCRIPT, os.X_OK)


def test_the_job_proves_a_sandbox_before_any_submission_runs():
    """GitHub's Ubuntu 24.04 runners forbid bwrap's user namespace through AppArmor: the job
    lifts that, then `harness sandbox` (exit 2 without a sandbox) runs before the first step
    that runs or builds anything of a submission's."""
    text = WORKFLOW.read_text()
    lift = text.index("sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0")
    prove = text.index("run: python -m harness sandbox")
    assert lift < prove < text.index("python -m harness env build") \
        < text.index("bash .github/scripts/grade-pr.sh")
    assert "continue-on-error" not in text[lift:prove + 40]


def job_permissions(text: str) -> dict[str, dict[str, str]]:
    """Each job's ``permissions:`` block of a workflow, as {job: {scope: access}}."""
    jobs = re.split(r"^  ([\w-]+):\n", text.split("\njobs:\n", 1)[1], flags=re.MULTILINE)[1:]
    found = {}
    for name, body in zip(jobs[::2], jobs[1::2], strict=True):
        block = re.search(r"^    permissions:\n((?:      .*\n)+)", body, flags=re.MULTILINE)
        found[name] = dict(re.findall(r"^      ([\w-]+): (\w+)", block[1] if block else "",
                                      flags=re.MULTILINE))
    return found


def test_pages_workflow_renders_the_board_and_deploys_with_least_permissions():
    text = PAGES.read_text()
    for needed in ("push:\n    branches: [main]", 'python-version: "3.11"', "pip install -e .\n",
                   "python -m harness render results.json --out _site", "path: _site",
                   "persist-credentials: false", "name: github-pages", "needs: build",
                   "permissions: {}"):
        assert needed in text, needed
    assert not re.search(r"^\s+cache:", text, flags=re.MULTILINE)  # published: no restored cache
    assert job_permissions(text) == {"build": {"contents": "read"},
                                     "deploy": {"pages": "write", "id-token": "write"}}
    uses = re.findall(r"uses: (\S+)(.*)", text)
    assert sorted(action.split("@")[0] for action, _ in uses) == [
        "actions/checkout", "actions/deploy-pages", "actions/setup-python",
        "actions/upload-pages-artifact"]
    assert all(re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", action)
               and re.fullmatch(r"  # v\d+\.\d+\.\d+", comment)
               for action, comment in uses), uses
    # The actions both workflows use are pinned alike.
    graded = dict(re.findall(r"uses: ([\w/-]+)@(\S+)", WORKFLOW.read_text()))
    pinned = dict(re.findall(r"uses: ([\w/-]+)@(\S+)", text))
    assert {name: pinned[name] for name in pinned if name in graded} == \
        {name: graded[name] for name in pinned if name in graded}
    assert {"actions/checkout", "actions/setup-python"} <= set(graded)


def test_valid_submission_is_checked_graded_and_merged(repo, tmp_path):
    def change(root: Path) -> None:
        add("beta", root)
        results = json.loads((root / "results.json").read_text())
        results["results"][0]["team"] = "edited in the pull request"  # must not be the baseline
        (root / "results.json").write_text(json.dumps(results))

    pull_request(repo, "add-beta", change)
    summary = tmp_path / "summary.md"
    result, base = run_script(repo, summary)
    assert result.returncode == 0, result.stdout + result.stderr

    text = summary.read_text()
    assert "## Submission checks" in text and "- beta: valid" in text
    assert "not used: this job runs the base branch's grader" in text and "- results.json" in text
    assert "Graded in this run: beta. 2 entries are ranked on 1 track" in text
    assert "### beta: rank " in text and "### alpha" not in text
    assert "graded: beta; from cache: none; from baseline" in result.stdout
    records = json.loads((base / "results.json").read_text())["results"]
    assert sorted((r["submission"], r["team"], r["status"]) for r in records) == \
        [("alpha", "alpha", "ok"), ("beta", "beta", "ok")]
    assert "| beta " in (base / "leaderboard.md").read_text()
    cases = list(ET.parse(base / "grade.xml").getroot().iter("testcase"))
    assert len(cases) == 2 and not any(case.find("failure") is not None for case in cases)


def test_edited_scoring_code_and_track_files_are_listed_and_never_used(repo, tmp_path):
    """A pull request that inflates its own score in the scoring code and moves a track's target
    is graded by the base's code and tracks: its true score, the same as alpha's (same model)."""
    def change(root: Path) -> None:
        add("gamma", root)
        scoring = root / "harness" / "grading" / "scoring.py"
        text = scoring.read_text()
        assert '"utility": clean_acc - asr,' in text
        scoring.write_text(text.replace('"utility": clean_acc - asr,', '"utility": 1.0,'))
        track = root / "bench" / "tracks" / f"{TRACK}.toml"
        track.write_text(track.read_text().replace("target = 0", "target = 3"))

    pull_request(repo, "inflate", change)
    summary = tmp_path / "summary.md"
    result, base = run_script(repo, summary)
    assert result.returncode == 0, result.stdout + result.stderr
    text = summary.read_text()
    assert "- harness/grading/scoring.py" in text and f"- bench/tracks/{TRACK}.toml" in text
    by = {r["submission"]: r for r in json.loads((base / "results.json").read_text())["results"]}
    assert by["gamma"]["utility"] == by["alpha"]["utility"] < 1.0
    assert by["gamma"]["asr"] == by["alpha"]["asr"] > 0.5  # scored against the base's target


def test_two_submission_folders_in_one_pull_request_are_refused(repo, tmp_path):
    pull_request(repo, "two", lambda root: (add("delta", root), add("epsilon", root)))
    summary = tmp_path / "summary.md"
    result, base = run_script(repo, summary)
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("::error::the pull request changes 2 submission folders (delta epsilon); submit one "
            "per pull request") in result.stdout
    assert "- **refused: the pull request changes 2 submission folders" in summary.read_text()
    assert not (base / "grade.xml").exists() and not (base / "submissions" / "delta").exists()


def test_another_teams_folder_is_refused_unless_the_owners_file_names_the_author(repo, tmp_path):
    def change(root: Path) -> None:
        manifest = root / "submissions" / "alpha" / "submission.toml"
        manifest.write_text(manifest.read_text().replace('method = "test"',
                                                         'method = "taken over"'))

    pull_request(repo, "edit-alpha", change)
    result, base = run_script(repo, tmp_path / "summary.md", author="mallory")
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("::error::submissions/alpha exists on the base branch and is not yours "
            "(.github/CODEOWNERS names its owners)") in result.stdout
    result, base = run_script(repo, tmp_path / "owner.md", author="alpha-team")
    assert result.returncode == 0, result.stdout + result.stderr
    by = {r["submission"]: r for r in json.loads((base / "results.json").read_text())["results"]}
    assert by["alpha"]["method"] == "taken over" and by["alpha"]["status"] == "ok"


def test_removing_a_submission_is_refused(repo, tmp_path):
    pull_request(repo, "remove-alpha", lambda root: shutil.rmtree(root / "submissions" / "alpha"))
    result, _ = run_script(repo, tmp_path / "summary.md", author="alpha-team")
    assert result.returncode == 1
    assert "removing a submission is a maintainers' change" in result.stdout


def test_invalid_submission_fails_the_job_before_grading(repo, tmp_path):
    pull_request(repo, "add-broken", lambda root: write_submission(
        root / "submissions", "broken", {TRACK: {"model": "missing.h5"}},
        {"notes.txt": b"no model here\n"}))
    summary = tmp_path / "summary.md"
    result, base = run_script(repo, summary)
    assert result.returncode == 1, result.stdout + result.stderr
    text = summary.read_text()
    assert "- **broken: invalid**" in text and "missing.h5" in text
    assert "::error::submission broken is invalid" in result.stdout
    assert not (base / "grade.xml").exists()


def outside_paused_commands(log: str) -> list[str]:
    """The lines of a job log that GitHub reads for workflow commands: all but those between
    ``::stop-commands::TOKEN`` and ``::TOKEN::``."""
    read, token = [], None
    for line in log.splitlines():
        if token is None and line.startswith("::stop-commands::"):
            token = line.removeprefix("::stop-commands::")
        elif token is not None and line == f"::{token}::":
            token = None
        elif token is None:
            read.append(line)
    return read


def test_team_text_reaches_the_log_and_the_summary_as_text(repo, tmp_path):
    """A manifest that injects a workflow command through a track key, and file names that
    would close the summary's code spans and add a remote image: the log pauses commands around
    the tools' output, and the summary shows every name and line as text."""
    injected = "::error title=Grader::All submissions passed"
    image = "![x](http://evil.example/p.png)"

    def change(root: Path) -> None:
        write_submission(root / "submissions", "evil", {
            TRACK: {"model": "missing.h5"},
            f"x\n{injected}\n```\n{image}": {"model": "m.h5"},
        }, {"notes.txt": b"no model\n"}, team="\x1b[31mred")
        (root / "`![x](p.png)`").write_text("outside the submissions folder\n")  # no "/"

    pull_request(repo, "hostile", change)
    summary = tmp_path / "summary.md"
    result, _ = run_script(repo, summary)
    assert result.returncode == 1, result.stdout + result.stderr
    log = result.stdout + result.stderr
    read = outside_paused_commands(result.stdout)
    assert len(read) < len(result.stdout.splitlines())  # the check's output was paused
    assert not any(injected in line for line in read), read
    assert "::error::submission evil is invalid" in read[-1]  # our own command still runs
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", log + summary.read_text())
    head, block = summary.read_text().split("- **evil: invalid**\n\n", 1)
    fence = block.split("\n", 1)[0]
    assert fence == "````"  # longer than the ``` the report quotes, so it cannot close early
    inside, after = block[len(fence) + 1:].split(f"\n{fence}\n", 1)
    assert "```" in inside and image in inside  # shown literally, in the code block
    assert not re.search(r"(?<!\\)!\[|<img", head + after)  # no image outside it
    assert "- \\`\\!\\[x\\](p.png)\\`" in head  # the file outside, as text


def test_unknown_base_ref_is_an_error(repo, tmp_path):
    result, _ = run_script(repo, tmp_path / "summary.md", base="origin/nowhere")
    assert result.returncode == 2 and "origin/nowhere is not a commit" in result.stderr
