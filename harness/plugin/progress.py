"""What the terminal shows while grading: a progress bar over each item's images (on the
terminal ``harness grade`` hands over, since pytest captures the process's own), and each item's
scores or one-line error on its line of the session (one safe line: the error quotes the
submission's code or log).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import pytest
from tqdm import tqdm

from harness.plugin.results import RECORD, SOURCE
from harness.plugin.reuse import BASELINE, CACHED, GRADED
from harness.plugin.session import SESSION, xdist_worker
from harness.text import safe_line

TERMINAL = pytest.StashKey[TextIO]()
"""The terminal for progress bars (absent: no bars, e.g. output is not a terminal)."""


def pytest_configure(config: pytest.Config) -> None:
    fd = config.getoption("harness_progress_fd")
    if SESSION in config.stash and fd is not None and not xdist_worker(config):
        config.stash[TERMINAL] = os.fdopen(fd, "w", closefd=False)  # xdist workers have none


@contextmanager
def bar(config: pytest.Config, what: str, total: int
        ) -> Iterator[Callable[[int], None] | None]:
    """A tqdm bar over an item's images, cleared when the item ends (None: no terminal)."""
    stream = config.stash.get(TERMINAL, None)
    if stream is None:
        yield None
        return
    with tqdm(total=total, desc=what, unit="img", leave=False, file=stream) as progress:
        yield progress.update


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config
                             ) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
    """Show each item's scores (or its one-line error) on its line of the session."""
    if report.when != "call" or SESSION not in config.stash:
        return None
    properties: dict[str, Any] = dict(report.user_properties)
    record = properties.get(RECORD)
    source = properties.get(SOURCE, GRADED)
    reused = {CACHED: "  (cached)", BASELINE: "  (from baseline)"}.get(source, "")
    if report.passed and record is not None:
        word = (f"clean {record['clean_acc']:.3f}  ASR {record['asr']:.3f}  "
                f"detect {record['detect_rate']:.3f}  utility {record['utility']:.3f}")
        return "passed", ".", (word + reused, {"green": True})
    if report.failed:
        # str(longrepr), not longreprtext: under xdist the latter starts with the worker's name
        return "failed", "F", (f"FAILED ({safe_line(report.longrepr)}){reused}", {"red": True})
    return None
