"""``harness render``: re-render the board from a results file alone."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    render = commands.add_parser(
        "render", help="re-render the board from results.json (no model, no hidden data)",
        description="Write leaderboard.md, results.json, results.csv, the web page (index.html) "
                    "and the plots into DIR from a results file alone; each track's montage "
                    "of test images is copied from beside the results file.")
    render.add_argument("results", metavar="RESULTS", help="a results.json written by grade")
    render.add_argument("--out", metavar="DIR",
                        help="folder to write (default: the results file's folder)")
    render.set_defaults(run=run)


def run(args: argparse.Namespace, passthrough: list[str]) -> int:
    from harness.render.outputs import render

    results = Path(args.results)
    out = Path(args.out) if args.out else results.parent
    notes = render(results, out)
    for note in notes:
        print(f"harness: {note}", file=sys.stderr)
    print(f"rendered {results} into {out}: leaderboard.md, results.csv, index.html, plots/")
    return 0
