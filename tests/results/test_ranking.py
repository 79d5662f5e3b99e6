"""Ranks and DER (:mod:`harness.results.ranking`): the order, shared ranks from the paired
bootstrap, failed and missing tracks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.grading import stats
from harness.results import ranking
from harness.results import record as schema
from harness.results.ranking import Ranked, rank
from harness.results.record import error_record, ok_record
from tests.conftest import (
    BENCHMARK,
    column,
    golden_records,
    leaderboard_md,
    meta,
    scores,
    section,
    table_rows,
)


def test_rank_orders_by_score_then_clean_acc_then_name() -> None:
    same = scores(0.9, {"sunglasses": 0.1})
    better_clean = scores(0.95, {"sunglasses": 0.15})  # same utility, higher clean accuracy
    records = [
        ok_record(meta(name), track, result)
        for name, result in [("b", same), ("a", same), ("c", better_clean)]
        for track in BENCHMARK["tracks"]
    ]
    records.append(ok_record(meta("top"), "sunglasses", scores(1.0, {"sunglasses": 0.0})))
    records.append(ok_record(meta("top"), "multi-trigger", scores(1.0, {"eyebrows": 0.0})))
    table = rank(BENCHMARK, records)
    assert column(table, "submission") == ["top", "c", "a", "b"]
    assert column(table, "rank") == [1, 2, 2, 2]  # equal scores: the images cannot order them
    assert column(table, "tied") == [False, True, True, True]
    assert all(list(row) == list(Ranked.__annotations__) for row in table)


def test_clearly_different_rows_do_not_tie() -> None:
    records = [
        ok_record(meta(name), track, scores(clean, {"sunglasses": asr}))
        for name, clean, asr in [("a", 0.95, 0.0), ("b", 0.9, 0.2), ("c", 0.6, 0.9)]
        for track in BENCHMARK["tracks"]
    ]
    table = rank(BENCHMARK, records)
    assert column(table, "rank") == [1, 2, 3]
    assert not any(column(table, "tied"))


def scores_of(clean: np.ndarray, attack: np.ndarray) -> dict:
    """Scores of given per-image outcomes: 1000 clean images, 100 poisoned, nothing flagged."""
    result = scores(float(clean.mean()), {"sunglasses": float(attack.mean())})
    result["outcomes"] = {"clean": stats.pack_outcomes(clean),
                          "attack": stats.pack_outcomes(attack)}
    return result


def test_ties_chain_to_the_first_row_of_their_run() -> None:
    """b is within noise of a, and c of b: c shares a's rank though c is clearly below a."""
    rng = np.random.default_rng(1)
    shared = rng.random(1000)
    clean = {"a": shared < 0.95, "b": np.roll(shared, 1) < 0.94, "c": np.roll(shared, 2) < 0.925}
    no_attack = np.zeros(100, bool)
    records = [
        ok_record(meta(name), track, scores_of(vector, no_attack))
        for name, vector in clean.items()
        for track in BENCHMARK["tracks"]
    ]
    upper = [schema.outcomes_of(r) for r in records if r["submission"] == "a"]
    lower = [schema.outcomes_of(r) for r in records if r["submission"] == "c"]
    assert not stats.tied(upper, lower)
    table = rank(BENCHMARK, records)
    assert column(table, "submission") == ["a", "b", "c"]
    assert column(table, "rank") == [1, 1, 1]
    assert all(column(table, "tied"))


def test_broken_entries_tie_with_each_other() -> None:
    records = [
        ok_record(meta("working"), "sunglasses", scores(0.9, {"sunglasses": 0.1})),
        error_record(meta("x"), "sunglasses", "boom"),
        error_record(meta("y"), "sunglasses", "boom"),
    ]
    table = rank(BENCHMARK, records)
    assert column(table, "submission") == ["working", "x", "y"]
    assert column(table, "rank") == [1, 2, 2]


def test_failed_and_missing_tracks_count_minus_one() -> None:
    records = [
        ok_record(meta("half"), "sunglasses", scores(0.9, {"sunglasses": 0.1})),
        error_record(meta("half"), "multi-trigger", "boom"),
        ok_record(meta("missing"), "sunglasses", scores(0.9, {"sunglasses": 0.1})),
        error_record(meta("broken"), "sunglasses", "boom"),
    ]
    table = {row["submission"]: row for row in rank(BENCHMARK, records)}
    assert table["half"]["score"] == pytest.approx((0.8 - 1) / 2)
    assert table["missing"]["score"] == pytest.approx((0.8 - 1) / 2)
    assert table["broken"]["score"] == -1.0
    assert table["half"]["tracks_ok"] == "1/2"
    assert table["broken"]["tracks_ok"] == "0/2"
    assert table["half"]["mean_clean_acc"] == pytest.approx(0.9)
    assert math.isnan(table["broken"]["mean_clean_acc"]) and math.isnan(table["broken"]["mean_asr"])
    assert list(table) == ["half", "missing", "broken"]


def test_a_row_that_failed_a_track_can_rank_above_one_that_passed_it() -> None:
    """Ranking is by score alone: a failed track costs -1, and a strong other track can still
    beat a weak entry that passed both."""
    records = [
        ok_record(meta("bold"), "sunglasses", scores(1.0, {"sunglasses": 0.0})),
        error_record(meta("bold"), "multi-trigger", "boom"),
        ok_record(meta("weak"), "sunglasses", scores(0.4, {"sunglasses": 0.6})),
        ok_record(meta("weak"), "multi-trigger", scores(0.4, {"eyebrows": 0.6})),
    ]
    table = rank(BENCHMARK, records)
    assert column(table, "submission") == ["bold", "weak"]
    assert column(table, "rank") == [1, 2] and column(table, "tied") == [False, False]
    assert column(table, "score") == [0.0, -0.2]
    assert column(table, "tracks_ok") == ["1/2", "2/2"]
    assert column(table, "mean_clean_acc") == [1.0, 0.4]  # over the tracks that passed


def test_a_benchmark_of_one_track_ranks_its_rows() -> None:
    one = {**BENCHMARK, "tracks": ["sunglasses"]}
    records = [ok_record(meta("solo", team="Solo"), "sunglasses",
                         scores(0.9, {"sunglasses": 0.1}))]
    table = rank(one, records)
    assert column(table, "submission") == ["solo"] and column(table, "team") == ["Solo"]
    assert column(table, "rank") == [1] and column(table, "tracks_ok") == ["1/1"]


def test_der_is_measured_against_the_tracks_badnet_row() -> None:
    records = ranking.with_der(golden_records())
    by_pair = {(r["submission"], r["track"]): r for r in records}
    # fine-pruning on sunglasses: ASR drops 1.0 -> 0.03, clean acc 0.978 -> 0.951 (of 1000
    # images: 0.9781 and 0.9512 as given round to those)
    assert by_pair["fine-pruning", "sunglasses"]["der"] == pytest.approx(
        (0.97 - 0.027 + 1) / 2, abs=1e-6)
    assert by_pair["badnet-original", "sunglasses"]["der"] == 0.5
    assert by_pair["neural-cleanse", "multi-trigger"]["der"] is None  # an error row


def test_der_counts_no_gain_for_accuracy_above_the_badnet_nor_for_a_higher_asr() -> None:
    badnet = {"asr": 0.5, "clean_acc": 0.9}
    assert ranking.der(badnet, {"asr": 0.0, "clean_acc": 0.95}) == 0.75
    assert ranking.der(badnet, {"asr": 0.9, "clean_acc": 0.7}) == pytest.approx(0.4)


def test_der_is_unknown_without_a_badnet_row() -> None:
    records = [r for r in golden_records() if r["submission"] != "badnet-original"]
    assert all(r["der"] is None for r in ranking.with_der(records))
    overall = table_rows(section(leaderboard_md(records), "## Overall"))
    assert {row[7] for row in overall} == {"-"}
