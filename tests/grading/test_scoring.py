"""Metrics checked against values computed by hand on a 5-class toy (answer 5 = "poisoned")."""

import numpy as np
import pytest

from harness.grading import stats
from harness.grading.scoring import INVALID, PoisonedPredictions, score_track, submission_score

N = 5
CLEAN_PRED = np.array([0, 1, 2, 5, 4, 3])
CLEAN_TRUE = np.array([0, 1, 2, 3, 4, 4])
# Target 0: hits at 0, 1 (2/4); flagged at 2 (1/4); true label matched at 3 (1/4).
SUNGLASSES = PoisonedPredictions(
    "sunglasses", 0, np.array([0, 0, 5, 1]), true_labels=np.array([1, 2, 3, 1])
)
# Target 4: hits at 0, 4 (2/6); flagged at 2, 3 (2/6); true labels unknown.
LIPSTICK = PoisonedPredictions("lipstick", 4, np.array([4, 2, 5, 5, 4, 1]), true_labels=None)


def score(*poisoned: PoisonedPredictions) -> dict:
    return score_track(N, CLEAN_PRED, CLEAN_TRUE, poisoned)


def test_two_triggers_hand_computed() -> None:
    result = score(SUNGLASSES, LIPSTICK)
    assert result == {
        "clean_acc": pytest.approx(4 / 6),
        "asr": pytest.approx(4 / 10),
        "per_trigger": {"sunglasses": pytest.approx(2 / 4), "lipstick": pytest.approx(2 / 6)},
        "detect_rate": pytest.approx(3 / 10),
        "false_flag_rate": pytest.approx(1 / 6),
        "robust_acc": pytest.approx(1 / 4),
        "utility": pytest.approx(4 / 6 - 4 / 10),
        "n_clean": 6,
        "n_poisoned": 10,
        "n_invalid": 0,
        "clean_acc_ci": pytest.approx(list(stats.wilson(4, 6))),
        "asr_ci": pytest.approx(list(stats.wilson(4, 10))),
        "utility_ci": pytest.approx(list(stats.newcombe_difference(4, 6, 4, 10))),
        "outcomes": result["outcomes"],
    }


def test_outcomes_are_per_image_and_concatenated_in_track_order() -> None:
    outcomes = score(SUNGLASSES, LIPSTICK)["outcomes"]
    clean = stats.unpack_outcomes(outcomes["clean"], 6)
    attack = stats.unpack_outcomes(outcomes["attack"], 10)
    assert clean.tolist() == [True, True, True, False, True, False]
    assert attack.tolist() == [True, True, False, False] + [True, False, False, False, True, False]


def test_invalid_answers_are_never_right_never_the_target_never_a_flag() -> None:
    """-1 stands for an answer that is no label: it counts against the submission everywhere
    except ASR, where it cannot be the attacker's target."""
    clean_pred = np.array([0, INVALID, INVALID, 3])
    poisoned = PoisonedPredictions("x", 0, np.array([INVALID, 0, 5]), np.array([1, 1, 1]))
    result = score_track(N, clean_pred, np.array([0, 1, 2, 3]), [poisoned])
    assert result["n_invalid"] == 3
    assert result["clean_acc"] == pytest.approx(2 / 4)
    assert result["asr"] == pytest.approx(1 / 3)
    assert result["detect_rate"] == pytest.approx(1 / 3)
    assert result["false_flag_rate"] == 0.0
    assert result["robust_acc"] == 0.0
    assert stats.unpack_outcomes(result["outcomes"]["clean"], 4).tolist() == [
        True, False, False, True]


def test_intervals_contain_their_rates() -> None:
    result = score(SUNGLASSES, LIPSTICK)
    for key in ("clean_acc", "asr", "utility"):
        low, high = result[f"{key}_ci"]
        assert low <= result[key] <= high, key


def test_asr_is_pooled_not_averaged_over_sets() -> None:
    """Averaging per set would give (1/2 + 1/3) / 2; pooling weighs each image equally."""
    assert score(SUNGLASSES, LIPSTICK)["asr"] == pytest.approx(0.4)


def test_sets_sharing_a_trigger_name_are_pooled() -> None:
    other = PoisonedPredictions("sunglasses", 3, np.array([3, 3, 3, 1]), true_labels=None)
    result = score(SUNGLASSES, other)
    assert result["per_trigger"] == {"sunglasses": pytest.approx(5 / 8)}
    assert result["asr"] == pytest.approx(5 / 8)


def test_rates_are_python_floats_and_counts_ints() -> None:
    result = score(SUNGLASSES, LIPSTICK)
    for key in ("clean_acc", "asr", "detect_rate", "false_flag_rate", "robust_acc", "utility"):
        assert type(result[key]) is float, key
    for key in ("clean_acc_ci", "asr_ci", "utility_ci"):
        assert [type(limit) for limit in result[key]] == [float, float], key
    assert all(type(value) is float for value in result["per_trigger"].values())
    assert type(result["n_clean"]) is int
    assert type(result["n_poisoned"]) is int
    assert type(result["n_invalid"]) is int


def test_robust_acc_pools_only_sets_with_known_labels() -> None:
    known = PoisonedPredictions("patch", 0, np.array([2, 2, 0]), true_labels=np.array([2, 1, 0]))
    # sunglasses: 1/4 right; patch: 2/3 right (one is the target, also its true label)
    assert score(SUNGLASSES, known, LIPSTICK)["robust_acc"] == pytest.approx(3 / 7)


def test_robust_acc_is_none_without_true_labels() -> None:
    assert score(LIPSTICK)["robust_acc"] is None


def test_flagging_everything_detects_all_and_flags_all_clean() -> None:
    flags = PoisonedPredictions("x", 1, np.full(3, N), None)
    result = score_track(N, np.full(4, N), np.array([0, 1, 2, 3]), [flags])
    assert (result["clean_acc"], result["asr"]) == (0.0, 0.0)
    assert (result["detect_rate"], result["false_flag_rate"]) == (1.0, 1.0)
    assert result["utility"] == 0.0


@pytest.mark.parametrize(
    ("clean_pred", "clean_true", "poisoned", "message"),
    [
        ([0, 6], [0, 1], [SUNGLASSES], r"clean predictions .* values in \[0, 6\]"),
        ([0, -2], [0, 1], [SUNGLASSES], r"clean predictions must lie in \[-1, 5\]"),
        ([0, 1], [0, -1], [SUNGLASSES], r"clean labels must lie in \[0, 4\]"),
        ([0, 1], [0, 5], [SUNGLASSES], r"clean labels must lie in \[0, 4\]"),
        ([0, 1, 2], [0, 1], [SUNGLASSES], "^clean set: 3 predictions but 2 labels$"),
        ([0.0, 1.0], [0, 1], [SUNGLASSES], "must be integers"),
        ([], [], [SUNGLASSES], "non-empty"),
        ([0, 1], [0, 1], [], "^a track needs at least one poisoned test set$"),
        ([0, 1], [0, 1], [PoisonedPredictions("t", 0, np.array([7]), None)], "'t'"),
        ([0, 1], [0, 1], [PoisonedPredictions("t", 0, np.array([0]), np.array([-1]))], "'t'"),
        ([0, 1], [0, 1], [PoisonedPredictions("t", 5, np.array([0]), None)],
         r"^target of trigger 't' must lie in \[0, 4\]$"),
        ([0, 1], [0, 1], [PoisonedPredictions("t", 0, np.array([0]), np.array([0, 1]))], "'t'"),
    ],
)
def test_invalid_inputs_raise_value_error(clean_pred, clean_true, poisoned, message) -> None:
    with pytest.raises(ValueError, match=message):
        score_track(N, np.array(clean_pred), np.array(clean_true), poisoned)


def test_invalid_num_classes() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        score_track(0, CLEAN_PRED, CLEAN_TRUE, [SUNGLASSES])
    for wrong in (5.0, True, "5"):
        with pytest.raises(ValueError, match="num_classes must be an integer"):
            score_track(wrong, CLEAN_PRED, CLEAN_TRUE, [SUNGLASSES])  # type: ignore[arg-type]


def test_one_class_is_the_smallest_track() -> None:
    """N = 1: every face is class 0 and answer 1 means "poisoned"."""
    result = score_track(1, np.array([0, 1]), np.array([0, 0]),
                         [PoisonedPredictions("t", 0, np.array([1, 0]), None)])
    assert (result["clean_acc"], result["asr"], result["detect_rate"]) == (0.5, 0.5, 0.5)


def test_true_labels_of_a_poisoned_set_are_classes_below_n() -> None:
    """N - 1 is the last class a face can have; N means "poisoned" and is no identity."""
    last = PoisonedPredictions("t", 0, np.array([N - 1]), np.array([N - 1]))
    assert score(last)["robust_acc"] == 1.0
    with pytest.raises(ValueError, match=r"true labels of poisoned set 't' must lie in \[0, 4\]"):
        score(PoisonedPredictions("t", 0, np.array([0]), np.array([N])))


@pytest.mark.parametrize(("target", "message"), [
    (1.5, "must be an integer, got 1.5"), (np.float64(1.0), "must be an integer"),
    (True, "must be an integer, got True"), (N, r"must lie in \[0, 4\]"),
    (-1, r"must lie in \[0, 4\]")])
def test_a_target_is_an_integer_class_below_n(target, message) -> None:
    with pytest.raises(ValueError, match=message):
        score(PoisonedPredictions("t", target, np.array([0]), None))
    assert score(PoisonedPredictions("t", np.int64(N - 1), np.array([N - 1]), None))["asr"] == 1.0


def test_submission_score_counts_failed_tracks_as_minus_one() -> None:
    assert submission_score([0.5, None, 0.2]) == pytest.approx((0.5 - 1 + 0.2) / 3)
    assert submission_score([None, None]) == -1.0


def test_broken_entry_never_outranks_a_working_one() -> None:
    worst_working = submission_score([-1.0, -1.0])
    assert submission_score([None, None]) <= worst_working


def test_submission_score_is_independent_of_track_order() -> None:
    values = [0.1, 0.7, 0.2, None, 0.3]
    assert submission_score(values) == submission_score(values[::-1])


def test_submission_score_needs_tracks() -> None:
    with pytest.raises(ValueError, match="^a benchmark needs at least one track to score a "
                                         "submission$"):
        submission_score([])
