"""Team text, made safe for every place the grader shows it: the one policy, applied where text
leaves the grader (the board, the CSV, the job summary, terminal and log lines).

Everything a team writes reaches the outputs: folder names, ``team``, ``method``, manifest keys,
file names, and error messages that quote its code or its log. Shown raw, such text could move a
terminal's cursor or hide a link behind it (ANSI and OSC escapes), start a GitHub workflow
command on a log line of its own (``::error::``), turn into links, images or HTML in Markdown,
into a formula in a spreadsheet, or into mathtext in a plot. So every team string is shown as
one line whose control characters are visible escapes, and each layout escapes its own syntax
on top of that. Honest names (letters, digits, ``.``, ``_``, ``-``, spaces, parentheses) come
out unchanged, so the committed outputs do not depend on this module.
"""

from __future__ import annotations

import os
import re

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 control characters and DEL (terminal escapes start with ESC or CSI), and the bidi
controls, which reorder how a line reads without showing themselves."""

_MARKDOWN = re.compile(r"[\\`*\[\]!|~$<>&]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
"""Characters that Markdown (GitHub's, tables and math included) or the HTML it allows would
read as syntax. ``_`` only at a word's edge: inside a word (``conv_3``) it emphasises nothing."""

_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}
"""HTML's specials as entities: GitHub shows a backslash before ``<`` in some places."""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""How a spreadsheet cell that it would read as a formula starts (OWASP's CSV injection list)."""


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: object) -> str:
    """``text`` with every control character written as a visible escape (``\\x1b``,
    ``\\x0a``, ``\\u202e``): the lines and spacing stay the reader's, nothing acts on the
    terminal or the log."""
    return _CONTROLS.sub(_escape, str(text))


def safe_line(text: object) -> str:
    """Team text as one line: runs of white space (newlines too) become one space, so nothing
    the team wrote starts a line of a log, and the control characters left are escaped."""
    return visible(" ".join(str(text).split()))


def markdown(text: object) -> str:
    """Team text as one line of Markdown that shows exactly that text: no emphasis, code, link,
    image, math, HTML, and no ``|`` that would end a table cell."""
    return _MARKDOWN.sub(lambda match: _ENTITIES.get(match.group(), "\\" + match.group()),
                         safe_line(text))


def fenced(text: str) -> str:
    """Tool output shown literally in Markdown: a code block whose fence is longer than any
    run of backticks in it, so no line of the output can close it, with the control
    characters of each line escaped."""
    lines = [visible(line) for line in text.splitlines()]
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return "\n".join([fence, *lines, fence])


def csv_cell(text: str) -> str:
    """Team text as a CSV cell: one safe line, and a leading ``'`` where a spreadsheet would
    otherwise run the cell as a formula (``=HYPERLINK(...)``). Only cells of team text go
    through here: the grader's own numbers may be negative and stay numbers."""
    line = safe_line(text)
    return f"'{line}" if line.startswith(FORMULA_STARTS) else line


def file_name(name: str) -> str:
    """A file or folder name as every output can show it: as it is when it is UTF-8 text
    without control characters, else with the bytes that are not UTF-8 and the control
    characters escaped (``caf\\xe9``, ``a\\x1b[31m``)."""
    return visible(os.fsencode(name).decode("utf-8", "backslashreplace"))
