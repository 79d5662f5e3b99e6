"""The session's outputs: each item's record is collected from its test report, and when the
session ends results.json, the leaderboard, the plots, timings.json and the Markdown summary are
written from them.

Records travel on the report (as user properties) rather than through shared memory, so the
process that renders (the xdist controller) need not be the one that graded the item.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.plugin.reuse import BASELINE, CACHED, GRADED, REUSE, Reuse
from harness.plugin.session import SESSION, xdist_worker
from harness.render.outputs import write_outputs
from harness.render.plots import write_samples
from harness.render.summary import append_summary, render_summary
from harness.results.io import write_atomic, write_results
from harness.results.provenance import environment
from harness.text import safe_line

RECORD = "harness_record"
"""Name of the user property that carries an item's result record on its test report."""
SOURCE = "harness_source"
"""User property saying where a reused record came from (absent: graded in this run)."""
TIMING = "harness_timing"
"""User property of a graded item: its wall time and the worker's peak memory."""
TIMINGS_FILE = "timings.json"
"""Where those go: measured, so never part of the byte-stable outputs."""
CHANGED = "harness_changed"
"""User property, with ``--changed-since``: whether the item's submission changed."""
SEALED_RECORD = "harness_sealed_record"
"""In a contest, the user property that carries the private part's record (the published one,
:data:`RECORD`, holds the public part): written to the sealed folder only."""


@dataclass(eq=False)  # registered as a plugin, so hashed by identity
class Results:
    """What the items' reports brought in; a plugin, since only a report carries a record."""

    summary_md: Path | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[str, set[str]] = field(default_factory=dict)
    """Where each submission's records came from: GRADED, CACHED or BASELINE."""
    changed_names: set[str] = field(default_factory=set)
    """Submissions reported changed by their items: the process that renders (the xdist
    controller) need not be one that collected them."""
    timings: list[dict[str, Any]] = field(default_factory=list)
    """Wall time and peak memory of each item graded in this run."""
    sealed: list[dict[str, Any]] = field(default_factory=list)
    """In a contest, the private part's records."""

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect each item's record from its report, where every item's result arrives."""
        properties: dict[str, Any] = dict(report.user_properties)
        record = properties.get(RECORD)
        if report.when != "call" or record is None:
            return
        self.records.append(record)
        if SEALED_RECORD in properties:
            self.sealed.append(properties[SEALED_RECORD])
        if TIMING in properties:
            self.timings.append({"submission": record["submission"], "track": record["track"],
                                 **properties[TIMING]})
        self.sources.setdefault(record["submission"], set()).add(properties.get(SOURCE, GRADED))
        if properties.get(CHANGED):
            self.changed_names.add(record["submission"])


RESULTS = pytest.StashKey[Results]()


def pytest_configure(config: pytest.Config) -> None:
    if SESSION in config.stash:
        summary_md = config.getoption("harness_summary_md")
        config.stash[RESULTS] = Results(summary_md=Path(summary_md) if summary_md else None)
        config.pluginmanager.register(config.stash[RESULTS], "harness-results")


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if RESULTS not in config.stash or xdist_worker(config):  # the controller renders
        return
    results, grading, reuse = config.stash[RESULTS], config.stash[SESSION], config.stash[REUSE]
    if not results.records:
        return
    graded = {record["track"] for record in results.records}
    tracks = [t for t in grading.benchmark.tracks if t.name in graded]
    # A run narrowed by -k or -x ranks on the tracks it graded, not on tracks it skipped. The
    # hashes are of those tracks' files, by content, so they do not depend on which process read
    # what: under -n K this process (the controller) grades nothing and reads them here.
    hashes = {f.path.name: grading.store.get(f, t.num_classes).sha256
              for t in tracks for f in t.data_files()}
    benchmark = {"name": grading.benchmark.name, "tracks": [t.name for t in tracks],
                 "data_hashes": dict(sorted(hashes.items())), "provenance": environment()}
    probing = time.monotonic()
    retuning = reuse.yardsticks(tracks)
    if retuning is not None:
        benchmark["retuning"] = retuning
    yardstick_seconds = round(time.monotonic() - probing, 3)
    out = grading.out
    out.mkdir(parents=True, exist_ok=True)
    rendering = time.monotonic()
    write_results(out / "results.json", benchmark, results.records)
    write_outputs(out, benchmark, results.records)
    write_samples(out, tracks, grading.store)
    if grading.sealed is not None:
        # The yardstick above is the public part's: the private board shows the same row.
        grading.sealed.mkdir(parents=True, exist_ok=True)
        write_results(grading.sealed / "results.json", benchmark, results.sealed)
    timings = {"items": sorted(results.timings, key=lambda item: (item["submission"],
                                                                   item["track"])),
               "render_seconds": round(time.monotonic() - rendering, 3),
               "yardstick_seconds": yardstick_seconds}
    write_atomic(out / TIMINGS_FILE, json.dumps(timings, indent=2) + "\n")
    graded_now = {name for name, sources in results.sources.items() if GRADED in sources}
    if results.summary_md is not None:
        append_summary(results.summary_md,
                       render_summary(benchmark, results.records, graded_now))
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(_sources_line(results, reuse))
        reporter.write_sep("-", f"leaderboard: {out / 'leaderboard.md'}")


def _sources_line(results: Results, reuse: Reuse) -> str:
    """One line saying which submissions were graded now and where the others' records came
    from (a submission resumed halfway appears under both). Names are folder names, chosen by
    teams: each is one safe line."""
    def names(source: str) -> str:
        found = sorted(safe_line(name) for name, sources in results.sources.items()
                       if source in sources)
        return ", ".join(found) or "none"

    parts = []
    if reuse.changed_since is not None:
        changed = ", ".join(sorted(map(safe_line, results.changed_names))) or "none"
        parts.append(f"changed since {reuse.changed_since}: {changed}")
    parts.append(f"graded: {names(GRADED)}")
    if reuse.session.cache is not None:
        parts.append(f"from cache: {names(CACHED)}")
    if reuse.baseline is not None:
        parts.append(f"from baseline {reuse.baseline.path}: {names(BASELINE)}")
    return "harness: " + "; ".join(parts)
