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

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

from harness.cli import benchmark_folder, submissions_folder
from harness.errors import HarnessError, UsageError, positive_int
from harness.grading.handover import Handover
from harness.grading.item import GradeOptions, answer, input_scale, score_answers
from harness.nets.quiet import import_tensorflow
from harness.options import BENCHMARK, add_arguments
from harness.results.io import read_results
from harness.results.record import Record
from harness.sandbox.runner import Workers
from harness.spec.data import DataStore
from harness.spec.submissions import TrackEntry
from harness.spec.tracks import Benchmark, Track, load_benchmark
from harness.synthetic.materialize import generate_missing

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
        parents: dict[int, int] = {}
        peaks: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            parents[int(entry.name)] = int(fields.get("PPid", "0"))
            peaks[int(entry.name)] = int(fields.get("VmHWM", "0 kB").split()[0]) * 1024
        for pid, peak in peaks.items():
            ancestor = parents.get(pid, 0)
            while ancestor not in (0, 1, os.getpid()):
                ancestor = parents.get(ancestor, 0)
            if ancestor == os.getpid() and pid != os.getpid():
                self.peak = max(self.peak, peak)


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


def _children_cpu_seconds() -> float:
    """CPU seconds of this process's finished descendants that were waited for: a grading
    run's processes, but not the sandboxed workers under them (see :func:`sandboxed`)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _raw_loop(model_path: Path, entry: TrackEntry, track: Track, scale: float,
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
                    raw = _raw_loop(entry.path, entry, track, scale)
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


def _cpu_name() -> str:
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
            f"{rounds} rounds; {os.cpu_count()} cores ({_cpu_name()}); Python "
            f"{platform.python_version()}, TensorFlow {metadata.version('tensorflow')}; "
            f"load average per round: {', '.join(f'{x:.1f}' for x in result.load)}")


# End to end: the whole grading run against its arithmetic floor ----------------------------------
#
# ``python -m harness bench --end-to-end`` grades a submissions folder with the real command, then
# times the raw loop on a track's BadNet right after. The pure functions below turn the run's
# ``results.json`` and ``timings.json`` and that speed into the table; they are unit-tested on
# hand-made files.


def record_images(record: Mapping[str, Any]) -> int:
    """Images an item answered: its clean and poisoned test images."""
    return int(record["n_clean"]) + int(record["n_poisoned"])


def badnet_macs(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Multiply-adds per image of each track's BadNet, from the run's ``badnet`` rows (the entry
    whose model file is the track's BadNet itself)."""
    found: dict[str, float] = {}
    for record in records:
        if (record.get("status") == "ok" and record.get("badnet")
                and record.get("macs_per_image") is not None):
            found.setdefault(record["track"], float(record["macs_per_image"]))
    return found


@dataclass(frozen=True)
class Work:
    """The network arithmetic a run did, summed over its OK records."""

    macs: float
    """Σ macs_per_image × (n_clean + n_poisoned), over OK records whose MACs are known."""
    passes: float
    """Σ passes_per_image × images: calls of a network (outermost Keras call)."""
    badnet_passes: float
    """Σ record MACs / the BadNet's MACs per image of the record's track: the same arithmetic
    counted in passes of the BadNet (STRIP's nine passes inside one graph count nine)."""
    images: int
    ok: int
    errors: int
    unknown: int
    """OK records without ``macs_per_image`` (a graph that could not be traced): left out of
    ``macs`` and ``badnet_passes``, so the floor is too low by their share."""


def work(records: Sequence[Mapping[str, Any]], reference_macs: float) -> Work:
    """What the records add up to. A track without a BadNet row of its own counts its
    BadNet-equivalent passes in ``reference_macs`` (the measured track's BadNet)."""
    per_track = badnet_macs(records)
    macs = passes = badnet_passes = 0.0
    images = ok = errors = unknown = 0
    for record in records:
        if record.get("status") != "ok":
            errors += 1
            continue
        ok += 1
        count = record_images(record)
        images += count
        if record.get("passes_per_image") is not None:
            passes += float(record["passes_per_image"]) * count
        if record.get("macs_per_image") is None:
            unknown += 1
            continue
        total = float(record["macs_per_image"]) * count
        macs += total
        badnet_passes += total / per_track.get(record["track"], reference_macs)
    return Work(macs=macs, passes=passes, badnet_passes=badnet_passes, images=images, ok=ok,
                errors=errors, unknown=unknown)


def floor_seconds(macs: float, raw_macs_per_second: float) -> float:
    """The run's arithmetic at the raw loop's pace: the least wall time any grader could take.

    No division by the number of grading processes: the raw loop runs in one process whose
    TensorFlow already uses every core (its thread pools default to them; the table shows the
    cores it kept busy), so ``-n K`` shares the same arithmetic rate instead of multiplying it.
    """
    return macs / raw_macs_per_second


@dataclass(frozen=True)
class ItemTiming:
    submission: str
    track: str
    seconds: float
    startup: float
    answering: float
    peak_rss: int | None


@dataclass(frozen=True)
class Timings:
    """A run's ``timings.json``: each graded item's wall time and parts, and the rendering."""

    items: list[ItemTiming]
    render_seconds: float


def _part(value: Any) -> float:
    """A part of an item's time; null for an item that failed before it had one (its time then
    counts whole in the rest of the items)."""
    return 0.0 if value is None else float(value)


def read_timings(path: Path) -> Timings:
    """Read ``timings.json``; a file without the fields this needs is a one-line error."""

    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        items = [ItemTiming(submission=str(item["submission"]), track=str(item["track"]),
                            seconds=float(item["seconds"]), startup=_part(item["startup"]),
                            answering=_part(item["answering"]),
                            peak_rss=None if item.get("peak_rss") is None
                            else int(item["peak_rss"]))
                 for item in payload["items"]]
        return Timings(items=items, render_seconds=float(payload["render_seconds"]))
    except OSError as exc:
        raise HarnessError(f"cannot read {path}: {exc}") from exc
    except (ValueError, TypeError, KeyError) as exc:
        raise HarnessError(f"{path} lacks what bench needs ({type(exc).__name__}: {exc}): each "
                           "item's seconds, startup and answering, and render_seconds") from exc


@dataclass(frozen=True)
class Share:
    name: str
    seconds: float

    def of(self, wall: float) -> float:
        return self.seconds / wall


def shares(wall: float, timings: Timings, processes: int = 1) -> list[Share]:
    """Where the wall time went. Serially the parts add up to ``wall`` exactly: the items'
    start-up (asking the worker to load the entry until it had), answering (from then to the
    last answer), the rest of each item (hand-over, scoring), rendering the outputs, and what is
    left (Python's start, collection, reading the data and writing the mixed image files). An
    item that failed before its worker loaded (or answered) has no start-up (or answering): its
    time counts in the rest of the items.

    With ``processes`` > 1 the item parts are summed over the processes and divided by their
    number: the wall time of one process, on average, if they overlapped perfectly.
    """
    startup = sum(item.startup for item in timings.items) / processes
    answering = sum(item.answering for item in timings.items) / processes
    items = sum(item.seconds for item in timings.items) / processes
    return [Share("worker start-up", startup),
            Share("answering", answering),
            Share("rest of the items (hand-over, scoring, failed items)",
                  items - startup - answering),
            Share("rendering (results, board, CSV, page, plots)", timings.render_seconds),
            Share("left (Python start, collection, data, mixed files)",
                  wall - items - timings.render_seconds)]


@dataclass
class EndToEnd:
    """What :func:`end_to_end` measured; :func:`end_to_end_table` renders it."""

    command: list[str]
    exit_code: int
    wall: float
    processes: int
    records: list[Record]
    timings: Timings
    track: str
    """The track whose BadNet the raw loop ran."""
    raw_images: int
    run_cpu: float = 0.0
    """CPU seconds of the whole run: the grading process(es) and every sandboxed worker (polled
    every half second, see :class:`SandboxCPU`)."""
    raw: Rounds = field(default_factory=Rounds)
    raw_cpu: list[float] = field(default_factory=list)
    """CPU seconds of each raw pass's forward passes (all of TensorFlow's threads)."""
    load: list[float] = field(default_factory=list)
    """1-minute load average, sampled every few seconds while the run and the raw loop ran."""

    @property
    def badnet_macs(self) -> float:
        return badnet_macs(self.records)[self.track]

    @property
    def raw_macs_per_second(self) -> float:
        return max(self.raw.rates) * self.badnet_macs

    @property
    def raw_macs_per_cpu_second(self) -> float:
        """The raw loop's arithmetic per CPU second (best pass): what load from other processes
        changes far less than its pace per wall second."""
        return max(self.raw_images / used for used in self.raw_cpu) * self.badnet_macs

    @property
    def raw_cores(self) -> float:
        """Cores the fastest raw pass kept busy (CPU seconds per wall second)."""
        best = self.raw.rates.index(max(self.raw.rates))
        return self.raw_cpu[best] / self.raw.seconds[best]

    @property
    def cpu_floor(self) -> float:
        return floor_seconds(self.work.macs, self.raw_macs_per_cpu_second)

    @property
    def work(self) -> Work:
        return work(self.records, self.badnet_macs)

    @property
    def floor(self) -> float:
        return floor_seconds(self.work.macs, self.raw_macs_per_second)


def pick_track(records: Sequence[Mapping[str, Any]], wanted: str | None) -> str:
    """The track whose BadNet the raw loop runs: ``wanted``, else sunglasses, else the first
    track (by name) with a BadNet row; the run must have graded that row for its MACs."""

    found = badnet_macs(records)
    if wanted is not None:
        if wanted not in found:
            raise HarnessError(f"the run graded no BadNet row (with MACs) on track {wanted!r}: "
                               "grade the BadNet itself (the no-defense reference) on it")
        return wanted
    if not found:
        failed = sum(record.get("status") != "ok" for record in records)
        raise HarnessError("the run graded no BadNet row (with MACs) on any track: include the "
                           "BadNet itself (the no-defense reference) in the submissions "
                           f"({failed} of {len(records)} items failed)")
    return DEFAULT_TRACK if DEFAULT_TRACK in found else sorted(found)[0]


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


def proc_stat(text: str) -> tuple[str, int, float, int]:
    """``/proc/PID/stat`` as (command name, parent pid, CPU ticks used (user + system), start
    time in ticks): the name is in parentheses and may hold spaces, so fields count from the
    last ``)``."""
    name = text[text.index("(") + 1:text.rindex(")")]
    rest = text[text.rindex(")") + 2:].split()
    return name, int(rest[1]), float(int(rest[11]) + int(rest[12])), int(rest[19])


def sandboxed(processes: Mapping[int, tuple[str, int]], root: int) -> set[int]:
    """Of ``processes`` (pid: (name, parent pid)), the descendants of ``root`` below a ``bwrap``
    process: the sandbox's own init and the worker under it. bubblewrap does not reap its init
    before it exits, so their CPU time never reaches the grading process's children's usage
    (``RUSAGE_CHILDREN``) and must be read while they run."""
    found = set()
    for pid in processes:
        ancestor, below_bwrap = processes[pid][1], False
        while ancestor in processes and ancestor != root:
            below_bwrap |= processes[ancestor][0] == "bwrap"
            ancestor = processes[ancestor][1]
        if ancestor == root and below_bwrap:
            found.add(pid)
    return found


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
        stats: dict[int, tuple[str, int, float, int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stats[int(entry.name)] = proc_stat((entry / "stat").read_text())
                except (OSError, ValueError, IndexError):
                    continue
        tree = {pid: (name, parent) for pid, (name, parent, _, _) in stats.items()}
        for pid in sandboxed(tree, os.getpid()):
            _, _, ticks, started = stats[pid]
            key = (pid, started)
            self._used[key] = max(self._used.get(key, 0.0), ticks)


def grade_command(submissions: Path, benchmark: Path, out: Path, processes: int = 0,
                  sample: int | None = None) -> list[str]:
    """The real grading command, into a fresh folder, reusing nothing; without the retuning
    probe, whose fine-tuning and single-threaded answers are no part of the grading floor (its
    cost is in ``timings.json``'s ``probe`` and docs/performance.md)."""
    command = [sys.executable, "-m", "harness", "grade", str(submissions), "--benchmark",
               str(benchmark), "--out", str(out), "--no-cache", "--no-retune"]
    if processes:
        command += ["-n", str(processes)]
    if sample:
        command += ["--sample", str(sample)]
    return command


def end_to_end(benchmark_dir: Path, submissions: Path, track: str | None = None,
               processes: int = 0, sample: int | None = None, rounds: int = 3,
               say: Callable[[str], None] = print) -> EndToEnd:
    """Grade ``submissions`` with ``python -m harness grade`` (timed whole, in a subprocess),
    then time the raw loop ``rounds`` times on a track's BadNet over its full test images."""
    with tempfile.TemporaryDirectory(prefix="harness-bench-e2e-") as temporary:
        folder = Path(temporary)
        command = grade_command(submissions, benchmark_dir, folder / "out", processes, sample)
        say("$ " + " ".join(command))
        with LoadSampler() as load:
            start, children = time.perf_counter(), _children_cpu_seconds()
            with SandboxCPU() as sandbox:
                code = subprocess.run(command, check=False).returncode
            wall = time.perf_counter() - start
            run_cpu = _children_cpu_seconds() - children + sandbox.seconds
            if code not in (0, 1):  # 1: some submission failed, its row is an error row
                raise HarnessError(f"the grading run exited {code}")
            _, records = read_results(folder / "out" / "results.json")
            timings = read_timings(folder / "out" / "timings.json")
            name = pick_track(records, track)
            say(f"graded in {wall:.1f} s (exit {code}); raw loop on the BadNet of {name}")
            measured = load_benchmark(benchmark_dir).track(name)
            entry, _ = bench_entry(measured, None, folder)
            handover = Handover(DataStore())
            try:
                images = np.load(handover.images(measured).path, mmap_mode="r")
                result = EndToEnd(command=command, exit_code=code, wall=wall,
                                  processes=max(processes, 1), records=records,
                                  timings=timings, track=name, raw_images=len(images),
                                  run_cpu=run_cpu)
                scale = input_scale(entry, measured)
                cpu: list[float] = []
                raw = _raw_loop(entry.path, entry, measured, scale, cpu)
                for number in range(1, rounds + 1):
                    seconds, _ = raw(images)
                    result.raw.add(len(images) / seconds, seconds)
                    result.raw_cpu.append(cpu[-1])
                    say(f"raw loop {number}/{rounds}: {len(images) / seconds:,.0f} images/s, "
                        f"{cpu[-1] / seconds:.1f} cores busy")
            finally:
                handover.close()
        result.load = load.samples
    return result




def _si(value: float, unit: str = "") -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:,.2f} {prefix}{unit}"
    return f"{value:,.0f} {unit}".rstrip()


def _items(count: int) -> str:
    return f"{count} item" if count == 1 else f"{count} items"


def _seconds(value: float) -> str:
    return f"{value:,.1f} s" if value >= 10 else f"{value:.3g} s"


def end_to_end_table(result: EndToEnd) -> str:
    """Two Markdown tables: the run against its floor, and where its wall time went."""
    from tabulate import tabulate

    done = result.work
    wall, floor = result.wall, result.floor
    mode = "serial" if result.processes == 1 else f"-n {result.processes}"
    answering = sum(item.answering for item in result.timings.items) / result.processes
    rows = [
        (f"wall time of the run ({_items(len(result.records))}, {mode})", _seconds(wall)),
        ("floor: its multiply-adds at the raw loop's pace", _seconds(floor)),
        ("wall / floor", f"{wall / floor:.2f}"),
        ("answering / floor", f"{answering / floor:.2f}"),
        ("CPU time of the run (grading processes and workers)", _seconds(result.run_cpu)),
        ("CPU floor: its multiply-adds at the raw loop's MACs per CPU second",
         _seconds(result.cpu_floor)),
        ("CPU time / CPU floor", f"{result.run_cpu / result.cpu_floor:.2f}"),
        (f"multiply-adds ({done.ok} OK records, {done.images:,} images)", _si(done.macs)),
        ("network passes (Σ passes/image × images)", f"{done.passes:,.0f}"),
        ("in BadNet passes (Σ MACs / BadNet MACs per image)", f"{done.badnet_passes:,.0f}"),
        (f"raw loop on the BadNet of {result.track} ({result.raw_images:,} images), best of "
         f"{len(result.raw.rates)}", f"{max(result.raw.rates):,.0f} images/s"),
        ("raw loop, median", f"{statistics.median(result.raw.rates):,.0f} images/s"),
        ("cores the raw loop kept busy (CPU s / wall s)",
         f"{result.raw_cores:.1f} of {os.cpu_count()}"),
        ("BadNet multiply-adds per image (its row in the run)", _si(result.badnet_macs)),
        ("raw multiply-adds per second", _si(result.raw_macs_per_second, "/s")),
        ("raw multiply-adds per CPU second", _si(result.raw_macs_per_cpu_second, "/s")),
    ]
    if done.errors or done.unknown:
        rows.append(("records left out: errors; OK without MACs", f"{done.errors}; {done.unknown}"))
    parts = shares(wall, result.timings, result.processes)
    share_rows = [(part.name, _seconds(part.seconds), f"{part.of(wall):.1%}") for part in parts]
    share_rows.append(("wall time", _seconds(wall), "100.0%"))
    first = tabulate(rows, headers=("whole run", "value"), tablefmt="pipe",
                     disable_numparse=True, colalign=("left", "right"))
    second = tabulate(share_rows, headers=("wall time", "seconds", "share"), tablefmt="pipe",
                      disable_numparse=True, colalign=("left", "right", "right"))
    return first + "\n\n" + second


def end_to_end_header(result: EndToEnd) -> str:
    """The command, the machine and its load."""
    low, high = min(result.load), max(result.load)
    return (f"python {' '.join(result.command[1:])} (exit {result.exit_code}); "
            f"{os.cpu_count()} cores ({_cpu_name()}); load average (1 min) during the run and "
            f"the raw loop: {low:.1f}-{high:.1f}, median {statistics.median(result.load):.1f} "
            f"({len(result.load)} samples)")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser(
        "bench", help="measure grading speed against a raw TensorFlow loop",
        description="Time the grader's inference path (sandboxed worker) and a raw tf.function "
                    "loop on the same model and images, alternating, and print a table. With "
                    "--end-to-end: grade SUBMISSIONS with the real command (fresh --out, "
                    "--no-cache), then time the raw loop on a track's BadNet, and print the "
                    "run's wall time against its floor (its multiply-adds at the raw loop's "
                    "pace) and where the wall time went.")
    bench.add_argument("submissions", nargs="?", metavar="SUBMISSIONS",
                       help="with --end-to-end: the folder to grade (default: submissions)")
    bench.add_argument("--end-to-end", action="store_true",
                       help="time a whole grading run of SUBMISSIONS against its floor")
    add_arguments(bench, (BENCHMARK,))
    bench.add_argument("--track", help="track whose test images to answer (default: "
                                       "sunglasses; with --end-to-end: whose BadNet the raw "
                                       "loop runs, sunglasses or the first with a BadNet row)")
    bench.add_argument("--model", help="Keras model file (default: the track's BadNet)")
    bench.add_argument("--rounds", type=int, default=3,
                       help="rounds of each (default 3); with --end-to-end: raw loop passes, the "
                            "best counts")
    bench.add_argument("-n", "--numprocesses", metavar="K", type=int, default=0,
                       help="with --end-to-end: grade in K processes (grade -n K)")
    bench.add_argument("--sample", metavar="K", type=positive_int,
                       help="with --end-to-end: grade K images per test set (grade --sample K)")
    bench.set_defaults(run=run)


def run(args: argparse.Namespace, passthrough: list[str]) -> int:
    if not args.end_to_end:
        used = [flag for flag, value in (("SUBMISSIONS", args.submissions),
                                         ("-n", args.numprocesses), ("--sample", args.sample))
                if value]
        if used:
            raise UsageError(f"{', '.join(used)}: only with --end-to-end")
    elif args.model:
        raise UsageError("--model: not with --end-to-end (it grades a folder)")
    track = args.track or (None if args.end_to_end else DEFAULT_TRACK)
    benchmark = load_benchmark(benchmark_folder(args))
    if track is not None:
        benchmark.track(track)
    if args.end_to_end:
        submissions = submissions_folder(args.submissions or "submissions")
        import_tensorflow()
        whole = end_to_end(benchmark_folder(args), submissions, track, args.numprocesses,
                           args.sample, args.rounds)
        print()
        print(end_to_end_header(whole))
        print()
        print(end_to_end_table(whole))
        return 0
    generate_missing(benchmark)
    import_tensorflow()
    model = Path(args.model) if args.model else None
    result = measure(benchmark, track or DEFAULT_TRACK, model, rounds=args.rounds)
    print()
    print(header(result, args.rounds))
    print()
    print(table(result))
    return 0
