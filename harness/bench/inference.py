"""``python -m harness bench``: how fast the grader answers images, against the hardware's pace.

The ceiling is a plain ``tf.function`` loop over ``model(x, training=False)`` on float32 batches
that are already in memory: no process start, no sandbox, no data handling, only the network.
The grader's own path is what a grading run does for one submission on one track: the track's
mixed image file, a sandboxed worker (:func:`harness.sandbox.runner.run_entry` through
:func:`harness.grading.item.grade_track`) and scoring. Both run on the same model and the same
images, alternating round by round, so that load from other processes on a shared machine hits both
alike; the table shows the best and the median round of each.

The worker's throughput is measured from its first streamed chunk of answers to its last, so it
excludes the worker's start-up (importing TensorFlow, loading the model, tracing) and the first
chunk; the whole item's wall time includes everything and is what a grading run pays per item.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.bench.processes import DescendantPeak
from harness.definitions.data import DataStore
from harness.definitions.submissions import TrackEntry
from harness.definitions.tracks import Benchmark, Track
from harness.grading.handover import Handover
from harness.grading.item import GradeOptions, answer, input_scale, score_answers
from harness.sandbox.runner import Workers

DEFAULT_TRACK = "sunglasses"
"""The track measured when none is named: in the embedded benchmark, with a BadNet."""

RAW_BATCH = 1024
"""Batch size of the reference loop: the fastest of 128, 512 and 1,024 (docs/performance.md)."""


@dataclass
class Rounds:
    """Per-round figures of one contender (higher is better for rates)."""

    rates: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def add(self, rate: float, seconds: float) -> None:
        self.rates.append(rate)
        self.seconds.append(seconds)


@dataclass
class Result:
    """What :func:`measure` found; :func:`table` renders it."""

    track: str
    model: str
    images: int
    raw: Rounds = field(default_factory=Rounds)
    steady: Rounds = field(default_factory=Rounds)
    item: Rounds = field(default_factory=Rounds)
    warm: Rounds = field(default_factory=Rounds)
    """Items answered by a worker that already answered one: a model entry's tracks after its
    first, as a run grades them (:class:`harness.sandbox.runner.Workers`)."""
    grader_rss: int = 0
    """Peak RSS of the grading process in bytes, measured before this process imports
    TensorFlow for the reference loop (a grading process never does)."""
    worker_rss: int = 0
    """Peak RSS of the sandboxed worker (see :class:`DescendantPeak`), in bytes."""
    labels_agree: bool = True
    load: list[float] = field(default_factory=list)
    """1-minute load average before each round: other work on the machine skews the figures."""


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def bench_entry(track: Track, model: Path | None, folder: Path) -> tuple[TrackEntry, Path]:
    """A one-file submission in ``folder`` answering ``track`` with ``model`` (default: the
    track's BadNet, as a full model or as weights for its architecture)."""
    source = model or track.badnet
    root = folder / "submission"
    root.mkdir()
    target = root / source.name
    shutil.copy(source, target)
    if model is None and track.badnet_architecture:
        return TrackEntry(kind="weights", path=target,
                          architecture=track.badnet_architecture), root
    return TrackEntry(kind="model", path=target), root


def _grader_round(entry: TrackEntry, root: Path, track: Track, handover: Handover,
                  options: GradeOptions, workers: Workers | None = None
                  ) -> tuple[float, float, np.ndarray]:
    """One grading item as :func:`harness.grading.item.grade_track` runs it, timed: (wall seconds,
    steady images/s, the worker's labels); in ``workers``' worker when given."""
    stamps: list[tuple[float, int]] = []

    def progress(count: int) -> None:
        stamps.append((time.perf_counter(), count))

    start = time.perf_counter()
    mixed = handover.images(track)
    answers = answer(entry, root, track, mixed.path, options, progress, workers)
    score_answers(track, mixed, handover.store, answers)
    wall = time.perf_counter() - start
    if len(stamps) < 2:  # one chunk only: no steady state to separate from the start-up
        return wall, len(answers.labels) / wall, answers.labels
    steady_images = sum(count for _, count in stamps[1:])
    return wall, steady_images / (stamps[-1][0] - stamps[0][0]), answers.labels


def _cpu_seconds() -> float:
    """CPU seconds of this process, all threads (TensorFlow's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raw_loop(model_path: Path, entry: TrackEntry, track: Track, scale: float,
              cpu: list[float] | None = None
              ) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """The reference: a traced forward pass over float32 batches prepared outside the clock.
    With ``cpu``, each call appends the CPU seconds (all threads) its forward passes took."""
    import tensorflow as tf

    from harness.nets.deepid import IMAGE_SHAPE, model_input
    from harness.sandbox import models

    model = models.load_entry_model(entry.kind, model_path, architecture=entry.architecture,
                                    num_classes=track.num_classes)

    @tf.function(input_signature=[tf.TensorSpec((None, *IMAGE_SHAPE), tf.float32)])
    def forward(x: tf.Tensor) -> tf.Tensor:
        return model(x, training=False)

    def run(images: np.ndarray) -> tuple[float, np.ndarray]:
        seconds, used, labels = 0.0, 0.0, []
        for start in range(0, len(images), RAW_BATCH):
            batch = tf.constant(model_input(images[start:start + RAW_BATCH], scale))
            begin, begin_cpu = time.perf_counter(), _cpu_seconds()
            labels.append(forward(batch).numpy().argmax(axis=1))
            seconds += time.perf_counter() - begin
            used += _cpu_seconds() - begin_cpu
        if cpu is not None:
            cpu.append(used)
        return seconds, np.concatenate(labels)

    run(images=np.zeros((RAW_BATCH, *IMAGE_SHAPE), np.uint8))  # trace outside the clock
    if cpu is not None:
        cpu.clear()
    return run


def measure(benchmark: Benchmark[Track], track_name: str, model: Path | None = None,
            rounds: int = 3, say: Callable[[str], None] = print) -> Result:
    """Alternate grader items and reference loops ``rounds`` times on one track's images."""
    track = benchmark.track(track_name)
    store = DataStore()
    options = GradeOptions()
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as temporary:
        folder = Path(temporary)
        entry, root = bench_entry(track, model, folder)
        handover = Handover(store, folder=folder / "images")
        try:
            mixed = handover.images(track)
            images = np.load(mixed.path, mmap_mode="r")
            result = Result(track=track.name, model=str(model or track.badnet),
                            images=len(images))
            scale = input_scale(entry, track)
            raw: Callable[[np.ndarray], tuple[float, np.ndarray]] | None = None
            for number in range(1, rounds + 1):
                result.load.append(os.getloadavg()[0])
                workers = Workers()
                try:
                    with DescendantPeak() as worker:
                        wall, rate, answers = _grader_round(entry, root, track, handover,
                                                            options, workers)
                        warm, _, again = _grader_round(entry, root, track, handover, options,
                                                       workers)
                finally:
                    workers.close()
                result.worker_rss = max(result.worker_rss, worker.peak)
                result.item.add(len(images) / wall, wall)
                result.warm.add(len(images) / warm, warm)
                result.steady.add(rate, len(images) / rate)
                result.labels_agree &= bool(np.array_equal(answers, again))
                if raw is None:
                    result.grader_rss = _maxrss()
                    raw = raw_loop(entry.path, entry, track, scale)
                seconds, labels = raw(images)
                result.raw.add(len(images) / seconds, seconds)
                result.labels_agree &= bool(np.array_equal(answers, labels))
                say(f"round {number}/{rounds}: grader item {wall:.1f} s (warm {warm:.1f} s), "
                    f"steady {rate:,.0f} images/s; raw loop {len(images) / seconds:,.0f} images/s "
                    f"(load {result.load[-1]:.1f})")
        finally:
            handover.close()
    return result


def _cell(rounds: Rounds) -> tuple[float, float]:
    return max(rounds.rates), statistics.median(rounds.rates)


def table(result: Result) -> str:
    """The Markdown table of a measurement, ratios relative to the reference loop."""
    raw_best, raw_median = _cell(result.raw)
    rows = [("raw tf.function loop, batch 1024 (in process, model only)", result.raw),
            ("grader inference path: sandboxed worker, steady state", result.steady),
            ("grader item: worker start-up + inference + scoring", result.item),
            ("grader item, warm worker (a submission's later tracks)", result.warm)]
    lines = ["| what | images/s best | images/s median | seconds (median) | "
             "best / raw best | median / raw median |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, rounds in rows:
        best, median = _cell(rounds)
        lines.append(f"| {name} | {best:,.0f} | {median:,.0f} | "
                     f"{statistics.median(rounds.seconds):.2f} | {best / raw_best:.2f} | "
                     f"{median / raw_median:.2f} |")
    overhead = statistics.median(result.item.seconds) - result.images / _cell(result.steady)[1]
    mib = 1 << 20
    lines += ["",
              "| per item | value |", "|---|---:|",
              f"| images answered | {result.images:,} |",
              f"| wall time (median) | {statistics.median(result.item.seconds):.2f} s |",
              f"| of which start-up, first chunk and scoring | {overhead:.2f} s |",
              f"| warm item wall time (median) | {statistics.median(result.warm.seconds):.2f} s |",
              f"| grader process peak RSS | {result.grader_rss / mib:,.0f} MiB |",
              f"| worker peak RSS (VmHWM) | {result.worker_rss / mib:,.0f} MiB |",
              f"| worker labels = raw loop labels | {'yes' if result.labels_agree else 'NO'} |"]
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def header(result: Result, rounds: int) -> str:
    """Where and on what the figures were taken."""
    from importlib import metadata

    return (f"track {result.track}, model {result.model}, {result.images:,} images; "
            f"{rounds} rounds; {os.cpu_count()} cores ({cpu_name()}); Python "
            f"{platform.python_version()}, TensorFlow {metadata.version('tensorflow')}; "
            f"load average per round: {', '.join(f'{x:.1f}' for x in result.load)}")
