"""What the processes under a measured one use, read from ``/proc`` while they run.

A grading run's sandboxed workers are not its children's children as the kernel accounts them:
bubblewrap does not reap its init before it exits, so their CPU time never reaches
``RUSAGE_CHILDREN``, and a child's ``ru_maxrss`` starts at its parent's size. So the
measurements (``harness bench``, scripts/scale_contest.py, scripts/memory_peak.py) poll
``/proc`` instead, all through :func:`processes` and :func:`tree`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

PROC = Path("/proc")


@dataclass(frozen=True)
class Process:
    """One process, from its ``/proc/PID/stat``."""

    name: str
    """The command name (at most 15 characters; may hold spaces)."""
    parent: int
    ticks: float
    """CPU ticks used, user and system."""
    started: int
    """Start time in ticks after boot: with the pid, names the process (pids are reused)."""


def proc_stat(text: str) -> Process:
    """``/proc/PID/stat`` as a :class:`Process`: the name is in parentheses and may hold spaces,
    so fields count from the last ``)``."""
    name = text[text.index("(") + 1:text.rindex(")")]
    rest = text[text.rindex(")") + 2:].split()
    return Process(name=name, parent=int(rest[1]), ticks=float(int(rest[11]) + int(rest[12])),
                   started=int(rest[19]))


def processes() -> dict[int, Process]:
    """Every process now (one that exits while it is read is left out)."""
    found = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = proc_stat((entry / "stat").read_text())
            except (OSError, ValueError, IndexError):
                continue
    return found


def tree(root: int, table: Mapping[int, Process]) -> dict[int, list[int]]:
    """The processes of ``table`` under ``root`` (``root`` itself included), each with its line
    of descent: ``[pid, parent, ..., root]``."""
    lines = {}
    for pid in table:
        line = [pid]
        while line[-1] != root and line[-1] in table and len(line) <= len(table):
            line.append(table[line[-1]].parent)
        if line[-1] == root:
            lines[pid] = line
    return lines


def sandboxed(table: Mapping[int, Process], root: int) -> set[int]:
    """The processes under ``root`` below a ``bwrap`` process: the sandbox's own init and the
    worker under it."""
    return {pid for pid, line in tree(root, table).items()
            if any(table[ancestor].name == "bwrap" for ancestor in line[1:-1])}


def status_bytes(pid: int, field: str) -> int:
    """A size field of ``/proc/PID/status`` (``VmRSS``, ``VmHWM``) in bytes; 0 for a process
    gone meanwhile."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return 0


class Poller:
    """Calls :meth:`sample` every ``interval`` seconds in a thread, while the ``with`` lasts."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def sample(self) -> None:
        raise NotImplementedError


class DescendantPeak(Poller):
    """Peak RSS of this process's descendants (the sandboxed worker), polled from ``/proc``.

    ``RUSAGE_CHILDREN`` cannot tell it: a child's ``ru_maxrss`` starts at the parent's RSS when
    it forks (the kernel carries the high-water mark across ``exec``), so it would report the
    grading process's own size whenever that is the larger.
    """

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(interval)
        self.peak = 0

    def sample(self) -> None:
        me = os.getpid()
        for pid in tree(me, processes()):
            if pid != me:
                self.peak = max(self.peak, status_bytes(pid, "VmHWM"))


class SandboxCPU(Poller):
    """CPU seconds of the sandboxed processes under this one, polled from ``/proc`` every
    ``interval`` seconds (the last moments of each are lost: a worker idles before it exits)."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(interval)
        self._used: dict[tuple[int, int], float] = {}

    @property
    def seconds(self) -> float:
        return sum(self._used.values()) / os.sysconf("SC_CLK_TCK")

    def sample(self) -> None:
        table = processes()
        for pid in sandboxed(table, os.getpid()):
            key = (pid, table[pid].started)
            self._used[key] = max(self._used.get(key, 0.0), table[pid].ticks)


class LoadSampler(Poller):
    """The 1-minute load average every ``interval`` seconds, and at both ends."""

    def __init__(self, interval: float = 5.0) -> None:
        super().__init__(interval)
        self.samples: list[float] = [os.getloadavg()[0]]

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.sample()

    def sample(self) -> None:
        self.samples.append(os.getloadavg()[0])
