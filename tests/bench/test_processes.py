"""The /proc walk of :mod:`harness.bench.processes`, on hand-made process tables and on this
process."""

from __future__ import annotations

from harness.bench.processes import Process, proc_stat, processes, sandboxed, tree


def test_proc_stat_reads_names_with_spaces() -> None:
    text = ("4242 (python -m x) S 4200 4242 4200 0 -1 4194304 100 0 0 0 "
            "150 30 0 0 20 0 12 0 987654 1000000 500 18446744073709551615")
    assert proc_stat(text) == Process(name="python -m x", parent=4200, ticks=180.0,
                                    started=987654)


def test_sandboxed_processes_are_those_below_bwrap() -> None:
    table = {pid: Process(name, parent, ticks=0.0, started=0) for pid, (name, parent) in {
        10: ("python", 1),       # the grading process, child of this one (pid 1 here)
        11: ("bwrap", 10),       # outer bwrap: waited for, its CPU reaches RUSAGE_CHILDREN
        12: ("bwrap", 11),       # the sandbox's init
        13: ("python", 12),      # the worker
        14: ("git", 10),         # an ordinary child: waited for
        20: ("bwrap", 99), 21: ("python", 20),  # another session's sandbox
    }.items()}
    assert sandboxed(table, root=1) == {12, 13}
    assert tree(10, table) == {10: [10], 11: [11, 10], 12: [12, 11, 10], 13: [13, 12, 11, 10],
                               14: [14, 10]}


def test_this_process_is_in_its_own_tree() -> None:
    """The walk on the live /proc: this process and a child it started."""
    import os
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        found = tree(os.getpid(), processes())
        assert found[child.pid] == [child.pid, os.getpid()] and found[os.getpid()] == [os.getpid()]
    finally:
        child.kill()
        child.wait()
