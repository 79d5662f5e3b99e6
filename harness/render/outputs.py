"""``harness render``: every output of a grading run, again, from its ``results.json`` alone.

Organizers grade on an offline machine and publish elsewhere; CI publishes the board without
grading. Rendering loads no model and reads no test set: the records hold every number the board
shows, and the one picture made from hidden images (each track's montage of test images) is
copied from beside the results file, where ``grade`` wrote it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.render import plots
from harness.results.report import read_results, write_board, write_results

RESULTS_FILE = "results.json"


def render(results: Path, out: Path) -> list[str]:
    """Write ``leaderboard.md``, ``results.json``, ``results.csv``, the web page and the plots
    into ``out``; returns one note per montage that could not be copied."""
    benchmark, records = read_results(results)
    out.mkdir(parents=True, exist_ok=True)
    if (out / RESULTS_FILE).resolve() != results.resolve():
        write_results(out / RESULTS_FILE, benchmark, records)  # canonical: the same bytes
    write_board(out, benchmark, records)
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
