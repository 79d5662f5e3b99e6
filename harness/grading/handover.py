"""Hand the hidden test images over: a track's clean and poisoned test images mixed in one
seeded random order and written as one unlabeled file, so an entry cannot tell which set an image
came from (a batch ``predict`` sees clean and triggered images side by side), and the retuning
set as the files a worker reads. The labels never leave the grading process.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.definitions.data import DataStore, write_once
from harness.definitions.tracks import DataFile, Track
from harness.grading.stats import GRADING_SEED
from harness.sandbox.retuning import BUDGET
from harness.sandbox.runner import Retune

HANDOVER_FORMAT = 1
"""Version of how a mixed image file is made (sampling, shuffling, layout): bump it when that
changes, so that no file made the old way is taken for a new one."""


def stratified_sample(labels: np.ndarray, size: int, seed: int = GRADING_SEED) -> np.ndarray:
    """``size`` indices spread over the labels in proportion (sorted), the same for every entry.

    Systematic sampling over a label-sorted random order: each label gets its share of the sample
    up to rounding, and identical inputs give identical samples.
    """
    if size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]
    positions = ((np.arange(size) + rng.random()) * len(labels) / size).astype(np.int64)
    return np.sort(order[positions])


@dataclass(frozen=True)
class TrackImages:
    """A track's test images as one shuffled, unlabeled file, and how to take answers apart."""

    path: Path
    files: tuple[DataFile, ...]
    """The clean test set, then each poisoned set, in track order."""
    picks: tuple[np.ndarray, ...]
    """Indices into each file of the images graded (all of them unless sampled)."""
    order: np.ndarray
    """Position in ``path`` of each graded image, sets concatenated in ``files`` order."""
    public: tuple[np.ndarray, ...] | None = None
    """In a contest, which graded images of each set are in the public part (a mask aligned
    with ``picks``); None outside a contest."""

    def split(self, labels: np.ndarray) -> list[np.ndarray]:
        """Answers in file order: one array per set, aligned with ``picks``."""
        ordered = labels[self.order]
        bounds = np.cumsum([len(pick) for pick in self.picks])[:-1]
        return np.split(ordered, bounds)

    def part(self, public: bool) -> TrackImages:
        """The images of the public part (or of the private one) alone: the same file and
        answers, scored on that part's images only, so one pass yields both parts."""
        assert self.public is not None, "a part of images graded outside a contest"
        keep = [mask if public else ~mask for mask in self.public]
        return TrackImages(self.path, self.files,
                           tuple(pick[kept] for pick, kept in zip(self.picks, keep, strict=True)),
                           self.order[np.concatenate(keep)])


class Handover:
    """Writes each track's mixed image file once; every entry, process and run reads the same file.

    With a ``folder`` (the result cache's ``images/``, shared by pytest-xdist workers and later
    runs) the file is content-addressed: its name is a digest of everything that decides its bytes
    (:meth:`key`), so whoever needs the same images finds the file instead of writing it again. A
    file appears whole or not at all (written under a temporary name, then renamed) and only one
    process writes it (a lock per file), so K processes starting together write it once. Without a
    ``folder`` the files live in a temporary folder that :meth:`close` removes.
    """

    def __init__(self, store: DataStore, sample: int | None = None,
                 folder: Path | None = None, split: Mapping[str, np.ndarray] | None = None
                 ) -> None:
        self.store = store
        self.sample = sample
        self.split = split
        """A contest's public part of each hidden set (:mod:`harness.contest.split`): it
        decides how answers are scored, not the file, so it is not part of :meth:`key`."""
        self._folder = folder.resolve() if folder is not None else None  # other processes read it
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self._tracks: dict[str, TrackImages] = {}

    @property
    def folder(self) -> Path:
        """Where the mixed files are: the given folder, else a temporary one made on first use."""
        if self._folder is None:
            self._directory = tempfile.TemporaryDirectory(prefix="harness-images-")
            self._folder = Path(self._directory.name)
            self._folder.chmod(0o755)  # a model entry's worker, another user, reads the folder
        return self._folder

    def images(self, track: Track) -> TrackImages:
        if track.name not in self._tracks:
            self._tracks[track.name] = self._write(track)
        return self._tracks[track.name]

    def key(self, track: Track) -> str:
        """Digest of what decides the mixed file's bytes: the data (by content), the sample, the
        seed, NumPy (whose ``Generator`` streams may change between versions) and the recipe."""
        files = (track.test, *(spec.file for spec in track.poisoned))
        payload = {"format": HANDOVER_FORMAT, "numpy": np.__version__, "seed": GRADING_SEED,
                   "sample": self.sample,
                   "files": [self.store.get(f, track.num_classes).sha256 for f in files]}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def _write(self, track: Track) -> TrackImages:
        files = (track.test, *(spec.file for spec in track.poisoned))
        sets = [self.store.get(data_file, track.num_classes) for data_file in files]
        picks = [np.arange(len(data.labels)) if self.sample is None
                 else stratified_sample(data.labels, self.sample) for data in sets]
        total = sum(len(pick) for pick in picks)
        shuffle = np.random.default_rng(GRADING_SEED).permutation(total)
        path = self.folder / f"{track.name}-{self.key(track)}.npy"
        shape, dtype = (total, *sets[0].images.shape[1:]), sets[0].images.dtype
        write_once(path, shape, dtype, lambda: np.concatenate(
            [data.images[pick] for data, pick in zip(sets, picks, strict=True)])[shuffle])
        order = np.empty_like(shuffle)
        order[shuffle] = np.arange(len(shuffle))
        public = None if self.split is None else tuple(
            self.split[data.sha256][pick] for data, pick in zip(sets, picks, strict=True))
        return TrackImages(path, files, tuple(picks), order, public)

    def retuning(self, track: Track) -> Retune:
        """The track's retuning set as the files a worker reads, written once (like the mixed
        files, named by the data's content), with the probe's budget."""
        assert track.retuning is not None
        data = self.store.get(track.retuning, track.num_classes)
        stem = self.folder / f"{track.name}-retuning-{data.sha256}"
        images, labels = Path(f"{stem}-images.npy"), Path(f"{stem}-labels.npy")
        write_once(images, data.images.shape, data.images.dtype, lambda: data.images[:])
        write_once(labels, data.labels.shape, data.labels.dtype, lambda: data.labels[:])
        return Retune(images=images, labels=labels, budget=BUDGET)

    def close(self) -> None:
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = self._folder = None
        self._tracks.clear()
