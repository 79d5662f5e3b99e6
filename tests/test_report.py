"""Records, results.json and the leaderboard: determinism, ranking, errors and a golden file."""

import hashlib
import json
import os
import random
import re
from pathlib import Path

import pytest

from harness import report
from harness.errors import HarnessError
from harness.report import (
    RECORD_KEYS,
    error_record,
    ok_record,
    rank,
    read_results,
    render_leaderboard,
    write_leaderboard,
    write_results,
)

GOLDEN = Path(__file__).parent / "golden" / "leaderboard.md"
DATA_FILES = ("clean_test.h5", "sunglasses_poisoned.h5", "eyebrows_poisoned.h5", "lipstick.h5")
BENCHMARK = {
    "name": "csaw-hackml-toy",
    "tracks": ["sunglasses", "multi-trigger"],
    "data_hashes": {name: hashlib.sha256(name.encode()).hexdigest() for name in DATA_FILES},
}


def meta(name: str, team: str = "team", method: str = "method", reference: bool = False) -> dict:
    return {"submission": name, "team": team, "method": method, "reference": reference}


def scores(
    clean_acc: float,
    per_trigger: dict[str, float],
    detect_rate: float = 0.0,
    false_flag_rate: float = 0.0,
    robust_acc: float | None = None,
) -> dict:
    """Scores as score_track returns them, for equally sized poisoned sets of 100 images."""
    asr = sum(per_trigger.values()) / len(per_trigger)
    return {
        "clean_acc": clean_acc,
        "asr": asr,
        "per_trigger": per_trigger,
        "detect_rate": detect_rate,
        "false_flag_rate": false_flag_rate,
        "robust_acc": robust_acc,
        "utility": clean_acc - asr,
        "n_clean": 1000,
        "n_poisoned": 100 * len(per_trigger),
    }


def golden_records() -> list[dict]:
    """A reference, defenses, a detector, a failing entry, and ties broken by clean acc and name."""
    baseline = meta("badnet-original", "organizers", "no defense", reference=True)
    pruning = meta("fine-pruning", "Blue | Team", "fine-pruning (Liu et al. 2018)")
    strip = meta("strip-detector", "gamma", "STRIP input filter")
    cleanse = meta("neural-cleanse", "delta", "Neural Cleanse")
    twin = meta("pruning-twin", "epsilon", "pruning, less fine-tuning")
    return [
        ok_record(baseline, "sunglasses", scores(0.9781, {"sunglasses": 1.0}, robust_acc=0.0)),
        ok_record(
            baseline,
            "multi-trigger",
            scores(0.9620, {"eyebrows": 0.916, "lipstick": 0.908}, robust_acc=0.02),
        ),
        ok_record(pruning, "sunglasses", scores(0.9512, {"sunglasses": 0.031}, 0.0, 0.002, 0.874)),
        ok_record(
            pruning, "multi-trigger", scores(0.9340, {"eyebrows": 0.12, "lipstick": 0.06}, 0.01)
        ),
        ok_record(strip, "sunglasses", scores(0.9113, {"sunglasses": 0.0}, 0.962, 0.048)),
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


def render(records: list[dict]) -> str:
    return render_leaderboard(BENCHMARK, records)


def section(text: str, heading: str) -> str:
    """The body of one ``##`` section of a rendered leaderboard."""
    body = text.split(f"\n{heading}\n", 1)[1]
    return body.split("\n## ", 1)[0].split("\n---\n", 1)[0]


def table_rows(body: str) -> list[list[str]]:
    """Cells of each row of the first Markdown table in ``body`` (header and rule excluded)."""
    lines = [line for line in body.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[2:]]


# Records -----------------------------------------------------------------------------------------


def test_ok_and_error_records_have_identical_keys() -> None:
    ok = ok_record(meta("a"), "sunglasses", scores(0.9, {"sunglasses": 0.1}))
    failed = error_record(meta("a"), "sunglasses", "boom")
    assert list(ok) == list(failed) == list(RECORD_KEYS)
    assert failed["status"] == "error"
    assert failed["per_trigger"] == {}
    assert all(failed[key] is None for key in report.METRIC_KEYS)


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
    assert payload["harness_version"] == report.__version__


def test_results_bytes_do_not_depend_on_record_order(tmp_path: Path) -> None:
    records = golden_records()
    write_results(tmp_path / "a.json", BENCHMARK, records)
    random.Random(7).shuffle(records)
    write_results(tmp_path / "b.json", BENCHMARK, records)
    first = (tmp_path / "a.json").read_bytes()
    assert first == (tmp_path / "b.json").read_bytes()
    assert first.endswith(b"}\n")


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
    with pytest.raises(HarnessError, match="record lacks"):
        read_results(path)
    broken = {**ok_record(meta("a"), "sunglasses", scores(0.9, {"sunglasses": 0.1})), "asr": None}
    path.write_text(json.dumps({"benchmark": BENCHMARK, "results": [broken]}))
    with pytest.raises(HarnessError, match="no valid asr"):
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
    write_leaderboard(tmp_path / "leaderboard.md", BENCHMARK, golden_records())
    write_leaderboard(tmp_path / "leaderboard.md", BENCHMARK, golden_records())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leaderboard.md", "results.json"]
    assert (tmp_path / "leaderboard.md").read_text() == render(golden_records())


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
    assert list(table["submission"]) == ["top", "c", "a", "b"]
    assert list(table["rank"]) == [1, 2, 3, 4]
    assert list(table.columns) == list(report.RANK_COLUMNS)


def test_failed_and_missing_tracks_count_minus_one() -> None:
    records = [
        ok_record(meta("half"), "sunglasses", scores(0.9, {"sunglasses": 0.1})),
        error_record(meta("half"), "multi-trigger", "boom"),
        ok_record(meta("missing"), "sunglasses", scores(0.9, {"sunglasses": 0.1})),
        error_record(meta("broken"), "sunglasses", "boom"),
    ]
    table = rank(BENCHMARK, records).set_index("submission")
    assert table.loc["half", "score"] == pytest.approx((0.8 - 1) / 2)
    assert table.loc["missing", "score"] == pytest.approx((0.8 - 1) / 2)
    assert table.loc["broken", "score"] == -1.0
    assert table.loc["half", "tracks_ok"] == "1/2"
    assert table.loc["broken", "tracks_ok"] == "0/2"
    assert table.loc["half", "mean_clean_acc"] == pytest.approx(0.9)
    assert table.loc["broken", ["mean_clean_acc", "mean_asr"]].isna().all()
    assert list(table.index) == ["half", "missing", "broken"]


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
    assert render_leaderboard(benchmark, records) == render(golden_records())


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
    assert all(len(row) == 8 for row in overall)
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


def test_footer_has_short_sorted_hashes_and_version() -> None:
    footer = render(golden_records()).split("\n---\n", 1)[1]
    hashes = re.findall(r"^  - (\S+): ([0-9a-f]+)$", footer, flags=re.MULTILINE)
    assert [name for name, _ in hashes] == sorted(DATA_FILES)
    assert all(digest == BENCHMARK["data_hashes"][name][:12] for name, digest in hashes)
    assert f"Harness version: {report.__version__}" in footer


def test_golden_leaderboard(monkeypatch) -> None:
    """Regenerate with ``HARNESS_UPDATE_GOLDEN=1 pytest tests/test_report.py``, then review it."""
    monkeypatch.setattr(report, "__version__", "0.0.0")  # the golden file outlives version bumps
    text = render(golden_records())
    if os.environ.get("HARNESS_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")
