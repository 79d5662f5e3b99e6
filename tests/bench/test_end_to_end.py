"""The arithmetic that puts a whole grading run against its floor
(:mod:`harness.bench.end_to_end`), on hand-made results.json and timings.json files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.bench import end_to_end as bench
from harness.errors import HarnessError
from harness.grading.stats import newcombe_difference, pack_outcomes, wilson
from harness.results.io import read_results
from harness.results.record import error_record, ok_record

TRACKS = {"a": (100, 100), "b": (100, 300)}
"""Hand-made tracks: (n_clean, n_poisoned), so 200 and 400 images per item."""


def record(submission: str, track: str, macs: float | None = 1e6, passes: float = 1.0,
           badnet: bool = False, status: str = "ok") -> dict[str, Any]:
    """A record as the grader writes it; only the counts and the cost matter here."""
    meta = {"submission": submission, "team": submission, "method": "m", "reference": True,
            "sha256": "0" * 64}
    if status != "ok":
        return error_record(meta, track, "broken")
    n_clean, n_poisoned = TRACKS.get(track, (1, 1))
    right, hits = round(0.9 * n_clean), round(0.1 * n_poisoned)  # as a results file is checked
    scores = {"clean_acc": right / n_clean, "asr": hits / n_poisoned, "detect_rate": 0.0,
              "false_flag_rate": 0.0, "robust_acc": None,
              "utility": right / n_clean - hits / n_poisoned, "n_clean": n_clean,
              "n_poisoned": n_poisoned, "n_invalid": 0, "per_trigger": {"t": hits / n_poisoned},
              "clean_acc_ci": list(wilson(right, n_clean)),
              "asr_ci": list(wilson(hits, n_poisoned)),
              "utility_ci": list(newcombe_difference(right, n_clean, hits, n_poisoned)),
              "outcomes": {"clean": pack_outcomes(np.arange(n_clean) < right),
                           "attack": pack_outcomes(np.arange(n_poisoned) < hits)},
              "params": 1000, "macs_per_image": macs, "passes_per_image": passes}
    return ok_record(meta, track, scores, badnet=badnet)


RECORDS = [
    record("no-defense", "a", macs=1e6, badnet=True),         # 200 images: 2e8 MACs
    record("no-defense", "b", macs=2e6, badnet=True),         # 400 images: 8e8
    record("strip", "a", macs=9e6),                           # nine BadNet passes in one graph
    record("strip", "b", macs=18e6),                          # 1.8e9 and 7.2e9
    record("two-models", "a", macs=2e6, passes=2.0),          # a script calling two networks
    record("broken", "b", status="error"),
]
MACS = 2e8 + 8e8 + 1.8e9 + 7.2e9 + 4e8
TIMINGS = {
    "items": [
        {"submission": "no-defense", "track": "a", "seconds": 4.0, "startup": 2.5,
         "answering": 1.0, "peak_rss": 1 << 30},
        {"submission": "no-defense", "track": "b", "seconds": 3.0, "startup": 0.1,  # warm worker
         "answering": 2.5, "peak_rss": 1 << 30},
        {"submission": "strip", "track": "a", "seconds": 6.0, "startup": 3.0, "answering": 2.5,
         "peak_rss": None},
        {"submission": "strip", "track": "b", "seconds": 12.0, "startup": 0.2,
         "answering": 11.0, "peak_rss": 3 << 30},
        {"submission": "two-models", "track": "a", "seconds": 5.0, "startup": 1.0,
         "answering": 3.5, "peak_rss": None},
    ],
    "render_seconds": 2.5,
}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A run's output folder, written by hand: results.json and timings.json."""
    benchmark = {"name": "hand-made", "tracks": sorted(TRACKS), "data_hashes": {},
                 "provenance": {}}
    (tmp_path / "results.json").write_text(json.dumps(
        {"benchmark": benchmark, "harness_version": "0", "results": RECORDS}))
    (tmp_path / "timings.json").write_text(json.dumps(TIMINGS))
    return tmp_path


def test_work_adds_up_the_records(run: Path) -> None:
    _, records = read_results(run / "results.json")
    assert bench.badnet_macs(records) == {"a": 1e6, "b": 2e6}
    done = bench.work(records, reference_macs=1e6)
    assert done.macs == pytest.approx(MACS)
    assert done.passes == pytest.approx(200 + 400 + 200 + 400 + 2 * 200)
    # each record in its own track's BadNet passes: strip is nine per image
    assert done.badnet_passes == pytest.approx(200 + 400 + 9 * 200 + 9 * 400 + 2 * 200)
    assert (done.images, done.ok, done.errors, done.unknown) == (1400, 5, 1, 0)


def test_work_without_macs_or_a_badnet_row() -> None:
    records = [record("untraced", "a", macs=None), record("plain", "b", macs=4e6)]
    done = bench.work(records, reference_macs=1e6)  # no BadNet row: b counts in the reference
    assert (done.macs, done.badnet_passes, done.unknown) == (1.6e9, 1600, 1)


def test_floor_is_the_macs_at_the_raw_pace() -> None:
    # 1,000 images/s of a 1 M MAC BadNet: 1e9 MAC/s
    assert bench.floor_seconds(MACS, 1000 * 1e6) == pytest.approx(10.4)


def test_shares_add_up_to_the_wall_time(run: Path) -> None:
    timings = bench.read_timings(run / "timings.json")
    parts = {part.name.split(" (")[0]: part.seconds for part in bench.shares(40.0, timings)}
    assert parts == pytest.approx({"worker start-up": 6.8, "answering": 20.5,
                                   "rest of the items": 2.7, "rendering": 2.5, "left": 7.5})
    assert sum(parts.values()) == pytest.approx(40.0)


def test_shares_of_parallel_processes_are_per_process(run: Path) -> None:
    timings = bench.read_timings(run / "timings.json")
    parts = [part.seconds for part in bench.shares(40.0, timings, processes=2)]
    assert parts == pytest.approx([3.4, 10.25, 1.35, 2.5, 22.5])


def test_read_timings_needs_the_parts(tmp_path: Path) -> None:
    path = tmp_path / "timings.json"
    path.write_text(json.dumps({"items": [{"submission": "s", "track": "a", "seconds": 1.0,
                                           "peak_rss": None}]}))
    with pytest.raises(HarnessError, match="startup"):
        bench.read_timings(path)
    path.write_text(json.dumps({"items": [{"submission": "s", "track": "a", "seconds": 1.0,
                                           "startup": None, "answering": None,
                                           "peak_rss": None}], "render_seconds": 0.5}))
    failed = bench.read_timings(path)  # an item that failed before loading: its time is "rest"
    assert [part.seconds for part in bench.shares(2.0, failed)] == [0.0, 0.0, 1.0, 0.5, 0.5]
    with pytest.raises(HarnessError, match="cannot read"):
        bench.read_timings(tmp_path / "absent.json")


def test_pick_track() -> None:
    rows = [record("n", "a", badnet=True), record("n", "b", badnet=True)]
    assert bench.pick_track(rows, None) == "a"
    assert bench.pick_track([*rows, record("n", "sunglasses", badnet=True)],
                            None) == "sunglasses"
    assert bench.pick_track(rows, "b") == "b"
    with pytest.raises(HarnessError, match="no BadNet row"):
        bench.pick_track(rows, "c")
    with pytest.raises(HarnessError, match="no BadNet row"):
        bench.pick_track([record("n", "a")], None)


def test_grade_command_reuses_nothing() -> None:
    command = bench.grade_command(Path("subs"), Path("data"), Path("/tmp/o"), 2, 20)
    assert command[1:] == ["-m", "harness", "grade", "subs", "--benchmark", "data", "--out",
                           "/tmp/o", "--no-cache", "--no-retune", "-n", "2", "--sample", "20"]
    assert "-n" not in bench.grade_command(Path("subs"), Path("data"), Path("/tmp/o"))


def test_end_to_end_table(run: Path) -> None:
    _, records = read_results(run / "results.json")
    result = bench.EndToEnd(command=["python", "-m", "harness", "grade"], exit_code=1,
                            wall=40.0, processes=1, records=records,
                            timings=bench.read_timings(run / "timings.json"), track="a",
                            raw_images=25650, run_cpu=62.4, raw_cpu=[51.3, 57.7],
                            load=[2.0, 3.0])
    result.raw.add(1000.0, 25.65)
    result.raw.add(800.0, 32.0625)
    assert result.floor == pytest.approx(10.4)
    assert result.raw_cores == pytest.approx(2.0)              # 51.3 CPU s in 25.65 s
    assert result.raw_macs_per_cpu_second == pytest.approx(5e8)  # 25,650 images / 51.3 s
    assert result.cpu_floor == pytest.approx(20.8)
    text = bench.end_to_end_table(result)
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in text.splitlines()
            if line.startswith("| ")}
    assert rows["floor: its multiply-adds at the raw loop's pace"] == ["         10.4 s "]
    assert rows["wall / floor"][0].strip() == "3.85"                    # 40 / 10.4
    assert rows["answering / floor"][0].strip() == "1.97"               # 20.5 / 10.4
    assert rows["multiply-adds (5 OK records, 1,400 images)"][0].strip() == "10.40 G"
    assert rows["network passes (Σ passes/image × images)"][0].strip() == "1,600"
    assert rows["in BadNet passes (Σ MACs / BadNet MACs per image)"][0].strip() == "6,400"
    assert rows["raw loop, median"][0].strip() == "900 images/s"
    assert rows["CPU time / CPU floor"][0].strip() == "3.00"          # 62.4 / 20.8
    assert rows["cores the raw loop kept busy (CPU s / wall s)"][0].strip().startswith("2.0 of ")
    assert rows["raw multiply-adds per second"][0].strip() == "1.00 G/s"
    assert rows["records left out: errors; OK without MACs"][0].strip() == "1; 0"
    assert [cell.strip() for cell in rows["left (Python start, collection, data, mixed files)"]
            ] == ["7.5 s", "18.8%"]
    assert "load average (1 min) during the run and the raw loop: 2.0-3.0" in (
        bench.end_to_end_header(result))
