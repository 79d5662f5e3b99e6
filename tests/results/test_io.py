"""``results.json`` (:mod:`harness.results.io`): round trips, deterministic bytes, atomic writes,
and a forged or mistyped file refused in one line."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from harness import __version__
from harness.errors import HarnessError
from harness.render.board import board
from harness.render.leaderboard import markdown
from harness.render.outputs import write_plots
from harness.render.results_csv import render_csv
from harness.results import ranking
from harness.results import record as schema
from harness.results.io import read_results, write_atomic, write_results
from harness.results.record import RECORD_KEYS, error_record, ok_record
from tests.conftest import (
    BENCHMARK,
    BUDGET,
    golden_records,
    leaderboard_md,
    meta,
    probed_benchmark,
    probed_records,
    scores,
    yardstick,
)


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
    assert (tmp_path / "leaderboard.md").read_text() == leaderboard_md(golden_records())
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert plots == ["multi-trigger.png", "sunglasses.png"]


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
    assert leaderboard_md(old) == leaderboard_md(records) == leaderboard_md(golden_records())
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


def test_results_written_before_the_auroc_read_as_labels_only(tmp_path: Path) -> None:
    """Records lack the detection keys: read with them in place, None; the board and the CSV
    are those of labels-only entries."""
    labels_only = [{**record, "auroc": None, "auroc_ci": None} for record in golden_records()]
    old = [{key: value for key, value in record.items() if key not in schema.DETECTION_KEYS}
           for record in labels_only]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"benchmark": BENCHMARK, "results": old}))
    _, records = read_results(path)
    assert all(list(record) == list(RECORD_KEYS) for record in records)
    assert all(record[key] is None for record in records for key in schema.DETECTION_KEYS)
    assert leaderboard_md(old) == leaderboard_md(records) == leaderboard_md(labels_only)
    assert "AUROC" not in leaderboard_md(old)
    assert render_csv(old) == render_csv(labels_only) and "auroc" not in render_csv(old)


def test_an_error_record_has_no_auroc_and_a_stored_auroc_is_checked(tmp_path: Path) -> None:
    bad = {**error_record(meta("a"), "sunglasses", "boom"), "auroc": 0.5, "auroc_ci": [0.4, 0.6]}
    with pytest.raises(ValueError, match=r"error record \('a', 'sunglasses'\) has measurements: "
                                         r"auroc, auroc_ci"):
        write_results(tmp_path / "results.json", BENCHMARK, [bad])
    forged = {**ok_record(meta("a"), "sunglasses", scores(0.9, {"sunglasses": 0.1})),
              "auroc": 0.5, "auroc_ci": None}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"benchmark": BENCHMARK, "results": [forged]}))
    with pytest.raises(HarnessError, match=r"auroc of OK record \('a', 'sunglasses'\) and "):
        read_results(path)
