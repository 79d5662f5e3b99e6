"""Peak memory of a command's process tree, counting shared pages once (PSS).

    python scripts/memory_peak.py [--interval 0.2] -- python -m harness grade submissions/ -n 2

Runs the command and samples, every ``--interval`` seconds, the proportional set size (``Pss:``
of ``/proc/PID/smaps_rollup``) of every process in its tree: a page shared by K processes (a
memory-mapped file, the page cache behind it, copy-on-write pages after a fork) counts 1/K in
each, so the sum over processes is what the tree really holds. Processes are grouped as

- *grading*: the command itself and its descendants outside a sandbox (with ``harness grade -n
  K``: the controller and the K pytest-xdist workers);
- *sandboxed workers*: ``bwrap`` and everything below it, or a ``harness.sandbox.worker`` process
  (the TensorFlow workers that answer images).

Prints a Markdown table of each group's peak sum (the maximum over samples of the group's sum),
the whole tree's peak sum, and the largest single process, then exits with the command's status.
docs/performance.md quotes it (## Memory).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass, field

from tabulate import tabulate

from harness.bench.processes import PROC, processes, tree

SANDBOXED, GRADING = "sandboxed workers", "grading"


@dataclass
class Peaks:
    """Maxima over samples, in KiB."""

    sums: dict[str, int] = field(default_factory=lambda: {GRADING: 0, SANDBOXED: 0, "all": 0})
    largest: dict[str, int] = field(default_factory=lambda: {GRADING: 0, SANDBOXED: 0})
    processes: dict[str, int] = field(default_factory=lambda: {GRADING: 0, SANDBOXED: 0})
    samples: int = 0


def _command(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _pss_kib(pid: int) -> int | None:
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _tree(root: int) -> dict[int, str]:
    """The processes under ``root`` (itself included), each with its group: sandboxed when it or
    one of its ancestors up to ``root`` is a ``bwrap`` or a worker."""
    table = processes()

    def sandbox(pid: int) -> bool:
        return table[pid].name == "bwrap" or "harness.sandbox.worker" in _command(pid).split()

    return {pid: SANDBOXED if any(sandbox(ancestor) for ancestor in line) else GRADING
            for pid, line in tree(root, table).items()}


def sample(root: int, peaks: Peaks) -> None:
    sums = {GRADING: 0, SANDBOXED: 0}
    counts = {GRADING: 0, SANDBOXED: 0}
    for pid, group in _tree(root).items():
        pss = _pss_kib(pid)
        if pss is None:
            continue
        sums[group] += pss
        counts[group] += 1
        peaks.largest[group] = max(peaks.largest[group], pss)
    for group, total in sums.items():
        peaks.sums[group] = max(peaks.sums[group], total)
        peaks.processes[group] = max(peaks.processes[group], counts[group])
    peaks.sums["all"] = max(peaks.sums["all"], sum(sums.values()))
    peaks.samples += 1


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between samples")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    started = time.monotonic()
    process = subprocess.Popen(command)
    peaks = Peaks()
    while process.poll() is None:
        sample(process.pid, peaks)
        time.sleep(args.interval)
    seconds = time.monotonic() - started
    rows = [[GRADING, _mib(peaks.sums[GRADING]), _mib(peaks.largest[GRADING]),
             peaks.processes[GRADING]],
            [SANDBOXED, _mib(peaks.sums[SANDBOXED]), _mib(peaks.largest[SANDBOXED]),
             peaks.processes[SANDBOXED]],
            ["all descendants", _mib(peaks.sums["all"]), "", ""]]
    print(tabulate(rows, headers=["processes", "peak PSS sum (MiB)", "largest process (MiB)",
                                  "most at once"], tablefmt="github", disable_numparse=True))
    print(f"{peaks.samples} samples every {args.interval:g} s over {seconds:.0f} s; exit "
          f"{process.returncode}")
    return process.returncode


if __name__ == "__main__":
    sys.exit(main())
