"""STRIP on the tiny pruning-aware BadNet (sunglasses -> 0): the detector loads the way the grader
loads submissions, flags triggered images while passing clean ones, and answers exactly like a
NumPy re-implementation of the algorithm.

STRIP assumes the trigger dominates the prediction whatever it is blended with; the pruning-aware
backdoor is the most input-agnostic at full scale too (docs/defenses.md). The tiny dormant
sunglasses BadNet, whose backdoor needs the whole trigger, had only 18% of its triggered images
flagged."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from harness.defenses import strip as strip_defense
from harness.defenses.base import Context, Repaired
from harness.defenses.reference import load_badnet
from harness.definitions.data import DataStore
from harness.definitions.tracks import Track, load_benchmark
from harness.sandbox.models import KerasPredictor, load_model_file


@pytest.fixture(scope="module")
def track(tiny_benchmark: Path) -> Track:
    return load_benchmark(tiny_benchmark).track("pruning_aware")


@pytest.fixture(scope="module")
def ctx(track: Track) -> Context:
    validation = DataStore().get(track.validation, track.num_classes)
    return Context(badnet=load_badnet(track), images=validation.images, labels=validation.labels,
                   scale=track.input_scale, num_classes=track.num_classes, seed=1)


@pytest.fixture(scope="module")
def repaired(ctx: Context) -> Repaired:
    return strip_defense.strip(ctx)


@pytest.fixture(scope="module")
def saved(repaired: Repaired, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("strip") / f"sunglasses{repaired.suffix}"
    repaired.model.save(path)
    return path


@pytest.fixture(scope="module")
def predict(saved: Path, track: Track) -> KerasPredictor:
    """The detector as the grader runs it: loaded from its file, classified batch by batch."""
    return KerasPredictor(load_model_file(saved), track.num_classes, track.input_scale)


def images(track: Track) -> tuple[np.ndarray, np.ndarray]:
    """(clean test images, sunglasses-poisoned test images)."""
    store = DataStore()
    return (store.get(track.test, track.num_classes).images,
            store.get(track.poisoned[0].file, track.num_classes).images)


def numpy_strip(ctx: Context, boundary: float, x: np.ndarray) -> np.ndarray:
    """STRIP written out in NumPy (only the BadNet's forward pass from Keras)."""
    scale, weight = np.float32(ctx.scale), strip_defense.WEIGHT
    inputs = x.astype(np.float32) * scale
    blends = strip_defense.blend_images(ctx).astype(np.float32)
    k = np.float32((1.0 - weight) / (weight * ctx.scale))
    mixed = (inputs[:, None] * k + blends) * np.float32(weight * ctx.scale)
    probs = ctx.badnet.predict(mixed.reshape(-1, 55, 47, 3), verbose=0)
    probs = probs.reshape(len(x), len(blends), -1)
    entropy = -(probs * np.log(np.maximum(probs, np.float32(1e-30)))).sum(axis=-1).mean(axis=-1)
    own = ctx.badnet.predict(inputs, verbose=0).argmax(axis=1)
    return np.where(entropy < np.float32(boundary), ctx.num_classes, own)


def test_detector_is_a_safe_keras_file_with_a_poisoned_output(repaired, saved, predict, track):
    assert repaired.suffix == ".keras"
    config = json.loads(zipfile.ZipFile(saved).read("config.json"))
    assert "Lambda" not in json.dumps(config)
    assert tuple(predict.model.output.shape) == (None, track.num_classes + 1)
    assert set(repaired.notes) >= {"blends", "boundary", "holdout_false_rejection",
                                   "entropy_quantiles"}
    assert repaired.notes["blends"] == strip_defense.BLENDS


def test_flags_triggered_images_and_passes_clean_ones(predict, track):
    clean, poisoned = images(track)
    clean_answers, poisoned_answers = predict(clean), predict(poisoned)
    flagged = track.num_classes
    # Tiny scale: the boundary is the 1% quantile of only 18 held-out entropies, i.e. about their
    # minimum, so one confident clean face lowers it.
    assert np.mean(poisoned_answers == flagged) >= 0.5
    assert np.mean(clean_answers == flagged) <= 0.05
    passed = clean_answers != flagged
    assert np.mean(clean_answers[passed] == DataStore().get(
        track.test, track.num_classes).labels[passed]) >= 0.95  # the BadNet's own answers


def test_answers_match_a_numpy_reimplementation(ctx, repaired, predict, track):
    clean, poisoned = images(track)
    x = np.concatenate([clean[::5], poisoned[::5]])
    expected = numpy_strip(ctx, repaired.notes["boundary"], x)
    assert len(set(expected)) > 2  # both kinds of answer occur
    np.testing.assert_array_equal(predict(x), expected)
