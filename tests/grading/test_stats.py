"""Intervals against published values, outcome packing, and the paired bootstrap's verdicts."""


import numpy as np
import pytest

from harness.grading import stats
from harness.grading.stats import (
    Outcomes,
    newcombe_difference,
    score_difference_interval,
    tied,
    wilson,
)

# Wilson intervals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hits", "n", "expected"),
    [
        (81, 263, (0.2553, 0.3662)),  # Newcombe 1998 (single proportion), Agresti & Coull 1998
        (15, 148, (0.0624, 0.1605)),  # Newcombe 1998, Table I
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
    ],
)
def test_wilson_matches_published_values(hits: int, n: int, expected: tuple) -> None:
    assert wilson(hits, n) == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize("n", [1, 7, 12_800])
def test_wilson_edges_are_exact(n: int) -> None:
    low, high = wilson(0, n)
    assert low == 0.0 and 0.0 < high < 1.0
    low, high = wilson(n, n)
    assert high == 1.0 and 0.0 < low < 1.0


def test_wilson_is_symmetric_and_contains_the_rate() -> None:
    for hits, n in [(3, 10), (500, 1000), (12_000, 12_800)]:
        low, high = wilson(hits, n)
        assert low < hits / n < high
        mirror = wilson(n - hits, n)
        assert mirror == pytest.approx((1 - high, 1 - low))


@pytest.mark.parametrize(("hits", "n"), [(0, 0), (-1, 5), (6, 5), (True, 5)])
def test_wilson_rejects_impossible_counts(hits: int, n: int) -> None:
    with pytest.raises(ValueError):
        wilson(hits, n)


# Newcombe's difference interval -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ((56, 70, 48, 80), (0.0524, 0.3339)),  # Newcombe 1998 (difference), Table II, method 10
        ((9, 10, 3, 10), (0.1705, 0.8090)),
        ((5, 56, 0, 29), (-0.0381, 0.1926)),
        ((0, 10, 0, 20), (-0.1611, 0.2775)),
        ((10, 10, 0, 20), (0.6791, 1.0)),
    ],
)
def test_newcombe_matches_published_values(counts: tuple, expected: tuple) -> None:
    assert newcombe_difference(*counts) == pytest.approx(expected, abs=5e-5)


def test_newcombe_stays_within_the_possible_differences() -> None:
    assert newcombe_difference(12_800, 12_800, 0, 38_400) == pytest.approx((0.9996, 1.0), abs=1e-4)
    low, high = newcombe_difference(0, 12_800, 38_400, 38_400)
    assert -1.0 <= low < high < -0.999


# Outcome packing --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 8, 9, 12_800])
def test_outcomes_round_trip(n: int) -> None:
    bits = np.random.default_rng(n).random(n) < 0.3
    assert np.array_equal(stats.unpack_outcomes(stats.pack_outcomes(bits), n), bits)


def test_packed_outcomes_are_compact_text() -> None:
    text = stats.pack_outcomes(np.ones(12_800, bool))
    assert text.isascii() and len(text) == 4 * 534  # base64 of 1600 bytes: 534 groups of 3


def test_unpack_refuses_outcomes_of_another_size() -> None:
    text = stats.pack_outcomes(np.ones(9, bool))
    with pytest.raises(ValueError, match="need 1"):
        stats.unpack_outcomes(text, 8)
    with pytest.raises(ValueError, match="beyond the 7 images"):
        stats.unpack_outcomes(stats.pack_outcomes(np.ones(8, bool)), 7)
    with pytest.raises(ValueError, match="base64"):
        stats.unpack_outcomes("not base64!", 8)


def test_pack_refuses_non_bool_vectors() -> None:
    with pytest.raises(ValueError, match="bool"):
        stats.pack_outcomes(np.array([0, 1, 1]))


# Paired bootstrap -------------------------------------------------------------------------------


def outcomes(clean_hits: int, attack_hits: int, n_clean: int = 1000, n_attack: int = 2000):
    """Nested outcome vectors: the first ``hits`` images right (clean) or attacked."""
    return Outcomes(np.arange(n_clean) < clean_hits, np.arange(n_attack) < attack_hits)


def test_identical_outcomes_tie() -> None:
    same = [outcomes(950, 20), outcomes(900, 100)]
    assert score_difference_interval(same, same) == (0.0, 0.0)
    assert tied(same, same)


def test_clearly_different_outcomes_separate() -> None:
    better, worse = [outcomes(950, 20)], [outcomes(900, 400)]
    low, high = score_difference_interval(better, worse)
    assert 0.2 < low < 0.25 < high < 0.3  # true difference 0.05 + 0.19 = 0.24
    assert not tied(better, worse)


def test_a_few_images_apart_tie() -> None:
    assert tied([outcomes(950, 20)], [outcomes(948, 21)])


def test_pairing_detects_consistent_small_differences() -> None:
    """On shared images, 15 images that only one submission gets right are a clear difference;
    unpaired, the two clean accuracies' intervals (about +-0.014) would overlap."""
    assert not tied([outcomes(965, 0)], [outcomes(950, 0)])


def test_failed_tracks_count_minus_one() -> None:
    working = [outcomes(900, 100), outcomes(900, 100)]
    half = [outcomes(900, 100), None]
    low, high = score_difference_interval(working, half)
    assert low < (0.0 + 0.85 + 1) / 2 < high < low + 0.05  # only the working track varies
    assert score_difference_interval(half, half) == (0.0, 0.0)
    assert score_difference_interval([None, None], [None, None]) == (0.0, 0.0)
    assert tied([None, None], [None, None])


def test_bootstrap_is_deterministic() -> None:
    first = [outcomes(950, 20), outcomes(930, 50)]
    second = [outcomes(940, 25), outcomes(935, 40)]
    assert score_difference_interval(first, second) == score_difference_interval(first, second)
    other_seed = score_difference_interval(first, second, seed=1)
    assert other_seed != score_difference_interval(first, second)


def test_bootstrap_needs_the_same_images_and_tracks() -> None:
    with pytest.raises(ValueError, match="same images"):
        score_difference_interval([outcomes(5, 5, 10, 10)], [outcomes(5, 5, 11, 10)])
    with pytest.raises(ValueError, match="same, non-empty list"):
        score_difference_interval([outcomes(5, 5)], [])


# Limits pinned from both sides (survivors of mutation testing) ----------------------------------


def test_wilson_messages_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="^hits and n must be integers, not bools$"):
        wilson(True, 5)
    with pytest.raises(ValueError, match=r"^need 0 <= hits <= n and n > 0, got hits=6, n=5$"):
        wilson(6, 5)


def test_wilson_upper_limit_of_a_perfect_score_is_exactly_one() -> None:
    """Float rounding gives 0.9999999999999998 for some n; a perfect score's limit is 1."""
    assert all(wilson(n, n)[1] == 1.0 for n in range(1, 2000))
    assert all(wilson(0, n)[0] == 0.0 for n in range(1, 2000))


def test_newcombe_uses_the_level_it_is_given() -> None:
    wide = newcombe_difference(56, 70, 48, 80, z=2.576)  # 99%
    narrow = newcombe_difference(56, 70, 48, 80)
    assert wide[0] < narrow[0] and narrow[1] < wide[1]
    low1, high1 = wilson(56, 70, 2.576)
    low2, high2 = wilson(48, 80, 2.576)
    d = 56 / 70 - 48 / 80
    assert wide == pytest.approx((d - np.hypot(56 / 70 - low1, high2 - 48 / 80),
                                  d + np.hypot(high1 - 56 / 70, 48 / 80 - low2)))


def test_unpack_refuses_text_that_is_not_strict_base64() -> None:
    """Characters outside the alphabet are an error, not skipped (which would shift bits)."""
    text = stats.pack_outcomes(np.ones(16, bool))
    with pytest.raises(ValueError, match="not base64"):
        stats.unpack_outcomes(text[:1] + "!" + text[1:], 16)
    with pytest.raises(ValueError, match="^outcomes hold 2 bytes; 25 images need 4$"):
        stats.unpack_outcomes(text, 25)


def test_bootstrap_interval_is_the_requested_central_interval() -> None:
    """Mine right on all 10,000 images, theirs on half: the difference is 0.5 with standard
    error 0.005, so the 95% interval is 0.5 -+ 1.96 x 0.005 and the 80% one 0.5 -+ 1.28 x 0.005
    (2,000 resamples: within 0.0004)."""
    n = 10_000
    mine = Outcomes(clean=np.ones(n, bool), attack=np.zeros(n, bool))
    theirs = Outcomes(clean=np.arange(n) % 2 == 0, attack=np.zeros(n, bool))
    for confidence, z in ((0.95, 1.96), (0.8, 1.2816)):
        low, high = score_difference_interval([mine], [theirs], confidence=confidence)
        assert low == pytest.approx(0.5 - z * 0.005, abs=4e-4)
        assert high == pytest.approx(0.5 + z * 0.005, abs=4e-4)


def test_a_failed_track_on_either_side_counts_minus_one() -> None:
    working = [outcomes(900, 100), outcomes(900, 100)]
    half = [outcomes(900, 100), None]
    low, high = score_difference_interval(working, half)
    assert score_difference_interval(half, working) == pytest.approx((-high, -low), abs=1e-3)
    with pytest.raises(ValueError, match="^both submissions need outcomes for the same, "
                                         "non-empty list of tracks$"):
        score_difference_interval([], [])


# AUROC -------------------------------------------------------------------------------------------


def test_auroc_of_perfect_reversed_and_useless_scores() -> None:
    clean, poisoned = np.array([0.1, 0.2, 0.3]), np.array([0.7, 0.8])
    assert stats.auroc(clean, poisoned) == (1.0, (1.0, 1.0))
    assert stats.auroc(poisoned, clean) == (0.0, (0.0, 0.0))
    area, (low, high) = stats.auroc(np.full(4, 0.5), np.full(3, 0.5))
    assert area == 0.5 and low == high == 0.5  # all tied: no spread to estimate


def test_auroc_counts_ties_half_with_delong_interval() -> None:
    """By hand: 0.5 beats 0.1 and 0.4 and ties 0.5 (2.5 of 3), 0.8 beats all: 5.5 / 6. DeLong:
    placements of the poisoned 5/6 and 1 (variance 1/72, over 2), of the clean 1, 1, 3/4
    (variance 1/48, over 3): variance 1/144 + 1/144."""
    area, (low, high) = stats.auroc(np.array([0.1, 0.4, 0.5]), np.array([0.5, 0.8]))
    assert area == pytest.approx(5.5 / 6)
    assert low == pytest.approx(5.5 / 6 - stats.Z95 * np.sqrt(2 / 144))
    assert high == 1.0


def test_auroc_is_the_mann_whitney_statistic_on_random_scores() -> None:
    rng = np.random.default_rng(0)
    clean, poisoned = rng.integers(0, 20, 300) / 20, rng.integers(5, 25, 200) / 20
    wins = (poisoned[:, None] > clean[None, :]).sum() + 0.5 * (
        poisoned[:, None] == clean[None, :]).sum()
    area, (low, high) = stats.auroc(clean, poisoned)
    assert area == pytest.approx(wins / (300 * 200))
    assert low < area < high and high - low < 0.2


def test_auroc_leaves_out_nan_and_needs_both_classes() -> None:
    assert stats.auroc(np.array([0.1, np.nan]), np.array([np.nan, 0.9]))[0] == 1.0
    assert stats.auroc(np.array([np.nan]), np.array([0.9])) is None
    assert stats.auroc(np.array([0.1]), np.array([])) is None
