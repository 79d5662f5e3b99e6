"""Mutation score of the grader's arithmetic: how much of it the fast tests pin down.

    python scripts/mutation_score.py [--no-run] [--survivors]

Runs mutmut (configured under ``[tool.mutmut]`` in pyproject.toml: it mutates scoring, statistics,
the result records, their ranking and rendering, the cache and the worker, and runs the fast unit
tests, ``-m "not slow"``, on each mutant), then prints a Markdown table per part of the code:
mutants killed, survived and reached by no test, and the score killed / (killed + survived). On
demand, not in CI (about 2.5 minutes on 2 cores). ``--no-run`` tabulates the last run;
``--survivors`` lists the surviving mutants (``mutmut show NAME`` shows one). docs/testing.md quotes
the table and judges the survivors.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
from pathlib import Path

from tabulate import tabulate

REPO = Path(__file__).resolve().parents[1]
MUTANTS = REPO / "mutants" / "harness"
CACHE_KEY = {"cache_key", "track_fingerprint", "Baseline.__init__", "Baseline.get"}
KILLED, SURVIVED, NO_TESTS = {1, 3}, {0}, {5, 33}


PARTS = {"scoring": "an item's scores", "stats": "intervals and paired tests",
         "ranking": "ranking, DER and shared ranks", "record": "records and results files",
         "io": "records and results files", "board": "rendering (board, Markdown, CSV)",
         "leaderboard": "rendering (board, Markdown, CSV)",
         "results_csv": "rendering (board, Markdown, CSV)"}
"""The behaviour each module's mutants test, as the table (docs/testing.md) names it."""


def part(module: str, function: str) -> str:
    """Which part of the code a mutant belongs to, as the table groups them."""
    if module == "worker":
        return "answer parsing" if function == "parse_answer" else ""
    if module == "cache":
        return "cache key and baseline" if function in CACHE_KEY else "cache entries"
    return PARTS[module]


def mutants() -> list[tuple[str, str, int | None]]:
    """(part, mutant name, exit code) of every mutant of the last run."""
    found = []
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        module = meta.name.removesuffix(".py.meta")
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            function = name.rsplit(".", 1)[-1].rsplit("__mutmut_", 1)[0]
            function = function.removeprefix("x_").replace("xǁ", "").replace("ǁ", ".")
            group = part(module, function)
            if group:
                found.append((group, name, code))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-run", action="store_true", help="tabulate the last run")
    parser.add_argument("--survivors", action="store_true", help="list surviving mutants")
    args = parser.parse_args()
    if not args.no_run:
        shutil.rmtree(REPO / "mutants", ignore_errors=True)  # mutmut reuses results otherwise
        subprocess.run([Path(sys.executable).with_name("mutmut"), "run"], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    survivors = []
    for group, name, code in mutants():
        kind = ("killed" if code in KILLED else "survived" if code in SURVIVED
                else "no tests" if code in NO_TESTS else "other")
        counts[group][kind] += 1
        if kind != "killed":
            survivors.append((group, kind, name))
    rows = []
    for group, count in sorted(counts.items()):
        tested = count["killed"] + count["survived"]
        rows.append([group, count["killed"], count["survived"], count["no tests"],
                     count["other"], f"{100 * count['killed'] / tested:.1f}%" if tested else "-"])
    print(tabulate(rows, headers=["part", "killed", "survived", "no tests", "other", "score"],
                   tablefmt="github"))
    if args.survivors:
        print()
        for group, kind, name in survivors:
            print(f"{group}: {kind}: {name}")


if __name__ == "__main__":
    main()
