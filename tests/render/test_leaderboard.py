"""``leaderboard.md`` (:mod:`harness.render.board` laid out by :mod:`harness.render.leaderboard`):
determinism, errors, marks, the retuning probe's columns and legend, and a golden file."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np

from harness import __version__
from harness.grading import stats
from harness.render.board import AUROC_LEGEND, INTRO, PROBE_LEGEND, board
from harness.render.leaderboard import markdown
from harness.results import record as schema
from harness.results.io import read_results, write_results
from harness.results.ranking import Ranked, rank
from harness.results.record import ok_record
from tests.conftest import (
    BENCHMARK,
    BUDGET,
    DATA_FILES,
    N_PROBE,
    PROBE_ERROR,
    PROBED,
    cells,
    column,
    golden_records,
    leaderboard_md,
    meta,
    probe,
    probed_benchmark,
    probed_records,
    scores,
    section,
    table_header,
    table_rows,
    yardstick,
)

GOLDEN = Path(__file__).parents[1] / "golden" / "leaderboard.md"


def test_rendering_is_deterministic_and_order_independent() -> None:
    records = golden_records()
    first = leaderboard_md(records)
    assert leaderboard_md(records) == first
    random.Random(3).shuffle(records)
    assert leaderboard_md(records) == first


def test_rendering_from_results_json_gives_the_same_bytes(tmp_path: Path) -> None:
    write_results(tmp_path / "results.json", BENCHMARK, golden_records())
    benchmark, records = read_results(tmp_path / "results.json")
    assert markdown(board(benchmark, records)) == leaderboard_md(golden_records())


def test_error_rows_at_the_bottom_of_track_table_and_in_errors_section() -> None:
    text = leaderboard_md(golden_records())
    rows = table_rows(section(text, "## Track: multi-trigger"))
    assert rows[-1][:2] == ["error", "neural-cleanse"]
    assert set(rows[-1][2:]) == {"-"}
    errors = section(text, "## Errors").strip().splitlines()
    assert errors == [
        r"- neural-cleanse / multi-trigger: eval.py exited with status 1: KeyError \| 'conv_3'"
    ]


def test_errors_section_says_none_without_failures() -> None:
    records = [r for r in golden_records() if r["submission"] != "neural-cleanse"]
    assert section(leaderboard_md(records), "## Errors").strip() == "None."


def test_missing_track_is_shown_as_an_error() -> None:
    records = [r for r in golden_records() if r["track"] == "sunglasses"]
    text = leaderboard_md(records)
    assert "- fine-pruning / multi-trigger: no result recorded" in text
    rows = table_rows(section(text, "## Track: multi-trigger"))
    assert ["error", "fine-pruning"] in [row[:2] for row in rows]


def test_reference_entries_are_marked_everywhere() -> None:
    text = leaderboard_md(golden_records())
    overall = table_rows(section(text, "## Overall"))
    assert [row[1] for row in overall if "badnet" in row[1]] == ["badnet-original (ref)"]
    track = table_rows(section(text, "## Track: sunglasses"))
    assert "badnet-original (ref)" in [row[1] for row in track]


def test_pipes_in_free_text_do_not_break_tables() -> None:
    text = leaderboard_md(golden_records())
    overall = table_rows(section(text, "## Overall"))
    assert all(len(row) == 9 for row in overall)
    assert r"Blue \| Team" in [row[2] for row in overall]


def test_empty_team_and_method_show_as_missing() -> None:
    anonymous = meta("anon", team="", method="")
    records = [ok_record(anonymous, "sunglasses", scores(0.9, {"sunglasses": 0.1}))]
    assert table_rows(section(leaderboard_md(records), "## Overall"))[0][1:4] == ["anon", "-", "-"]


def test_per_trigger_columns_only_for_multi_trigger_tracks() -> None:
    text = leaderboard_md(golden_records())
    assert "ASR[sunglasses]" not in text
    multi = section(text, "## Track: multi-trigger")
    assert "ASR[eyebrows]" in multi
    assert "ASR[lipstick]" in multi


def test_footer_has_short_sorted_hashes_and_versions() -> None:
    footer = leaderboard_md(golden_records()).split("\n---\n", 1)[1]
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
    rows = table_rows(section(leaderboard_md(golden_records()), "## Track: multi-trigger"))
    twins = [row for row in rows if row[1] in ("fine-pruning", "pruning-twin")]
    assert [row[0] for row in twins] == ["=1", "=1"]  # identical outcomes
    assert twins[0][2:] == twins[1][2:]
    assert re.fullmatch(r"0\.934 \[0\.9\d\d, 0\.9\d\d\]", twins[0][2])


def test_invalid_answers_get_a_column_only_when_there_are_some() -> None:
    assert "invalid" not in section(leaderboard_md(golden_records()), "## Track: sunglasses")
    result = {**scores(0.9, {"sunglasses": 0.1}), "n_invalid": 7}
    records = [*golden_records(), ok_record(meta("quiet"), "sunglasses", result)]
    body = section(leaderboard_md(records), "## Track: sunglasses")
    header = table_header(body)
    row = next(row for row in table_rows(body) if row[1] == "quiet")
    assert row[header.index("invalid")] == "7"
    multi = section(leaderboard_md(records), "## Track: multi-trigger")
    assert "invalid" not in table_header(multi)


def test_sampled_tracks_say_so_and_show_image_counts() -> None:
    records = [
        ok_record(meta(name), "sunglasses", scores(clean, {"sunglasses": 0.1}), sample=250)
        for name, clean in [("a", 0.9), ("b", 0.8)]
    ]
    text = leaderboard_md(records)
    body = section(text, "## Track: sunglasses")
    assert "Graded on a stratified sample of 250 images per set." in body
    header = table_header(body)
    counts = header.index("n clean")
    assert header[counts:counts + 2] == ["n clean", "n poisoned"]
    assert table_rows(body)[0][counts:counts + 2] == ["1000", "100"]
    assert "stratified sample" not in leaderboard_md(golden_records())


def test_golden_leaderboard(monkeypatch) -> None:
    """Regenerate with ``HARNESS_UPDATE_GOLDEN=1 pytest tests/render/test_leaderboard.py``, then
    review it."""
    # the golden file outlives version bumps
    monkeypatch.setattr("harness.render.board.__version__", "0.0.0")
    text = leaderboard_md(golden_records())
    if os.environ.get("HARNESS_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


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
    assert "P-ASR" not in leaderboard_md(golden_records())
    assert "Retuning probe" not in leaderboard_md(golden_records())
    # Probe results on sunglasses only, no yardstick: multi-trigger's table is as before.
    only = [record if record["track"] == "multi-trigger" else
            {**record, **PROBED.get((record["submission"], record["track"]), {})}
            for record in golden_records()]
    text = leaderboard_md(only)
    assert "P-ASR" in table_header(section(text, "## Track: sunglasses"))
    assert section(text, "## Track: multi-trigger") == \
        section(leaderboard_md(golden_records()), "## Track: multi-trigger")
    # A probe error alone shows the column; a yardstick alone shows it too.
    failed = [{**record, **probe(None, p_error="boom")}
              if (record["submission"], record["track"]) == ("fine-pruning", "multi-trigger")
              else record for record in golden_records()]
    assert "P-ASR" in table_header(section(leaderboard_md(failed), "## Track: multi-trigger"))
    assert "mean P-ASR" not in table_header(section(leaderboard_md(failed), "## Overall"))
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
    assert "mean P-ASR" not in leaderboard_md(golden_records())


def test_legend_explains_p_asr_only_when_shown() -> None:
    text = markdown(board(probed_benchmark(), probed_records()))
    intro = text.split("\n## Overall", 1)[0]
    assert PROBE_LEGEND in intro
    assert "Min et al." in PROBE_LEGEND and "not scored" in PROBE_LEGEND
    assert board(probed_benchmark(), probed_records()).intro == \
        (*INTRO, AUROC_LEGEND, PROBE_LEGEND)
    assert board(BENCHMARK, golden_records()).intro == (*INTRO, AUROC_LEGEND)
    assert PROBE_LEGEND not in leaderboard_md(golden_records())


def labels_only(records: list[dict]) -> list[dict]:
    return [{**record, "auroc": None, "auroc_ci": None} for record in records]


def test_auroc_is_shown_after_false_flag_only_where_an_entry_gives_scores() -> None:
    """The detector's AUROC with its interval, "-" for entries that give labels only, on the
    track where some entry gives scores; the legend says what it is; no AUROC elsewhere, and
    none in the score or the overall table."""
    shown = board(BENCHMARK, golden_records())
    sunglasses, multi = shown.tracks
    columns = sunglasses.table.columns
    assert columns[columns.index("false flag") + 1] == "AUROC"
    by_name = {row["submission"]: row for row in sunglasses.table.rows}
    assert by_name["strip-detector"]["AUROC"] == "0.987 [0.979, 0.996]"
    assert by_name["fine-pruning"]["AUROC"] == "-"
    assert "AUROC" not in multi.table.columns and "AUROC" not in "".join(shown.overall.columns)
    assert "not scored" in AUROC_LEGEND and "labels only" in AUROC_LEGEND
    plain = board(BENCHMARK, labels_only(golden_records()))
    assert plain.intro == INTRO and "AUROC" not in plain.tracks[0].table.columns
    assert plain.overall == shown.overall  # reported, not scored


def test_probe_errors_are_listed_with_the_prefix_once() -> None:
    records = probed_records()
    prefixed = f"{schema.PROBE_ERROR_PREFIX}weights | frozen"
    records = [{**record, **probe(None, p_error=prefixed)}
               if (record["submission"], record["track"]) == ("strip-detector", "sunglasses")
               else record for record in records]
    errors = section(leaderboard_md(records), "## Errors").strip().splitlines()
    assert errors == [
        r"- neural-cleanse / multi-trigger: eval.py exited with status 1: KeyError \| 'conv_3'",
        f"- pruning-twin / sunglasses: retuning probe: {PROBE_ERROR}",
        r"- strip-detector / sunglasses: retuning probe: weights \| frozen",
    ]
    assert schema.probe_error("x") == schema.probe_error("retuning probe: x") == \
        "retuning probe: x"


def test_added_sections_are_laid_out_and_escaped_in_both_layouts(tmp_path: Path) -> None:
    """A contest's lead and sections (rank movement, history) reach the Markdown board and the
    web page after the track tables, their text escaped by each layout like team text."""
    from harness.render.board import Section, Table
    from harness.render.outputs import write_outputs

    table = Table(columns=["team", "score"], rows=[{"team": "<b>x</b> | *y*", "score": "0.5"}],
                  left=frozenset({"team"}), references=[False])
    section = Section(title="Rank movement", anchor="rank-movement",
                      paragraphs=("moved <i>up</i>",), picture=("history.png", "plot"),
                      tables=(("Team *A*", table),))
    write_outputs(tmp_path, BENCHMARK, golden_records(), lead="Contest: final board.",
                  sections=[section])
    text = (tmp_path / "leaderboard.md").read_text()
    assert text.index("Contest: final board.") < text.index("## Overall") \
        < text.index("## Rank movement") < text.index("## Errors")
    assert "&lt;b&gt;x&lt;/b&gt; \\| \\*y\\*" in text and "<b>" not in text
    assert "### Team \\*A\\*" in text and "![plot](history.png)" in text
    page = (tmp_path / "index.html").read_text()
    assert '<section id="rank-movement">' in page and 'href="#rank-movement"' in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<i>up</i>" not in page and '<p class="lead">Contest: final board.</p>' in page
    plain = tmp_path / "plain"
    write_outputs(plain, BENCHMARK, golden_records())
    assert "Rank movement" not in (plain / "leaderboard.md").read_text()
