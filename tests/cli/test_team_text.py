"""Hostile team text through the real grader, end to end: one ``harness grade`` run on a folder
named like a formula (``math$x^^y$``, which once ended the run in matplotlib's mathtext before
any output was written) and a broken entry whose manifest carries HTML, Markdown links, a
spreadsheet formula, terminal escapes and a workflow command. Every output is written, and
shows all of it as text."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import tomli_w

from harness.definitions.tracks import load_benchmark
from harness.render.results_csv import TEAM_TEXT_COLUMNS
from tests.conftest import benchmark_subset, run_harness, write_submission

TRACK = "sunglasses"
MATH = "math$x^^y$"
IMG = "<img src=x onerror=alert(1)>"
FORMULA = '=HYPERLINK("http://evil.example","x")'
TERMINAL = "\x1b]8;;http://evil.example\x07osc\x1b]8;;\x07 \x1b[31mansi\x9b0m"
INJECTED = "::error title=Grader::All submissions passed"
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters other than the line breaks and tabs of a file's own layout."""
OUTPUTS = ("results.json", "results.csv", "index.html", "leaderboard.md")


def described(folder: Path, description: str) -> None:
    manifest = folder / "submission.toml"
    spec = tomllib.loads(manifest.read_text())
    manifest.write_text(tomli_w.dumps({**spec, "description": description}))


@pytest.fixture(scope="module")
def graded(tiny_benchmark: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("team-text")
    bench = benchmark_subset(tiny_benchmark, root / "bench", [TRACK])
    badnet = load_benchmark(bench).track(TRACK).badnet
    submissions = root / "submissions"
    described(write_submission(submissions, MATH, {TRACK: {"model": "m.h5"}}, {"m.h5": badnet},
                               team=IMG, method=FORMULA), f"described {TERMINAL}")
    write_submission(submissions, "broken", {
        TRACK: {"model": f"{TERMINAL}.h5"},
        f"x\n{INJECTED}": {"model": "m.h5"},
    }, team=f"[click](http://evil.example) ![p](http://evil.example/p.png) {TERMINAL}",
        method="@SUM(1+1)")
    result = run_harness("grade", "submissions", "--benchmark", bench, "--no-cache",
                         "--out", "out", "--summary-md", "summary.md", "--junitxml", "grade.xml",
                         cwd=root)
    return root, result


def test_the_run_ends_normally_and_writes_every_output(graded) -> None:
    root, result = graded
    assert result.returncode == 1, result.stdout + result.stderr  # broken's error row
    for name in OUTPUTS:
        assert (root / "out" / name).is_file(), name
    assert (root / "out" / "plots" / f"{TRACK}.png").is_file()
    assert (root / "summary.md").is_file() and (root / "grade.xml").is_file()
    assert f"{MATH}/submission.toml::{TRACK} clean " in result.stdout  # its scores


def test_no_control_character_in_any_output_or_on_the_terminal(graded) -> None:
    root, result = graded
    texts = {name: (root / "out" / name).read_text(encoding="utf-8") for name in OUTPUTS}
    texts.update({name: (root / name).read_text(encoding="utf-8")
                  for name in ("summary.md", "grade.xml")})
    texts.update(stdout=result.stdout, stderr=result.stderr)
    for name, text in texts.items():
        assert not CONTROL.search(text), name
        assert not any(line.lstrip().startswith("::") for line in text.splitlines()), name
    assert "FAILED (submission.toml [tracks.sunglasses]: the path '\\x1b]8;;" in result.stdout


def test_markdown_and_html_show_team_text_as_text(graded) -> None:
    root, _ = graded
    for path in (root / "out" / "leaderboard.md", root / "summary.md"):
        text = path.read_text(encoding="utf-8")
        assert "<img" not in text, path
        links = re.findall(r"(?<!\\)\]\((\S*)", text)  # an escaped "\]" ends no link text
        assert all(target.startswith("plots/") for target in links), (path, links)
        assert "![" not in re.sub(r"!\[[^\]]*\]\(plots/", "", text), path
    assert "math\\$x^^y\\$" in (root / "out" / "leaderboard.md").read_text()
    html = (root / "out" / "index.html").read_text(encoding="utf-8")
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "evil" not in "".join(re.findall(r'(?:href|src)="([^"]*)"', html))


def test_csv_cells_of_team_text_start_no_formula(graded) -> None:
    root, _ = graded
    rows = list(csv.DictReader(io.StringIO((root / "out" / "results.csv").read_text())))
    assert {row["submission"] for row in rows} == {MATH, "broken"}
    for row in rows:
        for column in TEAM_TEXT_COLUMNS:
            assert not row.get(column, "").startswith(("=", "+", "-", "@", "\t", "\r")), row
    assert {row["method"] for row in rows} == {"'" + FORMULA, "'@SUM(1+1)"}
