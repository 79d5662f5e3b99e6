"""The grading session: the benchmark, the options, and what every item shares (the decoded data,
the mixed image files, the retuning probe's worker, the result cache).

Configured first (``tryfirst``): every other harness plugin is active only when this one found a
benchmark to grade on (``SESSION`` in ``config.stash``), and builds on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from harness import __version__
from harness.contest.split import load_split
from harness.definitions.data import DataStore
from harness.definitions.tracks import Benchmark, Track, load_benchmark
from harness.errors import BenchmarkError
from harness.grading.handover import Handover
from harness.grading.item import GradeOptions
from harness.options import (
    ALLOW_UNSAFE,
    ALLOW_UNSANDBOXED,
    ENV_CACHE,
    IMAGE_TIMEOUT,
    NO_BUILD,
    NO_RETUNE,
    SAMPLE,
    TRACK_TIMEOUT,
    Option,
)
from harness.results.cache import FOLDER_NAME, ResultCache
from harness.sandbox.environments import EnvironmentStore
from harness.sandbox.isolation import Limits, detect
from harness.sandbox.runner import Workers
from harness.synthetic.materialize import generate_missing


@dataclass(eq=False)
class Session:
    """What one grading session's items share."""

    benchmark: Benchmark[Track]
    out: Path
    grading: GradeOptions
    cache: ResultCache | None
    store: DataStore
    handover: Handover
    """The mixed images that items are graded on."""
    probe_handover: Handover
    """The images the retuning probe answers (a sample of each test set) and retuning sets."""
    probe_workers: Workers = field(default_factory=Workers)
    """The retuning probe's worker, kept for the submission's next track (single-threaded)."""
    sealed: Path | None = None
    """In a contest, where the private part's results go (the published ones hold the public
    part only); None outside a contest."""

    def close(self) -> None:
        self.probe_workers.close()
        self.probe_handover.close()
        self.handover.close()
        self.store.close()


SESSION = pytest.StashKey[Session]()

IMAGES = "harness_images"
"""Key of the controller's mixed-image folder in an xdist worker's ``workerinput``."""
DECODED = "harness_decoded"
"""Key of the controller's folder of decoded data sets in an xdist worker's ``workerinput``."""


def xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def xdist_controller(config: pytest.Config) -> bool:
    """Whether this process hands items to pytest-xdist workers (``-n K``) and grades none."""
    return not xdist_worker(config) and config.getoption("dist", "no") != "no"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    benchmark_path = config.getoption("harness_benchmark")
    if benchmark_path is None:
        return
    try:
        benchmark = load_benchmark(Path(benchmark_path))
    except BenchmarkError as exc:
        raise pytest.UsageError(str(exc)) from None
    grading = grade_options(config)
    out = Path(config.getoption("harness_out"))
    split_record, sealed = config.getoption("harness_split"), config.getoption("harness_sealed")
    if (split_record is None) != (sealed is None):
        raise pytest.UsageError("--harness-split and --harness-sealed go together")
    if split_record is not None and getattr(config.option, "xmlpath", None):
        # The private part's records ride on the reports, which a JUnit XML report prints.
        raise pytest.UsageError("a contest's grading writes no JUnit XML report")
    cache = None
    # A cached record holds one part only: a contest grades every version afresh.
    if not config.getoption("harness_no_cache") and split_record is None:
        cache = ResultCache(Path(config.getoption("harness_cache") or out / FOLDER_NAME))
    store = _data_store(config, cache)
    split = None
    if split_record is not None:
        try:
            generate_missing(benchmark)
            split = load_split(Path(split_record), benchmark, store)
        except BenchmarkError as exc:
            raise pytest.UsageError(str(exc)) from None
    images = _images_folder(config, cache)
    config.stash[SESSION] = Session(
        benchmark=benchmark, out=out, grading=grading, cache=cache, store=store,
        handover=Handover(store, grading.sample, folder=images, split=split),
        probe_handover=Handover(store, grading.probe_sample, folder=images, split=split),
        sealed=None if sealed is None else Path(sealed))


def grade_options(config: pytest.Config) -> GradeOptions:
    """The grading options given to the plugin, each read by its entry in the table
    (:mod:`harness.options`); those that enter the cache key are read back by
    :attr:`harness.options.Keyed.value`."""

    def given(option: Option) -> Any:
        return config.getoption(option.plugin_dest)

    limits = Limits(image_timeout=given(IMAGE_TIMEOUT), track_timeout=given(TRACK_TIMEOUT),
                    allow_unsandboxed=given(ALLOW_UNSANDBOXED))
    return GradeOptions(allow_unsafe=given(ALLOW_UNSAFE), sample=given(SAMPLE), limits=limits,
                        environments=EnvironmentStore(given(ENV_CACHE)),
                        build=not given(NO_BUILD), retune=not given(NO_RETUNE))


def pytest_report_header(config: pytest.Config) -> list[str]:
    if SESSION not in config.stash:
        return []
    session = config.stash[SESSION]
    names = ", ".join(t.name for t in session.benchmark.tracks)
    cache = f"cache: {session.cache.folder}" if session.cache else "cache: off"
    mode = detect()
    return [f"benchmark: {session.benchmark.name} ({session.benchmark.root}): {names}",
            f"harness {__version__}; results to {session.out.resolve()}; {cache}",
            *([mode.note] if mode.bwrap else [])]  # a warning was printed to stderr already


@pytest.hookimpl(trylast=True)  # after the items' backend has stopped using the files
def pytest_unconfigure(config: pytest.Config) -> None:
    if SESSION in config.stash:
        config.stash[SESSION].close()


def _images_folder(config: pytest.Config, cache: ResultCache | None) -> Path | None:
    """Where the mixed image files go: the controller's folder in an xdist worker, else the
    cache's ``images/`` (shared with later runs), else (no cache) a temporary folder."""
    workerinput = getattr(config, "workerinput", {})
    if IMAGES in workerinput:
        return Path(workerinput[IMAGES])
    return cache.folder / "images" if cache is not None else None


def _data_store(config: pytest.Config, cache: ResultCache | None) -> DataStore:
    """Where the data sets are decoded (:class:`DataStore`): the controller's folder in an xdist
    worker, else the cache's ``decoded/`` (shared with later runs), else, for an xdist
    controller without cache, a temporary folder it hands to its workers and removes at the end;
    a serial run without cache decodes in memory."""
    workerinput = getattr(config, "workerinput", {})
    if DECODED in workerinput:
        return DataStore(Path(workerinput[DECODED]))
    if cache is not None:
        return DataStore(cache.folder / "decoded")
    return DataStore(temporary=xdist_controller(config))


class WorkerNode(Protocol):
    """What the plugin uses of pytest-xdist's controller-side view of a worker."""

    config: pytest.Config
    workerinput: dict[str, str]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: WorkerNode) -> None:
    """xdist: every worker writes and reads mixed image files in the controller's folder, so a
    file is written once per run however many workers need it (see :class:`Handover`)."""
    if SESSION in node.config.stash:
        session = node.config.stash[SESSION]
        node.workerinput[IMAGES] = str(session.handover.folder)
        if session.store.folder is not None:  # data sets too: decoded once, memory-mapped by all
            node.workerinput[DECODED] = str(session.store.folder)

