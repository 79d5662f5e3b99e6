"""Every output of a grading run, written in one place: by ``grade`` (the pytest plugin, at the end
of the session) and by ``harness render``, which makes them again from ``results.json`` alone.

Organizers grade on an offline machine and publish elsewhere; CI publishes the board without
grading. Rendering loads no model and reads no test set: the records hold every number the board
shows, and the one picture made from hidden images (each track's montage of test images) is
copied from beside the results file, where ``grade`` wrote it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.render import plots
from harness.render.board import Board, Section, board
from harness.render.leaderboard import markdown
from harness.render.results_csv import render_csv
from harness.results.io import read_results, write_atomic, write_results

RESULTS_FILE = "results.json"
LEADERBOARD_FILE = "leaderboard.md"
CSV_FILE = "results.csv"
PAGE_FILE = "index.html"


def write_plots(folder: Path, shown: Board) -> None:
    """Write the Pareto plot of every track with a result (``plots/<track>.png``), numbered like
    its table."""
    for track in shown.tracks:
        if track.pareto is not None:
            target = folder / track.pareto
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, plots.pareto_png(track.name, track.points))


def write_outputs(folder: str | os.PathLike[str], benchmark: Mapping[str, Any],
                  records: Sequence[Mapping[str, Any]], *, lead: str | None = None,
                  sections: Sequence[Section] = ()) -> None:
    """Write every rendering of the records into ``folder``: ``leaderboard.md`` with its Pareto
    plots, ``results.csv`` and the web page. ``grade`` and ``harness render`` both call this, so
    a board re-rendered from ``results.json`` is the board the grading run wrote; a contest's
    boards add a ``lead`` paragraph and ``sections`` (their pictures are the caller's to write).
    """
    from harness.render import page  # Jinja2: only when a board is written

    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    shown = replace(board(benchmark, records), lead=lead, sections=tuple(sections))
    # board() ranks by paired bootstrap: made once for both layouts
    write_atomic(target / LEADERBOARD_FILE, markdown(shown))
    write_plots(target, shown)
    write_atomic(target / CSV_FILE, render_csv(records))
    write_atomic(target / PAGE_FILE, page.render_page(shown))


def render(results: Path, out: Path) -> list[str]:
    """Write ``leaderboard.md``, ``results.json``, ``results.csv``, the web page and the plots
    into ``out``; returns one note per montage that could not be copied."""
    benchmark, records = read_results(results)
    out.mkdir(parents=True, exist_ok=True)
    if (out / RESULTS_FILE).resolve() != results.resolve():
        write_results(out / RESULTS_FILE, benchmark, records)  # canonical: the same bytes
    write_outputs(out, benchmark, records)
    notes = []
    for track in benchmark["tracks"]:
        source, target = results.parent / plots.samples_file(track), out / plots.samples_file(track)
        if source.resolve() == target.resolve():
            continue
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        else:
            notes.append(f"no montage of {track} beside {results} ({source} is made by grade)")
    return notes
