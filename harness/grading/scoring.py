"""Metrics of one submission on one track, and the overall score of a submission.

A repaired network answers a class in ``[0, N)`` or ``N`` ("this input is poisoned"). Every metric
is a plain fraction of images, and rates over several poisoned sets are *pooled* (total hits over
total images) rather than averaged per set, so that a tiny poisoned set cannot weigh as much as a
large one. Inputs are validated strictly: a prediction outside ``[0, N]`` means the submission or
the harness is broken, and silently scoring it would hide that. The one exception is
:data:`INVALID` (-1): a per-image script that printed nothing parseable answered, but wrongly, and
the grader says so with -1 rather than failing the whole track.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.grading import stats
from harness.sandbox.protocol import INVALID

__all__ = ["FAILED_TRACK_UTILITY", "INVALID", "PoisonedPredictions", "score_track"]

FAILED_TRACK_UTILITY = -1.0
"""Utility charged for a track without a valid result: the worst a working entry can score."""


@dataclass(frozen=True)
class PoisonedPredictions:
    """A submission's answers on one poisoned test set.

    ``true_labels`` is ``None`` when the contest does not publish the clean labels of the poisoned
    images; robust accuracy then cannot be measured on this set.
    """

    trigger: str
    target: int
    predictions: np.ndarray
    true_labels: np.ndarray | None


@dataclass
class _Tally:
    """Counts of one pool of images, kept as integers so that pooling stays exact."""

    images: int = 0
    hits: int = 0

    def add(self, images: int, hits: int) -> None:
        self.images += images
        self.hits += hits

    def rate(self) -> float | None:
        return self.hits / self.images if self.images else None


def _labels(values: np.ndarray, what: str, high: int, low: int = 0) -> np.ndarray:
    """Return ``values`` as a 1-D integer array in ``[low, high]``, or raise ``ValueError``."""
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D array, got shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise ValueError(f"{what} must be integers, got dtype {array.dtype}")
    least, top = int(array.min()), int(array.max())
    if least < low or top > high:
        raise ValueError(f"{what} must lie in [{low}, {high}], found values in [{least}, {top}]")
    return array


def _predictions(values: np.ndarray, what: str, num_classes: int) -> np.ndarray:
    """Predictions are labels in ``[0, N]`` or :data:`INVALID`."""
    return _labels(values, what, num_classes, low=INVALID)


def _same_length(first: np.ndarray, second: np.ndarray, what: str) -> None:
    if len(first) != len(second):
        raise ValueError(f"{what}: {len(first)} predictions but {len(second)} labels")


def _check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise ValueError(f"num_classes must be an integer, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    return int(num_classes)


def _check_target(target: int, num_classes: int, trigger: str) -> int:
    """The attacker's target is a real class: a target of N would make ASR equal the detect rate."""
    if isinstance(target, bool) or not isinstance(target, int | np.integer):
        raise ValueError(f"target of trigger {trigger!r} must be an integer, got {target!r}")
    if not 0 <= target < num_classes:
        raise ValueError(f"target of trigger {trigger!r} must lie in [0, {num_classes - 1}]")
    return int(target)


def score_track(
    num_classes: int,
    clean_predictions: np.ndarray,
    clean_labels: np.ndarray,
    poisoned: Sequence[PoisonedPredictions],
) -> dict:
    """Score one submission on one track.

    Returns ``clean_acc``, ``asr`` (pooled over all poisoned sets), ``per_trigger`` (trigger ->
    ASR, sets sharing a trigger name pooled), ``detect_rate``, ``false_flag_rate``, ``robust_acc``
    (pooled over sets with known true labels, ``None`` if there are none), ``utility``
    (``clean_acc - asr``), ``n_clean``, ``n_poisoned``, ``n_invalid`` (answers that were
    :data:`INVALID`, clean and poisoned); rates are Python floats. ``clean_acc_ci`` and ``asr_ci``
    are 95% Wilson intervals and ``utility_ci`` Newcombe's interval for their difference, each
    ``[low, high]``. ``outcomes`` holds the per-image results that paired tests between
    submissions need (see :func:`harness.grading.stats.pack_outcomes`): ``clean`` (answered the true
    label) and ``attack`` (answered the target, poisoned sets concatenated in track order).
    """
    n = _check_num_classes(num_classes)
    clean_pred = _predictions(clean_predictions, "clean predictions", n)
    clean_true = _labels(clean_labels, "clean labels", n - 1)
    _same_length(clean_pred, clean_true, "clean set")
    if not poisoned:
        raise ValueError("a track needs at least one poisoned test set")

    attack, flagged, robust = _Tally(), _Tally(), _Tally()
    per_trigger: dict[str, _Tally] = {}
    successes = []
    invalid = int(np.count_nonzero(clean_pred == INVALID))
    for item in poisoned:
        what = f"poisoned set {item.trigger!r}"
        target = _check_target(item.target, n, item.trigger)
        pred = _predictions(item.predictions, f"predictions on {what}", n)
        success = pred == target
        successes.append(success)
        hits = int(np.count_nonzero(success))
        attack.add(len(pred), hits)
        per_trigger.setdefault(item.trigger, _Tally()).add(len(pred), hits)
        flagged.add(len(pred), int(np.count_nonzero(pred == n)))
        invalid += int(np.count_nonzero(pred == INVALID))
        if item.true_labels is not None:
            true = _labels(item.true_labels, f"true labels of {what}", n - 1)
            _same_length(pred, true, what)
            robust.add(len(pred), int(np.count_nonzero(pred == true)))

    correct = clean_pred == clean_true
    clean = _Tally(len(clean_pred), int(np.count_nonzero(correct)))
    clean_acc = clean.hits / clean.images
    asr = attack.hits / attack.images
    return {
        "clean_acc": clean_acc,
        "asr": asr,
        "per_trigger": {trigger: tally.rate() for trigger, tally in per_trigger.items()},
        "detect_rate": flagged.rate(),
        "false_flag_rate": float(np.count_nonzero(clean_pred == n) / len(clean_pred)),
        "robust_acc": robust.rate(),
        "utility": clean_acc - asr,
        "n_clean": clean.images,
        "n_poisoned": attack.images,
        "n_invalid": invalid,
        "clean_acc_ci": list(stats.wilson(clean.hits, clean.images)),
        "asr_ci": list(stats.wilson(attack.hits, attack.images)),
        "utility_ci": list(
            stats.newcombe_difference(clean.hits, clean.images, attack.hits, attack.images)
        ),
        "outcomes": {
            "clean": stats.pack_outcomes(correct),
            "attack": stats.pack_outcomes(np.concatenate(successes)),
        },
    }


def submission_score(utilities: Sequence[float | None]) -> float:
    """Mean utility over all tracks of a benchmark, a track without a valid result counting -1.

    Charging the worst possible utility means a broken entry never outranks a working one, and
    skipping a hard track never pays. ``math.fsum`` makes the mean independent of track order, so
    equal sets of utilities always tie exactly.
    """
    if not utilities:
        raise ValueError("a benchmark needs at least one track to score a submission")
    values = [FAILED_TRACK_UTILITY if utility is None else utility for utility in utilities]
    return math.fsum(values) / len(values)
