"""How long the leaderboard's paired bootstrap takes at contest scale.

    python scripts/bootstrap_speed.py [--rounds 5]

Seven submissions x five tracks of 12,800 clean and 12,800-38,400 poisoned images (random
outcomes, seeded), the six adjacent comparisons the leaderboard makes: prints a Markdown table
of wall time per round. docs/performance.md quotes it (the target: well under 2 s, so rendering a
leaderboard never waits on statistics).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from tabulate import tabulate

from harness.grading.stats import Outcomes, tied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = [[Outcomes(rng.random(12_800) < 0.9, rng.random(n) < 0.05)
             for n in (12_800, 12_800, 25_600, 38_400, 12_800)] for _ in range(7)]
    table = []
    for round_ in range(1, args.rounds + 1):
        start = time.perf_counter()
        verdicts = [tied(upper, lower) for upper, lower in zip(rows, rows[1:], strict=False)]
        seconds = time.perf_counter() - start
        table.append([round_, len(verdicts), f"{seconds:.3f}"])
    print(tabulate(table, headers=["round", "comparisons", "seconds"], tablefmt="github"))


if __name__ == "__main__":
    main()
