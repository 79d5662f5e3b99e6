"""The leaderboard as one static web page: ``index.html`` next to ``leaderboard.md``.

The page lays out the same :class:`~harness.render.leaderboard.Board` as the Markdown leaderboard,
so both show the same cells. All markup lives in ``templates/leaderboard.html.j2``; the page is a
single file with inline CSS and a few lines of plain JavaScript that sort a table when its header is
clicked (without JavaScript the tables show in the board's order). It requests nothing from the
network and links its pictures by relative path (``plots/...``), so the folder works from a plain
file server, ``file://`` or GitHub Pages. Autoescaping is on: names and error messages come from
submissions, and reach the page as the board holds them (one line, control characters escaped),
never as markup, an attribute or a link. The same board renders to the same bytes (no timestamps,
no random ids).
"""

from __future__ import annotations

import base64
import functools
import hashlib

import jinja2

from harness.render.board import HASH_CHARS, Board

TEMPLATE = "leaderboard.html.j2"


def _interval(cell: object) -> tuple[str, str]:
    """``"0.931 [0.927, 0.935]"`` as ``("0.931", "[0.927, 0.935]")``; other cells (a count is an
    int) as ``(text, "")`` (the page sets the interval in a lighter type)."""
    text = str(cell)
    value, bracket, rest = text.partition(" [")
    return (value, bracket.strip() + rest) if bracket and rest.endswith("]") else (text, "")


@functools.cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.render", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["interval"] = _interval
    return environment


def _csp_hash(template: jinja2.Template, block: str) -> str:
    """The Content-Security-Policy source that allows exactly this inline block: the page allows
    its own style and script and nothing else, so markup that escaped autoescaping could not run
    or load anything."""
    text = "".join(template.blocks[block](template.new_context({})))
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


def render_page(board: Board) -> str:
    """The board as a self-contained HTML page."""
    template = _environment().get_template(TEMPLATE)
    return template.render(
        board=board, intro=board.intro, hash_chars=HASH_CHARS,
        style_hash=_csp_hash(template, "style"), script_hash=_csp_hash(template, "script"),
    )
