"""``harness render``: the board again from results.json alone, byte for byte."""

from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.render import plots
from harness.render.board import board
from harness.render.leaderboard import markdown
from harness.render.montage import save_montage
from harness.render.outputs import write_outputs, write_plots
from harness.results.io import write_atomic, write_results
from harness.results.record import ok_record
from tests.conftest import (
    BENCHMARK,
    golden_records,
    meta,
    probed_benchmark,
    probed_records,
    scores,
    section,
)

OUTPUTS = ("leaderboard.md", "results.json", "results.csv", "index.html")


def graded(folder: Path) -> Path:
    """A folder as ``grade`` leaves it: results, board, Pareto plots and montages."""
    folder.mkdir(parents=True, exist_ok=True)
    write_results(folder / "results.json", BENCHMARK, golden_records())
    write_outputs(folder, BENCHMARK, golden_records())
    images = np.random.default_rng(0).integers(0, 256, (2, 3, 55, 47, 3), dtype=np.uint8)
    for track in BENCHMARK["tracks"]:
        save_montage(list(images), ["clean", "poisoned"], folder / plots.samples_file(track))
    return folder / "results.json"


def files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_render_rebuilds_every_output_byte_for_byte(tmp_path: Path, capsys) -> None:
    results = graded(tmp_path / "graded")
    assert main(["render", str(results), "--out", str(tmp_path / "site")]) == 0
    written = files(tmp_path / "site")
    assert written == files(tmp_path / "graded")
    assert set(OUTPUTS) <= set(written)
    assert {plots.pareto_file(t) for t in BENCHMARK["tracks"]} <= set(written)
    assert "rendered" in capsys.readouterr().out


def test_render_in_place_changes_nothing(tmp_path: Path) -> None:
    results = graded(tmp_path)
    before = files(tmp_path)
    assert main(["render", str(results)]) == 0
    assert files(tmp_path) == before


def test_render_without_montages_says_so_and_still_renders(tmp_path: Path, capsys) -> None:
    write_results(tmp_path / "results.json", BENCHMARK, golden_records())
    assert main(["render", str(tmp_path / "results.json"), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "no montage of sunglasses" in err and "no montage of multi-trigger" in err
    assert (tmp_path / "out" / "index.html").is_file()


@pytest.mark.parametrize("content", ["{", '{"benchmark": {}}', "[]"])
def test_render_refuses_a_bad_results_file_in_one_line(tmp_path: Path, capsys,
                                                       content: str) -> None:
    bad = tmp_path / "results.json"
    bad.write_text(content, encoding="utf-8")
    assert main(["render", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("harness: error:") and "\n" not in err


def test_values_stored_unrounded_render_back_to_the_same_bytes(tmp_path: Path) -> None:
    """Metrics with more digits than results.json keeps: every derived value (DER, means) is
    computed from the stored ones, so rendering from the file gives what grading wrote."""
    records = [ok_record(meta(name), "sunglasses",
                         {**scores(clean, {"sunglasses": asr}), "params": 7,
                          "macs_per_image": 1 / 3, "passes_per_image": 2 / 3},
                         badnet=name == "bad")
               # values whose DER differs in the 6th decimal when computed before rounding
               for name, clean, asr in [("bad", 0.847433737, 0.134364244),
                                        ("good", 0.255069026, 0.763774619)]]
    assert_renders_back(tmp_path, BENCHMARK, records)


def assert_renders_back(tmp_path: Path, benchmark: dict, records: list[dict]) -> None:
    """What grading writes (``write_results`` and ``write_outputs`` into ``a/``) is what
    ``render`` of its results file writes into ``b/``, byte for byte."""
    (tmp_path / "a").mkdir()
    write_results(tmp_path / "a" / "results.json", benchmark, records)
    write_outputs(tmp_path / "a", benchmark, records)
    assert main(["render", str(tmp_path / "a" / "results.json"), "--out",
                 str(tmp_path / "b")]) == 0
    for name in OUTPUTS:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


REPO = Path(__file__).resolve().parents[2]


def test_committed_results_render_to_the_committed_board(tmp_path: Path) -> None:
    """The committed results render to the board committed beside them, byte for byte."""
    assert main(["render", str(REPO / "results.json"), "--out", str(tmp_path)]) == 0
    for name in ("leaderboard.md", "results.csv", "index.html"):
        assert (tmp_path / name).read_bytes() == (REPO / name).read_bytes(), name


def test_probe_results_render_back_to_the_same_bytes(tmp_path: Path) -> None:
    assert_renders_back(tmp_path, probed_benchmark(), probed_records())
    assert "P-ASR" in (tmp_path / "b" / "index.html").read_text()
    assert "p_asr_ci_low" in (tmp_path / "b" / "results.csv").read_text()


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
