"""The grading plugin in this process (pytester): its options, one table for it and for
``harness grade``, and collection; the subprocess runs that grade are in test_grade_cli."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import default_benchmark, parser
from harness.options import OPTIONS, PREFIX, USER, forward

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
        assert config.getoption(f"harness_{option.dest}") == getattr(grade, option.dest), option
    names = {opt for group in config._parser._groups for o in group.options for opt in o.names()}
    assert {PREFIX + option.name for option in OPTIONS} <= names


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
