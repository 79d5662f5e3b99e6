"""Reading a per-image script's answer, and how a track's images are handed over and taken back."""

from __future__ import annotations

import numpy as np
import pytest

from harness.grading.handover import Handover, stratified_sample
from harness.sandbox.worker import parse_answer


@pytest.mark.parametrize(("output", "expected"), [
    ("5\n", 5),
    ("[5]\n", 5),
    ("Classification result: 5\n", 5),
    ("Result: Class ->[1283]", 1283),
    ("Using TensorFlow backend.\nmodel v2.4 loaded in 0.93 s\n[12]\n", 12),
    ("\x1b[1m1/1\x1b[0m \x1b[32m━━━━━━━━━━━━━━━━━━━━\x1b[0m \x1b[1m0s\x1b[0m 25ms/step\r"
     "1/1 [==============================] - 0s 21ms/step\rClassification result: [7]\n", 7),
    ("7\nDone.\n", 7),
    ("0\n", 0),  # class 0 is a class like any other
    ("Classification result: [0]", 0),
    ("\x1b[32m5\x1b[0m\n", 5),  # a coloured answer: the escape codes are not its digits
    ("\x1b[1mResult:\x1b[0m \x1b[32m12\x1b[0m", 12),
])
def test_the_last_whole_integer_printed_is_the_answer(output, expected):
    assert parse_answer(output, 1283) == (expected, None)


@pytest.mark.parametrize(("output", "reason"), [
    ("", "printed nothing"),
    ("   \n", "printed nothing"),
    ("poisoned!\n", "printed no integer"),
    ("score 0.97\n", "printed no integer"),
    ("-1\n", "printed -1, outside [0, 1283]"),
    ("1284\n", "printed 1284, outside [0, 1283]"),
])
def test_no_valid_integer_is_an_invalid_answer(output, reason):
    assert parse_answer(output, 1283) == (-1, reason)


def test_stratified_sample_keeps_label_shares_and_is_repeatable():
    labels = np.repeat(np.arange(4), [400, 300, 200, 100])
    sample = stratified_sample(labels, 100)
    assert len(sample) == len(set(sample)) == 100
    assert np.all(np.diff(sample) > 0)
    assert np.bincount(labels[sample]).tolist() == [40, 30, 20, 10]
    assert np.array_equal(sample, stratified_sample(labels, 100))
    assert not np.array_equal(sample, stratified_sample(labels, 100, seed=1))
    assert np.array_equal(stratified_sample(labels, 5000), np.arange(1000))


@pytest.mark.parametrize("sample", [None, 30])
def test_handover_mixes_sets_and_split_restores_them(tmp_path, sample, fake_store,
                                                     hand_made_track):
    store = fake_store({"test": 300, "pa": 200, "pb": 100})
    handover = Handover(store, sample)  # type: ignore[arg-type]
    mixed = handover.images(hand_made_track)
    written = np.load(mixed.path)
    index = written[:, 0, 0, 0].astype(int) + 256 * written[:, 0, 0, 1].astype(int)
    sizes = [300, 200, 100] if sample is None else [30, 30, 30]
    assert len(written) == sum(sizes)
    assert not np.array_equal(index[:sizes[0]], np.sort(index[:sizes[0]]))  # shuffled
    parts = mixed.split(index)
    assert [len(part) for part in parts] == sizes
    for part, pick in zip(parts, mixed.picks, strict=True):
        assert np.array_equal(part, pick)  # each answer lands on the image it was given for
    handover.close()
    assert not mixed.path.exists()
