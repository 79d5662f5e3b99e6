"""A short Markdown summary of a grading run, for a CI job summary (``--summary-md``).

The leaderboard answers "who leads"; a pull request's author asks "how did *my* submission do",
so the summary shows only the submissions graded in this run: their overall rank and score, and
one row per track with the numbers or the error. It holds no links: the full leaderboard travels
as a job artifact, whose address the grader cannot know. Names and errors are team text, shown
through :func:`harness.text.markdown`: never markup, always one line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from harness.results.ranking import rank
from harness.text import markdown


def _number(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def render_summary(benchmark: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                   graded: Collection[str]) -> str:
    """Markdown for the submissions named in ``graded``, ranked among all of ``records``."""
    ranking = rank(benchmark, records)
    total = len(ranking)
    ranked = "1 entry is ranked" if total == 1 else f"{total} entries are ranked"
    lines = [f"## Grading: {benchmark['name']}", ""]
    if not graded:
        lines += ["No submission was graded in this run: every result came from the cache or the "
                  f"baseline. {ranked}.", ""]
        return "\n".join(lines)
    names = sorted(graded)
    lines += [f"Graded in this run: {', '.join(map(markdown, names))}. {ranked} on "
              f"{_plural(len(benchmark['tracks']), 'track')}; the full table is in "
              "leaderboard.md.", ""]
    rows = {row["submission"]: row for row in ranking}
    for name in names:
        row = rows[name]
        tied = " (tied)" if row["tied"] else ""  # statistically indistinguishable
        lines += [f"### {markdown(name)}: rank {row['rank']}{tied} of {total}, score "
                  f"{_number(row['score'])} ({row['tracks_ok']} tracks ok)", "",
                  "| track | clean acc | ASR | utility | error |",
                  "|---|---:|---:|---:|---|"]
        mine = {record["track"]: record for record in records if record["submission"] == name}
        for track in benchmark["tracks"]:
            record = mine.get(track)
            if record is None:
                lines.append(f"| {markdown(track)} | - | - | - | not graded |")
            elif record["status"] == "ok":
                lines.append(f"| {markdown(track)} | {_number(record['clean_acc'])} | "
                             f"{_number(record['asr'])} | {_number(record['utility'])} | |")
            else:
                lines.append(f"| {markdown(track)} | - | - | - | {markdown(record['error'])} |")
        lines.append("")
    return "\n".join(lines)


def append_summary(path: str | os.PathLike[str], text: str) -> None:
    """Append, because a CI job summary file (``$GITHUB_STEP_SUMMARY``) collects every write of
    its step: earlier output (say, of ``harness check``) must survive."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
