"""``leaderboard.md``: the board (:mod:`harness.render.board`) laid out as Markdown.

Rendering makes text only; the caller writes it, with the plots (:mod:`harness.render.outputs`).
Team text in it is escaped as Markdown (:func:`harness.text.markdown`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from harness.render.board import HASH_CHARS, Board, Provenance, Section, Table, TrackBoard
from harness.text import markdown as markdown_text


def markdown(shown: Board) -> str:
    """A board, made once for every layout, as the Markdown leaderboard."""
    lead = [] if shown.lead is None else [markdown_text(shown.lead)]
    sections = [
        "\n\n".join([f"# Leaderboard: {shown.benchmark}", *lead, *shown.intro]),
        f"## Overall\n\n{_markdown_table(shown.overall)}",
        *(_track_section(track) for track in shown.tracks),
        *(_added_section(section) for section in shown.sections),
        _errors_section(shown.errors),
        _footer(shown.provenance),
    ]
    return "\n\n".join(sections) + "\n"


def _markdown_table(table: Table) -> str:
    """Lay out pre-formatted cells with tabulate; numbers are right-aligned, text left-aligned.

    The text columns hold team text, escaped as Markdown (a header's ``|`` is escaped too);
    ``disable_numparse`` stops tabulate from re-formatting the already formatted numbers.
    """
    rows = [{column: markdown_text(cell) if column in table.left else cell
             for column, cell in row.items()} for row in table.rows]
    frame = pd.DataFrame(rows, columns=table.columns)
    frame.columns = [column.replace("|", "\\|") for column in table.columns]  # trigger names
    align = ["left" if column in table.left else "right" for column in table.columns]
    return frame.to_markdown(index=False, disable_numparse=True, colalign=align)


def _track_section(track: TrackBoard) -> str:
    parts = [f"## Track: {track.name}", _markdown_table(track.table)]
    if track.sample is not None:
        parts.append(f"Graded on a stratified sample of {track.sample} images per set.")
    if track.retuning is not None:
        parts.append(track.retuning)
    if track.pareto is not None:
        parts.append(f"![Clean accuracy against ASR]({track.pareto})")
    parts.append(f"![Test images, clean and poisoned]({track.samples})")
    return "\n\n".join(parts)


def _added_section(section: Section) -> str:
    parts = [f"## {markdown_text(section.title)}",
             *(markdown_text(paragraph) for paragraph in section.paragraphs)]
    if section.picture is not None:
        path, alt = section.picture
        parts.append(f"![{markdown_text(alt)}]({path})")
    for heading, table in section.tables:
        parts += [f"### {markdown_text(heading)}"] if heading else []
        parts.append(_markdown_table(table))
    return "\n\n".join(parts)


def _errors_section(errors: Sequence[tuple[str, str, str]]) -> str:
    lines = [f"- {markdown_text(name)} / {track}: {markdown_text(error)}"
             for name, track, error in errors]
    return "## Errors\n\n" + ("\n".join(lines) if lines else "None.")


def _footer(provenance: Provenance) -> str:
    data = [f"  - {name}: {digest}" for name, digest in provenance.data] or ["  - none"]
    return "\n".join(
        [
            "---",
            "",
            f"- Benchmark: {provenance.benchmark}",
            f"- Data (sha256, first {HASH_CHARS} hex digits):",
            *data,
            f"- Submissions (sha256 of the folder's files, first {HASH_CHARS} hex digits):",
            *(f"  - {markdown_text(name)}: {digest}" for name, digest in provenance.submissions),
            f"- Graded with: {provenance.versions}",
            f"- Rendered by harness {provenance.harness}",
        ]
    )
