"""Grading as a pytest plugin: one test item per submission x track.

pytest already solves collection, selection (``-k``), stopping early (``-x``), reporting and
JUnit XML; the grader only teaches it that a ``submission.toml`` is a file of tests, one per track
of the benchmark. Records of every item (passed or failed) are kept, and the leaderboard is
rendered from them when the session ends.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness import __version__
from harness.data import DataStore
from harness.errors import BenchmarkError, HarnessError, SubmissionError
from harness.grading import grade_track, load_predictor
from harness.report import error_record, ok_record, write_leaderboard, write_results
from harness.submissions import MANIFEST, Submission, load_submission
from harness.tracks import Benchmark, Track, load_benchmark


@dataclass(eq=False)  # registered as a plugin, so hashed by identity
class GradingState:
    """What one grading session shares between its items."""

    benchmark: Benchmark
    out: Path
    allow_unsafe: bool
    store: DataStore = field(default_factory=DataStore)
    records: list[dict[str, Any]] = field(default_factory=list)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect each item's record from its report, where every item's result arrives.

        Records travel on the report rather than through shared memory, so the process that
        renders the leaderboard need not be the one that graded the item.
        """
        record = dict(report.user_properties).get(RECORD)
        if report.when == "call" and record is not None:
            self.records.append(record)


STATE = pytest.StashKey[GradingState]()
RECORD = "harness_record"
"""Name of the user property that carries an item's result record on its test report."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "backdoor-grader")
    group.addoption("--harness-benchmark", metavar="PATH", help="benchmark folder to grade on")
    group.addoption("--harness-out", metavar="DIR", default=".",
                    help="where results.json and leaderboard.md are written")
    group.addoption("--harness-allow-unsafe-models", action="store_true",
                    help="load models with Lambda layers (arbitrary code)")


def pytest_configure(config: pytest.Config) -> None:
    benchmark_path = config.getoption("harness_benchmark")
    if benchmark_path is None:
        return
    try:
        benchmark = load_benchmark(Path(benchmark_path))
    except BenchmarkError as exc:
        raise pytest.UsageError(str(exc)) from None
    state = GradingState(
        benchmark=benchmark, out=Path(config.getoption("harness_out")),
        allow_unsafe=config.getoption("harness_allow_unsafe_models"))
    config.stash[STATE] = state
    config.pluginmanager.register(state, "harness-records")


def pytest_report_header(config: pytest.Config) -> list[str]:
    if STATE not in config.stash:
        return []
    state = config.stash[STATE]
    names = ", ".join(t.name for t in state.benchmark.tracks)
    return [f"benchmark: {state.benchmark.name} ({state.benchmark.root}): {names}",
            f"harness {__version__}; results to {state.out.resolve()}"]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name == MANIFEST and STATE in parent.config.stash:
        return SubmissionFile.from_parent(parent, path=file_path)
    return None


class SubmissionFile(pytest.File):
    """A submission folder's manifest: yields one item per track of the benchmark."""

    def collect(self):
        submission = load_submission(self.path)
        for track in self.config.stash[STATE].benchmark.tracks:
            yield TrackItem.from_parent(self, name=track.name, submission=submission,
                                        track=track)


class TrackItem(pytest.Item):
    """Grade one submission on one track; fails when the submission cannot answer."""

    def __init__(self, *, submission: Submission, track: Track, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.submission = submission
        self.track = track
        self.scores: dict[str, Any] | None = None

    def runtest(self) -> None:
        state = self.config.stash[STATE]
        try:
            entry = self.submission.entry(self.track.name)
            predict = load_predictor(entry, self.track, allow_unsafe=state.allow_unsafe)
            self.scores = grade_track(predict, self.track, state.store)
        except BenchmarkError:
            raise
        except Exception as exc:  # untrusted models fail in arbitrary ways inside TensorFlow
            message = str(exc) if isinstance(exc, SubmissionError) else _one_line(exc)
            # Paths relative to the submission folder: the leaderboard must not depend on where
            # the grader's checkout lives.
            message = message.replace(f"{self.submission.root.resolve()}{os.sep}", "")
            self.user_properties.append(
                (RECORD, error_record(self.submission.meta, self.track.name, message)))
            raise SubmissionError(message) from None
        finally:
            _release_models()
        self.user_properties.append(
            (RECORD, ok_record(self.submission.meta, self.track.name, self.scores)))
        for key in ("clean_acc", "asr", "detect_rate", "utility"):  # JUnit XML shows these
            self.user_properties.append((key, self.scores[key]))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:
        if isinstance(excinfo.value, HarnessError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.submission.name} on {self.track.name}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300]


def _release_models() -> None:
    """Drop the finished item's graph so a long run does not accumulate models in memory."""
    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Read (and check) the data of every selected track once, before any item runs."""
    if STATE not in session.config.stash:
        return
    state = session.config.stash[STATE]
    tracks = {item.track.name: item.track for item in session.items
              if isinstance(item, TrackItem)}
    try:
        if tracks and state.benchmark.generate:
            from harness.benchmark.materialize import ensure_generated

            ensure_generated(state.benchmark)
        for track in tracks.values():
            for data_file in track.data_files():
                state.store.get(data_file, track.num_classes)
    except BenchmarkError as exc:
        pytest.exit(f"benchmark error: {exc}", returncode=2)


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    """Show each item's scores (or its one-line error) on its line of the session."""
    if report.when != "call" or STATE not in config.stash:
        return None
    record = dict(report.user_properties).get(RECORD)
    if report.passed and record is not None:
        word = (f"clean {record['clean_acc']:.3f}  ASR {record['asr']:.3f}  "
                f"detect {record['detect_rate']:.3f}  utility {record['utility']:.3f}")
        return "passed", ".", (word, {"green": True})
    if report.failed:
        return "failed", "F", (f"FAILED ({report.longreprtext})", {"red": True})
    return None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if STATE not in session.config.stash:
        return
    state = session.config.stash[STATE]
    if not state.records:
        return
    graded = {record["track"] for record in state.records}
    # A run narrowed by -k or -x ranks on the tracks it graded, not on tracks it skipped.
    benchmark = {"name": state.benchmark.name,
                 "tracks": [t.name for t in state.benchmark.tracks if t.name in graded],
                 "data_hashes": state.store.hashes()}
    state.out.mkdir(parents=True, exist_ok=True)
    write_results(state.out / "results.json", benchmark, state.records)
    write_leaderboard(state.out / "leaderboard.md", benchmark, state.records)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("-", f"leaderboard: {state.out / 'leaderboard.md'}")
