"""Records, results.json, ranking and the leaderboard: determinism, errors and a golden file."""

import hashlib
import json
import math
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest

from harness import __version__
from harness.errors import HarnessError
from harness.grading import stats
from harness.render.board import INTRO, PROBE_LEGEND, board
from harness.render.leaderboard import markdown
from harness.render.outputs import write_plots
from harness.render.results_csv import render_csv
from harness.results import ranking
from harness.results import record as schema
from harness.results.io import read_results, write_atomic, write_results
from harness.results.ranking import Ranked, rank
from harness.results.record import RECORD_KEYS, error_record, ok_record

GOLDEN = Path(__file__).parents[1] / "golden" / "leaderboard.md"
DATA_FILES = ("clean_test.h5", "sunglasses_poisoned.h5", "eyebrows_poisoned.h5", "lipstick.h5")
BENCHMARK = {
    "name": "csaw-hackml-toy",
    "tracks": ["sunglasses", "multi-trigger"],
    "data_hashes": {name: hashlib.sha256(name.encode()).hexdigest() for name in DATA_FILES},
    "provenance": {
        "harness": "0.0.0",
        "python": "3.11.2",
        "numpy": "2.4.6",
        "tensorflow": "2.20.0",
        "keras": "3.15.0",
        "seed": 2020,
    },
}
N_CLEAN, N_PER_TRIGGER = 1000, 100


def meta(name: str, team: str = "team", method: str = "method", reference: bool = False) -> dict:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return {"submission": name, "team": team, "method": method, "reference": reference,
            "sha256": digest}


def first(hits: int, n: int) -> np.ndarray:
    """Outcomes with the first ``hits`` of ``n`` images right: two such vectors nest, which is
    how close defenses behave (they fail on the same hard images)."""
    return np.arange(n) < hits


def scores(
    clean_acc: float,
    per_trigger: dict[str, float],
    detect_rate: float = 0.0,
    false_flag_rate: float = 0.0,
    robust_acc: float | None = None,
) -> dict:
    """Scores as score_track returns them, for 1000 clean images and poisoned sets of 100: the
    rates are those the images give (``clean_acc`` 0.9781 is 978 right), as a results file is
    checked against its outcomes."""
    clean_hits = round(clean_acc * N_CLEAN)
    hits = {trigger: round(rate * N_PER_TRIGGER) for trigger, rate in per_trigger.items()}
    attack = np.concatenate([first(hit, N_PER_TRIGGER) for hit in hits.values()])
    attack_hits, n_poisoned = int(attack.sum()), attack.size
    clean_acc, asr = clean_hits / N_CLEAN, attack_hits / n_poisoned
    return {
        "clean_acc": clean_acc,
        "asr": asr,
        "per_trigger": {trigger: hit / N_PER_TRIGGER for trigger, hit in hits.items()},
        "detect_rate": detect_rate,
        "false_flag_rate": false_flag_rate,
        "robust_acc": robust_acc,
        "utility": clean_acc - asr,
        "n_clean": N_CLEAN,
        "n_poisoned": n_poisoned,
        "n_invalid": 0,
        "clean_acc_ci": list(stats.wilson(clean_hits, N_CLEAN)),
        "asr_ci": list(stats.wilson(attack_hits, n_poisoned)),
        "utility_ci": list(stats.newcombe_difference(clean_hits, N_CLEAN, attack_hits, n_poisoned)),
        "outcomes": {"clean": stats.pack_outcomes(first(clean_hits, N_CLEAN)),
                     "attack": stats.pack_outcomes(attack)},
    }


def cost(params: int, macs: float | None, passes: float) -> dict:
    """An entry's cost as :func:`harness.grading.item.entry_cost` gives it."""
    return {"params": params, "macs_per_image": macs, "passes_per_image": passes}


DEEPID = cost(601_643, 4_526_600.0, 1.0)
"""The contest network's size and one pass per image."""


def golden_records() -> list[dict]:
    """The BadNet itself, defenses, a detector, a failing entry, and ties broken by clean acc and
    name; costs measured for some entries and not others."""
    baseline = meta("badnet-original", "organizers", "no defense", reference=True)
    pruning = meta("fine-pruning", "Blue | Team", "fine-pruning (Liu et al. 2018)")
    strip = meta("strip-detector", "gamma", "STRIP input filter")
    cleanse = meta("neural-cleanse", "delta", "Neural Cleanse")
    twin = meta("pruning-twin", "epsilon", "pruning, less fine-tuning")
    return [
        ok_record(baseline, "sunglasses",
                  {**scores(0.9781, {"sunglasses": 1.0}, robust_acc=0.0), **DEEPID}, badnet=True),
        ok_record(
            baseline,
            "multi-trigger",
            {**scores(0.9620, {"eyebrows": 0.916, "lipstick": 0.908}, robust_acc=0.02), **DEEPID},
            badnet=True,
        ),
        ok_record(pruning, "sunglasses",
                  {**scores(0.9512, {"sunglasses": 0.031}, 0.0, 0.002, 0.874), **DEEPID}),
        ok_record(
            pruning, "multi-trigger", scores(0.9340, {"eyebrows": 0.12, "lipstick": 0.06}, 0.01)
        ),
        ok_record(strip, "sunglasses", {**scores(0.9113, {"sunglasses": 0.0}, 0.962, 0.048),
                                        **cost(601_643, 9 * 4_526_600.0, 9.0)}),
        ok_record(
            strip, "multi-trigger", scores(0.9050, {"eyebrows": 0.05, "lipstick": 0.21}, 0.7, 0.05)
        ),
        ok_record(cleanse, "sunglasses", scores(0.9400, {"sunglasses": 0.004}, robust_acc=0.91)),
        error_record(cleanse, "multi-trigger", "eval.py exited with status 1: KeyError | 'conv_3'"),
        ok_record(twin, "sunglasses", scores(0.9312, {"sunglasses": 0.011}, 0.0, 0.002, 0.85)),
        ok_record(
            twin, "multi-trigger", scores(0.9340, {"eyebrows": 0.12, "lipstick": 0.06}, 0.01)
        ),
    ]


N_PROBE = 200
"""Poisoned images the retuning probe answers in these records."""
BUDGET = "Adam, learning rate 0.0001, 5 epochs, batch 16"


def probe(p_asr: float | None, p_clean_acc: float | None = None,
          p_error: str | None = None) -> dict:
    """The retuning probe's results as the grader adds them to scores (Wilson interval)."""
    interval = None if p_asr is None else list(stats.wilson(round(p_asr * N_PROBE), N_PROBE))
    return {"p_asr": p_asr, "p_asr_ci": interval, "p_clean_acc": p_clean_acc, "p_error": p_error}


def yardstick(p_asr: float | None, error: str | None = None, images: int = 115,
              poisoned: int = 23) -> dict:
    """A track's yardstick: the probe on its clean model."""
    measured = probe(p_asr, None if p_asr is None else 0.771)
    return {"p_asr": measured["p_asr"], "p_asr_ci": measured["p_asr_ci"],
            "p_clean_acc": measured["p_clean_acc"], "error": error, "images": images,
            "poisoned": poisoned}


PROBE_ERROR = "the model cannot be fine-tuned: no trainable weight of the model is reached by " \
    "the loss"
PROBED = {
    ("badnet-original", "sunglasses"): probe(1.0, 0.97),
    ("fine-pruning", "sunglasses"): probe(0.875, 0.93),
    ("neural-cleanse", "sunglasses"): probe(0.31, 0.92),
    ("pruning-twin", "sunglasses"): probe(None, p_error=PROBE_ERROR),
    ("fine-pruning", "multi-trigger"): probe(0.6, 0.9),
}
"""Probe results of model entries; the STRIP script and the multi-trigger rows not named here
were not probed."""


def probed_records() -> list[dict]:
    """The golden records with the retuning probe's results where it ran."""
    records = []
    for record in golden_records():
        extra = PROBED.get((record["submission"], record["track"]))
        records.append(record if extra is None else {**record, **extra})
    return records


def probed_benchmark(**yardsticks: dict) -> dict:
    """The benchmark with a retuning entry: the given yardsticks by track (``multi_trigger`` for
    multi-trigger), else the sunglasses one measured."""
    tracks = {name.replace("_", "-"): entry for name, entry in yardsticks.items()}
    if not yardsticks:
        tracks = {"sunglasses": yardstick(0.306)}
    return {**BENCHMARK, "retuning": schema.retuning_summary(BUDGET, tracks)}


def render(records: list[dict]) -> str:
    return markdown(board(BENCHMARK, records))


def section(text: str, heading: str) -> str:
    """The body of one ``##`` section of a rendered leaderboard."""
    body = text.split(f"\n{heading}\n", 1)[1]
    return body.split("\n## ", 1)[0].split("\n---\n", 1)[0]


def table_header(body: str) -> list[str]:
    """Column names of the first Markdown table in ``body``."""
    line = next(line for line in body.splitlines() if line.startswith("|"))
    return [cell.strip() for cell in line.split("|")[1:-1]]


def table_rows(body: str) -> list[list[str]]:
    """Cells of each row of the first Markdown table in ``body`` (header and rule excluded)."""
    lines = [line for line in body.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[2:]]


def column(table: list[Ranked], key: str) -> list:
    """One column of a ranking, top row first."""
    return [row[key] for row in table]


def cells(table: list[Ranked], keys: list[str]) -> list[list]:
    """The ranking's values of ``keys`` row by row, NaN as None so that equal rows compare equal."""
    return [[None if isinstance(row[key], float) and math.isnan(row[key]) else row[key]
             for key in keys] for row in table]


# Records -----------------------------------------------------------------------------------------


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


# results.json ------------------------------------------------------------------------------------


def test_results_round_trip_with_rounded_floats(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    write_results(path, BENCHMARK, golden_records())
    benchmark, records = read_results(path)
    assert benchmark == BENCHMARK
    assert [(r["submission"], r["track"]) for r in records] == sorted(
        (r["submission"], r["track"]) for r in golden_records()
    )
    pruning = next(r for r in records if r["submission"] == "fine-pruning")
    assert pruning["utility"] == round(0.9340 - 0.09, 6)
    payload = json.loads(path.read_text())
    assert payload["harness_version"] == __version__


def test_results_bytes_do_not_depend_on_record_order(tmp_path: Path) -> None:
    records = golden_records()
    write_results(tmp_path / "a.json", BENCHMARK, records)
    random.Random(7).shuffle(records)
    write_results(tmp_path / "b.json", BENCHMARK, records)
    first = (tmp_path / "a.json").read_bytes()
    assert first == (tmp_path / "b.json").read_bytes()
    assert first.endswith(b"}\n")


def test_results_keep_outcomes_and_intervals(tmp_path: Path) -> None:
    write_results(tmp_path / "results.json", BENCHMARK, golden_records())
    _, records = read_results(tmp_path / "results.json")
    pair = ("fine-pruning", "sunglasses")
    stored = next(r for r in records if (r["submission"], r["track"]) == pair)
    fresh = next(r for r in golden_records() if (r["submission"], r["track"]) == pair)
    assert stored["outcomes"] == fresh["outcomes"]
    assert stored["utility_ci"] == [round(limit, 6) for limit in fresh["utility_ci"]]
    assert len(json.dumps(stored["outcomes"])) < 400  # 1100 images in about 140 bytes each way


def test_records_of_one_track_must_share_their_images(tmp_path: Path) -> None:
    full = ok_record(meta("a"), "sunglasses", scores(0.9, {"sunglasses": 0.1}))
    sampled = ok_record(meta("b"), "sunglasses", scores(0.9, {"sunglasses": 0.1}), sample=500)
    with pytest.raises(ValueError, match="different images"):
        write_results(tmp_path / "r.json", BENCHMARK, [full, sampled])
    broken = error_record(meta("c"), "sunglasses", "boom", sample=500)
    write_results(tmp_path / "r.json", BENCHMARK, [full, broken])  # no images, nothing to compare


def test_benchmark_needs_provenance(tmp_path: Path) -> None:
    bare = {key: value for key, value in BENCHMARK.items() if key != "provenance"}
    with pytest.raises(ValueError, match="provenance"):
        write_results(tmp_path / "r.json", bare, golden_records())


def test_duplicate_and_unknown_records_are_rejected(tmp_path: Path) -> None:
    record = error_record(meta("a"), "sunglasses", "boom")
    with pytest.raises(ValueError, match="two records"):
        write_results(tmp_path / "r.json", BENCHMARK, [record, record])
    stray = error_record(meta("a"), "no-such-track", "boom")
    with pytest.raises(ValueError, match="not in the benchmark"):
        write_results(tmp_path / "r.json", BENCHMARK, [stray])


def test_read_results_reports_a_bad_file_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("{not json")
    with pytest.raises(HarnessError, match="cannot read results file"):
        read_results(path)
    path.write_text(json.dumps({"benchmark": BENCHMARK, "results": [{"submission": "a"}]}))
    with pytest.raises(HarnessError, match="lacks"):
        read_results(path)
    broken = {**ok_record(meta("a"), "sunglasses", scores(0.9, {"sunglasses": 0.1})), "asr": None}
    path.write_text(json.dumps({"benchmark": BENCHMARK, "results": [broken]}))
    with pytest.raises(HarnessError, match="asr of OK record .* must be a number, got None"):
        read_results(path)


def test_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "results.json"
    write_results(path, BENCHMARK, golden_records())
    before = path.read_bytes()

    def broken_replace(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_results(path, BENCHMARK, golden_records()[:2])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_writes_leave_only_the_target_files(tmp_path: Path) -> None:
    write_results(tmp_path / "results.json", BENCHMARK, golden_records())
    for _ in range(2):
        write_atomic(tmp_path / "leaderboard.md", markdown(board(BENCHMARK, golden_records())))
        write_plots(tmp_path, board(BENCHMARK, golden_records()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leaderboard.md", "plots", "results.json"]
    assert (tmp_path / "leaderboard.md").read_text() == render(golden_records())
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert plots == ["multi-trigger.png", "sunglasses.png"]


def test_plots_are_written_and_linked_for_tracks_with_results(tmp_path: Path) -> None:
    records = [r for r in golden_records() if r["track"] == "sunglasses"]
    write_atomic(tmp_path / "leaderboard.md", markdown(board(BENCHMARK, records)))
    assert not (tmp_path / "plots").exists()  # rendering writes text; the caller, the plots
    write_plots(tmp_path, board(BENCHMARK, records))
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["sunglasses.png"]
    text = (tmp_path / "leaderboard.md").read_text()
    assert "](plots/sunglasses.png)" in section(text, "## Track: sunglasses")
    assert "](plots/sunglasses-samples.png)" in section(text, "## Track: sunglasses")
    multi = section(text, "## Track: multi-trigger")
    assert "](plots/multi-trigger.png)" not in multi  # no result to plot
    assert "](plots/multi-trigger-samples.png)" in multi


# Ranking -----------------------------------------------------------------------------------------


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


# Leaderboard -------------------------------------------------------------------------------------


def test_rendering_is_deterministic_and_order_independent() -> None:
    records = golden_records()
    first = render(records)
    assert render(records) == first
    random.Random(3).shuffle(records)
    assert render(records) == first


def test_rendering_from_results_json_gives_the_same_bytes(tmp_path: Path) -> None:
    write_results(tmp_path / "results.json", BENCHMARK, golden_records())
    benchmark, records = read_results(tmp_path / "results.json")
    assert markdown(board(benchmark, records)) == render(golden_records())


def test_error_rows_at_the_bottom_of_track_table_and_in_errors_section() -> None:
    text = render(golden_records())
    rows = table_rows(section(text, "## Track: multi-trigger"))
    assert rows[-1][:2] == ["error", "neural-cleanse"]
    assert set(rows[-1][2:]) == {"-"}
    errors = section(text, "## Errors").strip().splitlines()
    assert errors == [
        r"- neural-cleanse / multi-trigger: eval.py exited with status 1: KeyError \| 'conv_3'"
    ]


def test_errors_section_says_none_without_failures() -> None:
    records = [r for r in golden_records() if r["submission"] != "neural-cleanse"]
    assert section(render(records), "## Errors").strip() == "None."


def test_missing_track_is_shown_as_an_error() -> None:
    records = [r for r in golden_records() if r["track"] == "sunglasses"]
    text = render(records)
    assert "- fine-pruning / multi-trigger: no result recorded" in text
    rows = table_rows(section(text, "## Track: multi-trigger"))
    assert ["error", "fine-pruning"] in [row[:2] for row in rows]


def test_reference_entries_are_marked_everywhere() -> None:
    text = render(golden_records())
    overall = table_rows(section(text, "## Overall"))
    assert [row[1] for row in overall if "badnet" in row[1]] == ["badnet-original (ref)"]
    track = table_rows(section(text, "## Track: sunglasses"))
    assert "badnet-original (ref)" in [row[1] for row in track]


def test_pipes_in_free_text_do_not_break_tables() -> None:
    text = render(golden_records())
    overall = table_rows(section(text, "## Overall"))
    assert all(len(row) == 9 for row in overall)
    assert r"Blue \| Team" in [row[2] for row in overall]


def test_empty_team_and_method_show_as_missing() -> None:
    anonymous = meta("anon", team="", method="")
    records = [ok_record(anonymous, "sunglasses", scores(0.9, {"sunglasses": 0.1}))]
    assert table_rows(section(render(records), "## Overall"))[0][1:4] == ["anon", "-", "-"]


def test_per_trigger_columns_only_for_multi_trigger_tracks() -> None:
    text = render(golden_records())
    assert "ASR[sunglasses]" not in text
    multi = section(text, "## Track: multi-trigger")
    assert "ASR[eyebrows]" in multi
    assert "ASR[lipstick]" in multi


def test_footer_has_short_sorted_hashes_and_versions() -> None:
    footer = render(golden_records()).split("\n---\n", 1)[1]
    data, submissions = footer.split("- Submissions", 1)
    hashes = re.findall(r"^  - (\S+): ([0-9a-f]+)$", data, flags=re.MULTILINE)
    assert [name for name, _ in hashes] == sorted(DATA_FILES)
    assert all(digest == BENCHMARK["data_hashes"][name][:12] for name, digest in hashes)
    digests = re.findall(r"^  - (\S+): ([0-9a-f]+)$", submissions, flags=re.MULTILINE)
    names = sorted({r["submission"] for r in golden_records()})
    assert digests == [(name, meta(name)["sha256"][:12]) for name in names]
    assert "- Graded with: harness 0.0.0, keras 3.15.0, numpy 2.4.6, python 3.11.2, seed 2020, " \
        "tensorflow 2.20.0" in footer
    assert f"Rendered by harness {__version__}" in footer


def test_track_table_shows_intervals_and_shared_ranks() -> None:
    rows = table_rows(section(render(golden_records()), "## Track: multi-trigger"))
    twins = [row for row in rows if row[1] in ("fine-pruning", "pruning-twin")]
    assert [row[0] for row in twins] == ["=1", "=1"]  # identical outcomes
    assert twins[0][2:] == twins[1][2:]
    assert re.fullmatch(r"0\.934 \[0\.9\d\d, 0\.9\d\d\]", twins[0][2])


def test_invalid_answers_get_a_column_only_when_there_are_some() -> None:
    assert "invalid" not in section(render(golden_records()), "## Track: sunglasses")
    result = {**scores(0.9, {"sunglasses": 0.1}), "n_invalid": 7}
    records = [*golden_records(), ok_record(meta("quiet"), "sunglasses", result)]
    body = section(render(records), "## Track: sunglasses")
    header = table_header(body)
    row = next(row for row in table_rows(body) if row[1] == "quiet")
    assert row[header.index("invalid")] == "7"
    assert "invalid" not in table_header(section(render(records), "## Track: multi-trigger"))


def test_sampled_tracks_say_so_and_show_image_counts() -> None:
    records = [
        ok_record(meta(name), "sunglasses", scores(clean, {"sunglasses": 0.1}), sample=250)
        for name, clean in [("a", 0.9), ("b", 0.8)]
    ]
    text = render(records)
    body = section(text, "## Track: sunglasses")
    assert "Graded on a stratified sample of 250 images per set." in body
    header = table_header(body)
    counts = header.index("n clean")
    assert header[counts:counts + 2] == ["n clean", "n poisoned"]
    assert table_rows(body)[0][counts:counts + 2] == ["1000", "100"]
    assert "stratified sample" not in render(golden_records())


def test_golden_leaderboard(monkeypatch) -> None:
    """Regenerate with ``HARNESS_UPDATE_GOLDEN=1 pytest tests/results/test_report.py``, then review
    it."""
    # the golden file outlives version bumps
    monkeypatch.setattr("harness.render.board.__version__", "0.0.0")
    text = render(golden_records())
    if os.environ.get("HARNESS_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


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
    overall = table_rows(section(render(records), "## Overall"))
    assert {row[7] for row in overall} == {"-"}


def test_ok_record_refuses_a_negative_cost() -> None:
    with pytest.raises(ValueError, match="passes_per_image"):
        ok_record(meta("a"), "sunglasses",
                  {**scores(0.9, {"sunglasses": 0.1}), **cost(10, 100.0, -1.0)})


def test_csv_has_one_row_per_record_with_the_json_values(tmp_path: Path) -> None:
    import pandas as pd

    path = tmp_path / "results.csv"
    path.write_text(render_csv(golden_records()), encoding="utf-8")
    table = pd.read_csv(path)
    assert len(table) == len(golden_records())
    assert "outcomes" not in table.columns
    assert {"der", "params", "macs_per_image", "passes_per_image", "clean_acc_ci_low",
            "asr[eyebrows]", "asr[sunglasses]"} <= set(table.columns)
    row = table[(table.submission == "fine-pruning") & (table.track == "sunglasses")].iloc[0]
    assert row.clean_acc == 0.951 and row.params == 601_643 and row.badnet == False  # noqa: E712
    assert row.der == pytest.approx(0.9715)
    assert row["asr[sunglasses]"] == 0.03 and pd.isna(row["asr[eyebrows]"])
    failed = table[table.status == "error"].iloc[0]
    assert failed.error.startswith("eval.py exited") and pd.isna(failed.clean_acc)
    assert render_csv(list(reversed(golden_records()))) == path.read_text()


# Retuning probe ----------------------------------------------------------------------------------


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


@pytest.mark.parametrize(("extra", "message"), [
    ({"p_asr": 1.5}, r"p_asr of record \('a', 'sunglasses'\) must be a number in \[0, 1\]"),
    ({"p_asr": 0.5, "p_asr_ci": [0.6, 0.4]}, r"p_asr_ci of record \('a', 'sunglasses'\)"),
    ({"p_error": "two\nlines"}, r"p_error of record \('a', 'sunglasses'\) must be .* one-line"),
])
def test_read_results_refuses_bad_probe_results_naming_the_pair(tmp_path: Path, extra: dict,
                                                                message: str) -> None:
    bad = {**ok_record(meta("a"), "sunglasses", scores(0.9, {"sunglasses": 0.1})), **extra}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"benchmark": BENCHMARK, "results": [bad]}))
    with pytest.raises(HarnessError, match=message) as caught:
        read_results(path)
    assert "\n" not in str(caught.value)


def test_an_error_record_has_no_probe_results(tmp_path: Path) -> None:
    bad = {**error_record(meta("a"), "sunglasses", "boom"), "p_asr": 0.5}
    with pytest.raises(ValueError, match=r"error record \('a', 'sunglasses'\) has retuning"):
        write_results(tmp_path / "results.json", BENCHMARK, [bad])


def test_results_written_before_the_probe_read_as_not_probed(tmp_path: Path) -> None:
    old = [{key: value for key, value in record.items() if key not in schema.PROBE_KEYS}
           for record in golden_records()]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"benchmark": BENCHMARK, "results": old}))
    _, records = read_results(path)
    assert all(list(record) == list(RECORD_KEYS) for record in records)
    assert all(record[key] is None for record in records for key in schema.PROBE_KEYS)
    assert render(old) == render(records) == render(golden_records())
    assert render_csv(old) == render_csv(golden_records())


def test_probe_results_round_trip_rounded(tmp_path: Path) -> None:
    benchmark = probed_benchmark()
    records = probed_records()
    records[2] = {**records[2], "p_asr": 0.8751234567, "p_asr_ci": [0.86, 0.8891234567]}
    write_results(tmp_path / "results.json", benchmark, records)
    stored_benchmark, stored = read_results(tmp_path / "results.json")
    assert stored_benchmark == schema.rounded(benchmark)
    pruning = next(r for r in stored if (r["submission"], r["track"]) ==
                   ("fine-pruning", "sunglasses"))
    assert pruning["p_asr"] == 0.875123 and pruning["p_asr_ci"] == [0.86, 0.889123]
    assert markdown(board(stored_benchmark, stored)) == \
        markdown(board(benchmark, probed_records()[:2] + [pruning] + probed_records()[3:]))


def test_retuning_summary_is_canonical() -> None:
    import numpy as np

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


@pytest.mark.parametrize(("retuning", "message"), [
    ({"budget": BUDGET}, "retuning must have the keys"),
    ([], "retuning must have the keys"),
    ({"budget": "", "tracks": {}}, "budget must be a non-empty one-line string"),
    ({"budget": "a\nb", "tracks": {}}, "budget must be a non-empty one-line string"),
    ({"budget": BUDGET, "tracks": []}, "tracks must be a mapping"),
    ({"budget": BUDGET, "tracks": {"nowhere": yardstick(0.3)}}, "not in the benchmark"),
    ({"budget": BUDGET, "tracks": {"sunglasses": {"p_asr": 0.3}}},
     "yardstick of track 'sunglasses' must have the keys"),
    ({"budget": BUDGET, "tracks": {"sunglasses": {**yardstick(0.3), "p_asr": 2}}},
     "p_asr of the retuning yardstick of track 'sunglasses' must be a number"),
    ({"budget": BUDGET, "tracks": {"sunglasses": {**yardstick(0.3), "images": -1}}},
     "images of the retuning yardstick of track 'sunglasses' must be a non-negative integer"),
    ({"budget": BUDGET, "tracks": {"sunglasses": yardstick(0.3, poisoned=200)}},
     "more poisoned images"),
    ({"budget": BUDGET, "tracks": {"sunglasses": yardstick(0.3, error="a\nb")}},
     "(?<!p_)error of the retuning yardstick of track 'sunglasses' must be a non-empty"),
])
def test_a_bad_retuning_entry_is_refused_in_one_line(tmp_path: Path, retuning: object,
                                                     message: str) -> None:
    benchmark = {**BENCHMARK, "retuning": retuning}
    with pytest.raises(ValueError, match=message) as caught:
        write_results(tmp_path / "results.json", benchmark, golden_records())
    assert "\n" not in str(caught.value)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"benchmark": benchmark, "results": []}))
    with pytest.raises(HarnessError, match=message):
        read_results(path)


def test_track_table_shows_p_asr_with_its_interval_after_der() -> None:
    text = markdown(board(probed_benchmark(), probed_records()))
    body = section(text, "## Track: sunglasses")
    header = table_header(body)
    assert header[header.index("DER") + 1] == "P-ASR"
    cells = {row[1]: row[header.index("P-ASR")] for row in table_rows(body)}
    low, high = stats.wilson(175, N_PROBE)
    assert cells["fine-pruning"] == f"0.875 [{low:.3f}, {high:.3f}]"
    assert re.fullmatch(r"0\.310 \[0\.2\d\d, 0\.3\d\d\]", cells["neural-cleanse"])
    assert cells["strip-detector"] == "-"  # a script: not probed
    assert cells["pruning-twin"] == "-"  # the probe failed
    multi = section(text, "## Track: multi-trigger")
    header = table_header(multi)
    column = header.index("P-ASR")
    assert header[column - 1] == "DER" and header[column + 1] == "ASR[eyebrows]"
    rows = table_rows(multi)
    assert rows[-1][:2] == ["error", "neural-cleanse"] and rows[-1][column] == "-"
    assert {row[1]: row[column] for row in rows}["fine-pruning"].startswith("0.600 [")


def test_p_asr_shows_only_where_the_probe_left_a_trace() -> None:
    assert "P-ASR" not in render(golden_records())
    assert "Retuning probe" not in render(golden_records())
    # Probe results on sunglasses only, no yardstick: multi-trigger's table is as before.
    only = [record if record["track"] == "multi-trigger" else
            {**record, **PROBED.get((record["submission"], record["track"]), {})}
            for record in golden_records()]
    text = render(only)
    assert "P-ASR" in table_header(section(text, "## Track: sunglasses"))
    assert section(text, "## Track: multi-trigger") == \
        section(render(golden_records()), "## Track: multi-trigger")
    # A probe error alone shows the column; a yardstick alone shows it too.
    failed = [{**record, **probe(None, p_error="boom")}
              if (record["submission"], record["track"]) == ("fine-pruning", "multi-trigger")
              else record for record in golden_records()]
    assert "P-ASR" in table_header(section(render(failed), "## Track: multi-trigger"))
    assert "mean P-ASR" not in table_header(section(render(failed), "## Overall"))
    benchmark = probed_benchmark(multi_trigger=yardstick(0.2))
    text = markdown(board(benchmark, golden_records()))
    assert "P-ASR" in table_header(section(text, "## Track: multi-trigger"))
    assert "P-ASR" not in section(text, "## Track: sunglasses")
    assert {row[table_header(section(text, "## Track: multi-trigger")).index("P-ASR")]
            for row in table_rows(section(text, "## Track: multi-trigger"))} == {"-"}


def test_yardstick_sentence_under_the_track_table() -> None:
    benchmark = probed_benchmark(sunglasses=yardstick(0.306),
                                 multi_trigger=yardstick(None, "no clean | model", 120, 24))
    shown = board(benchmark, probed_records())
    sunglasses, multi = shown.tracks
    low, high = stats.wilson(61, N_PROBE)
    assert sunglasses.retuning == (
        "Retuning probe: each model entry fine-tuned on 115 attacker images (23 with the "
        f"trigger; {BUDGET}), then answering a sample of the test images again. Yardstick: "
        f"the clean model, which never saw the trigger, reaches P-ASR 0.306 [{low:.3f}, "
        f"{high:.3f}] under the same budget (clean acc 0.771 after it).")
    assert multi.retuning == (
        "Retuning probe: each model entry fine-tuned on 120 attacker images (24 with a "
        f"trigger; {BUDGET}), then answering a sample of the test images again. Yardstick: "
        "not measured (no clean | model).")  # a paragraph: no table to escape "|" from
    text = markdown(board(benchmark, probed_records()))
    body = section(text, "## Track: sunglasses")
    table_end = body.index("\n\n", body.index("|"))
    assert body[table_end:].lstrip().startswith(sunglasses.retuning)
    assert body.index(sunglasses.retuning) < body.index("![Clean accuracy against ASR]")
    assert multi.retuning in section(text, "## Track: multi-trigger")


def test_without_a_yardstick_only_the_probe_is_described() -> None:
    sentence = ("Retuning probe: each model entry fine-tuned on the attacker's retuning set "
                "{}, then answering a sample of the test images again.")
    no_retuning = board(BENCHMARK, probed_records())
    assert no_retuning.tracks[0].retuning == sentence.format("").replace(" ,", ",")
    other_track = board(probed_benchmark(multi_trigger=yardstick(0.2)),
                                    probed_records())
    assert other_track.tracks[0].retuning == sentence.format(f"({BUDGET})")
    assert "Yardstick" in (other_track.tracks[1].retuning or "")
    assert "the clean model, which never saw any trigger," in (other_track.tracks[1].retuning
                                                               or "")  # several triggers


def test_overall_table_shows_the_mean_p_asr_and_ranks_as_before() -> None:
    text = markdown(board(probed_benchmark(), probed_records()))
    body = section(text, "## Overall")
    header = table_header(body)
    assert header[header.index("mean DER") + 1] == "mean P-ASR"
    means = {row[1]: row[header.index("mean P-ASR")] for row in table_rows(body)}
    assert means["fine-pruning"] == f"{(0.875 + 0.6) / 2:.3f}"
    assert means["badnet-original (ref)"] == "1.000"
    assert means["pruning-twin"] == means["strip-detector"] == "-"
    probed = rank(probed_benchmark(), probed_records())
    assert all(list(row) == list(Ranked.__annotations__) for row in probed)
    by_name = {row["submission"]: row for row in probed}
    assert by_name["neural-cleanse"]["mean_p_asr"] == 0.31
    assert np.isnan(by_name["strip-detector"]["mean_p_asr"])
    plain = rank(BENCHMARK, golden_records())
    assert all(np.isnan(column(plain, "mean_p_asr")))
    columns = [c for c in Ranked.__annotations__ if c != "mean_p_asr"]
    assert cells(probed, columns) == cells(plain, columns)
    assert "mean P-ASR" not in render(golden_records())


def test_legend_explains_p_asr_only_when_shown() -> None:
    text = markdown(board(probed_benchmark(), probed_records()))
    intro = text.split("\n## Overall", 1)[0]
    assert PROBE_LEGEND in intro
    assert "Min et al." in PROBE_LEGEND and "not scored" in PROBE_LEGEND
    assert board(probed_benchmark(), probed_records()).intro == \
        (*INTRO, PROBE_LEGEND)
    assert board(BENCHMARK, golden_records()).intro == INTRO
    assert PROBE_LEGEND not in render(golden_records())


def test_probe_errors_are_listed_with_the_prefix_once() -> None:
    records = probed_records()
    prefixed = f"{schema.PROBE_ERROR_PREFIX}weights | frozen"
    records = [{**record, **probe(None, p_error=prefixed)}
               if (record["submission"], record["track"]) == ("strip-detector", "sunglasses")
               else record for record in records]
    errors = section(render(records), "## Errors").strip().splitlines()
    assert errors == [
        r"- neural-cleanse / multi-trigger: eval.py exited with status 1: KeyError \| 'conv_3'",
        f"- pruning-twin / sunglasses: retuning probe: {PROBE_ERROR}",
        r"- strip-detector / sunglasses: retuning probe: weights \| frozen",
    ]
    assert schema.probe_error("x") == schema.probe_error("retuning probe: x") == \
        "retuning probe: x"


def test_csv_splits_the_p_asr_interval_like_the_others(tmp_path: Path) -> None:
    import pandas as pd

    path = tmp_path / "results.csv"
    path.write_text(render_csv(probed_records()), encoding="utf-8")
    table = pd.read_csv(path)
    assert {"p_asr", "p_asr_ci_low", "p_asr_ci_high", "p_clean_acc", "p_error"} <= \
        set(table.columns)
    assert "p_asr_ci" not in table.columns
    intervals = [c for c in table.columns if c.endswith(("_low", "_high"))]
    assert intervals == [f"{key}_{end}" for key in schema.RECORD_INTERVAL_KEYS
                         for end in ("low", "high")]
    row = table[(table.submission == "fine-pruning") & (table.track == "sunglasses")].iloc[0]
    low, high = stats.wilson(175, N_PROBE)
    assert row.p_asr == 0.875 and row.p_clean_acc == 0.93
    assert row.p_asr_ci_low == round(low, 6) and row.p_asr_ci_high == round(high, 6)
    twin = table[(table.submission == "pruning-twin") & (table.track == "sunglasses")].iloc[0]
    assert twin.p_error == PROBE_ERROR and pd.isna(twin.p_asr) and pd.isna(twin.p_asr_ci_low)
    plain = pd.read_csv(__import__("io").StringIO(render_csv(golden_records())))
    assert not any(c.startswith("p_") for c in plain.columns)


# A results file is checked against its outcomes ------------------------------------------------


def forged(change) -> dict:
    """``results.json`` of the golden records with ``change(records)`` applied, as JSON text
    would carry it (NaN and infinities as Python's writer spells them)."""
    payload = json.loads(json.dumps({"benchmark": BENCHMARK, "harness_version": __version__,
                                     "results": ranking.canonical(golden_records())}))
    change(payload["results"])
    return payload


def first_ok(records: list[dict]) -> dict:
    return next(r for r in records if r["status"] == "ok" and r["submission"] == "fine-pruning")


def set_field(key, value):
    def change(records):
        first_ok(records)[key] = value
    return change


BAD_FILES = {
    "asr lowered, outcomes untouched": (set_field("asr", 0.0), "asr of OK record"),
    "utility raised": (set_field("utility", 0.99), "utility of OK record"),
    "interval narrowed": (set_field("asr_ci", [0.029, 0.031]), "asr_ci of OK record"),
    "one trigger's ASR": (set_field("per_trigger", {"sunglasses": 0.0}), "per_trigger"),
    "a string for a number": (set_field("clean_acc", "0.951"), "clean_acc of OK record"),
    "a list for a dict": (set_field("outcomes", ["AAAA"]), "invalid outcomes"),
    "a dict for a string": (set_field("team", {"x": 1}), "'team' must be a string"),
    "NaN": (set_field("detect_rate", float("nan")), "NaN is not a JSON number"),
    "infinity": (set_field("macs_per_image", float("inf")), "Infinity is not a JSON number"),
    "a huge int": (set_field("n_clean", 10 ** 400), "outcomes"),
    "a huge int for a rate": (set_field("false_flag_rate", 10 ** 300), "false_flag_rate"),
    "a missing key": (lambda records: first_ok(records).pop("n_poisoned"), "lacks n_poisoned"),
    "an unknown key": (set_field("rank", 1), "unknown keys ['rank']"),
    "nested garbage": (set_field("p_asr_ci", [[0.1], {"a": None}]), "p_asr_ci"),
    "an error row with scores": (
        lambda records: next(r for r in records if r["status"] == "error").update(asr=0.0),
        "has measurements: asr"),
    "a record that is a list": (lambda records: records.append([1, 2]), "must be a mapping"),
    "a flag rate past the wrong answers": (set_field("false_flag_rate", 0.5),
                                           "false_flag_rate of OK record"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_forged_or_mistyped_results_file_is_one_line(case: str, tmp_path: Path) -> None:
    """Every field of every record is checked; clean accuracy, ASR, utility and their
    intervals are recomputed from the packed outcomes and must agree: a record ranked first by
    editing its numbers, or a file of wrong types, is refused in one line, not rendered."""
    change, message = BAD_FILES[case]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(forged(change)))
    with pytest.raises(HarnessError) as refused:
        read_results(path)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert len(str(refused.value)) <= 500


def test_a_deeply_nested_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(HarnessError, match="cannot read results file"):
        read_results(path)


def test_harness_render_refuses_a_forged_file_in_one_line_with_status_2(tmp_path: Path) -> None:
    """Through ``python -m harness render`` as CI runs it: one line, exit 2, no traceback; the
    committed results.json still renders to the committed bytes."""
    from tests.conftest import REPO, run_harness

    for case in ("asr lowered, outcomes untouched", "a string for a number", "NaN"):
        path = tmp_path / "results.json"
        path.write_text(json.dumps(forged(BAD_FILES[case][0])))
        result = run_harness("render", path, "--out", tmp_path / "site", cwd=tmp_path)
        assert result.returncode == 2, case
        assert result.stderr.startswith("harness: error: invalid results file") or \
            result.stderr.startswith("harness: error: cannot read results file"), result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert not (tmp_path / "site" / "leaderboard.md").exists()
    result = run_harness("render", REPO / "results.json", "--out", tmp_path / "site",
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("leaderboard.md", "results.json", "results.csv", "index.html"):
        assert (tmp_path / "site" / name).read_bytes() == (REPO / name).read_bytes(), name
