"""Grading in several processes (``-n K``) and on a Ray cluster gives the serial run's bytes;
mixed image files are content-addressed, written once and shared; ``harness bench`` reports."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from harness.definitions.data import sha256_file, write_once
from harness.definitions.tracks import load_benchmark
from harness.grading.handover import Handover
from tests.conftest import benchmark_subset, run_harness, write_submission

TRACKS = ["sunglasses", "anonymous_1"]
OUTPUTS = ("results.json", "leaderboard.md")


@pytest.fixture(scope="module")
def small(tiny_benchmark: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tracks; a working submission, a weights-only one and a broken one (an error row)."""
    root = tmp_path_factory.mktemp("parallel")
    bench = benchmark_subset(tiny_benchmark, root / "bench", TRACKS)
    tracks = load_benchmark(bench)
    subs = root / "submissions"
    write_submission(subs, "badnet", {n: {"model": f"{n}.h5"} for n in TRACKS},
                     {f"{n}.h5": tracks.track(n).badnet for n in TRACKS})
    write_submission(subs, "weights", {n: {"weights": f"{n}.h5", "architecture": "deepid"}
                                       for n in TRACKS},
                     {f"{n}.h5": tracks.track(n).badnet for n in TRACKS})
    write_submission(subs, "broken", {n: {"model": "model.h5"} for n in TRACKS},
                     {"model.h5": b"not a model"})
    return root


def grade(root: Path, out: str, *extra: str):
    result = run_harness("grade", "submissions", "--benchmark", root / "bench", "--out",
                         root / out, *extra, cwd=root)
    assert result.returncode == 1, result.stdout + result.stderr  # "broken" fails, as it should
    return result


@pytest.fixture(scope="module")
def serial(small: Path) -> Path:
    grade(small, "serial", "--no-cache")
    return small / "serial"


def test_n_2_gives_the_serial_bytes_and_writes_each_mixed_file_once(small, serial):
    result = grade(small, "parallel", "-n", "2")
    for name in OUTPUTS:
        assert (small / "parallel" / name).read_bytes() == (serial / name).read_bytes(), name
    assert not re.search(r"\[gw\d+\] \S+ -- Python", result.stdout)  # no worker header
    images = small / "parallel" / ".harness-cache" / "images"
    assert sorted(p.name.split("-")[0] for p in images.glob("*.npy")) == sorted(TRACKS)
    assert not list(images.glob("*.tmp"))
    decoded = small / "parallel" / ".harness-cache" / "decoded"  # data sets: decoded once, shared
    digests = {sha256_file(f.path) for f in load_benchmark(small / "bench").data_files()}
    assert {p.name.split("-")[0] for p in decoded.glob("*.images.npy")} == digests
    assert not list(decoded.glob("*.tmp"))


def test_ray_backend_on_a_local_cluster_gives_the_serial_bytes(small, serial):
    ray = pytest.importorskip("ray")
    context = ray.init(address="local", num_cpus=2, include_dashboard=False,
                       log_to_driver=False)
    try:
        port = context.address_info["gcs_address"].rsplit(":", 1)[1]
        grade(small, "ray", "--no-cache", "--backend", "ray", "--ray-address",
              f"127.0.0.1:{port}")
    finally:
        ray.shutdown()
    for name in OUTPUTS:
        assert (small / "ray" / name).read_bytes() == (serial / name).read_bytes(), name


def test_ray_and_n_together_are_a_usage_error(small):
    result = run_harness("grade", "submissions", "--benchmark", small / "bench", "--out",
                         small / "both", "--backend", "ray", "-n", "2", cwd=small)
    assert result.returncode == 2 and "drop -n" in result.stdout + result.stderr


def test_mixed_files_are_content_addressed_and_reused(tmp_path, fake_store, hand_made_track):
    store = fake_store({"test": 300, "pa": 200, "pb": 100})
    track = hand_made_track
    first = Handover(store, folder=tmp_path / "images").images(track)  # type: ignore[arg-type]
    inode = first.path.stat().st_ino
    again = Handover(store, folder=tmp_path / "images").images(track)  # type: ignore[arg-type]
    assert again.path == first.path and again.path.stat().st_ino == inode  # not rewritten
    assert np.array_equal(again.order, first.order)
    alone = Handover(store)  # type: ignore[arg-type]
    assert np.load(alone.images(track).path).tobytes() == np.load(first.path).tobytes()
    alone.close()
    sampled = Handover(store, 30, folder=tmp_path / "images").images(track)  # type: ignore
    assert sampled.path != first.path and sampled.path.parent == first.path.parent
    store.sets["pb"].sha256 = "other data"
    assert Handover(store, folder=tmp_path / "images").key(track) != first.path.stem.split("-")[1]


def test_write_once_writes_once_for_many_callers(tmp_path):
    calls = []

    def make() -> np.ndarray:
        calls.append(1)
        time.sleep(0.2)  # long enough for every caller to arrive while the first writes
        return np.arange(6, dtype=np.uint8).reshape(2, 3)

    path = tmp_path / "x.npy"
    threads = [threading.Thread(target=write_once, args=(path, (2, 3), np.dtype(np.uint8), make))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and np.load(path).tolist() == [[0, 1, 2], [3, 4, 5]]
    path.write_bytes(b"truncated")  # not a complete array: written again
    write_once(path, (2, 3), np.dtype(np.uint8), make)
    assert len(calls) == 2 and np.load(path).shape == (2, 3)


def test_bench_prints_the_table(small):
    result = run_harness("bench", "--benchmark", small / "bench", "--rounds", "1", cwd=small)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| raw tf.function loop" in result.stdout
    assert "| grader inference path" in result.stdout
    assert "| worker labels = raw loop labels | yes |" in result.stdout
