"""The result cache: keys, entries, reuse across runs, kill -9 resume, ``--changed-since``.

Grading runs use a one-track copy of the tiny benchmark and three submissions: two that answer
(each item starts a sandboxed worker, seconds apiece) and one whose manifest names no track of
it (an error row without a worker), so every run stays short.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.definitions.tracks import load_benchmark
from harness.results.cache import ResultCache, cache_key
from tests.conftest import REPO, benchmark_subset, run_harness, write_submission

TRACKS = ["sunglasses"]
ITEMS = 3 * len(TRACKS)
OUTPUTS = ("leaderboard.md", "results.json")


# Keys and entries --------------------------------------------------------------------------------


def test_key_covers_every_input_and_nothing_else():
    track = {"name": "t", "badnet_sha256": "b" * 64, "test_sha256": "c" * 64}
    base = cache_key("alpha", "a" * 64, track, {"allow_unsafe": False, "sample": None})
    assert base == cache_key("alpha", "a" * 64, dict(reversed(track.items())),
                             {"sample": None, "allow_unsafe": False})
    variants = [
        cache_key("beta", "a" * 64, track, {"allow_unsafe": False, "sample": None}),
        cache_key("alpha", "d" * 64, track, {"allow_unsafe": False, "sample": None}),
        cache_key("alpha", "a" * 64, {**track, "name": "u"}, {"allow_unsafe": False,
                                                              "sample": None}),
        cache_key("alpha", "a" * 64, {**track, "test_sha256": "e" * 64},
                  {"allow_unsafe": False, "sample": None}),
        cache_key("alpha", "a" * 64, track, {"allow_unsafe": True, "sample": None}),
        cache_key("alpha", "a" * 64, track, {"allow_unsafe": False, "sample": 50}),
    ]
    assert len({base, *variants}) == 1 + len(variants)


def test_key_changes_with_the_toolchain_and_the_cache_format(monkeypatch):
    """An upgraded TensorFlow (or any recorded version, or the seed) never serves an older
    record, and bumping the format invalidates every entry."""
    import harness.results.cache as cache_module

    key = cache_key("alpha", "a" * 64, {"name": "t"}, {})
    current = cache_module.environment()
    monkeypatch.setattr(cache_module, "environment", lambda: {**current, "tensorflow": "99.0"})
    upgraded = cache_key("alpha", "a" * 64, {"name": "t"}, {})
    monkeypatch.undo()
    monkeypatch.setattr(cache_module, "CACHE_FORMAT", cache_module.CACHE_FORMAT + 1)
    assert len({key, upgraded, cache_key("alpha", "a" * 64, {"name": "t"}, {})}) == 3


def test_track_fingerprint_covers_what_changes_scores(tmp_path, fake_store, hand_made_track):
    """Editing a track's scaling, a target, a label kind or any data file's bytes changes the
    fingerprint, hence every key of the track; paths do not."""
    from dataclasses import replace

    from harness.definitions.tracks import DataFile
    from harness.results.cache import track_fingerprint

    store = fake_store({"val": 3, "test": 4, "pa": 2, "pb": 2, "re": 5})
    track = hand_made_track
    base = track_fingerprint(track, store)
    first, second = track.poisoned
    variants = [
        replace(track, input_scale=1 / 255),
        replace(track, num_classes=11),
        replace(track, poisoned=(replace(first, target=3), second)),
        replace(track, poisoned=(replace(first, labels="true"), second)),
        replace(track, poisoned=(replace(first, trigger="c"), second)),
        replace(track, retuning=DataFile(tmp_path / "re")),  # the probe's data
    ]
    prints = [track_fingerprint(variant, store) for variant in variants]
    bigger = fake_store({"val": 3, "test": 5, "pa": 2, "pb": 2})  # other test-set bytes
    prints.append(track_fingerprint(track, bigger))
    assert all(other != base for other in prints)
    moved = replace(track, source=tmp_path / "elsewhere.toml")
    assert track_fingerprint(moved, store) == base
    assert track_fingerprint(replace(track, test=None), store)["test_sha256"] is None
    assert base == {"name": "t", "num_classes": 10, "input_scale": 1.0, "badnet_sha256": None,
                    "badnet_architecture": None, "validation_sha256": "val-3",
                    "test_sha256": "test-4",
                    "poisoned": [{"trigger": "a", "target": 0, "labels": "target",
                                  "sha256": "pa-2"},
                                 {"trigger": "b", "target": 1, "labels": "target",
                                  "sha256": "pb-2"}],
                    "retuning_sha256": None}
    track.badnet.write_bytes(b"a BadNet")
    with_badnet = track_fingerprint(track, store)
    track.badnet.write_bytes(b"another BadNet")
    assert with_badnet["badnet_sha256"] != track_fingerprint(track, store)["badnet_sha256"]
    assert with_badnet["badnet_sha256"] == hashlib.sha256(b"a BadNet").hexdigest()


def test_baseline_record_is_stale_when_any_data_file_changed(tmp_path, fake_store,
                                                             hand_made_track):
    from harness.results.cache import Baseline
    from harness.results.io import write_results
    from harness.results.provenance import environment
    from harness.results.record import error_record

    track = hand_made_track
    store = fake_store({"val": 3, "test": 4, "pa": 2, "pb": 2})
    hashes = {f.path.name: store.get(f, 10).sha256 for f in track.data_files()}
    record = error_record({"submission": "alpha", "team": "A", "method": "m",
                           "reference": False, "sha256": "a" * 64}, "t", "broken")
    results = tmp_path / "results.json"
    write_results(results, {"name": "b", "tracks": ["t"], "data_hashes": hashes,
                            "provenance": environment()}, [record])
    baseline = Baseline(results)
    expect = {"submission": "alpha", "sha256": "a" * 64, "sample": None}
    assert baseline.get(expect, track, store)["error"] == "broken"
    changed = fake_store({"val": 3, "test": 4, "pa": 2, "pb": 3})
    assert baseline.get(expect, track, changed) is None
    assert baseline.get({**expect, "sha256": "b" * 64}, track, store) is None
    assert baseline.get({**expect, "sample": 50}, track, store) is None


def test_keys_are_stable_across_runs_of_one_version(monkeypatch):
    """The same inputs give the same key in every run (that is what lets a later run reuse an
    entry); a change of the key's layout changes this value and must bump CACHE_FORMAT."""
    import harness.results.cache as cache_module

    monkeypatch.setattr(cache_module, "environment", lambda: {"harness": "x", "seed": 1})
    assert cache_module.CACHE_FORMAT == 4  # 3: the retuning probe's keys; 4: the AUROC's
    assert cache_key("alpha", "a" * 64, {"name": "t"}, {"sample": None}) == \
        "5171da50526844246932bc0d5af07712510621af39f644505c4d270f41484eaa"
    with pytest.raises(ValueError):  # NaN has no JSON spelling: no key can be made of it
        cache_key("alpha", "a" * 64, {"name": "t"}, {"image_timeout": float("nan")})


def test_baseline_from_another_environment_is_refused_naming_the_difference(tmp_path):
    from harness.errors import HarnessError
    from harness.results.cache import Baseline
    from harness.results.io import write_results
    from harness.results.provenance import environment

    results = tmp_path / "results.json"
    other = {**environment(), "tensorflow": "1.15.0", "numpy": "1.0.0"}
    write_results(results, {"name": "b", "tracks": ["t"], "data_hashes": {},
                            "provenance": other}, [])
    with pytest.raises(HarnessError) as error:
        Baseline(results)
    now = environment()
    assert str(error.value) == (f"{results} was graded with numpy 1.0.0, tensorflow 1.15.0; "
                                f"this run has numpy {now['numpy']}, tensorflow "
                                f"{now['tensorflow']}")
    write_results(results, {"name": "b", "tracks": ["t"], "data_hashes": {},
                            "provenance": environment()}, [])
    assert Baseline(results).path == results and Baseline(results).records == {}


def test_entries_round_trip_and_unusable_ones_are_misses(tmp_path):
    """An entry is written by the grader but lives on disk: one that is not a valid record, or
    a record of another submission or track, is a miss (graded again), never a result."""
    from harness.results.record import error_record

    cache = ResultCache(tmp_path / "cache")
    meta = {"submission": "alpha", "team": "a", "method": "m", "reference": False,
            "sha256": "a" * 64}
    record = error_record(meta, "t", "model.h5: not a Keras model")
    expect = {**meta, "track": "t", "sample": None}
    assert cache.get("k1", expect) is None and cache.entries() == []
    cache.put("k1", record)
    assert cache.get("k1", expect) == record
    assert cache.get("k1", {**expect, "submission": "beta"}) is None
    assert cache.get("k1", {**expect, "track": "u"}) is None
    assert [path.name for path in cache.entries()] == ["k1.json"]
    (tmp_path / "cache" / ".k2.json.0123.tmp").write_text("{")  # a write killed halfway
    assert [path.name for path in cache.entries()] == ["k1.json"]
    broken = {
        "k3": "{not json",
        "k4": json.dumps({"key": "another", "record": record}),  # renamed or copied entry
        "k5": json.dumps({"key": "k5", "record": {**record, "status": "maybe"}}),
        "k6": json.dumps({"key": "k6", "record": {**record, "status": "error", "error": " "}}),
        "k7": json.dumps(["k7"]),
        "k9": json.dumps({"key": "k9", "record": {**record, "status": "ok"}}),  # no scores
        "k10": json.dumps({"key": "k10", "record": {**record, "n_clean": [1]}}),
    }
    for key, text in broken.items():
        cache.path(key).write_text(text)
        assert cache.get(key, expect) is None, key
    cache.path("k8").write_bytes(b"\xff\xfe")
    assert cache.get("k8", expect) is None


def test_yardsticks_are_kept_apart_from_records(tmp_path):
    """A track's retuning yardstick is cached beside the records, never taken for one, and the
    records' folder lists records only."""
    cache = ResultCache(tmp_path / "cache")
    yardstick = {"p_asr": 0.3, "p_asr_ci": [0.28, 0.32], "p_clean_acc": 0.77, "error": None,
                 "images": 115, "poisoned": 23}
    cache.put("y1", yardstick, kind="yardstick")
    assert cache.get_yardstick("y1") == yardstick
    assert cache.get("y1", {}) is None and cache.entries() == []
    cache.put("r1", {"status": "ok"})
    assert cache.get_yardstick("r1") is None
    cache.put("y2", {**yardstick, "p_asr": float("inf")}, kind="yardstick")
    assert cache.get_yardstick("y2") is None


# Grading runs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench(tiny_benchmark: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return benchmark_subset(tiny_benchmark, tmp_path_factory.mktemp("bench") / "b", TRACKS)


@pytest.fixture(scope="module")
def contest(bench: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``submissions/``: alpha and beta answer with the BadNet; partial has no track of it."""
    root = tmp_path_factory.mktemp("cache-contest")
    benchmark = load_benchmark(bench)
    for name in ("alpha", "beta"):
        write_submission(root / "submissions", name, {t: {"model": f"{t}.h5"} for t in TRACKS},
                         {**{f"{t}.h5": benchmark.track(t).badnet for t in TRACKS},
                          "notes.txt": b"version 1\n"})
    write_submission(root / "submissions", "partial", {"anonymous_2": {"model": "m.h5"}},
                     {"m.h5": benchmark.track("sunglasses").badnet})
    return root


def grade(root: Path, bench: Path, out: Path, *extra: str | Path):
    return run_harness("grade", "submissions", "--benchmark", bench, "--out", out, *extra,
                       cwd=root)


def item_lines(stdout: str) -> dict[str, str]:
    """``submission::track`` -> its line of the session (verbose mode)."""
    lines = {}
    for line in stdout.splitlines():
        if "/submission.toml::" in line:
            node = line.split()[0]
            submission = node.split("/")[-2]
            lines[f"{submission}::{node.split('::')[1]}"] = line
    return lines


def sources(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("harness: "))


def same_outputs(a: Path, b: Path) -> bool:
    return all((a / name).read_bytes() == (b / name).read_bytes() for name in OUTPUTS)


@pytest.fixture(scope="module")
def fresh(contest: Path, bench: Path) -> Path:
    """An uninterrupted first run: every item graded and cached."""
    out = contest / "fresh"
    result = grade(contest, bench, out)
    assert result.returncode == 1, result.stdout + result.stderr  # partial fails
    assert sources(result.stdout) == "harness: graded: alpha, beta, partial; from cache: none"
    assert len(ResultCache(out / ".harness-cache").entries()) == ITEMS
    return out


def test_second_run_grades_nothing_and_writes_the_same_bytes(contest, bench, fresh, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(fresh / ".harness-cache", out / ".harness-cache")
    result = grade(contest, bench, out)
    assert result.returncode == 1
    lines = item_lines(result.stdout)
    assert len(lines) == ITEMS and all(line.rstrip(" []%0123456789").endswith("(cached)")
                                   for line in lines.values()), result.stdout
    # An error record stays a failure with the same message.
    assert "FAILED (no [tracks.sunglasses] entry" in lines["partial::sunglasses"]
    assert sources(result.stdout) == "harness: graded: none; from cache: alpha, beta, partial"
    assert f"{len(TRACKS)} failed, {2 * len(TRACKS)} passed" in result.stdout
    assert same_outputs(out, fresh)


def test_one_changed_byte_regrades_only_that_submission(contest, bench, fresh, tmp_path):
    root = tmp_path / "contest"
    shutil.copytree(contest / "submissions", root / "submissions")
    notes = root / "submissions" / "beta" / "notes.txt"
    notes.write_bytes(b"version 2\n")
    out = tmp_path / "out"
    shutil.copytree(fresh / ".harness-cache", out / ".harness-cache")
    result = grade(root, bench, out)
    assert sources(result.stdout) == "harness: graded: beta; from cache: alpha, partial"
    cached = {item for item, line in item_lines(result.stdout).items() if "(cached)" in line}
    assert cached == {f"{name}::{track}" for name in ("alpha", "partial") for track in TRACKS}
    assert len(ResultCache(out / ".harness-cache").entries()) == ITEMS + len(TRACKS)
    records = json.loads((out / "results.json").read_text())["results"]
    before = json.loads((fresh / "results.json").read_text())["results"]
    assert [r["utility"] for r in records] == [r["utility"] for r in before]


def test_unreadable_entries_are_regraded_not_fatal(contest, bench, fresh, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(fresh / ".harness-cache", out / ".harness-cache")
    cache = ResultCache(out / ".harness-cache")
    partial = [path for path in cache.entries()
               if json.loads(path.read_text())["record"]["submission"] == "partial"]
    partial[0].write_text('{"key": "truncated", "rec')
    partial.append(cache.path("0" * 64))  # and a stray entry no key names
    partial[-1].write_bytes(b"\x00" * 10)
    result = grade(contest, bench, out)
    assert result.returncode == 1, result.stdout + result.stderr
    assert sources(result.stdout) == "harness: graded: partial; from cache: alpha, beta"
    assert same_outputs(out, fresh)
    assert cache.get(partial[0].stem, {"submission": "partial"}) is not None  # rewritten


def test_no_cache_reads_and_writes_nothing(contest, bench, tmp_path):
    out = tmp_path / "out"
    result = grade(contest, bench, out, "--no-cache", "-k", "partial")
    assert result.returncode == 1
    assert sources(result.stdout) == "harness: graded: partial"
    assert not (out / ".harness-cache").exists()
    assert run_harness("grade", "--no-cache", "--cache", out, cwd=contest).returncode == 2


def test_kill_9_then_rerun_resumes_and_matches_an_uninterrupted_run(contest, bench, fresh,
                                                                  tmp_path):
    out = tmp_path / "out"
    cache = ResultCache(out / ".harness-cache")
    log = tmp_path / "killed.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "harness", "grade", "submissions", "--benchmark", str(bench),
             "--out", str(out)], cwd=contest, stdout=handle, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not cache.entries() and process.poll() is None:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.02)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)  # the run and its sandboxed worker
        finally:
            process.wait()
    assert process.returncode == -signal.SIGKILL, log.read_text()
    done = len(cache.entries())
    assert 1 <= done < ITEMS, log.read_text()
    assert not (out / "results.json").exists()

    result = grade(contest, bench, out)
    assert result.returncode == 1, result.stdout + result.stderr
    cached = [line for line in item_lines(result.stdout).values() if "(cached)" in line]
    assert len(cached) == done
    assert same_outputs(out, fresh)


def test_transient_failures_are_not_cached(contest, bench, tmp_path, monkeypatch):
    """A timeout-like failure is reported like any other but graded again next time."""
    from harness import cli
    from harness.definitions.submissions import Submission
    from harness.errors import TransientSubmissionError

    def flaky(self: Submission, track: str):
        if track == "sunglasses":
            raise TransientSubmissionError("timed out after 1 s")
        return original(self, track)

    original = Submission.entry
    monkeypatch.setattr(Submission, "entry", flaky)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # restored after the test
    monkeypatch.chdir(contest)
    out = tmp_path / "out"
    args = ["grade", "submissions", "--benchmark", str(bench), "--out", str(out), "-k",
            "partial", "-q"]
    assert cli.main(args) == 1
    records = json.loads((out / "results.json").read_text())["results"]
    assert [r["error"] for r in records] == ["timed out after 1 s"]
    assert ResultCache(out / ".harness-cache").entries() == []
    monkeypatch.setattr(Submission, "entry", original)
    assert cli.main(args) == 1  # graded again: the manifest's real problem, now cached
    records = json.loads((out / "results.json").read_text())["results"]
    assert records[0]["error"].startswith("no [tracks.sunglasses] entry")
    assert len(ResultCache(out / ".harness-cache").entries()) == 1


# --changed-since ---------------------------------------------------------------------------------


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout


def init_repo(root: Path) -> None:
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "test@example.com")
    git(root, "config", "user.name", "test")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")


def test_changed_since_grades_changed_and_untracked_and_merges_like_a_full_run(
        contest, bench, fresh, tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(contest / "submissions", root / "submissions")
    init_repo(root)
    (root / "submissions" / "beta" / "notes.txt").write_bytes(b"version 2\n")  # uncommitted
    shutil.copytree(root / "submissions" / "partial", root / "submissions" / "gamma")  # new
    out = root / "out"
    out.mkdir()
    baseline = json.loads((fresh / "results.json").read_text())
    for record in baseline["results"]:  # stale: graded when partial had another team name
        if record["submission"] == "partial":
            record["team"] = "renamed"
    (out / "results.json").write_text(json.dumps(baseline))
    summary = tmp_path / "summary.md"
    summary.write_text("# Earlier output\n")

    result = grade(root, bench, out, "--changed-since", "HEAD", "--no-cache",
                   "--summary-md", summary)
    assert result.returncode == 1, result.stdout + result.stderr
    assert sources(result.stdout) == (
        f"harness: changed since HEAD: beta, gamma; graded: beta, gamma, partial; "
        f"from baseline {out / 'results.json'}: alpha")
    assert all("(from baseline)" in line for item, line in item_lines(result.stdout).items()
               if item.startswith("alpha::"))
    full = tmp_path / "full"
    assert grade(root, bench, full, "--no-cache").returncode == 1
    assert same_outputs(out, full)

    text = summary.read_text()
    assert text.startswith("# Earlier output\n")  # appended, as a CI job summary expects
    assert "Graded in this run: beta, gamma, partial. 4 entries are ranked on 1 track;" in text
    assert "### beta: rank " in text and "### alpha" not in text
    assert "| sunglasses | - | - | - | no \\[tracks.sunglasses\\] entry in submission.toml" in text
    assert "](" not in text and "http" not in text  # no links


def test_changed_since_usage_errors_and_unusable_baselines(contest, bench, fresh, tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(contest / "submissions", root / "submissions")
    init_repo(root)
    bad_ref = grade(root, bench, tmp_path / "out", "--changed-since", "no-such-ref", "-q")
    assert bad_ref.returncode == 2
    assert "'no-such-ref' is not a commit" in bad_ref.stdout + bad_ref.stderr
    alone = grade(root, bench, tmp_path / "out", "--baseline", "results.json", "-q")
    assert alone.returncode == 2 and "only with --changed-since" in alone.stdout + alone.stderr
    missing = grade(root, bench, tmp_path / "out", "--changed-since", "HEAD", "--baseline",
                    tmp_path / "none.json", "-q")
    assert missing.returncode == 2 and "--baseline:" in missing.stderr
    assert "none.json: no such file" in missing.stderr
    results = json.loads((fresh / "results.json").read_text())
    forged = json.loads(json.dumps(results))
    next(r for r in forged["results"] if r["status"] == "ok")["asr"] = 0.0  # outcomes untouched
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    refused = grade(root, bench, tmp_path / "out", "--changed-since", "HEAD", "--baseline",
                    tmp_path / "forged.json", "-q")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "baseline: invalid results file" in refused.stderr and "but its outcomes give" in \
        refused.stderr and "Traceback" not in refused.stdout + refused.stderr
    results["benchmark"]["provenance"]["tensorflow"] = "0.1"  # graded with another TensorFlow
    (tmp_path / "other.json").write_text(json.dumps(results))
    other = grade(root, bench, tmp_path / "out", "--changed-since", "HEAD", "--baseline",
                  tmp_path / "other.json", "-k", "partial")
    assert other.returncode == 1, other.stdout + other.stderr  # graded instead
    assert "was graded with tensorflow 0.1; this run has tensorflow " in other.stdout
    assert sources(other.stdout) == "harness: changed since HEAD: none; graded: partial; " \
        "from cache: none"
