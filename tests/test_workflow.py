"""The pull-request grading job: .github/scripts/grade-pr.sh, the script the workflow runs, run
here on a temporary git repository laid out like the project's (submissions/, a committed
results.json), with the tiny benchmark cut to one track to keep the sandboxed workers few."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import REPO, benchmark_subset, run_harness, write_submission

from harness.tracks import load_benchmark

SCRIPT = REPO / ".github" / "scripts" / "grade-pr.sh"
WORKFLOW = REPO / ".github" / "workflows" / "grade-submissions.yml"
TRACK = "sunglasses"


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture(scope="module")
def bench(tiny_benchmark: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return benchmark_subset(tiny_benchmark, tmp_path_factory.mktemp("wf-bench") / "b", [TRACK])


@pytest.fixture(scope="module")
def repo(bench: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Branch ``main``: submission alpha with its graded results.json and leaderboard.md."""
    root = tmp_path_factory.mktemp("wf") / "repo"
    badnet = load_benchmark(bench).track(TRACK).badnet
    write_submission(root / "submissions", "alpha", {TRACK: {"model": "m.h5"}}, {"m.h5": badnet})
    (root / ".gitignore").write_text(".harness-cache/\n")
    graded = run_harness("grade", "submissions", "--benchmark", bench, "--no-cache", cwd=root)
    assert graded.returncode == 0, graded.stdout + graded.stderr
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "test@example.com")
    git(root, "config", "user.name", "test")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base: alpha graded")
    return root


def pull_request(repo: Path, branch: str, name: str, files: dict[str, Path | bytes],
                 model: str) -> None:
    """Check out a new branch off main that adds submission ``name``, committed."""
    git(repo, "checkout", "-q", "-f", "main")
    git(repo, "clean", "-q", "-fdx")
    git(repo, "checkout", "-q", "-b", branch)
    write_submission(repo / "submissions", name, {TRACK: {"model": model}}, files)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"add {name}")


def run_script(repo: Path, bench: Path, summary: Path,
               base: str = "main") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHON": sys.executable, "BASE_REF": base,
           "SUMMARY": str(summary), "BENCHMARK": str(bench)}
    env.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run(["bash", str(SCRIPT)], cwd=repo / "submissions", env=env,
                          capture_output=True, text=True, timeout=600)


def test_workflow_runs_the_tested_script():
    text = WORKFLOW.read_text()
    for needed in ("pull_request:", '"submissions/**"', "fetch-depth: 0", 'python-version: "3.11"',
                   "pip install -e '.[dev]'\n", "BASE_REF: origin/${{ github.base_ref }}",
                   'SUMMARY="$GITHUB_STEP_SUMMARY" bash .github/scripts/grade-pr.sh',
                   "actions/upload-artifact@", "results.json", "leaderboard.md", "grade.xml",
                   "persist-credentials: false", "permissions: {}"):
        assert needed in text, needed
    uses = re.findall(r"uses: (\S+)(.*)", text)
    assert uses and all(re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", action)
                        and re.fullmatch(r"  # v\d+\.\d+\.\d+", comment)
                        for action, comment in uses), uses
    assert os.access(SCRIPT, os.X_OK)


def test_valid_submission_is_checked_graded_and_merged(repo, bench, tmp_path):
    badnet = load_benchmark(bench).track(TRACK).badnet
    pull_request(repo, "add-beta", "beta", {"m.h5": badnet}, "m.h5")
    results = json.loads((repo / "results.json").read_text())
    results["results"][0]["team"] = "edited in the pull request"  # must not be the baseline
    (repo / "results.json").write_text(json.dumps(results))
    git(repo, "commit", "-q", "-am", "edit results.json")
    summary = tmp_path / "summary.md"
    result = run_script(repo, bench, summary)
    assert result.returncode == 0, result.stdout + result.stderr

    text = summary.read_text()
    assert "## Submission checks" in text and "- beta: valid" in text
    assert "Graded in this run: beta. 2 entries are ranked on 1 track" in text
    assert "### beta: rank " in text and "### alpha" not in text
    assert "graded: beta; from cache: none; from baseline" in result.stdout
    records = json.loads((repo / "results.json").read_text())["results"]
    assert sorted((r["submission"], r["status"]) for r in records) == \
        [("alpha", "ok"), ("beta", "ok")]
    assert "| beta " in (repo / "leaderboard.md").read_text()
    cases = list(ET.parse(repo / "grade.xml").getroot().iter("testcase"))
    assert len(cases) == 2 and not any(case.find("failure") is not None for case in cases)


def test_invalid_submission_fails_the_job_before_grading(repo, bench, tmp_path):
    pull_request(repo, "add-broken", "broken", {"notes.txt": b"no model here\n"}, "missing.h5")
    summary = tmp_path / "summary.md"
    result = run_script(repo, bench, summary)
    assert result.returncode == 1, result.stdout + result.stderr
    text = summary.read_text()
    assert "- **broken: invalid**" in text and "missing.h5" in text
    assert "::error::submission broken is invalid" in result.stdout
    assert not (repo / "grade.xml").exists()


def test_unknown_base_ref_is_an_error(repo, bench, tmp_path):
    result = run_script(repo, bench, tmp_path / "summary.md", base="origin/nowhere")
    assert result.returncode == 2 and "origin/nowhere is not a commit" in result.stderr
