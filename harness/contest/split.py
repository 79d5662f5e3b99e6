"""The public/private split of every hidden test set, made once from a seed and recorded by hash.

During a contest only the public part's numbers are published; the private part ranks at the
end (Kaggle's public and private leaderboards). Each hidden set (the clean test set, each
poisoned set: one trigger each) is split on its own, stratified by class, so each part holds
every class and every trigger in proportion. The split of a file depends only on the contest's
seed, the public share and the file's content, so it never changes while the data does not.

The record (``split.json`` in the contest's private folder) holds, per file, its digest, its
size, the public part's size and a digest of the public part's indices. Grading recomputes the
split from the seed and checks it against the record: a changed data file, seed or NumPy stream
stops grading instead of silently moving images between parts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from harness.definitions.data import DataStore
from harness.definitions.tracks import Benchmark, DataFile, Track
from harness.errors import ContestError
from harness.grading.handover import stratified_sample
from harness.results.io import write_atomic

FORMAT = 1
"""How a split is made from its seed: bump it when that changes."""


class SplitFile(TypedDict):
    """One hidden set in the record."""

    name: str
    images: int
    public: int
    """How many of its images are in the public part."""
    indices_sha256: str
    """sha256 of the public part's indices (sorted, little-endian int64)."""


class SplitRecord(TypedDict):
    """``split.json``: what decides the split, and the digest of each file's public part."""

    format: int
    seed: int
    public: float
    files: dict[str, SplitFile]
    """By the data file's sha256."""


Split = Mapping[str, np.ndarray]
"""Each hidden file's public part as a boolean mask over its images, by the file's sha256."""


def hidden_files(benchmark: Benchmark[Track]) -> list[DataFile]:
    """The sets the split applies to: every set that is scored (the retuning set is not)."""
    seen: dict[Path, DataFile] = {}
    for track in benchmark.tracks:
        for data_file in (track.test, *(spec.file for spec in track.poisoned)):
            seen.setdefault(data_file.path, data_file)
    return list(seen.values())


def public_indices(labels: np.ndarray, seed: int, share: float, sha256: str) -> np.ndarray:
    """The public part of one set: ``share`` of its images (at least one, and at least one left
    private), stratified by class, seeded by the contest's seed and the file's content."""
    if len(labels) < 2:
        raise ContestError(f"a hidden set of {len(labels)} image(s) cannot be split in two")
    size = min(max(round(share * len(labels)), 1), len(labels) - 1)
    derived = int.from_bytes(hashlib.sha256(f"{FORMAT}:{seed}:{sha256}".encode()).digest()[:8],
                             "big")
    return stratified_sample(np.asarray(labels), size, seed=derived)


def _digest(indices: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(indices, dtype="<i8").tobytes()).hexdigest()


def _parts(benchmark: Benchmark[Track], store: DataStore, seed: int, share: float
           ) -> tuple[dict[str, SplitFile], dict[str, np.ndarray]]:
    files: dict[str, SplitFile] = {}
    masks: dict[str, np.ndarray] = {}
    for track in benchmark.tracks:
        for data_file in (track.test, *(spec.file for spec in track.poisoned)):
            data = store.get(data_file, track.num_classes)
            if data.sha256 in files:
                continue
            indices = public_indices(data.labels, seed, share, data.sha256)
            mask = np.zeros(len(data.labels), dtype=bool)
            mask[indices] = True
            masks[data.sha256] = mask
            files[data.sha256] = {"name": data_file.path.name, "images": len(data.labels),
                                  "public": len(indices), "indices_sha256": _digest(indices)}
    return files, masks


def make_record(benchmark: Benchmark[Track], store: DataStore, seed: int, share: float
                ) -> SplitRecord:
    files, _ = _parts(benchmark, store, seed, share)
    return {"format": FORMAT, "seed": seed, "public": share, "files": files}


def write_record(path: Path, record: SplitRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_record(path: Path) -> SplitRecord:
    """The split record, its shape checked; ContestError (one line) if it is not one."""
    try:
        record: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ContestError(f"cannot read split record {path}: {exc}") from None
    keys = set(SplitRecord.__annotations__)
    if not isinstance(record, dict) or set(record) != keys or record["format"] != FORMAT \
            or not isinstance(record["files"], dict) or not _integer(record["seed"]) \
            or isinstance(record["public"], bool) \
            or not isinstance(record["public"], int | float) or not 0 < record["public"] < 1:
        raise ContestError(f"{path} is not a split record (format {FORMAT})")
    for sha256, entry in record["files"].items():
        if not isinstance(entry, dict) or set(entry) != set(SplitFile.__annotations__) \
                or not isinstance(entry["name"], str) or not _integer(entry["images"]) \
                or not _integer(entry["public"]) or not isinstance(entry["indices_sha256"], str):
            raise ContestError(f"{path}: the entry of file {sha256[:12]} is not valid")
    return record  # type: ignore[return-value]


def load_split(path: Path, benchmark: Benchmark[Track], store: DataStore) -> Split:
    """The split the record at ``path`` describes, made again from its seed and checked against
    it, for every hidden set of ``benchmark``."""
    record = read_record(path)
    files, masks = _parts(benchmark, store, record["seed"], record["public"])
    for sha256, entry in files.items():
        recorded = record["files"].get(sha256)
        if recorded is None:
            raise ContestError(f"{path}: the hidden set {entry['name']} (sha256 {sha256[:12]}) "
                               "is not in the split record: the benchmark changed after the "
                               "split was made")
        if recorded != entry:
            raise ContestError(f"{path}: the split of {entry['name']} made again from the seed "
                               "differs from the record (a changed seed, share or NumPy)")
    return masks
