"""Confidence intervals and paired tests for the leaderboard's rates and scores.

Every metric is a fraction of a finite test set, so a leaderboard gap of 0.002 may be noise. The
intervals say how precisely a rate is measured (95% Wilson score intervals, which stay inside
[0, 1] and behave at 0/n and n/n where the normal approximation collapses to a zero width), and
the paired bootstrap says whether two neighbouring rows differ by more than the images they were
graded on could explain. NumPy only: SciPy is not a dependency of the grader.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GRADING_SEED = 2020
"""Seed of everything random in grading (stratified samples, bootstrap tests)."""
Z95 = 1.959963984540054
"""The standard normal's 97.5% quantile: two-sided 95% intervals."""
RESAMPLES = 2000
"""Bootstrap resamples per paired test: percentile limits stable to about 0.001 at this size."""
CONFIDENCE = 0.95


def wilson(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for the proportion ``hits / n``.

    The limits at 0/n and n/n are set exactly (0 and 1): the formula gives them in exact
    arithmetic, and float rounding must not turn a perfect score into 0.9999999999999998.
    """
    if isinstance(hits, bool) or isinstance(n, bool):
        raise ValueError("hits and n must be integers, not bools")
    if n <= 0 or not 0 <= hits <= n:
        raise ValueError(f"need 0 <= hits <= n and n > 0, got hits={hits}, n={n}")
    p = hits / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if hits == 0 else max(0.0, centre - half)
    high = 1.0 if hits == n else min(1.0, centre + half)
    return low, high


def newcombe_difference(
    hits1: int, n1: int, hits2: int, n2: int, z: float = Z95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval for ``hits1/n1 - hits2/n2`` (independent samples).

    Method 10 of Newcombe (1998): each proportion's Wilson limits, combined as a square root of
    summed squared distances. Utility is clean accuracy minus ASR, measured on disjoint image
    sets, so the two proportions are independent as the method requires.
    """
    low1, high1 = wilson(hits1, n1, z)
    low2, high2 = wilson(hits2, n2, z)
    p1, p2 = hits1 / n1, hits2 / n2
    difference = p1 - p2
    below = math.sqrt((p1 - low1) ** 2 + (high2 - p2) ** 2)
    above = math.sqrt((high1 - p1) ** 2 + (p2 - low2) ** 2)
    return difference - below, difference + above


# Per-image outcomes ------------------------------------------------------------------------------


def pack_outcomes(bits: np.ndarray) -> str:
    """A bool vector as base64 text of its packed bits: 12.8k images take about 2 KB in JSON."""
    array = np.asarray(bits)
    if array.ndim != 1 or array.dtype != np.bool_:
        raise ValueError(f"outcomes must be a 1-D bool array, got {array.dtype} {array.shape}")
    return base64.b64encode(np.packbits(array).tobytes()).decode("ascii")


def unpack_outcomes(text: str, n: int) -> np.ndarray:
    """Inverse of :func:`pack_outcomes`; ``n`` is the vector's length, which packing rounds up.

    The length and the padding bits are checked, so that outcomes that do not belong to a record
    of ``n`` images are refused instead of silently skewing a test.
    """
    try:
        packed = np.frombuffer(base64.b64decode(text, validate=True), dtype=np.uint8)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise ValueError(f"outcomes are not base64 text: {exc}") from None
    if len(packed) != (n + 7) // 8:
        raise ValueError(f"outcomes hold {len(packed)} bytes; {n} images need {(n + 7) // 8}")
    bits = np.unpackbits(packed).astype(bool)
    if bits[n:].any():
        raise ValueError(f"outcomes have bits set beyond the {n} images")
    return bits[:n]


@dataclass(frozen=True)
class Outcomes:
    """One submission's per-image results on one track.

    ``clean``: clean image answered with its true label; ``attack``: poisoned image answered with
    the attacker's target (all poisoned sets concatenated in track order).
    """

    clean: np.ndarray
    attack: np.ndarray

    @classmethod
    def failed_like(cls, other: Outcomes) -> Outcomes:
        """A failed track as outcomes: nothing right, every attack succeeds, so its utility is
        exactly -1 (:data:`harness.grading.scoring.FAILED_TRACK_UTILITY`) under any resample."""
        return cls(np.zeros_like(other.clean), np.ones_like(other.attack))


def _paired_rate_differences(
    first: np.ndarray, second: np.ndarray, rng: np.random.Generator, resamples: int
) -> np.ndarray:
    """Bootstrap ``mean(first) - mean(second)`` with the same resampled images for both.

    Resampling n image indices with replacement and comparing the two vectors on them depends
    only on how many drawn images fall where first is right and second wrong (and vice versa):
    those counts are multinomial, so drawing them directly is the same bootstrap at a cost
    independent of n.
    """
    if first.shape != second.shape:
        raise ValueError(
            f"paired outcomes must cover the same images, got {first.size} and {second.size}"
        )
    n = first.size
    only_first = int(np.count_nonzero(first & ~second))
    only_second = int(np.count_nonzero(second & ~first))
    shares = np.array([only_first, only_second, n - only_first - only_second]) / n
    counts = rng.multinomial(n, shares, size=resamples)
    return (counts[:, 0] - counts[:, 1]) / n


def score_difference_interval(
    upper: Sequence[Outcomes | None],
    lower: Sequence[Outcomes | None],
    *,
    resamples: int = RESAMPLES,
    seed: int = GRADING_SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Paired-bootstrap percentile interval of ``score(upper) - score(lower)``.

    A score is the mean utility over tracks (one entry per track, in the same order for both;
    ``None`` is a failed track, a constant -1). Each track's clean and poisoned images are
    resampled independently, the same images for both submissions, since both answered the
    same images. A fresh generator per call makes a pair's test depend only on that pair.
    """
    if len(upper) != len(lower) or not upper:
        raise ValueError("both submissions need outcomes for the same, non-empty list of tracks")
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples)
    for mine, theirs in zip(upper, lower, strict=True):
        if mine is None:
            if theirs is None:
                continue  # -1 - (-1): no difference on this track
            mine = Outcomes.failed_like(theirs)
        elif theirs is None:
            theirs = Outcomes.failed_like(mine)
        total += _paired_rate_differences(mine.clean, theirs.clean, rng, resamples)
        total -= _paired_rate_differences(mine.attack, theirs.attack, rng, resamples)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(total / len(upper), [tail, 100 - tail])
    return float(low), float(high)


def tied(upper: Sequence[Outcomes | None], lower: Sequence[Outcomes | None]) -> bool:
    """Whether the images cannot tell the two apart: the difference's interval contains 0."""
    low, high = score_difference_interval(upper, lower)
    return low <= 0.0 <= high


# Threshold-free detection -----------------------------------------------------------------------


def auroc(clean: np.ndarray, poisoned: np.ndarray,
          z: float = Z95) -> tuple[float, tuple[float, float]] | None:
    """AUROC of detection scores, poisoned (positive) against clean, with DeLong's 95% interval.

    The AUROC is the Mann-Whitney statistic: the chance that a random poisoned image scores
    higher than a random clean one, a tie counting half. It needs no threshold, so it compares
    detectors that flag at different operating points (TrojAI and the Trojan Detection Challenge
    rank detectors this way). NaN scores (images without a valid answer) are left out.

    The interval is DeLong's (DeLong, DeLong & Clarke-Pearson 1988): the variance of the
    statistic from each image's placement value (the share of the other class it outscores),
    ``var(V_poisoned) / n_poisoned + var(V_clean) / n_clean``, then ``AUROC ± z·sd`` clipped to
    [0, 1]. It is closed form and deterministic (no seed, no resamples) and costs one sort,
    where a bootstrap would re-rank the ~13k images thousands of times per entry and track. Like
    any Wald interval it has width 0 at perfect separation (AUROC 0 or 1).

    Returns None when either class has no scored image."""
    negatives = np.sort(np.asarray(clean, dtype=np.float64))
    positives = np.sort(np.asarray(poisoned, dtype=np.float64))
    negatives, positives = negatives[~np.isnan(negatives)], positives[~np.isnan(positives)]
    m, n = len(positives), len(negatives)
    if m == 0 or n == 0:
        return None
    # Twice the placements: below + below-or-equal counts each tie once, i.e. half of two.
    twice_positive = (np.searchsorted(negatives, positives, "left")
                      + np.searchsorted(negatives, positives, "right"))
    twice_negative = (2 * m - np.searchsorted(positives, negatives, "left")
                      - np.searchsorted(positives, negatives, "right"))
    area = int(twice_positive.sum()) / (2 * m * n)  # exact: integer counts, one division
    variance = 0.0
    if m > 1:
        variance += float(np.var(twice_positive / (2 * n), ddof=1)) / m
    if n > 1:
        variance += float(np.var(twice_negative / (2 * m), ddof=1)) / n
    half = z * math.sqrt(variance)
    return area, (max(0.0, area - half), min(1.0, area + half))
