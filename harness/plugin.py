"""Grading as a pytest plugin: one test item per submission x track.

pytest already solves collection, selection (``-k``), stopping early (``-x``), reporting and
JUnit XML; the grader only teaches it that a ``submission.toml`` is a file of tests, one per track
of the benchmark. Records of every item (passed or failed) are kept, and the leaderboard is
rendered from them when the session ends.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pytest
from tqdm import tqdm

from harness import __version__
from harness.errors import (
    BenchmarkError,
    HarnessError,
    SubmissionError,
    TransientSubmissionError,
    in_folder,
    one_line,
    positive_int,
)
from harness.grading.handover import Handover
from harness.grading.item import (
    MEASURED_KEYS,
    GradeOptions,
    environment_spec,
    grade_track,
    is_badnet,
    probe_track,
    score_answers,
    yardstick,
)
from harness.grading.ray_backend import RayBackend, dispatch
from harness.render.outputs import write_outputs
from harness.render.plots import write_samples
from harness.render.summary import append_summary, render_summary
from harness.results.cache import FOLDER_NAME, Baseline, ResultCache, cache_key, track_fingerprint
from harness.results.changes import changed_files
from harness.results.io import write_atomic, write_results
from harness.results.provenance import environment
from harness.results.record import error_record, ok_record, retuning_summary
from harness.sandbox.environments import EnvironmentStore
from harness.sandbox.isolation import Limits, detect
from harness.sandbox.retuning import BUDGET, budget_text
from harness.sandbox.retuning import FORMAT as RETUNING_FORMAT
from harness.sandbox.runner import Workers
from harness.spec.data import DataStore, sha256_file
from harness.spec.submissions import MANIFEST, Submission, TrackEntry, load_submission
from harness.spec.tracks import Benchmark, Track, load_benchmark


@dataclass(eq=False)  # registered as a plugin, so hashed by identity
class GradingState:
    """What one grading session shares between its items."""

    benchmark: Benchmark
    out: Path
    grading: GradeOptions
    store: DataStore = field(default_factory=DataStore)
    handover: Handover = field(init=False)
    records: list[dict[str, Any]] = field(default_factory=list)
    cache: ResultCache | None = None
    changed_since: str | None = None
    changed: set[Path] | None = None
    """Files changed since ``changed_since`` (None: every submission is graded)."""
    changed_names: set[str] = field(default_factory=set)
    """Submissions reported changed by their items: the process that renders (the xdist
    controller) need not be one that collected them."""
    baseline: Baseline | None = None
    baseline_note: str = ""
    """One line on the baseline in use, or why there is none (shown in the session header)."""
    summary_md: Path | None = None
    sources: dict[str, set[str]] = field(default_factory=dict)
    """Where each submission's records came from: GRADED, CACHED or BASELINE."""
    fingerprints: dict[str, dict[str, Any]] = field(default_factory=dict)
    timings: list[dict[str, Any]] = field(default_factory=list)
    """Wall time and peak memory of each item graded in this run."""
    workers: Workers = field(default_factory=Workers)
    """The worker kept for the submission's next track (model entries only)."""
    probe_handover: Handover = field(init=False)
    """The images the retuning probe answers (a sample of each test set) and retuning sets."""
    probe_workers: Workers = field(default_factory=Workers)
    """The retuning probe's worker, kept like :attr:`workers` (its own: single-threaded)."""
    ray: RayBackend | None = None
    """Where items are answered with ``--backend ray`` (None: here, in a local worker)."""
    progress: TextIO | None = None
    """The terminal for per-item progress bars (None: no bars, e.g. output is not a terminal)."""

    def __post_init__(self) -> None:
        self.handover = Handover(self.store, self.grading.sample)
        self.probe_handover = Handover(self.store, self.grading.probe_sample)

    def pytest_unconfigure(self) -> None:
        self.workers.close()
        self.probe_workers.close()
        self.probe_handover.close()
        if self.ray is not None:
            self.ray.close()
        self.handover.close()
        self.store.close()

    def grade(self, key: str, entry: TrackEntry, root: Path, track: Track
              ) -> tuple[dict[str, Any], bool]:
        """Scores of one entry on one track, the retuning probe's included, and whether they
        hold a failure that may not recur (the probe timed out). Answered here or, with Ray,
        on a cluster node (submitted by :func:`harness.grading.ray_backend.dispatch`; the probe runs
        here); scored here either way."""
        tracks = len(self.benchmark.tracks)
        if self.ray is None:
            total = len(self.handover.images(track).order)
            with _progress(self.progress, f"{root.name} on {track.name}", total) as update:
                scores = grade_track(entry, root, track, self.handover, self.grading, update,
                                     self.workers, tracks)
        else:
            mixed = self.handover.images(track)
            if key not in self.ray.pending:
                self.ray.submit(key, entry, root, track, mixed, self.grading)
            scores = score_answers(track, mixed, self.store, self.ray.answers(key))
        probe, transient = probe_track(entry, root, track, self.probe_handover, self.grading,
                                       self.probe_workers, tracks)
        return {**scores, **probe}, transient

    def yardsticks(self, tracks: list[Track]) -> dict[str, Any] | None:
        """The retuning probe's budget and each track's yardstick (the clean model probed), as
        ``results.json`` holds them; cached like records. None when no track has one."""
        found = {}
        for track in tracks:
            key = None
            if self.cache is not None and track.clean_model is not None:
                key = cache_key(f"yardstick:{track.name}", sha256_file(track.clean_model),
                                self.fingerprint(track), self.options())
                cached = self.cache.get_yardstick(key)
                if cached is not None:
                    found[track.name] = cached
                    continue
            value = yardstick(track, self.probe_handover, self.grading, self.probe_workers,
                              len(tracks))
            if value is None:
                continue
            found[track.name] = value
            if self.cache is not None and key is not None and value["error"] is None:
                self.cache.put(key, value, kind="yardstick")
        self.probe_workers.close()
        return retuning_summary(budget_text(), found) if found else None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect each item's record from its report, where every item's result arrives.

        Records travel on the report rather than through shared memory, so the process that
        renders the leaderboard need not be the one that graded the item.
        """
        properties = dict(report.user_properties)
        record = properties.get(RECORD)
        if report.when == "call" and record is not None:
            self.records.append(record)
            if TIMING in properties:
                self.timings.append({"submission": record["submission"],
                                     "track": record["track"], **properties[TIMING]})
            self.sources.setdefault(record["submission"], set()).add(
                properties.get(SOURCE, GRADED))
            if properties.get(CHANGED):
                self.changed_names.add(record["submission"])

    def is_changed(self, submission: Submission) -> bool:
        """Whether ``--changed-since`` asks for this submission to be graded (True without it)."""
        root = submission.root.resolve()
        return self.changed is None or any(path.is_relative_to(root) for path in self.changed)

    def options(self) -> dict[str, Any]:
        """The grading options that can change a record: each one is part of the cache key."""
        retune = None
        if self.grading.retune:
            retune = {**asdict(BUDGET), "format": RETUNING_FORMAT,
                      "sample": self.grading.probe_sample}
        return {"allow_unsafe": self.grading.allow_unsafe, "sample": self.grading.sample,
                "image_timeout": self.grading.limits.image_timeout, "retune": retune}

    def fingerprint(self, track: Track) -> dict[str, Any]:
        """The track's fingerprint (it hashes the BadNet: once per track and run)."""
        if track.name not in self.fingerprints:
            self.fingerprints[track.name] = track_fingerprint(track, self.store)
        return self.fingerprints[track.name]

    def key(self, submission: Submission, track: Track) -> str:
        """The cache key of an item; an entry's environment (by what it is built from: a named
        environment lives in the benchmark folder, outside the submission's digest) is part of
        it, and absent for the grader's own, so such keys are as they always were."""
        options = self.options()
        try:
            spec = environment_spec(submission.entry(track.name), submission.root, track)
        except SubmissionError:
            spec = None  # the item is an error row whatever the environment
        if spec is not None:
            options["environment"] = spec.key
        return cache_key(submission.name, submission.sha256, self.fingerprint(track), options)

    def earlier_record(self, submission: Submission, track: Track
                       ) -> tuple[dict[str, Any] | None, str]:
        """A record this run need not grade, and its source: the cache first (it matches every
        input), then the baseline for a submission unchanged since ``changed_since``."""
        if self.cache is not None:
            record = self.cache.get(self.key(submission, track))
            if record is not None:
                return record, CACHED
        if self.baseline is not None and not self.is_changed(submission):
            record = self.baseline.get({**submission.meta, "sample": self.grading.sample}, track,
                                       self.store)
            if record is not None:
                return record, BASELINE
        return None, GRADED


@contextmanager
def _progress(stream: TextIO | None, what: str, total: int
              ) -> Iterator[Callable[[int], object] | None]:
    """A tqdm bar over an item's images on ``stream``, cleared when the item ends."""
    if stream is None:
        yield None
        return
    with tqdm(total=total, desc=what, unit="img", leave=False, file=stream) as bar:
        yield bar.update


STATE = pytest.StashKey[GradingState]()
RECORD = "harness_record"
"""Name of the user property that carries an item's result record on its test report."""
SOURCE = "harness_source"
"""User property saying where a reused record came from (absent: graded in this run)."""
GRADED, CACHED, BASELINE = "graded", "cache", "baseline"
TIMING = "harness_timing"
"""User property of a graded item: its wall time and the worker's peak memory."""
TIMINGS_FILE = "timings.json"
"""Where those go: measured, so never part of the byte-stable outputs."""
CHANGED = "harness_changed"
"""User property, with ``--changed-since``: whether the item's submission changed."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "backdoor-grader")
    group.addoption("--harness-benchmark", metavar="PATH", help="benchmark folder to grade on")
    group.addoption("--harness-out", metavar="DIR", default=".",
                    help="where results.json and leaderboard.md are written")
    group.addoption("--harness-allow-unsafe-models", action="store_true",
                    help="load models with Lambda layers (arbitrary code)")
    group.addoption("--harness-progress-fd", metavar="FD", type=int,
                    help="terminal file descriptor for progress bars (set by harness grade)")
    group.addoption("--harness-sample", metavar="K", type=positive_int,
                    help="grade a stratified sample of K images per test set")
    group.addoption("--harness-image-timeout", metavar="S", type=float,
                    default=Limits.image_timeout, help="wall-clock seconds per image")
    group.addoption("--harness-track-timeout", metavar="S", type=float,
                    default=Limits.track_timeout,
                    help="wall-clock seconds per submission and track")
    group.addoption("--harness-cache", metavar="DIR",
                    help=f"result cache folder (default: {FOLDER_NAME} in the out folder)")
    group.addoption("--harness-no-cache", action="store_true",
                    help="neither read nor write the result cache")
    group.addoption("--harness-changed-since", metavar="REF",
                    help="grade only submissions changed since git REF; reuse the others' records")
    group.addoption("--harness-baseline", metavar="FILE",
                    help="results file for unchanged submissions missing from the cache "
                         "(default: results.json in the out folder, if present)")
    group.addoption("--harness-summary-md", metavar="FILE",
                    help="append a Markdown summary of the submissions graded in this run")
    group.addoption("--harness-env-cache", metavar="DIR",
                    help="folder of built environments (default: $HARNESS_ENV_CACHE, else "
                         "~/.cache/backdoor-grader/environments)")
    group.addoption("--harness-no-build", action="store_true",
                    help="never build an environment: entries whose environment is not built "
                         "fail with 'environment not built'")
    group.addoption("--harness-no-retune", action="store_true",
                    help="skip the retuning probe (P-ASR) and its yardstick")
    group.addoption("--harness-backend", choices=("local", "ray"), default="local",
                    help="where submissions are answered: local workers, or Ray tasks")
    group.addoption("--harness-ray-address", metavar="ADDRESS",
                    help="Ray cluster to use (default: RAY_ADDRESS, else a local instance)")
    group.addoption("--harness-ray-cpus", metavar="N", type=float, default=1.0,
                    help="CPUs Ray reserves per item (default 1)")


def pytest_configure(config: pytest.Config) -> None:
    benchmark_path = config.getoption("harness_benchmark")
    if benchmark_path is None:
        return
    try:
        benchmark = load_benchmark(Path(benchmark_path))
    except BenchmarkError as exc:
        raise pytest.UsageError(str(exc)) from None
    if benchmark.public:
        raise pytest.UsageError(f"{benchmark.root}: a public bundle has no hidden test sets to "
                                "grade on; grade with the organizers' benchmark")
    limits = Limits(image_timeout=config.getoption("harness_image_timeout"),
                    track_timeout=config.getoption("harness_track_timeout"))
    grading = GradeOptions(allow_unsafe=config.getoption("harness_allow_unsafe_models"),
                           sample=config.getoption("harness_sample"), limits=limits,
                           environments=EnvironmentStore(config.getoption("harness_env_cache")),
                           build=not config.getoption("harness_no_build"),
                           retune=not config.getoption("harness_no_retune"))
    state = GradingState(benchmark=benchmark, out=Path(config.getoption("harness_out")),
                         grading=grading)
    if not config.getoption("harness_no_cache"):
        state.cache = ResultCache(Path(config.getoption("harness_cache")
                                       or state.out / FOLDER_NAME))
    summary_md = config.getoption("harness_summary_md")
    state.summary_md = Path(summary_md) if summary_md else None
    state.changed_since = config.getoption("harness_changed_since")
    baseline = config.getoption("harness_baseline")
    if baseline is not None and state.changed_since is None:
        raise pytest.UsageError("--baseline is used only with --changed-since")
    if state.changed_since is not None:
        state.baseline, state.baseline_note = _baseline(
            Path(baseline) if baseline else state.out / "results.json",
            explicit=baseline is not None)
        # Here, not after collection: a bad ref is a usage error before any xdist worker starts.
        folders = [Path(arg.split("::")[0]) for arg in config.args]
        try:
            state.changed = changed_files(state.changed_since, [
                folder if folder.is_dir() else folder.parent for folder in folders])
        except HarnessError as exc:
            raise pytest.UsageError(str(exc)) from None
    state.store = _data_store(config, state)
    state.handover = Handover(state.store, grading.sample, folder=_images_folder(config, state))
    state.probe_handover = Handover(state.store, grading.probe_sample,
                                    folder=_images_folder(config, state))
    if config.getoption("harness_backend") == "ray":
        if _xdist_controller(config):
            raise pytest.UsageError("--backend ray spreads items over the cluster; drop -n")
        try:
            state.ray = RayBackend(config.getoption("harness_ray_address"),
                                   config.getoption("harness_ray_cpus"))
        except HarnessError as exc:
            raise pytest.UsageError(str(exc)) from None
    if _xdist_controller(config) and benchmark.generate:  # once, before the workers start
        from harness.synthetic.materialize import ensure_generated

        try:
            ensure_generated(benchmark)
        except BenchmarkError as exc:
            raise pytest.UsageError(str(exc)) from None
    config.stash[STATE] = state
    fd = config.getoption("harness_progress_fd")
    if fd is not None and not hasattr(config, "workerinput"):  # xdist workers have no terminal
        state.progress = os.fdopen(fd, "w", closefd=False)
    if detect().bwrap is None and not _xdist_worker(config):  # loud even under -q, said once
        print(f"harness: {detect().note}", file=sys.stderr)
    config.pluginmanager.register(state, "harness-records")


IMAGES = "harness_images"
"""Key of the controller's mixed-image folder in an xdist worker's ``workerinput``."""


def _xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _xdist_controller(config: pytest.Config) -> bool:
    """Whether this process hands items to pytest-xdist workers (``-n K``) and grades none."""
    return not _xdist_worker(config) and config.getoption("dist", "no") != "no"


def _images_folder(config: pytest.Config, state: GradingState) -> Path | None:
    """Where the mixed image files go: the controller's folder in an xdist worker, else the
    cache's ``images/`` (shared with later runs), else (no cache) a temporary folder."""
    workerinput = getattr(config, "workerinput", {})
    if IMAGES in workerinput:
        return Path(workerinput[IMAGES])
    return state.cache.folder / "images" if state.cache is not None else None


DECODED = "harness_decoded"
"""Key of the controller's folder of decoded data sets in an xdist worker's ``workerinput``."""


def _data_store(config: pytest.Config, state: GradingState) -> DataStore:
    """Where the data sets are decoded (:class:`DataStore`): the controller's folder in an xdist
    worker, else the cache's ``decoded/`` (shared with later runs), else, for an xdist
    controller without cache, a temporary folder it hands to its workers and removes at the end;
    a serial run without cache decodes in memory."""
    workerinput = getattr(config, "workerinput", {})
    if DECODED in workerinput:
        return DataStore(Path(workerinput[DECODED]))
    if state.cache is not None:
        return DataStore(state.cache.folder / "decoded")
    return DataStore(temporary=_xdist_controller(config))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: every worker writes and reads mixed image files in the controller's folder, so a
    file is written once per run however many workers need it (see :class:`Handover`)."""
    if STATE in node.config.stash:
        state = node.config.stash[STATE]
        node.workerinput[IMAGES] = str(state.handover.folder)
        if state.store.folder is not None:  # data sets too: decoded once, memory-mapped by all
            node.workerinput[DECODED] = str(state.store.folder)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """With ``--backend ray``, submit every item to the cluster before the first one runs."""
    state = session.config.stash.get(STATE, None)
    if state is not None and state.ray is not None and not session.config.option.collectonly:
        dispatch(state.ray, state, [item for item in session.items
                                    if isinstance(item, TrackItem)])


def _baseline(path: Path, *, explicit: bool) -> tuple[Baseline | None, str]:
    """Read the baseline now, before this run overwrites the results file it may be.

    A file the user named must exist (a typo would silently mean grading everything); one that
    exists but cannot serve (another format or harness version) only means grading more, so it
    is ignored with a note, like an unusable default.
    """
    if not path.is_file():
        if explicit:
            raise pytest.UsageError(f"--baseline: {path}: no such file")
        return None, f"baseline: none ({path} absent)"
    try:
        baseline = Baseline(path)
    except HarnessError as exc:
        return None, f"baseline: ignored: {exc}"
    return baseline, f"baseline: {path} ({len(baseline.records)} records)"


def pytest_report_header(config: pytest.Config) -> list[str]:
    if STATE not in config.stash:
        return []
    state = config.stash[STATE]
    names = ", ".join(t.name for t in state.benchmark.tracks)
    cache = f"cache: {state.cache.folder}" if state.cache else "cache: off"
    mode = detect()
    return [f"benchmark: {state.benchmark.name} ({state.benchmark.root}): {names}",
            f"harness {__version__}; results to {state.out.resolve()}; {cache}",
            *([mode.note] if mode.bwrap else []),  # a warning was printed to stderr already
            *([state.baseline_note] if state.baseline_note else [])]


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

    def runtest(self) -> None:
        """Reuse an earlier record (no model is loaded) or grade; either way, a failed record
        fails the item with its one-line message."""
        state = self.config.stash[STATE]
        record, source = state.earlier_record(self.submission, self.track)
        if record is None:
            record = self._grade(state)
        else:
            self.user_properties.append((SOURCE, source))
        if state.changed_since is not None:
            self.user_properties.append((CHANGED, state.is_changed(self.submission)))
        self.user_properties.append((RECORD, record))
        if record["status"] == "error":
            raise SubmissionError(record["error"])
        for key in ("clean_acc", "asr", "detect_rate", "utility"):  # JUnit XML shows these
            self.user_properties.append((key, record[key]))

    def _grade(self, state: GradingState) -> dict[str, Any]:
        """Grade now; store the record in the cache at once, so that a run killed later still
        keeps it, unless it is a failure that may not recur (a timeout)."""
        started = time.monotonic()
        took: dict[str, Any] = dict.fromkeys(MEASURED_KEYS)
        try:
            entry = self.submission.entry(self.track.name)
            scores, transient = state.grade(self.nodeid, entry, self.submission.root,
                                            self.track)
            took = {key: scores.pop(key) for key in MEASURED_KEYS}
        except BenchmarkError:
            raise
        except Exception as exc:  # untrusted models fail in arbitrary ways inside TensorFlow
            message = in_folder(one_line(exc), self.submission.root.resolve())
            record = error_record(self.submission.meta, self.track.name, message)
            cacheable = not isinstance(exc, TransientSubmissionError)
        else:
            badnet = is_badnet(entry, self.track, state.fingerprint(self.track)["badnet_sha256"])
            record = ok_record(self.submission.meta, self.track.name, scores,
                               sample=state.grading.sample, badnet=badnet)
            cacheable = not transient
        self.user_properties.append((TIMING, {"seconds": round(time.monotonic() - started, 3),
                                              **took}))
        if state.cache is not None and cacheable:
            try:
                state.cache.put(state.key(self.submission, self.track), record)
            except (OSError, TypeError, ValueError) as exc:  # a cache only saves time
                self.warn(pytest.PytestWarning(f"result cache: not stored: {exc}"))
        return record

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:
        if isinstance(excinfo.value, HarnessError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.submission.name} on {self.track.name}"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Read (and check) the data of every selected track once, before any item runs."""
    if STATE not in session.config.stash:
        return
    state = session.config.stash[STATE]
    tracks = {item.track.name: item.track for item in session.items
              if isinstance(item, TrackItem)}
    try:
        if tracks and state.benchmark.generate:
            from harness.synthetic.materialize import ensure_generated

            ensure_generated(state.benchmark)
        for track in tracks.values():
            for data_file in track.data_files():
                state.store.get(data_file, track.num_classes)
    except BenchmarkError as exc:
        pytest.exit(f"benchmark error: {exc}", returncode=2)
    _build_environments(session, state)


def _build_environments(session: pytest.Session, state: GradingState) -> None:
    """Build the environments the selected items need before the first item runs, one line
    each, so that minutes of installing show as such rather than as a slow item. A failure is
    kept and becomes the error row of each item that needs it."""
    if not state.grading.build or state.ray is not None:
        return
    specs = {}
    for item in session.items:
        if isinstance(item, TrackItem):
            try:
                entry = item.submission.entry(item.track.name)
                spec = environment_spec(entry, item.submission.root, item.track)
            except SubmissionError:
                continue
            if spec is not None and state.earlier_record(item.submission, item.track)[0] is None:
                specs[spec.key] = spec
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for spec in specs.values():
        store = state.grading.environments
        if store.get(spec) is not None:
            continue
        try:
            built = store.ensure(spec)
            line = f"harness: environment {spec.name}: {built.how}"
        except SubmissionError as exc:
            line = f"harness: {exc}"
        if reporter is not None:
            reporter.write_line(line)


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    """Show each item's scores (or its one-line error) on its line of the session."""
    if report.when != "call" or STATE not in config.stash:
        return None
    properties = dict(report.user_properties)
    record = properties.get(RECORD)
    reused = {CACHED: "  (cached)", BASELINE: "  (from baseline)"}.get(properties.get(SOURCE), "")
    if report.passed and record is not None:
        word = (f"clean {record['clean_acc']:.3f}  ASR {record['asr']:.3f}  "
                f"detect {record['detect_rate']:.3f}  utility {record['utility']:.3f}")
        return "passed", ".", (word + reused, {"green": True})
    if report.failed:
        # str(longrepr), not longreprtext: under xdist the latter starts with the worker's name
        return "failed", "F", (f"FAILED ({report.longrepr}){reused}", {"red": True})
    return None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if STATE not in session.config.stash:
        return
    state = session.config.stash[STATE]
    if not state.records or _xdist_worker(session.config):  # the controller renders
        return
    graded = {record["track"] for record in state.records}
    tracks = [t for t in state.benchmark.tracks if t.name in graded]
    # A run narrowed by -k or -x ranks on the tracks it graded, not on tracks it skipped. The
    # hashes are of those tracks' files, by content, so they do not depend on which process read
    # what: under -n K this process (the controller) grades nothing and reads them here.
    hashes = {f.path.name: state.store.get(f, t.num_classes).sha256
              for t in tracks for f in t.data_files()}
    benchmark = {"name": state.benchmark.name, "tracks": [t.name for t in tracks],
                 "data_hashes": dict(sorted(hashes.items())), "provenance": environment()}
    probing = time.monotonic()
    retuning = state.yardsticks(tracks)
    if retuning is not None:
        benchmark["retuning"] = retuning
    yardstick_seconds = round(time.monotonic() - probing, 3)
    state.out.mkdir(parents=True, exist_ok=True)
    rendering = time.monotonic()
    write_results(state.out / "results.json", benchmark, state.records)
    write_outputs(state.out, benchmark, state.records)
    write_samples(state.out, tracks, state.store)
    timings = {"items": sorted(state.timings, key=lambda item: (item["submission"],
                                                                 item["track"])),
               "render_seconds": round(time.monotonic() - rendering, 3),
               "yardstick_seconds": yardstick_seconds}
    write_atomic(state.out / TIMINGS_FILE, json.dumps(timings, indent=2) + "\n")
    graded_now = {name for name, sources in state.sources.items() if GRADED in sources}
    if state.summary_md is not None:
        append_summary(state.summary_md, render_summary(benchmark, state.records, graded_now))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(_sources_line(state))
        reporter.write_sep("-", f"leaderboard: {state.out / 'leaderboard.md'}")


def _sources_line(state: GradingState) -> str:
    """One line saying which submissions were graded now and where the others' records came
    from (a submission resumed halfway appears under both)."""
    def names(source: str) -> str:
        found = sorted(name for name, sources in state.sources.items() if source in sources)
        return ", ".join(found) or "none"

    parts = []
    if state.changed_since is not None:
        changed = ", ".join(sorted(state.changed_names)) or "none"
        parts.append(f"changed since {state.changed_since}: {changed}")
    parts.append(f"graded: {names(GRADED)}")
    if state.cache is not None:
        parts.append(f"from cache: {names(CACHED)}")
    if state.baseline is not None:
        parts.append(f"from baseline {state.baseline.path}: {names(BASELINE)}")
    return "harness: " + "; ".join(parts)
