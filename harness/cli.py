"""Command line: ``harness grade``, ``check``, ``new``, ``render``, ``export-public`` and the
builders (``env build``, ``benchmark build``, ``reference build``).

``grade`` is a thin front for pytest with the grading plugin, so pytest's own options (-k, -x,
--junitxml, -q) behave as pytest users expect and its exit status is kept: 0 all passed, 1 some
submission failed, 2 a usage or benchmark error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.errors import positive_int
from harness.sandbox.isolation import Limits

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
        if sys.stderr.isatty():  # progress bars only on a terminal; pytest captures fd 2 itself
            pytest_args += ["--harness-progress-fd", str(os.dup(sys.stderr.fileno()))]
    if args.allow_unsafe_models:
        pytest_args.append("--harness-allow-unsafe-models")
    if args.sample is not None:
        pytest_args += ["--harness-sample", str(args.sample)]
    pytest_args += ["--harness-image-timeout", str(args.image_timeout),
                    "--harness-track-timeout", str(args.track_timeout)]
    if args.k:
        pytest_args += ["-k", args.k]
    if args.exitfirst:
        pytest_args.append("-x")
    if args.junitxml:
        pytest_args += ["--junitxml", args.junitxml]
    if args.no_cache:
        pytest_args.append("--harness-no-cache")
    elif args.cache:
        pytest_args += ["--harness-cache", args.cache]
    if args.changed_since:
        pytest_args += ["--harness-changed-since", args.changed_since]
    if args.baseline:
        pytest_args += ["--harness-baseline", args.baseline]
    if args.summary_md:
        pytest_args += ["--harness-summary-md", args.summary_md]
    if args.env_cache:
        pytest_args += ["--harness-env-cache", args.env_cache]
    if args.no_build:
        pytest_args.append("--harness-no-build")
    if args.no_retune:
        pytest_args.append("--harness-no-retune")
    if args.numprocesses:  # plugin autoloading is off: load pytest-xdist by name
        pytest_args += ["-p", "xdist.plugin", "-n", str(args.numprocesses)]
    if args.backend == "ray":
        pytest_args += ["--harness-backend", "ray", "--harness-ray-cpus", str(args.ray_cpus)]
        if args.ray_address:
            pytest_args += ["--harness-ray-address", args.ray_address]
    code = int(pytest.main(pytest_args + passthrough))
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print(f"harness: error: no submissions (*/submission.toml) selected under {submissions}",
              file=sys.stderr)
        return 2
    return 2 if code == pytest.ExitCode.USAGE_ERROR else code


def _benchmark_build(args: argparse.Namespace, passthrough: list[str]) -> int:
    from harness.synthetic.build import build

    build(scale=args.scale, out=Path(args.out), only=args.only)
    return 0


def _reference_build(args: argparse.Namespace, passthrough: list[str]) -> int:
    from harness.defenses.reference import build
    from harness.spec.tracks import load_bundle

    benchmark = load_bundle(Path(args.benchmark or default_benchmark()))
    if benchmark.generate:
        from harness.synthetic.materialize import ensure_generated

        ensure_generated(benchmark)
    build(benchmark, Path(args.out), tracks=args.track, defenses=args.defense)
    return 0


def _usage_error(exc: Exception) -> int:
    print(f"harness: error: {exc}", file=sys.stderr)
    return 2


def _bench(args: argparse.Namespace, passthrough: list[str]) -> int:
    from harness import bench
    from harness.errors import HarnessError
    from harness.spec.tracks import load_benchmark

    if not args.end_to_end:
        used = [flag for flag, value in (("SUBMISSIONS", args.submissions),
                                         ("-n", args.numprocesses), ("--sample", args.sample))
                if value]
        if used:
            return _usage_error(ValueError(f"{', '.join(used)}: only with --end-to-end"))
    elif args.model:
        return _usage_error(ValueError("--model: not with --end-to-end (it grades a folder)"))
    track = args.track or (None if args.end_to_end else "sunglasses")
    try:
        benchmark = load_benchmark(Path(args.benchmark or default_benchmark()))
        if track is not None:
            benchmark.track(track)
    except HarnessError as exc:
        return _usage_error(exc)
    except KeyError:
        return _usage_error(ValueError(f"no track {track!r}"))
    if args.end_to_end:
        submissions = Path(args.submissions or "submissions")
        if not submissions.is_dir():
            return _usage_error(ValueError(f"{submissions}: no such folder"))
        try:
            whole = bench.end_to_end(Path(args.benchmark or default_benchmark()), submissions,
                                     track, args.numprocesses, args.sample, args.rounds)
        except HarnessError as exc:
            return _usage_error(exc)
        print()
        print(bench.end_to_end_header(whole))
        print()
        print(bench.end_to_end_table(whole))
        return 0
    if benchmark.generate:
        from harness.synthetic.materialize import ensure_generated

        ensure_generated(benchmark)
    model = Path(args.model) if args.model else None
    result = bench.measure(benchmark, track, model, rounds=args.rounds)
    print()
    print(bench.header(result, args.rounds))
    print()
    print(bench.table(result))
    return 0


def _check(args: argparse.Namespace, passthrough: list[str]) -> int:
    from harness.check import run
    from harness.sandbox.environments import EnvironmentStore

    store = EnvironmentStore(args.env_cache)
    return run(Path(args.submission), Path(args.benchmark or default_benchmark()),
               allow_unsafe=args.allow_unsafe_models, environments=store,
               build=not args.no_build)


def _env_build(args: argparse.Namespace, passthrough: list[str]) -> int:
    """Build every environment that the submissions' entries declare, one line each."""
    from harness.errors import HarnessError, SubmissionError
    from harness.grading.item import environment_spec
    from harness.sandbox.environments import EnvironmentStore
    from harness.spec.submissions import MANIFEST, load_submission
    from harness.spec.tracks import load_bundle

    try:
        benchmark = load_bundle(Path(args.benchmark or default_benchmark()))
    except HarnessError as exc:
        return _usage_error(exc)
    store = EnvironmentStore(args.env_cache)
    specs, failed = {}, 0
    for manifest in sorted(Path(args.submissions).glob(f"*/{MANIFEST}")):
        submission = load_submission(manifest)
        for track in benchmark.tracks:
            try:
                entry = submission.entry(track.name)
            except SubmissionError:
                continue  # not about environments: grade and check report it
            try:
                spec = environment_spec(entry, submission.root, track)
            except SubmissionError as exc:
                print(f"FAIL  {submission.name} on {track.name}: {exc}")
                failed += 1
                continue
            if spec is not None:
                specs.setdefault(spec.key, (spec, []))[1].append(submission.name)
    for spec, users in specs.values():
        who = ", ".join(sorted(set(users)))
        try:
            built = store.ensure(spec)
        except SubmissionError as exc:
            print(f"FAIL  {spec.name} (for {who}): {exc}")
            failed += 1
            continue
        print(f"ok    {spec.name} (for {who}): {built.how}, {len(built.packages)} packages, "
              f"{built.folder}")
    print(f"{len(specs)} environments in {store.folder}; {failed} failed")
    return 1 if failed else 0


def _new(args: argparse.Namespace, passthrough: list[str]) -> int:
    from harness.errors import HarnessError
    from harness.scaffold import scaffold
    from harness.spec.tracks import load_bundle

    try:
        benchmark = load_bundle(Path(args.benchmark or default_benchmark()))
        folder = scaffold(args.name, Path(args.dir), benchmark)
    except HarnessError as exc:
        return _usage_error(exc)
    print(f"created {folder}/submission.toml and {folder}/README.md; fill them in, then run: "
          f"python -m harness check {folder}")
    return 0


def _render(args: argparse.Namespace, passthrough: list[str]) -> int:
    from harness.errors import HarnessError
    from harness.render.outputs import render

    results = Path(args.results)
    out = Path(args.out) if args.out else results.parent
    try:
        notes = render(results, out)
    except HarnessError as exc:
        return _usage_error(exc)
    for note in notes:
        print(f"harness: {note}", file=sys.stderr)
    print(f"rendered {results} into {out}: leaderboard.md, results.csv, index.html, plots/")
    return 0


def _export_public(args: argparse.Namespace, passthrough: list[str]) -> int:
    from harness.errors import HarnessError
    from harness.spec.export import export_public
    from harness.spec.tracks import load_bundle

    out = Path(args.dir)
    try:
        files = export_public(load_bundle(Path(args.benchmark or default_benchmark())), out)
    except HarnessError as exc:
        return _usage_error(exc)
    print(f"wrote the public bundle to {out} ({len(files)} files; see {out / 'README.md'}):")
    for name in files:
        print(f"  {name}")
    return 0


ENV_CACHE_HELP = ("folder of built environments (default: $HARNESS_ENV_CACHE, else "
                  "~/.cache/backdoor-grader/environments)")


def _environment_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--env-cache", metavar="DIR", help=ENV_CACHE_HELP)
    command.add_argument("--no-build", action="store_true",
                         help="never build an environment; entries whose environment is not "
                              "built fail with 'environment not built' (build ahead with: "
                              "harness env build)")


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
    grade.add_argument("--sample", metavar="K", type=positive_int,
                       help="grade a stratified sample of K images per test set (faster, wider "
                            "intervals)")
    grade.add_argument("--image-timeout", metavar="S", type=float, default=Limits.image_timeout,
                       help="wall-clock seconds a submission may take per image "
                            f"(default {Limits.image_timeout:g})")
    grade.add_argument("--track-timeout", metavar="S", type=float, default=Limits.track_timeout,
                       help="wall-clock seconds per submission and track "
                            f"(default {Limits.track_timeout:g})")
    grade.add_argument("-k", metavar="EXPR", help="only grade items matching EXPR (pytest -k)")
    grade.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failure")
    grade.add_argument("--junitxml", metavar="FILE", help="also write a JUnit XML report")
    cache = grade.add_mutually_exclusive_group()
    cache.add_argument("--cache", metavar="DIR",
                       help="result cache: finished items are reused, an interrupted run resumes "
                            "(default: OUT/.harness-cache)")
    cache.add_argument("--no-cache", action="store_true", help="grade everything, store nothing")
    grade.add_argument("--no-retune", action="store_true",
                       help="skip the retuning probe (P-ASR after fine-tuning each model entry "
                            "on the attacker's retuning set) and its yardstick")
    grade.add_argument("--changed-since", metavar="REF",
                       help="grade only submissions with files changed since git REF (or "
                            "untracked); take the others from the cache or the baseline")
    grade.add_argument("--baseline", metavar="FILE",
                       help="with --changed-since: results file for unchanged submissions the "
                            "cache lacks (default: OUT/results.json, if present)")
    grade.add_argument("--summary-md", metavar="FILE",
                       help="append a Markdown summary of the submissions graded in this run "
                            "(e.g. $GITHUB_STEP_SUMMARY)")
    _environment_options(grade)
    grade.add_argument("-q", "--quiet", action="store_true", help="one character per item")
    grade.add_argument("-n", "--numprocesses", metavar="K", type=int, default=0,
                       help="grade in K processes at once (pytest-xdist); results are the same")
    grade.add_argument("--backend", choices=("local", "ray"), default="local",
                       help="local: this machine (default); ray: Ray tasks on a cluster "
                            "(pip install 'backdoor-grader[ray]')")
    grade.add_argument("--ray-address", metavar="ADDRESS",
                       help="with --backend ray: the cluster's address, e.g. 10.0.0.1:6379 "
                            "(default: RAY_ADDRESS, else a Ray instance on this machine)")
    grade.add_argument("--ray-cpus", metavar="N", type=float, default=1.0,
                       help="with --backend ray: CPUs reserved per item (default 1)")
    grade.set_defaults(run=_grade)

    benchmark = commands.add_parser("benchmark", help="the embedded benchmark")
    benchmark_commands = benchmark.add_subparsers(dest="benchmark_command", required=True)
    build = benchmark_commands.add_parser("build", help="rebuild data and BadNets from seeds")
    build.add_argument("--scale", choices=("tiny", "full"), default="full")
    build.add_argument("--out", default=str(REPO / "data"), help="benchmark folder to write")
    build.add_argument("--only", nargs="*", metavar="TRACK",
                       help="rebuild only these BadNets ('clean': the clean model)")
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

    check = commands.add_parser(
        "check", help="validate one submission in seconds, before pushing it",
        description="Check one submission folder: its manifest, its files, and that each entry "
                    "loads and answers a few validation images. Exit 0 when all checks pass.")
    check.add_argument("submission", help="the submission folder, e.g. submissions/my-team")
    check.add_argument("--benchmark", help="benchmark folder or public bundle (default: the "
                                           "embedded data/)")
    check.add_argument("--allow-unsafe-models", action="store_true",
                       help="load models with Lambda layers (they run arbitrary code)")
    _environment_options(check)
    check.set_defaults(run=_check)

    env = commands.add_parser("env", help="the Python environments submissions declare")
    env_commands = env.add_subparsers(dest="env_command", required=True)
    env_build = env_commands.add_parser(
        "build", help="build every environment a submissions folder needs, ahead of grading",
        description="Install each environment that an entry declares (a benchmark's named "
                    "environment, a submission's requirements) into the environment cache, "
                    "wheels only. Afterwards `grade --no-build` runs offline.")
    env_build.add_argument("submissions", nargs="?", default="submissions",
                           help="folder holding <name>/submission.toml (default: submissions)")
    env_build.add_argument("--benchmark", help="benchmark folder (default: the embedded data/)")
    env_build.add_argument("--env-cache", metavar="DIR", help=ENV_CACHE_HELP)
    env_build.set_defaults(run=_env_build)

    new = commands.add_parser("new", help="start a submission folder from a template")
    new.add_argument("name", help="submission (folder) name: letters, digits, '.', '_', '-'")
    new.add_argument("--dir", default="submissions", help="where to create it "
                                                          "(default: submissions)")
    new.add_argument("--benchmark", help="benchmark whose tracks the template lists (default: "
                                         "the embedded data/)")
    new.set_defaults(run=_new)

    bench = commands.add_parser(
        "bench", help="measure grading speed against a raw TensorFlow loop",
        description="Time the grader's inference path (sandboxed worker) and a raw tf.function "
                    "loop on the same model and images, alternating, and print a table. With "
                    "--end-to-end: grade SUBMISSIONS with the real command (fresh --out, "
                    "--no-cache), then time the raw loop on a track's BadNet, and print the "
                    "run's wall time against its floor (its multiply-adds at the raw loop's "
                    "pace) and where the wall time went.")
    bench.add_argument("submissions", nargs="?", metavar="SUBMISSIONS",
                       help="with --end-to-end: the folder to grade (default: submissions)")
    bench.add_argument("--end-to-end", action="store_true",
                       help="time a whole grading run of SUBMISSIONS against its floor")
    bench.add_argument("--benchmark", help="benchmark folder (default: the embedded data/)")
    bench.add_argument("--track", help="track whose test images to answer (default: "
                                       "sunglasses; with --end-to-end: whose BadNet the raw "
                                       "loop runs, sunglasses or the first with a BadNet row)")
    bench.add_argument("--model", help="Keras model file (default: the track's BadNet)")
    bench.add_argument("--rounds", type=int, default=3,
                       help="rounds of each (default 3); with --end-to-end: raw loop passes, the "
                            "best counts")
    bench.add_argument("-n", "--numprocesses", metavar="K", type=int, default=0,
                       help="with --end-to-end: grade in K processes (grade -n K)")
    bench.add_argument("--sample", metavar="K", type=positive_int,
                       help="with --end-to-end: grade K images per test set (grade --sample K)")
    bench.set_defaults(run=_bench)

    render = commands.add_parser(
        "render", help="re-render the board from results.json (no model, no hidden data)",
        description="Write leaderboard.md, results.json, results.csv, the web page (index.html) "
                    "and the plots into DIR from a results file alone; each track's montage "
                    "of test images is copied from beside the results file.")
    render.add_argument("results", metavar="RESULTS", help="a results.json written by grade")
    render.add_argument("--out", metavar="DIR",
                        help="folder to write (default: the results file's folder)")
    render.set_defaults(run=_render)

    export = commands.add_parser(
        "export-public", help="write the bundle teams receive (no hidden data)",
        description="Copy the BadNets, the public data files and track files stripped of every "
                    "hidden set into DIR, a new or empty folder.")
    export.add_argument("dir", metavar="DIR", help="new or empty folder to write")
    export.add_argument("--benchmark", help="benchmark folder (default: the embedded data/)")
    export.set_defaults(run=_export_public)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    args = parser().parse_args(argv)
    return args.run(args, passthrough)
