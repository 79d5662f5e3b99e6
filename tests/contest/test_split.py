"""The public/private split: each hidden set's public part (seeded, sized, stratified), the
split record and its checks, and a track's images taken apart into the two parts and scored
(tiny HDF5 sets written here: no model, no sandbox)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.contest.split import (
    load_split,
    make_record,
    public_indices,
    read_record,
    write_record,
)
from harness.definitions.data import DataStore, write_contest_file
from harness.definitions.tracks import Benchmark, DataFile, PoisonedSet, Track
from harness.errors import ContestError
from harness.grading import stats
from harness.grading.handover import Handover, TrackImages
from harness.grading.item import SEALED, score_answers
from harness.sandbox.runner import Answers

SHA = "ab" * 32
CLASSES = 5


def shuffled_labels(counts: list[int], seed: int = 0) -> np.ndarray:
    """Labels 0..len(counts)-1, ``counts[c]`` of class c, in a random order."""
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))


def test_public_indices_are_deterministic() -> None:
    """The same labels, seed, share and file digest give the same sorted, distinct indices."""
    labels = shuffled_labels([7, 9, 4, 12])
    first = public_indices(labels, 11, 0.4, SHA)
    assert np.array_equal(first, public_indices(labels.copy(), 11, 0.4, SHA))
    assert np.array_equal(first, np.unique(first))
    assert first.min() >= 0 and first.max() < len(labels)


@pytest.mark.parametrize(("seed", "sha256"), [(12, SHA), (11, "cd" * 32), (0, SHA)])
def test_public_indices_depend_on_seed_and_content(seed: int, sha256: str) -> None:
    """Another seed, or another file (digest), gives another public part of the same size."""
    labels = shuffled_labels([40, 40, 40, 40, 40])
    ours, theirs = public_indices(labels, 11, 0.4, SHA), public_indices(labels, seed, 0.4, sha256)
    assert len(ours) == len(theirs)
    assert not np.array_equal(ours, theirs)


@pytest.mark.parametrize(("n", "share", "size"), [
    (10, 0.4, 4), (100, 0.3, 30), (7, 0.5, 4), (2, 0.1, 1), (2, 0.9, 1), (3, 0.9, 2),
    (50, 0.01, 1), (50, 0.99, 49), (1000, 0.25, 250),
])
def test_public_size_is_the_share_clamped(n: int, share: float, size: int) -> None:
    """round(share * n) images, but at least one public and at least one private."""
    labels = shuffled_labels([n // 2, n - n // 2])
    assert len(public_indices(labels, 3, share, SHA)) == size


@pytest.mark.parametrize("seed", range(12))
def test_public_part_is_stratified(seed: int) -> None:
    """With 3 or more images a class and a share of 0.4, both parts hold every class, each
    class's public count within one of its share."""
    rng = np.random.default_rng(seed)
    counts = [int(count) for count in rng.integers(3, 15, size=int(rng.integers(2, 12)))]
    labels = shuffled_labels(counts, seed)
    public = public_indices(labels, seed, 0.4, f"{seed:064x}")
    mask = np.zeros(len(labels), dtype=bool)
    mask[public] = True
    ratio = len(public) / len(labels)
    for label, count in enumerate(counts):
        in_public = int(np.count_nonzero(mask & (labels == label)))
        assert 1 <= in_public < count, (label, count, in_public)
        assert abs(in_public - count * ratio) < 1


@pytest.mark.parametrize("n", [0, 1])
def test_a_set_too_small_to_split(n: int) -> None:
    """A set of fewer than two images cannot have both parts: ContestError."""
    with pytest.raises(ContestError, match="cannot be split"):
        public_indices(np.zeros(n, dtype=np.int64), 1, 0.5, SHA)


def _record() -> dict[str, Any]:
    return {"format": 1, "seed": 11, "public": 0.4,
            "files": {SHA: {"name": "test.h5", "images": 10, "public": 4,
                            "indices_sha256": "cd" * 32}}}


def test_record_round_trip(tmp_path: Path) -> None:
    """A record written is read back equal."""
    path = tmp_path / "state" / "split.json"
    write_record(path, _record())
    assert read_record(path) == _record()


def _drop(key: str) -> Any:
    def change(record: dict[str, Any]) -> None:
        del record[key]
    return change


def _set(key: str, value: Any) -> Any:
    def change(record: dict[str, Any]) -> None:
        record[key] = value
    return change


def _drop_in_file(record: dict[str, Any]) -> None:
    del record["files"][SHA]["public"]


@pytest.mark.parametrize("change", [
    pytest.param(_drop("seed"), id="missing-seed"),
    pytest.param(_drop("files"), id="missing-files"),
    pytest.param(_set("extra", 1), id="extra-key"),
    pytest.param(_set("format", 2), id="other-format"),
    pytest.param(_set("files", [SHA]), id="files-a-list"),
    pytest.param(_set("files", {SHA: "test.h5"}), id="file-not-a-table"),
    pytest.param(_drop_in_file, id="file-missing-key"),
])
def test_invalid_record_is_refused(tmp_path: Path, change: Any) -> None:
    """A record of another shape or format is a one-line ContestError naming the file."""
    record = _record()
    change(record)
    path = tmp_path / "split.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(ContestError) as caught:
        read_record(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("text", [None, "{not json", "[1, 2]", '"split"'])
def test_unreadable_record_is_refused(tmp_path: Path, text: str | None) -> None:
    """A missing record, or one that is not a JSON table, is a ContestError."""
    path = tmp_path / "split.json"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ContestError) as caught:
        read_record(path)
    assert str(path) in str(caught.value)


# A tiny track: a clean set of CLASSES classes, a target-labelled poisoned set, a poisoned set
# with the true labels; random (so distinct) images.
SETS = {"clean": [6, 7, 5, 8, 4], "bad1": [0, 0, 0, 0, 20], "bad2": [5, 0, 6, 5, 4]}


def _write_set(path: Path, counts: list[int], seed: int) -> DataFile:
    labels = shuffled_labels(counts, seed)
    images = np.random.default_rng(seed + 100).integers(0, 256, (len(labels), 55, 47, 3),
                                                        dtype=np.uint8)
    write_contest_file(path, images, labels)
    return DataFile(path, hidden=True)


def small_track(folder: Path, clean_seed: int = 1) -> Track:
    clean = _write_set(folder / "clean.h5", SETS["clean"], clean_seed)
    return Track(name="tiny", description="", badnet=folder / "badnet.h5", input_scale=1.0,
                 num_classes=CLASSES, validation=clean, test=clean,
                 poisoned=(PoisonedSet("patch", 4, _write_set(folder / "bad1.h5",
                                                              SETS["bad1"], 2)),
                           PoisonedSet("glasses", 1, _write_set(folder / "bad2.h5",
                                                                SETS["bad2"], 3), "true")),
                 source=folder / "tracks" / "tiny.toml")


def small_benchmark(folder: Path, clean_seed: int = 1) -> Benchmark[Track]:
    return Benchmark("tiny", folder, (small_track(folder, clean_seed),))


def test_load_split_makes_the_recorded_split(tmp_path: Path) -> None:
    """The split made again from the record's seed: each set's public mask, as recorded."""
    benchmark, store = small_benchmark(tmp_path), DataStore()
    path = tmp_path / "state" / "split.json"
    write_record(path, make_record(benchmark, store, 11, 0.4))
    record = read_record(path)
    split = load_split(path, benchmark, store)
    track = benchmark.tracks[0]
    files = [track.test, *(spec.file for spec in track.poisoned)]
    assert len(split) == len(record["files"]) == 3
    for data_file in files:
        data = store.get(data_file, CLASSES)
        mask = split[data.sha256]
        assert mask.dtype == bool
        assert np.array_equal(np.flatnonzero(mask),
                              public_indices(data.labels, 11, 0.4, data.sha256))
        assert record["files"][data.sha256]["public"] == int(mask.sum()) == round(0.4 * len(mask))
        assert record["files"][data.sha256]["images"] == len(mask)


@pytest.mark.parametrize(("key", "value"), [("seed", 12), ("public", 0.5)])
def test_load_split_refuses_another_seed_or_share(tmp_path: Path, key: str, value: Any) -> None:
    """A record whose seed or share was changed no longer matches its digests: refused."""
    benchmark, store = small_benchmark(tmp_path), DataStore()
    path = tmp_path / "split.json"
    record: dict[str, Any] = dict(make_record(benchmark, store, 11, 0.4))
    record[key] = value
    write_record(path, record)
    with pytest.raises(ContestError, match="differs from the record"):
        load_split(path, benchmark, store)


def test_load_split_refuses_changed_data(tmp_path: Path) -> None:
    """A hidden set changed after the split was made is not in the record: refused."""
    path = tmp_path / "split.json"
    write_record(path, make_record(small_benchmark(tmp_path), DataStore(), 11, 0.4))
    with pytest.raises(ContestError, match="clean.h5 .* is not in the split record"):
        load_split(path, small_benchmark(tmp_path, clean_seed=9), DataStore())


@pytest.mark.parametrize(("key", "value"), [("public", "0.4"), ("seed", "11"), ("public", True)])
def test_load_split_refuses_a_value_of_the_wrong_type(tmp_path: Path, key: str, value: Any
                                                      ) -> None:
    """A record whose share or seed is not a number is refused with a ContestError, not a
    crash (a share written as a string once reached round() and raised TypeError)."""
    benchmark, store = small_benchmark(tmp_path), DataStore()
    path = tmp_path / "split.json"
    record: dict[str, Any] = dict(make_record(benchmark, store, 11, 0.4))
    record[key] = value
    write_record(path, record)  # type: ignore[arg-type]
    with pytest.raises(ContestError):
        load_split(path, benchmark, store)


@pytest.fixture(params=[None, 12], ids=["all-images", "sampled"])
def mixed(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The tiny track's mixed images with the contest's split (every image, or a sample)."""
    benchmark, store = small_benchmark(tmp_path), DataStore()
    path = tmp_path / "split.json"
    write_record(path, make_record(benchmark, store, 11, 0.4))
    handover = Handover(store, sample=request.param, folder=tmp_path / "images",
                        split=load_split(path, benchmark, store))
    yield benchmark.tracks[0], store, handover.images(benchmark.tracks[0])
    handover.close()


def test_parts_partition_the_images(mixed: tuple[Track, DataStore, TrackImages]) -> None:
    """The public and private parts split each set's picks and the file's positions in two,
    picks and positions still aligned: each part's positions hold its picks' images."""
    track, store, images = mixed
    public, private = images.part(public=True), images.part(public=False)
    assert images.public is not None
    assert public.public is None and private.public is None
    assert public.path == private.path == images.path
    assert public.files == private.files == images.files
    for pick, mask, ours, theirs in zip(images.picks, images.public, public.picks,
                                        private.picks, strict=True):
        assert 0 < len(ours) < len(pick)
        assert np.array_equal(ours, pick[mask])
        assert np.array_equal(theirs, pick[~mask])
    assert len(public.order) + len(private.order) == len(images.order)
    assert np.array_equal(np.sort(np.concatenate([public.order, private.order])),
                          np.sort(images.order))
    file = np.load(images.path)
    for part in (public, private):
        expected = np.concatenate([store.get(data_file, CLASSES).images[pick]
                                   for data_file, pick in zip(part.files, part.picks,
                                                              strict=True)])
        assert np.array_equal(file[part.order], expected)


def test_parts_scores_add_up_to_the_whole(mixed: tuple[Track, DataStore, TrackImages]) -> None:
    """Scoring one set of answers: the public part's and the sealed private part's counts and
    hits add up to the whole's, and each part is scored on its own images."""
    track, store, images = mixed
    sets = [store.get(data_file, CLASSES) for data_file in images.files]
    truth = [data.labels[pick] for data, pick in zip(sets, images.picks, strict=True)]
    # clean: right except every third image; poisoned: the target every other image, else
    # flagged (CLASSES) or, on the set with true labels, the true label
    wanted = [np.where(np.arange(len(truth[0])) % 3, truth[0], (truth[0] + 1) % CLASSES),
              np.where(np.arange(len(truth[1])) % 2, 4, CLASSES),
              np.where(np.arange(len(truth[2])) % 2, 1, truth[2])]
    answers = np.empty(len(images.order), dtype=np.int64)
    answers[images.order] = np.concatenate(wanted)
    given = Answers(answers, 0, None)
    scores = score_answers(track, images, store, given)
    whole = score_answers(track, dataclasses.replace(images, public=None), store, given)
    sealed = scores[SEALED]
    assert SEALED not in whole
    for key in ("n_clean", "n_poisoned", "n_invalid"):
        assert scores[key] + sealed[key] == whole[key], key
    for rate, count in (("clean_acc", "n_clean"), ("asr", "n_poisoned")):
        hits = [round(part[rate] * part[count]) for part in (scores, sealed, whole)]
        assert hits[0] + hits[1] == hits[2], rate
    assert images.public is not None
    for part, masks in ((scores, images.public), (sealed, [~mask for mask in images.public])):
        assert part["n_clean"] == int(masks[0].sum())
        assert part["clean_acc"] == pytest.approx(
            float(np.mean(wanted[0][masks[0]] == truth[0][masks[0]])))
        attacked = np.concatenate([wanted[1][masks[1]] == 4, wanted[2][masks[2]] == 1])
        assert part["asr"] == pytest.approx(float(np.mean(attacked)))
        assert part["robust_acc"] == pytest.approx(
            float(np.mean(wanted[2][masks[2]] == truth[2][masks[2]])))


def test_each_part_gets_the_auroc_of_its_own_images(
        mixed: tuple[Track, DataStore, TrackImages]) -> None:
    """Detection scores: each part's AUROC is that of the scores of its own images, poisoned
    sets pooled against the clean set; an invalid answer's score is left out; labels only give
    None."""
    track, store, images = mixed
    rng = np.random.default_rng(1)
    count = len(images.order)
    labels = np.zeros(count, dtype=np.int64)
    labels[images.order[0]] = -1  # the first clean image: invalid, its score NaN
    detection = rng.random(count)
    detection[images.order[0]] = np.nan
    given = Answers(labels, 1, "x", scores=detection)
    scores = score_answers(track, images, store, given)
    assert images.public is not None
    for part, masks in ((scores, images.public),
                        (scores[SEALED], [~mask for mask in images.public])):
        clean, *poisoned = images.split(detection)
        expected = stats.auroc(clean[masks[0]], np.concatenate(
            [values[mask] for values, mask in zip(poisoned, masks[1:], strict=True)]))
        assert expected is not None
        assert part["auroc"] == expected[0] and part["auroc_ci"] == list(expected[1])
    whole = score_answers(track, dataclasses.replace(images, public=None), store, given)
    assert whole["auroc"] not in (scores["auroc"], scores[SEALED]["auroc"])
    plain = score_answers(track, images, store, Answers(labels, 1, "x"))
    assert plain["auroc"] is None and plain["auroc_ci"] is None
