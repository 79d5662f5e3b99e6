"""Command line: ``harness grade``, ``harness benchmark build``, ``harness reference build``.

``grade`` is a thin front for pytest with the grading plugin, so pytest's own options (-k, -x,
--junitxml, -q) behave as pytest users expect and its exit status is kept: 0 all passed, 1 some
submission failed, 2 a usage or benchmark error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_benchmark() -> Path:
    """The embedded benchmark: ``data/`` of the checkout the package runs from, else of cwd."""
    bundled = REPO / "data"
    return bundled if (bundled / "tracks").is_dir() else Path("data")


def _grade(args: argparse.Namespace, passthrough: list[str]) -> int:
    import pytest

    submissions = Path(args.submissions)
    if not submissions.exists():
        print(f"harness: error: {submissions}: no such folder", file=sys.stderr)
        return 2
    # Plugins installed in the environment stay out of a grading run: results must not depend on
    # what else is installed, and conftest.py files in submissions are untrusted code.
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    # Each item's line carries its scores or its one-line error, so pytest's traceback and
    # short-summary sections would only repeat them (-rN --tb=no).
    pytest_args = [
        str(submissions), "-p", "harness.plugin", "-p", "no:cacheprovider", "--noconftest",
        "-c", str(Path(__file__).with_name("grade.ini")), "--rootdir", str(Path.cwd()),
        "--harness-benchmark", str(args.benchmark or default_benchmark()),
        "--harness-out", str(args.out), "-rN", "--tb=no",
    ]
    if not args.quiet:
        pytest_args.append("-v")
    if args.allow_unsafe_models:
        pytest_args.append("--harness-allow-unsafe-models")
    if args.k:
        pytest_args += ["-k", args.k]
    if args.exitfirst:
        pytest_args.append("-x")
    if args.junitxml:
        pytest_args += ["--junitxml", args.junitxml]
    code = int(pytest.main(pytest_args + passthrough))
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print(f"harness: error: no submissions (*/submission.toml) selected under {submissions}",
              file=sys.stderr)
        return 2
    return 2 if code == pytest.ExitCode.USAGE_ERROR else code


def _benchmark_build(args: argparse.Namespace, passthrough: list[str]) -> int:
    from harness.benchmark.build import build

    build(scale=args.scale, out=Path(args.out), only=args.only)
    return 0


def _reference_build(args: argparse.Namespace, passthrough: list[str]) -> int:
    from harness.reference import build
    from harness.tracks import load_benchmark

    benchmark = load_benchmark(Path(args.benchmark or default_benchmark()))
    if benchmark.generate:
        from harness.benchmark.materialize import ensure_generated

        ensure_generated(benchmark)
    build(benchmark, Path(args.out), tracks=args.track, defenses=args.defense)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="harness", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)

    grade = commands.add_parser("grade", help="grade every submission on every track",
                                description="Grade submissions; extra arguments after -- go to "
                                            "pytest.")
    grade.add_argument("submissions", nargs="?", default="submissions",
                       help="folder holding <name>/submission.toml (default: submissions)")
    grade.add_argument("--benchmark", help="benchmark folder (default: the embedded data/)")
    grade.add_argument("--out", default=".", help="where leaderboard.md and results.json go")
    grade.add_argument("--allow-unsafe-models", action="store_true",
                       help="load models with Lambda layers (they run arbitrary code)")
    grade.add_argument("-k", metavar="EXPR", help="only grade items matching EXPR (pytest -k)")
    grade.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failure")
    grade.add_argument("--junitxml", metavar="FILE", help="also write a JUnit XML report")
    grade.add_argument("-q", "--quiet", action="store_true", help="one character per item")
    grade.set_defaults(run=_grade)

    benchmark = commands.add_parser("benchmark", help="the embedded benchmark")
    benchmark_commands = benchmark.add_subparsers(dest="benchmark_command", required=True)
    build = benchmark_commands.add_parser("build", help="rebuild data and BadNets from seeds")
    build.add_argument("--scale", choices=("tiny", "full"), default="full")
    build.add_argument("--out", default=str(REPO / "data"), help="benchmark folder to write")
    build.add_argument("--only", nargs="*", metavar="TRACK", help="rebuild only these BadNets")
    build.set_defaults(run=_benchmark_build)

    reference = commands.add_parser("reference", help="the reference submissions")
    reference_commands = reference.add_subparsers(dest="reference_command", required=True)
    rebuild = reference_commands.add_parser(
        "build", help="rebuild reference defenses from the BadNets and validation data")
    rebuild.add_argument("--benchmark", help="benchmark folder (default: the embedded data/)")
    rebuild.add_argument("--out", default="submissions", help="submissions folder to write")
    rebuild.add_argument("--track", action="append", help="only this track (repeatable)")
    rebuild.add_argument("--defense", action="append", help="only this defense (repeatable)")
    rebuild.set_defaults(run=_reference_build)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    args = parser().parse_args(argv)
    return args.run(args, passthrough)
