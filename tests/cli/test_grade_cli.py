"""``python -m harness grade`` end to end on a tiny benchmark built inside the test session."""

from __future__ import annotations

import argparse
import json
import os
import pty
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.definitions.tracks import load_benchmark
from tests.conftest import (
    EVAL_SCRIPT,
    REPO,
    benchmark_subset,
    lambda_model,
    run_harness,
    write_submission,
)

RECORD_KEYS = {"submission", "team", "method", "reference", "track", "status", "error",
               "clean_acc", "asr", "detect_rate", "false_flag_rate", "robust_acc", "utility",
               "n_clean", "n_poisoned", "per_trigger"}


TRACKS = ["sunglasses", "multi_trigger_multi_target", "pruning_aware"]
"""One single-trigger, the multi-trigger and the pruning-aware track: every kind of track, at
three fifths of the cost of all five (each item starts a sandboxed worker)."""


@pytest.fixture(scope="module")
def bench(tiny_benchmark_probed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """With the retuning probe's inputs: this file's runs test the probe too."""
    return benchmark_subset(tiny_benchmark_probed, tmp_path_factory.mktemp("bench") / "b",
                            TRACKS)


@pytest.fixture(scope="module")
def contest(bench: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A submissions folder: the BadNets as-is (two contracts), and three broken entries."""
    root = tmp_path_factory.mktemp("contest")
    subs = root / "submissions"
    benchmark = load_benchmark(bench)
    names = [t.name for t in benchmark.tracks]
    write_submission(subs, "no-defense", {n: {"model": f"{n}.h5"} for n in names},
                     {f"{n}.h5": benchmark.track(n).badnet for n in names}, reference=True,
                     method="none")
    import keras

    weights = {}
    for n in names:
        path = root / f"{n}.weights.h5"
        keras.models.load_model(benchmark.track(n).badnet, compile=False).save_weights(path)
        weights[f"{n}.weights.h5"] = path
    write_submission(subs, "weights-only",
                     {n: {"weights": f"{n}.weights.h5", "architecture": "deepid"}
                      for n in names}, weights)
    write_submission(subs, "corrupt", {n: {"model": "model.h5"} for n in names},
                     {"model.h5": b"\x89HDF\r\n\x1a\n" + b"\x00" * 100})
    write_submission(subs, "lambda", {n: {"model": "model.keras"} for n in names},
                     {"model.keras": lambda_model(benchmark.track("sunglasses").badnet,
                                                  root / "model.keras")})
    write_submission(subs, "script",
                     {n: {"eval": "eval.py", "args": [f"models/{n}.h5", "{image}"]}
                      for n in names},
                     {"eval.py": EVAL_SCRIPT.encode()})
    (subs / "script" / "models").mkdir()
    for n in names:
        shutil.copy(benchmark.track(n).badnet, subs / "script" / "models" / f"{n}.h5")
    write_submission(subs, "crashing-script", {n: {"eval": "eval.py"} for n in names},
                     {"eval.py": b"import no_such_module\n"})
    return root


@pytest.fixture(scope="module")
def graded(contest: Path, bench: Path) -> tuple[object, Path]:
    out = contest / "out"
    result = run_harness("grade", "submissions", "--benchmark", bench, "--out", out,
                         "--junitxml", out / "junit.xml", cwd=contest)
    return result, out


def test_full_run_grades_good_entries_and_reports_broken_ones(graded, bench):
    result, out = graded
    assert result.returncode == 1, result.stdout + result.stderr
    records = json.loads((out / "results.json").read_text())["results"]
    assert len(records) == 6 * len(TRACKS)
    assert all(set(r) >= RECORD_KEYS for r in records)
    by = {(r["submission"], r["track"]): r for r in records}
    for track in load_benchmark(bench).tracks:
        badnet = by["no-defense", track.name]
        assert badnet["status"] == "ok" and badnet["error"] is None
        assert badnet["asr"] > 0.5, badnet
        assert set(badnet["per_trigger"]) == {p.trigger for p in track.poisoned}
        assert badnet["utility"] == pytest.approx(badnet["clean_acc"] - badnet["asr"], abs=1e-6)
        for same in (by["weights-only", track.name], by["script", track.name]):
            assert (same["clean_acc"], same["asr"]) == (badnet["clean_acc"], badnet["asr"])
            assert same["n_invalid"] == 0
    assert "not a readable" in by["corrupt", "sunglasses"]["error"] or \
        "corrupt" in by["corrupt", "sunglasses"]["error"].lower()
    assert "Lambda layer = arbitrary code" in by["lambda", "sunglasses"]["error"]
    error = by["crashing-script", "sunglasses"]["error"]
    assert "answers invalid" in error and "No module named 'no_such_module'" in error, error
    assert all("\n" not in (r["error"] or "") for r in records)


def test_the_badnet_row_is_found_by_its_file_and_rates_the_others(graded, bench):
    """The no-defense entry's files are the BadNets: that row is the one DER is measured
    against (0.5 for itself); the weights-only entry answers the same but is not the file."""
    _, out = graded
    records = json.loads((out / "results.json").read_text())["results"]
    by = {(r["submission"], r["track"]): r for r in records}
    for track in TRACKS:
        assert by["no-defense", track]["badnet"] is True
        assert by["no-defense", track]["der"] == 0.5
        assert by["weights-only", track]["badnet"] is False
        assert by["weights-only", track]["der"] == 0.5  # the same answers, not a better defense
        assert by["corrupt", track]["der"] is None


def test_cost_is_measured_per_entry_and_timings_kept_apart(graded):
    """A model entry and a per-image script running the same network cost the same per image;
    wall time and memory go to timings.json, never into the byte-stable outputs."""
    _, out = graded
    records = json.loads((out / "results.json").read_text())["results"]
    by = {(r["submission"], r["track"]): r for r in records}
    for track in TRACKS:
        model, script = by["no-defense", track], by["script", track]
        assert model["params"] == script["params"] > 0
        assert model["passes_per_image"] == script["passes_per_image"] == 1.0
        assert model["macs_per_image"] == script["macs_per_image"] > 1e6
        assert by["corrupt", track]["params"] is None
    timings = json.loads((out / "timings.json").read_text())["items"]
    assert {(t["submission"], t["track"]) for t in timings} == set(by)
    assert all(t["seconds"] > 0 for t in timings)
    assert all(t["peak_rss"] > 0 for t in timings if by[t["submission"], t["track"]]["status"]
               == "ok")
    assert "peak_rss" not in (out / "results.json").read_text()


def test_the_retuning_probe_runs_on_model_entries_beside_a_clean_model_yardstick(graded):
    """Each model or weights entry gets its P-ASR after fine-tuning on the attacker's retuning
    set (the same network as a model file or as weights, the same P-ASR); a script is a black
    box and gets none; each track's clean model, probed the same way, is the yardstick."""
    from harness.sandbox.retuning import budget_text

    _, out = graded
    payload = json.loads((out / "results.json").read_text())
    by = {(r["submission"], r["track"]): r for r in payload["results"]}
    for track in TRACKS:
        model, weights = by["no-defense", track], by["weights-only", track]
        assert model["p_error"] is None and model["p_asr"] > 0.5  # the BadNet keeps its backdoor
        assert model["p_asr_ci"][0] <= model["p_asr"] <= model["p_asr_ci"][1]
        assert (weights["p_asr"], weights["p_clean_acc"]) == \
            (model["p_asr"], model["p_clean_acc"])
        for name in ("script", "corrupt", "crashing-script"):
            assert by[name, track]["p_asr"] is None and by[name, track]["p_error"] is None
    retuning = payload["benchmark"]["retuning"]
    assert retuning["budget"] == budget_text()
    assert set(retuning["tracks"]) == set(TRACKS)
    for yardstick in retuning["tracks"].values():
        assert yardstick["error"] is None and 0 <= yardstick["p_asr"] <= 1
        assert yardstick["images"] == 16 and yardstick["poisoned"] >= 3
    assert len(list((out / ".harness-cache" / "yardsticks").glob("*.json"))) == len(TRACKS)
    board = (out / "leaderboard.md").read_text()
    header = next(line for line in board.split("## Track: sunglasses")[1].splitlines()
                  if line.startswith("|"))
    assert "P-ASR" in header
    assert board.count("Yardstick: the clean model") == len(TRACKS)
    timings = json.loads((out / "timings.json").read_text())["items"]
    probes = {(t["submission"], t["track"]): t["probe"] for t in timings}
    assert probes["no-defense", "sunglasses"] > 0 and probes["script", "sunglasses"] is None


def test_a_model_that_cannot_be_fine_tuned_keeps_its_scores_and_says_why(bench, tmp_path):
    """A probe failure is the probe's, not the track's: the row keeps its scores, P-ASR is "-"
    and the Errors section says why in one line."""
    import keras

    badnet = load_benchmark(bench).track("sunglasses").badnet
    frozen = keras.models.load_model(badnet, compile=False)
    frozen.trainable = False
    frozen.save(tmp_path / "frozen.keras")
    write_submission(tmp_path / "submissions", "frozen", {"sunglasses": {"model": "frozen.keras"}},
                     {"frozen.keras": tmp_path / "frozen.keras"})
    result = run_harness("grade", "submissions", "--benchmark", bench, "--out", tmp_path / "out",
                         "-k", "sunglasses", cwd=tmp_path)
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    [record] = [r for r in payload["results"] if r["track"] == "sunglasses"]
    assert record["status"] == "ok" and record["asr"] > 0.5, result.stdout
    assert record["p_asr"] is None
    assert record["p_error"] == "cannot fine-tune: the model has no trainable weights"
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "retuning probe: cannot fine-tune" in board.split("## Errors")[1]


def test_no_retune_skips_the_probe_and_its_yardstick(contest, bench):
    out = contest / "no-retune"
    result = run_harness("grade", "submissions", "--benchmark", bench, "--out", out,
                         "-k", "no-defense and sunglasses", "--no-retune", cwd=contest)
    assert result.returncode == 0, result.stdout + result.stderr
    payload = json.loads((out / "results.json").read_text())
    assert "retuning" not in payload["benchmark"]
    assert [r["p_asr"] for r in payload["results"]] == [None]
    assert "P-ASR" not in (out / "leaderboard.md").read_text()


def test_a_run_writes_the_csv_and_the_page_that_render_rebuilds(graded, tmp_path):
    _, out = graded
    assert (out / "results.csv").read_text().count("\n") == 6 * len(TRACKS) + 1
    assert "<table" in (out / "index.html").read_text()
    result = run_harness("render", out / "results.json", "--out", tmp_path / "site", cwd=out)
    assert result.returncode == 0, result.stderr
    for name in ("leaderboard.md", "results.json", "results.csv", "index.html"):
        assert (tmp_path / "site" / name).read_bytes() == (out / name).read_bytes(), name


def test_terminal_shows_one_line_per_item_with_scores_and_pytest_summary(graded):
    result, _ = graded
    lines = result.stdout.splitlines()
    item_lines = [line for line in lines if "submission.toml::" in line and
                  ("utility" in line or "FAILED" in line)]
    assert len({line.split()[0] for line in item_lines}) == 6 * len(TRACKS)
    assert any("no-defense/submission.toml::sunglasses" in line and "utility" in line
               for line in lines)
    assert "Traceback" not in result.stdout
    assert "9 passed, 9 failed" in lines[-1] or "9 failed, 9 passed" in lines[-1]


def test_leaderboard_has_overall_track_and_error_sections(graded):
    _, out = graded
    text = (out / "leaderboard.md").read_text()
    for heading in ("## Overall", "## Track: sunglasses", "## Track: pruning_aware", "## Errors"):
        assert heading in text
    assert "no-defense (ref)" in text
    overall = text.split("## Overall")[1].split("## Track")[0]
    ranked = [line.split("|")[2].strip() for line in overall.splitlines()
              if line.startswith("|") and line.split("|")[1].strip().lstrip("=").isdigit()]
    assert set(ranked[-3:]) == {"corrupt", "lambda", "crashing-script"}  # -1 per failed track


def test_junitxml_lists_every_item(graded):
    _, out = graded
    cases = ET.parse(out / "junit.xml").getroot().iter("testcase")
    assert len(list(cases)) == 6 * len(TRACKS)


def test_same_inputs_give_identical_bytes(graded, contest, bench):
    _, out = graded
    again = contest / "again"
    run_harness("grade", "submissions", "--benchmark", bench, "--out", again,
                cwd=contest)
    for name in ("leaderboard.md", "results.json"):
        assert (again / name).read_bytes() == (out / name).read_bytes()


def test_n_2_gives_the_serial_bytes_with_the_retuning_probe(graded, contest, bench):
    """Under -n 2 the entries are probed in the xdist workers and the yardsticks in the
    controller, which renders: the same bytes as the serial run."""
    _, out = graded
    parallel = contest / "parallel"
    run_harness("grade", "submissions", "--benchmark", bench, "--out", parallel, "-n", "2",
                cwd=contest)
    for name in ("leaderboard.md", "results.json"):
        assert (parallel / name).read_bytes() == (out / name).read_bytes(), name


def test_k_selects_and_allow_unsafe_models_loads_lambda(contest, bench):
    out = contest / "k"
    result = run_harness("grade", "submissions", "--benchmark", bench, "--out", out,
                         "-k", "lambda and sunglasses", "--allow-unsafe-models", cwd=contest)
    assert result.returncode == 0, result.stdout + result.stderr
    records = json.loads((out / "results.json").read_text())["results"]
    assert [(r["submission"], r["track"], r["status"]) for r in records] == \
        [("lambda", "sunglasses", "ok")]


def test_x_stops_at_the_first_failure(contest, bench):
    out = contest / "x"
    result = run_harness("grade", "submissions", "--benchmark", bench, "--out", out,
                         "-x", cwd=contest)
    assert result.returncode == 1
    records = json.loads((out / "results.json").read_text())["results"]
    assert [r["status"] for r in records] == ["error"]  # "corrupt" sorts first


def test_benchmark_errors_exit_2(contest, bench, tmp_path):
    broken = tmp_path / "bench"
    shutil.copytree(bench, broken)
    test_file = broken / "cache" / "clean_test_data.h5"  # every graded track's test set
    test_file.write_bytes(test_file.read_bytes()[:-10])
    result = run_harness("grade", "submissions", "--benchmark", broken, "--out", tmp_path,
                         cwd=contest)
    assert result.returncode == 2
    assert "does not match" in result.stdout + result.stderr
    missing = run_harness("grade", "submissions", "--benchmark", tmp_path / "nowhere",
                          cwd=contest)
    assert missing.returncode == 2 and "benchmark folder not found" in missing.stderr


def test_no_submissions_exit_2(bench, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_harness("grade", "empty", "--benchmark", bench, cwd=tmp_path)
    assert result.returncode == 2 and "no submissions" in result.stderr


def test_progress_bars_on_a_terminal_only(graded, contest, bench):
    """A tqdm bar per item when stderr is a terminal; none in logs (the run above was piped)."""
    result, _ = graded
    assert "img/s" not in result.stdout + result.stderr
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "grade", "submissions", "--benchmark", str(bench),
         "--out", str(contest / "tty"), "--no-cache", "-k", "no-defense and sunglasses"],
        cwd=contest, env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.DEVNULL,
        stdout=follower, stderr=follower)
    os.close(follower)
    output = b""
    while chunk := _read(leader):
        output += chunk
    assert process.wait(timeout=300) == 0, output.decode(errors="replace")
    assert b"no-defense on sunglasses" in output and b"img/s" in output


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 16)
    except OSError:  # the terminal closes when the child exits
        return b""


@pytest.mark.parametrize(("argv", "given"), [
    (["grade", "submissions", "--sample", "0"], "'0'"),
    (["grade", "--sample", "-3"], "'-3'"),
    (["grade", "--sample", "all"], "'all'"),
    (["bench", "--end-to-end", "--sample", "0"], "'0'"),
])
def test_a_sample_below_one_is_refused_in_one_line(argv, given, capsys):
    """``--sample 0`` once graded the full sets without a word; now it is a usage error, from
    the command line and from the plugin's own option alike."""
    from harness.cli import main
    from harness.errors import positive_int

    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # one line, no usage block
    assert f"argument --sample: expected a positive integer, got {given} (see harness " in err
    with pytest.raises(argparse.ArgumentTypeError):
        positive_int(given.strip("'"))
    assert positive_int("500") == 500
