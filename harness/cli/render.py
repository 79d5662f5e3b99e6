"""``harness render``: re-render the board from a results file alone."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli import usage_error


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
    from harness.errors import HarnessError
    from harness.render.outputs import render

    results = Path(args.results)
    out = Path(args.out) if args.out else results.parent
    try:
        notes = render(results, out)
    except HarnessError as exc:
        return usage_error(exc)
    for note in notes:
        print(f"harness: {note}", file=sys.stderr)
    print(f"rendered {results} into {out}: leaderboard.md, results.csv, index.html, plots/")
    return 0
