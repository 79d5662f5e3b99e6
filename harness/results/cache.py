"""Reusing finished records: the result cache, and a baseline results file.

Grading a submission on a track is deterministic given its inputs, so a record can be reused
whenever every input is unchanged; the cache key is a digest of all of them (see
:func:`cache_key`). Each finished item is stored at once, in its own file, written atomically:
a run killed at any point leaves only complete entries behind, and the next run resumes from
them. An entry that cannot be read or does not match its key is ignored (the item is graded
again), never fatal: the cache can only save time, never change or break a result.

A baseline is an earlier ``results.json`` (usually the committed one): ``--changed-since`` takes
the records of unchanged submissions from it when the cache does not have them. It records less
than a cache key covers, so each record is checked against what it does record (harness
versions, data hashes, the submission's metadata and digest, the sample size) and a mismatch
means regrading.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.definitions.data import DataStore, sha256_file
from harness.definitions.tracks import DataFile, Track
from harness.errors import HarnessError
from harness.results.io import read_results, write_atomic
from harness.results.provenance import environment
from harness.results.record import check_record, check_yardstick

CACHE_FORMAT = 4
"""Version of the key payload and entry layout; bump it to invalidate every existing entry."""
FOLDER_NAME = ".harness-cache"
"""Default cache folder, under the grading run's --out folder."""
SUFFIX = ".json"


def track_fingerprint(track: Track, store: DataStore) -> dict[str, Any]:
    """Everything about a track that can change a record, by content, never by path.

    Data files are identified by the sha256 of their bytes as read by ``store`` (checked against
    the track file's sum where it gives one), so the same benchmark on another machine or in
    another folder gives the same fingerprint. Targets, label kinds, scaling and the class count
    are included because editing them in a track file changes scores without changing any data.
    """

    def digest(data_file: DataFile) -> str:
        return store.get(data_file, track.num_classes).sha256

    badnet = sha256_file(track.badnet) if track.badnet.is_file() else None
    return {
        "name": track.name,
        "num_classes": track.num_classes,
        "input_scale": track.input_scale,
        "badnet_sha256": badnet,
        "badnet_architecture": track.badnet_architecture,
        "validation_sha256": digest(track.validation),
        "test_sha256": digest(track.test) if track.test else None,
        "poisoned": [{"trigger": p.trigger, "target": p.target, "labels": p.labels,
                      "sha256": digest(p.file)} for p in track.poisoned],
        "retuning_sha256": digest(track.retuning) if track.retuning else None,
    }


def cache_key(submission: str, submission_sha256: str, track: Mapping[str, Any],
              options: Mapping[str, Any]) -> str:
    """The sha256 (hex) naming one cache entry.

    ``submission`` is the folder name, which the record carries: two folders with identical bytes
    must not share a record. ``submission_sha256`` is :attr:`Submission.sha256`; ``track`` is
    :func:`track_fingerprint`; ``options`` holds every grading option that can change a record
    (JSON values). The toolchain versions and grading seed (:func:`environment`, harness version
    included) are part of the key, so an upgraded TensorFlow never serves an older prediction.
    """
    payload = {
        "format": CACHE_FORMAT,
        "environment": environment(),
        "submission": submission,
        "submission_sha256": submission_sha256,
        "track": dict(track),
        "options": dict(options),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def matches(record: Mapping[str, Any], expect: Mapping[str, Any]) -> bool:
    """Whether a stored record is one of ``expect``: the same value of every key it has (the
    submission's metadata and digest, the track, the grading options records carry)."""
    return all(record[key] == value for key, value in expect.items() if key in record)


class StaleBaseline(HarnessError):
    """A valid results file graded in another environment: its records cannot serve this run,
    which grades more instead."""


class ResultCache:
    """A folder of ``<key>.json`` entries, each ``{"key": ..., "record": {...}}``; the retuning
    probe's yardsticks (one per track, not records) in its ``yardsticks/`` folder, each
    ``{"key": ..., "yardstick": {...}}``."""

    KINDS = {"record": "", "yardstick": "yardsticks"}
    """What an entry holds, and the subfolder such entries live in."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, key: str, kind: str = "record") -> Path:
        return self.folder / self.KINDS[kind] / f"{key}{SUFFIX}"

    def _stored(self, key: str, kind: str) -> Any:
        """What is stored under ``key`` (None when absent, unreadable or for another key)."""
        try:
            payload = json.loads(self.path(key, kind).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(payload, dict) or payload.get("key") != key:
            return None
        return payload.get(kind)

    def get(self, key: str, expect: Mapping[str, Any]) -> dict[str, Any] | None:
        """The stored record, or None when absent, unreadable, not a record for this key, not
        a valid record (:func:`check_record`: an entry on disk is trusted no more than a
        results file) or not one of ``expect`` (:func:`matches`)."""
        record = self._stored(key, "record")
        try:
            check_record(record)
        except (TypeError, ValueError, ArithmeticError):
            return None
        return record if matches(record, expect) else None

    def get_yardstick(self, key: str) -> dict[str, Any] | None:
        """A track's stored retuning yardstick (:func:`harness.grading.item.yardstick`), or None
        when absent or not a valid one (:func:`check_yardstick`)."""
        value = self._stored(key, "yardstick")
        try:
            return dict(check_yardstick(value))
        except (TypeError, ValueError, ArithmeticError):
            return None

    def put(self, key: str, record: Mapping[str, Any], *, kind: str = "record") -> None:
        """Store ``record`` (a ``kind`` of :data:`KINDS`) atomically: readers see no entry or
        a complete one, never a part.

        Raises OSError (or TypeError for a record JSON cannot hold); callers decide whether a
        failed store matters.
        """
        path = self.path(key, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"key": key, kind: dict(record)}, indent=1, sort_keys=True)
        write_atomic(path, text + "\n")

    def entries(self) -> list[Path]:
        """Complete record entries (temporary files of an interrupted write start with a dot)."""
        if not self.folder.is_dir():
            return []
        return sorted(path for path in self.folder.glob(f"*{SUFFIX}")
                      if not path.name.startswith("."))


class Baseline:
    """Records of an earlier results file, handed out only where they still hold."""

    def __init__(self, path: Path) -> None:
        """Read ``path``; HarnessError if it is unreadable or invalid (:func:`read_results`),
        StaleBaseline if it was graded in another environment (versions or seed): its records
        would then not be what this run computes, and the merged results would claim this
        run's versions for them."""
        self.path = path
        benchmark, records = read_results(path)
        current = environment()
        graded = benchmark["provenance"]
        if graded != current:
            differ = sorted(key for key in {*graded, *current}
                            if graded.get(key) != current.get(key))
            was = ", ".join(f"{key} {graded.get(key)}" for key in differ)
            now = ", ".join(f"{key} {current.get(key)}" for key in differ)
            raise StaleBaseline(f"{path} was graded with {was}; this run has {now}")
        self.data_hashes: dict[str, str] = dict(benchmark["data_hashes"])
        self.records: dict[tuple[str, str], Mapping[str, Any]] = {
            (record["submission"], record["track"]): record for record in records}

    def get(self, expect: Mapping[str, Any], track: Track, store: DataStore
            ) -> dict[str, Any] | None:
        """The record of submission ``expect["submission"]`` on ``track``, or None if absent or
        stale.

        Stale means graded on other data, or with a record key differing from ``expect`` (the
        submission's metadata and digest, the grading options records carry): git may call a
        folder unchanged that is not, and a baseline may come from a sampled run.
        """
        record = self.records.get((expect["submission"], track.name))
        if record is None or not matches(record, expect):
            return None
        for data_file in track.data_files():
            digest = store.get(data_file, track.num_classes).sha256
            if self.data_hashes.get(data_file.path.name) != digest:
                return None
        return dict(record)
