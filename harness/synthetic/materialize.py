"""Regenerate the embedded benchmark's data files on first use.

Generated images barely compress (per-image noise), so ~100k images would add hundreds of MB to
the repository; regenerating them from the seed takes well under a minute and needs no network.
The track files hold the sha256 of every file, and the grader refuses files that do not match.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.definitions.data import write_contest_file
from harness.definitions.layout import META
from harness.definitions.tracks import Benchmark, DataFile, PublicTrack
from harness.errors import BenchmarkError
from harness.synthetic.recipe import SCALES, Scale, data_sets


def write_data(cache: Path, scale: Scale, seed: int) -> dict[str, dict[str, Any]]:
    """Render and write every data file; returns file name -> {sha256, size}."""
    files = {}
    for name, images, labels in data_sets(scale, seed):
        files[name] = {"sha256": write_contest_file(cache / name, images, labels),
                       "size": len(labels)}
    return files


def generate_missing(benchmark: Benchmark[PublicTrack],
                     needed: Iterable[DataFile] | None = None) -> None:
    """Regenerate the data files of a benchmark with a recipe when one it needs is missing (all
    of them unless ``needed`` names some): the check every command makes before reading data. A
    benchmark without a recipe (the organizers' real files) is left as it is; reading a missing
    file then fails with its name."""
    if not benchmark.generate:
        return
    files = benchmark.data_files() if needed is None else needed
    if not all(data_file.path.exists() for data_file in files):
        ensure_generated(benchmark)


def ensure_generated(benchmark: Benchmark[PublicTrack]) -> None:
    """Write the benchmark's data files if any is missing (their hashes are checked on read)."""
    recipe = benchmark.generate or {}
    missing = [f.path for f in benchmark.data_files() if not f.path.exists()]
    if not missing:
        return
    try:
        scale, seed = SCALES[recipe["scale"]], int(recipe["seed"])
    except (KeyError, TypeError, ValueError):
        raise BenchmarkError(f"{benchmark.root / META}: [generate] needs scale "
                             f"({'/'.join(SCALES)}) and an integer seed") from None
    cache = benchmark.root / recipe.get("cache", "cache")
    print(f"harness: generating benchmark data into {cache} (first use; {len(missing)} "
          "files missing)...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    write_data(cache, scale, seed)
    print(f"harness: generated in {time.perf_counter() - start:.1f} s", file=sys.stderr)
