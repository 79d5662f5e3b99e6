"""``python -m harness bench --end-to-end``: a whole grading run against its arithmetic floor.

It grades a submissions folder with the real command, then times the raw loop
(:func:`harness.bench.inference.raw_loop`) on a track's BadNet right after. The pure functions
here turn the run's ``results.json`` and ``timings.json`` and that speed into the tables; they are
unit-tested on hand-made files.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.bench.inference import DEFAULT_TRACK, Rounds, bench_entry, cpu_name, raw_loop
from harness.bench.processes import LoadSampler, SandboxCPU
from harness.definitions.data import DataStore
from harness.definitions.tracks import load_benchmark
from harness.errors import HarnessError
from harness.grading.handover import Handover
from harness.grading.item import input_scale
from harness.results.io import read_results
from harness.results.record import Record


def _children_cpu_seconds() -> float:
    """CPU seconds of this process's finished descendants that were waited for: a grading
    run's processes, but not the sandboxed workers under them (see
    :func:`harness.bench.processes.sandboxed`)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
                raw = raw_loop(entry.path, entry, measured, scale, cpu)
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
            f"{os.cpu_count()} cores ({cpu_name()}); load average (1 min) during the run and "
            f"the raw loop: {low:.1f}-{high:.1f}, median {statistics.median(result.load):.1f} "
            f"({len(result.load)} samples)")
