"""``harness grade``: run pytest with the grading plugin on a submissions folder.

The grading options come from the one table (:mod:`harness.options`) and are
forwarded as the plugin's ``--harness-*`` options; pytest's own (-k, -x, --junitxml, -n) go to
pytest as they are.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.cli import benchmark_folder, submissions_folder
from harness.definitions.tracks import load_benchmark
from harness.errors import UsageError
from harness.options import BACKEND, REUSE, WHAT, add_arguments, forward

GRADE_INI = Path(__file__).parents[1] / "plugin" / "grade.ini"
"""pytest's configuration for grading runs, isolated from any project's own (found without
importing the plugin, which pytest must import first to rewrite its asserts)."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    grade = commands.add_parser("grade", help="grade every submission on every track",
                                description="Grade submissions; extra arguments after -- go to "
                                            "pytest.")
    grade.add_argument("submissions", nargs="?", default="submissions",
                       help="folder holding <name>/submission.toml (default: submissions)")
    add_arguments(grade, WHAT)
    grade.add_argument("-k", metavar="EXPR", help="only grade items matching EXPR (pytest -k)")
    grade.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failure")
    grade.add_argument("--junitxml", metavar="FILE", help="also write a JUnit XML report")
    add_arguments(grade, REUSE)
    grade.add_argument("-q", "--quiet", action="store_true", help="one character per item")
    grade.add_argument("-n", "--numprocesses", metavar="K", type=int, default=0,
                       help="grade in K processes at once (pytest-xdist); results are the same")
    add_arguments(grade, BACKEND)
    grade.set_defaults(run=run)


def run(args: argparse.Namespace, passthrough: list[str]) -> int:
    import pytest

    submissions = submissions_folder(args.submissions)
    # Plugins installed in the environment stay out of a grading run: results must not depend on
    # what else is installed, and conftest.py files in submissions are untrusted code.
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    args.benchmark = str(benchmark_folder(args))
    load_benchmark(Path(args.benchmark))  # a bad benchmark is one line here, not pytest's error
    # Each item's line carries its scores or its one-line error, so pytest's traceback and
    # short-summary sections would only repeat them (-rN --tb=no).
    pytest_args = [
        str(submissions), "-p", "harness.plugin", "-p", "no:cacheprovider", "--noconftest",
        "-c", str(GRADE_INI), "--rootdir", str(Path.cwd()), *forward(args), "-rN", "--tb=no",
    ]
    if not args.quiet:
        pytest_args.append("-v")
        if sys.stderr.isatty():  # progress bars only on a terminal; pytest captures fd 2 itself
            pytest_args += ["--harness-progress-fd", str(os.dup(sys.stderr.fileno()))]
    if args.k:
        pytest_args += ["-k", args.k]
    if args.exitfirst:
        pytest_args.append("-x")
    if args.junitxml:
        pytest_args += ["--junitxml", args.junitxml]
    if args.numprocesses:  # plugin autoloading is off: load pytest-xdist by name
        pytest_args += ["-p", "xdist.plugin", "-n", str(args.numprocesses)]
    code = int(pytest.main(pytest_args + passthrough))
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        raise UsageError(f"no submissions (*/submission.toml) selected under {submissions}")
    return 2 if code == pytest.ExitCode.USAGE_ERROR else code
