"""Every rendering of hostile team text (harness/text.py applied at the render boundary): the
records hold the text raw, as a baseline or an old cache entry could, and every output file
shows it as text: no markup, no formula, no mathtext, no control character."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from harness.render.outputs import write_outputs
from harness.render.results_csv import TEAM_TEXT_COLUMNS
from harness.render.summary import render_summary
from harness.results.record import error_record, ok_record
from tests.conftest import BENCHMARK, meta, scores

CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters other than the line breaks and tabs of the files' own layout."""
MATH = "math$x^^y$"
IMG = "<img src=x onerror=alert(1)>"
FORMULA = '=HYPERLINK("http://evil.example","x")'
TERMINAL = "\x1b]8;;http://evil.example\x07osc\x1b]8;;\x07 \x1b[31mansi\x9b0m"
INJECTED = "\n::error title=Grader::All submissions passed"


def hostile_records() -> list[dict]:
    math = meta(MATH, team=IMG, method=FORMULA)
    linked = meta(f"linked{TERMINAL}", team="[click](http://evil.example) "
                  "![p](http://evil.example/p.png)", method="@SUM(1+1)")
    return [
        ok_record(math, "sunglasses", scores(0.5, {"sunglasses": 0.9})),  # utility -0.4
        ok_record(math, "multi-trigger", scores(0.9, {"eyebrows": 0.1, "lipstick": 0.2})),
        ok_record(linked, "sunglasses", scores(0.8, {"sunglasses": 0.1})),
        error_record(linked, "multi-trigger", f"`{TERMINAL}`{INJECTED} | </code>{IMG}"),
    ]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hostile-render")
    write_outputs(out, BENCHMARK, hostile_records())  # a name like math$x^^y$ broke mathtext
    summary = render_summary(BENCHMARK, hostile_records(), {MATH, f"linked{TERMINAL}"})
    (out / "summary.md").write_text(summary, encoding="utf-8")
    return out


def test_no_control_character_reaches_any_file(rendered: Path) -> None:
    for name in ("leaderboard.md", "results.csv", "index.html", "summary.md"):
        text = (rendered / name).read_text(encoding="utf-8")
        assert not CONTROL.search(text), name
        assert "x1b" in text and "osc" in text, name  # shown, escaped
    assert sorted(path.name for path in (rendered / "plots").iterdir()) == [
        "multi-trigger.png", "sunglasses.png"]


def test_markdown_shows_team_text_as_text(rendered: Path) -> None:
    for name in ("leaderboard.md", "summary.md"):
        text = (rendered / name).read_text(encoding="utf-8")
        assert "<img" not in text and "</code>" not in text, name
        links = re.findall(r"(?<!\\)\]\((\S*)", text)  # an escaped "\]" ends no link text
        assert all(target.startswith("plots/") for target in links), links  # the board's own
        assert "![" not in text.replace("![Clean accuracy", "").replace("![Test images", "")
        assert "&lt;img src=x onerror=alert(1)&gt;" in text and "math\\$x^^y\\$" in text
        assert not any(line.startswith("::") for line in text.splitlines()), name


def test_error_pipe_cannot_split_a_summary_row(rendered: Path) -> None:
    rows = [line for line in (rendered / "summary.md").read_text().splitlines()
            if line.startswith("| multi-trigger | - |")]
    assert len(rows) == 1 and len(re.findall(r"(?<!\\)\|", rows[0])) == 6


def test_page_escapes_team_text_and_puts_none_in_attributes(rendered: Path) -> None:
    html = (rendered / "index.html").read_text(encoding="utf-8")
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "</code><img" not in html
    for attribute in re.findall(r'(?:href|src|alt|aria-label|class)="([^"]*)"', html):
        assert "evil" not in attribute and "math" not in attribute, attribute


def test_csv_team_text_never_starts_a_formula_and_numbers_stay_numbers(rendered: Path) -> None:
    rows = list(csv.DictReader(io.StringIO((rendered / "results.csv").read_text())))
    for row in rows:
        for column in TEAM_TEXT_COLUMNS:
            assert not row.get(column, "").startswith(("=", "+", "-", "@", "\t", "\r")), row
    methods = {row["method"] for row in rows}
    assert methods == {"'" + FORMULA, "'@SUM(1+1)"}
    assert {row["utility"] for row in rows if row["submission"] == MATH} >= {"-0.4"}
