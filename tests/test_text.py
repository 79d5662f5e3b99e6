"""The policy for team text (harness/text.py): each function against the attack it stops, and
honest names through it unchanged (the committed outputs must not move)."""

from __future__ import annotations

import re

import pytest

from harness.text import csv_cell, fenced, markdown, safe_line, visible

ANSI = "\x1b[31mred\x1b[0m"
OSC_LINK = "\x1b]8;;http://evil.example\x07click\x1b]8;;\x07"
HONEST = ["fine-pruning", "no-defense", "neural-cleanse", "fine-pruning-g", "strip",
          "backdoor-grader reference", "fine-pruning (Liu et al. 2018)",
          "fine-pruning G-net (N+1 outputs)", "Neural Cleanse (Wang et al. 2019)",
          "eval.py exited with status 1: KeyError 'conv_3'", "team.v2_final", "anonymous_1"]
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


@pytest.mark.parametrize("name", HONEST)
def test_honest_text_passes_every_layout_unchanged(name: str) -> None:
    assert safe_line(name) == markdown(name) == csv_cell(name) == visible(name) == name


def test_terminal_escapes_become_visible_text() -> None:
    for attack in (ANSI, OSC_LINK, "\x9b31m C1 CSI", "bell\x07 del\x7f nul\x00",
                   "\u202eevil\u202c bidi override"):
        shown = safe_line(attack)
        assert not CONTROL.search(shown) and "\u202e" not in shown, shown
    assert safe_line(ANSI) == "\\x1b[31mred\\x1b[0m"
    assert safe_line("\x9b2J") == "\\x9b2J" and safe_line("a\u202eb") == "a\\u202eb"


def test_one_line_whatever_the_breaks() -> None:
    attack = "x\n::error title=Grader::All submissions passed\r\n\x85\u2028next"
    assert safe_line(attack) == "x ::error title=Grader::All submissions passed next"
    assert visible("a\tb") == "a\\x09b"  # visible keeps lines and spacing, escaping the rest


def test_markdown_shows_the_text_not_markup() -> None:
    assert markdown("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert(1)&gt;"
    assert markdown("[click](http://evil.example)") == "\\[click\\](http://evil.example)"
    assert markdown("![x](http://evil.example/p.png)") == "\\!\\[x\\](http://evil.example/p.png)"
    assert markdown("a | b") == "a \\| b"  # cannot end a table cell
    assert markdown("math$x^^y$") == "math\\$x^^y\\$"  # GitHub math
    assert markdown("`code` *em* ~del~") == "\\`code\\` \\*em\\* \\~del\\~"
    assert markdown("_em_ and snake_case") == "\\_em\\_ and snake_case"
    assert markdown("&lt;b&gt;") == "&amp;lt;b&amp;gt;"  # an entity shows as written
    assert markdown("back\\slash") == "back\\\\slash"
    assert markdown(f"a\n{ANSI}") == "a \\\\x1b\\[31mred\\\\x1b\\[0m"


def test_fence_is_longer_than_any_backtick_run_in_the_output() -> None:
    output = "FAIL  x\n```\n![x](http://evil.example/p.png)\n`````\n\x1b[2Jcleared"
    block = fenced(output).split("\n")
    assert block[0] == block[-1] == "`" * 6
    assert block[1:-1] == ["FAIL  x", "```", "![x](http://evil.example/p.png)", "`````",
                           "\\x1b[2Jcleared"]
    assert fenced("ok") == "```\nok\n```"


def test_csv_cells_never_start_a_formula() -> None:
    for attack in ('=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)",
                   "\t=1", "\r=1", " =1"):
        assert csv_cell(attack).startswith("'"), attack
    assert csv_cell('=HYPERLINK("x")') == "'=HYPERLINK(\"x\")"
    assert csv_cell("a=b") == "a=b" and csv_cell("x-1") == "x-1"
