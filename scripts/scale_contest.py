"""Scale test: generate a contest of N submissions x every track and grade it, timed.

Each generated submission copies one of the reference submissions in ``submissions/`` (in turn)
with every weight multiplied by ``1 + 0.02 z`` (``z`` seeded Gaussian noise), so every file is new
to the grader and its result cache while the models stay working repairs. Multiplicative noise
keeps pruned (zero) weights at zero and the pruning-aware BadNet's -1e20 biases finite; additive
noise scaled by an array's spread turns those into NaN outputs.
The contest is graded twice with the same cache folder: cold (every item graded, which costs what
``--no-cache`` costs) and warm (every record reused, no model loaded). For each run the script
prints wall time, items per minute, and peak memory: the largest single process and the largest
sum over the grading process tree at one moment (K workers under ``-n K`` add up).

Usage (about 9 minutes on 2 cores with the defaults; see docs/performance.md):

    nice -n 10 python scripts/scale_contest.py --teams 100 --sample 500 -n 2 --out /tmp/scale
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import tomli_w

from harness.bench.processes import Poller, processes, status_bytes, tree

REPO = Path(__file__).resolve().parents[1]
NOISE = 0.02
"""Relative perturbation of each weight (standard deviation of the Gaussian factor - 1)."""


def generate(references: Path, out: Path, teams: int, seed: int) -> Path:
    """Write ``teams`` submissions under ``out/submissions`` (skipped if already complete)."""
    from harness.nets.deepid import save_legacy_h5
    from harness.sandbox.models import load_model_file

    folder = out / "submissions"
    done = folder / ".complete"
    if done.is_file() and int(done.read_text()) == teams:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    sources = sorted(p.parent for p in references.glob("*/submission.toml"))
    models: dict[Path, object] = {}
    for number in range(teams):
        source = sources[number % len(sources)]
        manifest = tomllib.loads((source / "submission.toml").read_text())
        target = folder / f"team-{number:04d}"
        target.mkdir(parents=True)
        rng = np.random.default_rng([seed, number])
        for _, entry in sorted(manifest["tracks"].items()):
            path = source / entry["model"]
            if path not in models:
                models[path] = load_model_file(path)
            model = models[path]
            original = model.get_weights()
            model.set_weights([(w * (1 + rng.normal(0, NOISE, w.shape))).astype(w.dtype)
                               for w in original])
            if path.suffix == ".h5":
                save_legacy_h5(model, target / path.name)
            else:
                model.save(target / path.name)
            model.set_weights(original)
        manifest.update(team=f"team {number:04d}", reference=False,
                        method=f"{manifest['method']} (perturbed)")
        (target / "submission.toml").write_text(tomli_w.dumps(manifest))
        print(f"generated {number + 1}/{teams}", end="\r", flush=True)
    done.write_text(str(teams))
    print()
    return folder


class TreeMemory(Poller):
    """Peak RSS of one process and of its whole tree, polled from /proc."""

    def __init__(self, root: int, interval: float = 0.5) -> None:
        super().__init__(interval)
        self.root = root
        self.single = self.total = 0

    def sample(self) -> None:
        sizes = [status_bytes(pid, "VmRSS") for pid in tree(self.root, processes())]
        if sizes:
            self.single = max(self.single, max(sizes))
            self.total = max(self.total, sum(sizes))


def grade(submissions: Path, out: Path, args: argparse.Namespace) -> dict[str, float]:
    """One ``harness grade`` run (cache in ``out/cache``), timed, with its peak memory."""
    command = [sys.executable, "-m", "harness", "grade", str(submissions), "--out", str(out),
               "--cache", str(out.parent / "cache"), "-q"]
    if args.sample:
        command += ["--sample", str(args.sample)]
    if args.n:
        command += ["-n", str(args.n)]
    if args.no_retune:
        command.append("--no-retune")
    start = time.perf_counter()
    with open(out.parent / f"{out.name}.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        with TreeMemory(process.pid) as memory:
            code = process.wait()
    seconds = time.perf_counter() - start
    return {"exit": code, "seconds": seconds, "single": memory.single, "total": memory.total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", type=int, default=100)
    parser.add_argument("--sample", type=int, default=500,
                        help="images per test set (0: every image)")
    parser.add_argument("-n", type=int, default=2, help="grading processes (0: serial)")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--no-retune", action="store_true",
                        help="grade without the retuning probe (as the documented table was)")
    parser.add_argument("--references", type=Path, default=REPO / "submissions")
    parser.add_argument("--out", type=Path, default=Path("/tmp/harness-scale"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    submissions = generate(args.references, args.out, args.teams, args.seed)
    print(f"contest: {args.teams} submissions in {submissions} "
          f"({time.perf_counter() - start:.0f} s to generate)", flush=True)
    shutil.rmtree(args.out / "cache", ignore_errors=True)
    rows = []
    for name in ("cold", "warm"):
        result = grade(submissions, args.out / name, args)
        rows.append((name, result))
        print(f"{name}: exit {result['exit']}, {result['seconds']:.0f} s", flush=True)
    same = all((args.out / "cold" / name).read_bytes() == (args.out / "warm" / name).read_bytes()
               for name in ("results.json", "leaderboard.md"))
    print(f"warm results identical to cold: {'yes' if same else 'NO'}")
    items = args.teams * len(list((REPO / "data" / "tracks").glob("*.toml")))
    mib = 1 << 20
    print(f"\n{args.teams} submissions x 5 tracks = {items} items; sample "
          f"{args.sample or 'all'} per test set; -n {args.n}; {os.cpu_count()} cores\n")
    print("| run | wall time | items/min | s per item | peak RSS, one process | "
          "peak RSS, process tree |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, result in rows:
        label = {"cold": "cold cache (grades every item)", "warm": "warm cache (reuses all)"}[name]
        print(f"| {label} | {result['seconds'] / 60:.1f} min | "
              f"{items / result['seconds'] * 60:.0f} | {result['seconds'] / items:.2f} | "
              f"{result['single'] / mib:,.0f} MiB | {result['total'] / mib:,.0f} MiB |")


if __name__ == "__main__":
    main()
