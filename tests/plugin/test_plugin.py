"""The grading plugin: its options, one table for it and for ``harness grade``, and collection,
in this process (pytester) and, for folders built to attack the grader, in one grading run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.cli import parser
from harness.definitions.layout import default_benchmark
from harness.definitions.tracks import load_benchmark
from harness.options import OPTIONS, PREFIX, USER, forward
from harness.plugin.reuse import Reuse
from harness.plugin.session import grade_options
from harness.sandbox.isolation import Limits
from tests.conftest import benchmark_subset, run_harness, write_submission

pytest_plugins = ["pytester"]


def grade_args(*argv: str) -> list[str]:
    args = parser().parse_args(["grade", *argv])
    return forward(args)


def test_only_the_options_given_are_forwarded_as_the_plugins():
    assert grade_args() == []
    assert grade_args("--sample", "5", "--no-cache", "--image-timeout", "2.5", "--backend",
                      "ray", "--ray-cpus", "2") == [
        "--harness-sample", "5", "--harness-image-timeout", "2.5", "--harness-no-cache",
        "--harness-backend", "ray", "--harness-ray-cpus", "2.0"]
    assert grade_args("--image-timeout", "10") == []  # the default: the plugin's is the same


def test_cache_and_no_cache_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        grade_args("--cache", "c", "--no-cache")
    assert "not allowed with argument --cache" in capsys.readouterr().err


def test_every_grade_option_is_a_plugin_option_with_the_same_default(pytester):
    config = pytester.parseconfig("-p", "harness.plugin")
    grade = parser().parse_args(["grade"])
    for option in USER:
        assert config.getoption(option.plugin_dest) == getattr(grade, option.dest), option
    names = {opt for group in config._parser._groups for o in group.options for opt in o.names()}
    assert {PREFIX + option.name for option in OPTIONS} <= names


def test_the_options_the_table_keys_reach_the_cache_key_as_given(pytester):
    """The table marks the options that can change a record; each is read into the typed grading
    options and back out of them into the cache key, under the name the key always had."""
    assert [option.name for option in OPTIONS if option.keyed] == [
        "allow-unsafe-models", "sample", "image-timeout"]
    config = pytester.parseconfig("-p", "harness.plugin", "--harness-allow-unsafe-models",
                                  "--harness-sample", "7", "--harness-image-timeout", "2.5",
                                  "--harness-no-retune")
    grading = grade_options(config)
    assert Reuse(SimpleNamespace(grading=grading)).options() == {
        "allow_unsafe": True, "sample": 7, "image_timeout": 2.5, "retune": None}
    default = grade_options(pytester.parseconfig("-p", "harness.plugin"))
    options = Reuse(SimpleNamespace(grading=default)).options()
    assert {key: options[key] for key in ("allow_unsafe", "sample", "image_timeout")} == {
        "allow_unsafe": False, "sample": None, "image_timeout": Limits.image_timeout}
    assert options["retune"] is not None and options["retune"]["sample"] == default.probe_sample


def test_a_sample_below_one_is_refused_by_the_plugin_too(pytester):
    result = pytester.runpytest_inprocess("-p", "harness.plugin", "--harness-sample", "0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*: error: argument --harness-sample: expected a positive integer, got '0'"])


def test_without_a_benchmark_the_plugin_collects_nothing(pytester):
    pytester.makefile(".toml", **{"team/submission": 'team = "t"\n'})
    result = pytester.runpytest_inprocess("-p", "harness.plugin", "--co")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


@pytest.mark.slow  # it reads the track's data and renders the board
def test_a_broken_manifest_is_one_item_per_track_with_a_one_line_error(pytester):
    """Collection never fails on a submission: each of its items is an error row."""
    benchmark = default_benchmark()
    if not (benchmark / "tracks").is_dir():
        pytest.skip("no embedded benchmark")
    pytester.makefile(".toml", **{"bad/submission": 'team = "x"\n[sunglasses\n'})
    result = pytester.runpytest_inprocess(
        "-p", "harness.plugin", "-p", "no:cacheprovider", "--rootdir", str(pytester.path),
        "--harness-benchmark",
        str(benchmark), "--harness-no-cache", "--harness-no-retune", "-k", "sunglasses",
        "--harness-out", str(pytester.path / "out"), "--tb=no", "-rN", "-v")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["bad/submission.toml::sunglasses FAILED (submission.toml: "
                                 "cannot parse: Expected ']' *) *"])
    assert "ERROR" not in result.stdout.str()
    assert (Path(pytester.path) / "out" / "results.json").is_file()


# A grading run of hostile folders ------------------------------------------------------------


def canary_code(canary: Path) -> bytes:
    """Python that leaves ``canary`` behind if anything imports or runs it, then fails."""
    return f"open({str(canary)!r}, 'w').close()\nraise SystemExit('imported')\n".encode()


@pytest.fixture(scope="module")
def hostile(tiny_benchmark: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """One grading run, on one track, of folders that once ran code in the grader or stopped
    the whole collection (exit 2), beside a good entry: ``python -m harness grade`` as CI runs
    it. Returns the run, the results file and the canaries' folder."""
    root = tmp_path_factory.mktemp("hostile")
    bench = benchmark_subset(tiny_benchmark, root / "bench", ["sunglasses"])
    badnet = load_benchmark(bench).track("sunglasses").badnet
    subs, canaries, outside = root / "submissions", root / "canaries", root / "outside"
    canaries.mkdir()
    model = {"sunglasses": {"model": "model.h5"}}
    write_submission(subs, "good", model, {"model.h5": badnet})
    # Python in a folder: a package, conftest files, test modules, a doctest, at any depth.
    package = write_submission(subs, "package", model, {
        "model.h5": badnet, "__init__.py": canary_code(canaries / "init"),
        "conftest.py": canary_code(canaries / "conftest"),
        "test_x.py": canary_code(canaries / "test_x"),
        "test_notes.txt": f">>> open({str(canaries / 'doctest')!r}, 'w').close()\n".encode()})
    (package / "sub").mkdir()
    (package / "sub" / "__init__.py").write_bytes(canary_code(canaries / "sub_init"))
    (package / "sub" / "conftest.py").write_bytes(canary_code(canaries / "sub_conftest"))
    (subs / "__init__.py").write_bytes(canary_code(canaries / "top_init"))
    (subs / "conftest.py").write_bytes(canary_code(canaries / "top_conftest"))
    # Folders that are no submission a sandbox can be given, and manifests no path can be.
    os.symlink("/proc/self/mem", write_submission(subs, "mem-link", model, {"model.h5": badnet})
               / "mem")
    os.mkfifo(write_submission(subs, "fifo", model, {"model.h5": badnet}) / "pipe")
    non_utf8 = write_submission(subs, "non-utf8", model, {"model.h5": badnet})
    (Path(os.fsdecode(bytes(non_utf8) + b"/caf\xe9"))).write_bytes(b"")
    up = write_submission(subs, "link-up", model, {"model.h5": badnet})
    os.symlink("..", up / "up")  # a folder link out, which rglob would once have walked
    loop = write_submission(subs, "link-loop", model, {"model.h5": badnet})
    os.symlink("a", loop / "b")
    os.symlink("b", loop / "a")
    write_submission(subs, "long-path", {"sunglasses": {"model": "m" * 300}})
    write_submission(subs, "nul-byte", {"sunglasses": {"model": "model\0.h5"}})
    manifest_link = subs / "manifest-link"
    manifest_link.mkdir()
    os.symlink(subs / "good" / "submission.toml", manifest_link / "submission.toml")
    write_submission(outside, "elsewhere", model, {"model.h5": badnet})
    os.symlink(outside / "elsewhere", subs / "folder-link")
    # Folders named with a terminal escape and with a byte that is not UTF-8.
    write_submission(subs, "ansi\x1b[31mred", model, {"model.h5": badnet})
    os.rename(write_submission(subs, "latin", model, {"model.h5": badnet}),
              os.fsdecode(bytes(subs) + b"/caf\xe9"))
    huge = write_submission(subs, "huge-manifest", model, {"model.h5": badnet})
    with open(huge / "submission.toml", "a") as handle:
        handle.write(f"# {'x' * (1 << 21)}\n")
    out = root / "out"
    result = run_harness("grade", "submissions", "--benchmark", bench, "--out", out,
                         "--no-retune", cwd=root)
    return result, out / "results.json", canaries


HOSTILE_ROWS = {
    "mem-link": "'mem' is a symbolic link out of the submission folder (to '/proc/self/mem')",
    "fifo": "'pipe' is not a regular file (a FIFO, socket or device)",
    "non-utf8": "the file name 'caf\\xe9' is not UTF-8",
    "link-up": "'up' is a symbolic link out of the submission folder (to '..')",
    "long-path": "a path of 300 characters",
    "nul-byte": "the path 'model\\x00.h5' holds a control character",
    "manifest-link": "'submission.toml' is a symbolic link out of the submission folder",
    "folder-link": "the submission folder is a symbolic link",
    "huge-manifest": "submission.toml: cannot parse: larger than 1048576 bytes",
    "ansi\\x1b[31mred": "the folder's name 'ansi\\x1b[31mred' is not plain text",
    "caf\\xe9": "the folder's name 'caf\\xe9' is not plain text",
}
"""Each refused folder and what its row says (in part)."""


@pytest.mark.slow
def test_no_python_in_a_submission_folder_runs_in_the_grader(hostile):
    """``__init__.py`` (a pytest Package), ``conftest.py``, test modules and doctests, in a
    submission or the submissions folder, are never imported or run: the entry beside them is
    graded like any other."""
    result, results, canaries = hostile
    assert sorted(path.name for path in canaries.iterdir()) == []
    by = {record["submission"]: record for record in json.loads(results.read_text())["results"]}
    assert by["package"]["status"] == "ok", by["package"]["error"]
    assert by["package"]["asr"] == by["good"]["asr"] > 0.5
    assert "Traceback" not in result.stdout, result.stdout


@pytest.mark.slow
def test_one_teams_folder_is_its_own_error_row_and_stops_nobody(hostile):
    """Links out (to /proc/self/mem, to the folder above, a linked folder or manifest), a FIFO,
    a name that is not UTF-8, a path of 300 characters, a NUL byte, a manifest of 2 MB: each is
    that submission's error row, in one line naming the cause; a link loop inside a folder is
    hashed as two links and graded; the good entry is graded; exit 1, not 2."""
    result, results, _ = hostile
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "\x1b" not in result.stdout + result.stderr  # the folder's escape is shown escaped
    by = {record["submission"]: record for record in json.loads(results.read_text())["results"]}
    assert set(by) == {"good", "package", "link-loop", *HOSTILE_ROWS}
    assert by["good"]["status"] == by["link-loop"]["status"] == "ok"
    for name, reason in HOSTILE_ROWS.items():
        error = by[name]["error"]
        assert by[name]["status"] == "error" and reason in error and "\n" not in error, name
        assert f"{name}/submission.toml::sunglasses FAILED ({error[:20]}" in result.stdout
