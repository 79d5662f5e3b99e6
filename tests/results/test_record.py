"""A result record as a type (:mod:`harness.results.record`): its keys, its checks, the
retuning probe's fields and summary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.grading import stats
from harness.results import record as schema
from harness.results.record import RECORD_KEYS, error_record, ok_record
from tests.conftest import (
    N_PROBE,
    cost,
    meta,
    probe,
    scores,
    yardstick,
)


def test_ok_and_error_records_have_identical_keys() -> None:
    ok = ok_record(meta("a"), "sunglasses", scores(0.9, {"sunglasses": 0.1}))
    failed = error_record(meta("a"), "sunglasses", "boom")
    assert list(ok) == list(failed) == list(RECORD_KEYS)
    assert failed["status"] == "error"
    assert failed["per_trigger"] == {}
    assert failed["outcomes"] == {}
    assert all(failed[key] is None for key in (*schema.METRIC_KEYS, *schema.INTERVAL_KEYS))
    assert ok["sha256"] == failed["sha256"] == meta("a")["sha256"]
    assert ok["sample"] is failed["sample"] is None


def test_records_carry_the_sample_size() -> None:
    ok = ok_record(meta("a"), "sunglasses", scores(0.9, {"sunglasses": 0.1}), sample=500)
    assert ok["sample"] == 500
    assert error_record(meta("a"), "sunglasses", "boom", sample=500)["sample"] == 500
    for bad in (0, -3, True, 2.5):
        with pytest.raises(ValueError, match="sample"):
            error_record(meta("a"), "sunglasses", "boom", sample=bad)


def test_ok_record_refuses_outcomes_that_do_not_match_the_counts() -> None:
    result = scores(0.9, {"sunglasses": 0.1})
    result["n_clean"] = 1200
    with pytest.raises(ValueError, match="invalid outcomes"):
        ok_record(meta("a"), "sunglasses", result)
    result = scores(0.9, {"sunglasses": 0.1})
    result["asr_ci"] = [0.2, 0.1]
    with pytest.raises(ValueError, match="low <= high"):
        ok_record(meta("a"), "sunglasses", result)


def test_error_message_is_one_line() -> None:
    record = error_record(meta("a"), "sunglasses", "Traceback:\n  line 3\n\tKeyError  ")
    assert record["error"] == "Traceback: line 3 KeyError"


def test_ok_record_rejects_wrong_score_keys() -> None:
    partial = scores(0.9, {"sunglasses": 0.1})
    del partial["robust_acc"]
    with pytest.raises(ValueError, match="robust_acc"):
        ok_record(meta("a"), "sunglasses", partial)


def test_records_need_complete_metadata() -> None:
    with pytest.raises(ValueError, match="reference"):
        error_record({"submission": "a", "team": "t", "method": "m"}, "sunglasses", "boom")
    with pytest.raises(ValueError, match="sha256"):
        error_record({**meta("a"), "sha256": None}, "sunglasses", "boom")


def test_ok_record_refuses_a_negative_cost() -> None:
    with pytest.raises(ValueError, match="passes_per_image"):
        ok_record(meta("a"), "sunglasses",
                  {**scores(0.9, {"sunglasses": 0.1}), **cost(10, 100.0, -1.0)})


def test_records_carry_the_probe_results_or_none() -> None:
    plain = ok_record(meta("a"), "sunglasses", scores(0.9, {"sunglasses": 0.1}))
    probed = ok_record(meta("a"), "sunglasses",
                       {**scores(0.9, {"sunglasses": 0.1}), **probe(0.875, 0.93)})
    failed = error_record(meta("a"), "sunglasses", "boom")
    assert list(plain) == list(probed) == list(failed) == list(RECORD_KEYS)
    assert set(schema.PROBE_KEYS) <= set(RECORD_KEYS)
    assert all(plain[key] is None and failed[key] is None for key in schema.PROBE_KEYS)
    assert probed["p_asr"] == 0.875 and probed["p_clean_acc"] == 0.93
    assert probed["p_asr_ci"] == list(stats.wilson(175, N_PROBE)) and probed["p_error"] is None
    only_error = ok_record(meta("a"), "sunglasses", {**scores(0.9, {"sunglasses": 0.1}),
                                                      "p_error": "cannot\n  be fine-tuned "})
    assert only_error["p_error"] == "cannot be fine-tuned"
    assert only_error["p_asr"] is only_error["p_asr_ci"] is only_error["p_clean_acc"] is None


@pytest.mark.parametrize(("extra", "message"), [
    ({"p_asr": 1.5}, "p_asr must be a number in"),
    ({"p_asr": True}, "p_asr must be a number in"),
    ({"p_asr": "0.3"}, "p_asr must be a number in"),
    ({"p_asr": float("nan")}, "p_asr must be a number in"),
    ({"p_clean_acc": -0.1}, "p_clean_acc must be a number in"),
    ({"p_asr_ci": [0.1, 0.2]}, "without a p_asr"),
    ({"p_asr": 0.5, "p_asr_ci": [0.6, 0.4]}, "low <= high"),
    ({"p_asr": 0.5, "p_asr_ci": [0.4]}, r"p_asr_ci must be \[low, high\]"),
    ({"p_error": ""}, "p_error must be a non-empty one-line string"),
    ({"p_error": 3}, "p_error must be a non-empty one-line string"),
])
def test_ok_record_refuses_bad_probe_results(extra: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ok_record(meta("a"), "sunglasses", {**scores(0.9, {"sunglasses": 0.1}), **extra})


def test_retuning_summary_is_canonical() -> None:

    summary = schema.retuning_summary(
        " Adam,\n learning rate 0.0001 ",
        {"sunglasses": {**yardstick(0.3), "p_asr": np.float32(0.25), "p_asr_ci": (0.2, 0.3),
                        "images": np.int64(115)},
         "multi-trigger": yardstick(None, "clean model\nmissing")})
    assert summary["budget"] == "Adam, learning rate 0.0001"
    sunglasses = summary["tracks"]["sunglasses"]
    assert type(sunglasses["p_asr"]) is float and sunglasses["p_asr_ci"] == [0.2, 0.3]
    assert type(sunglasses["images"]) is int
    assert summary["tracks"]["multi-trigger"]["error"] == "clean model missing"
    json.dumps(summary)


def test_records_carry_the_auroc_or_none() -> None:
    plain = ok_record(meta("a"), "sunglasses", scores(0.9, {"sunglasses": 0.1}))
    scored = ok_record(meta("a"), "sunglasses", {**scores(0.9, {"sunglasses": 0.1}),
                                                 "auroc": np.float64(0.75),
                                                 "auroc_ci": (0.7, 0.8)})
    failed = error_record(meta("a"), "sunglasses", "boom")
    assert list(plain) == list(scored) == list(failed) == list(RECORD_KEYS)
    assert all(plain[key] is None and failed[key] is None for key in schema.DETECTION_KEYS)
    assert scored["auroc"] == 0.75 and type(scored["auroc"]) is float
    assert scored["auroc_ci"] == [0.7, 0.8]
    # a perfect detector's interval is the point itself
    ok_record(meta("a"), "sunglasses", {**scores(0.9, {"sunglasses": 0.1}), "auroc": 1.0,
                                        "auroc_ci": [1.0, 1.0]})


@pytest.mark.parametrize(("extra", "message"), [
    ({"auroc": 1.5, "auroc_ci": [0.9, 1.0]}, "auroc must be a number in"),
    ({"auroc": float("nan"), "auroc_ci": [0.9, 1.0]}, "auroc must be a number in"),
    ({"auroc": True, "auroc_ci": [0.9, 1.0]}, "auroc must be a number in"),
    ({"auroc": 0.5}, "both be given or both be None"),
    ({"auroc_ci": [0.4, 0.6]}, "both be given or both be None"),
    ({"auroc": 0.5, "auroc_ci": [0.6, 0.4]}, "low <= high"),
    ({"auroc": 0.5, "auroc_ci": [0.6, 0.7]}, "around auroc"),
    ({"auroc": 0.9, "auroc_ci": [0.8, 1.2]}, "around auroc"),
])
def test_ok_record_refuses_a_bad_auroc(extra: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ok_record(meta("a"), "sunglasses", {**scores(0.9, {"sunglasses": 0.1}), **extra})
