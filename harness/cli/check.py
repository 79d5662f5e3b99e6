"""``python -m harness check submissions/<name>``: validate one submission in seconds.

A pull-request author runs this before pushing, so every problem a grading run would turn into an
error row shows up here first, as one line that says what to fix. Only public data is read (a few
images of each track's validation set), so teams can run it on the bundle from ``export-public``
as well as organizers on the full benchmark. Each entry runs exactly as the grader runs it (in
the sandboxed worker, through ``harness.grading.item``), so passing here means the grader can run
it. Every line is printed through :func:`harness.text.safe_line`: the report quotes the manifest's
keys and values, file names and the entry's own errors, and CI echoes it into its log.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.cli import benchmark_folder
from harness.definitions.data import ContestSet, DataStore
from harness.definitions.submissions import MANIFEST, Submission, load_submission
from harness.definitions.tracks import Benchmark, PublicTrack, load_bundle
from harness.errors import SubmissionError, UsageError, in_folder, one_line
from harness.grading.item import GradeOptions, answer_array, environment_spec, placed_files
from harness.options import ALLOW_UNSAFE, ALLOW_UNSANDBOXED, ENV_CACHE, NO_BUILD, add_arguments
from harness.sandbox.environments import EnvironmentSpec, EnvironmentStore
from harness.sandbox.isolation import Limits, require, unsandboxed_warning
from harness.synthetic.materialize import generate_missing
from harness.text import safe_line

KEY_PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "numpy")
"""Packages whose versions the environment line shows."""
SAMPLE = 8
"""Validation images answered per track: enough to catch wrong shapes and ranges, cheap on CPU."""

ENTRY_FORMS = 'model = "<file>" (or weights + architecture = "deepid", or eval + args)'


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, whether it passed, and what to do if not."""

    passed: bool
    what: str
    message: str = ""

    def line(self) -> str:
        """One line, whatever the team's text in it (a track key may hold a newline)."""
        status = "ok" if self.passed else "FAIL"
        message = safe_line(self.message)
        return f"{status:<5} {safe_line(self.what)}" + (f": {message}" if message else "")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = commands.add_parser(
        "check", help="validate one submission in seconds, before pushing it",
        description="Check one submission folder: its manifest, its files, and that each entry "
                    "loads and answers a few validation images. Exit 0 when all checks pass.")
    check.add_argument("submission", help="the submission folder, e.g. submissions/my-team")
    check.add_argument("--benchmark", help="benchmark folder or public bundle (default: the "
                                           "embedded data/)")
    add_arguments(check, (ALLOW_UNSAFE, ALLOW_UNSANDBOXED, ENV_CACHE, NO_BUILD))
    check.set_defaults(run=run)


def run(args: argparse.Namespace, passthrough: list[str]) -> int:
    return check_folder(Path(args.submission), benchmark_folder(args),
                        allow_unsafe=args.allow_unsafe_models,
                        allow_unsandboxed=args.allow_unsandboxed,
                        environments=EnvironmentStore(args.env_cache), build=not args.no_build)


def check_folder(folder: Path, benchmark_root: Path, *, allow_unsafe: bool = False,
                 allow_unsandboxed: bool = False, environments: EnvironmentStore | None = None,
                 build: bool = True) -> int:
    """Print every check of ``folder`` against the benchmark; 0 all passed, 1 some failed. No
    such folder, an unusable benchmark or no sandbox (not the author's fault) raise before any
    check runs."""
    if not folder.is_dir():
        raise UsageError(f"{folder} does not exist; scaffold it with: python -m harness new "
                         f"{folder.name} --dir {folder.parent}")
    limits = Limits(allow_unsandboxed=allow_unsandboxed)
    mode = require(limits)  # a submission runs below: not without a sandbox, unless allowed
    if mode.bwrap is None:
        print(f"harness: {unsandboxed_warning(mode)}", file=sys.stderr)
    benchmark = load_bundle(benchmark_root)
    generate_missing(benchmark, [track.validation for track in benchmark.tracks])
    print(f"checking {safe_line(folder)} on {benchmark.name} ({len(benchmark.tracks)} tracks)",
          flush=True)
    failed = total = 0
    options = GradeOptions(allow_unsafe=allow_unsafe, build=build, limits=limits,
                           environments=environments or EnvironmentStore())
    for result in check_submission(folder, benchmark, options):
        print(result.line(), flush=True)
        total += 1
        failed += not result.passed
    if failed:
        print(f"{failed} of {total} checks failed; fix them and run the check again")
        return 1
    print(f"all {total} checks passed: the grader can load and run this submission")
    return 0


def check_submission(folder: Path, benchmark: Benchmark[PublicTrack],
                     options: GradeOptions | None = None) -> Iterator[Check]:
    """Yield the checks of an existing ``folder`` in order, each as soon as it is known (loading
    a model takes seconds).

    Stops early only when nothing further can be checked (no readable manifest).
    """
    manifest = folder / MANIFEST
    if not manifest.is_file():
        yield Check(False, "folder", f"no {MANIFEST} in {folder}; `python -m harness new` "
                                     "writes a commented template")
        return
    yield Check(True, "folder", str(manifest))
    submission = load_submission(manifest)
    if submission.problem:
        yield Check(False, "manifest", submission.problem)
        return
    yield _check_meta(submission)
    names = [track.name for track in benchmark.tracks]
    for unknown in sorted(set(submission.tracks) - set(names)):
        yield Check(False, f"[tracks.{unknown}]",
                    f"not a track of this benchmark ({', '.join(names)}); rename or remove it")
    store = DataStore()
    for track in benchmark.tracks:
        yield from _check_track(submission, track, store, options or GradeOptions())


def _check_meta(submission: Submission) -> Check:
    empty = [key for key in ("team", "method") if not getattr(submission, key).strip()]
    if empty:
        fill = " and ".join(f'{key} = "..."' for key in empty)
        return Check(False, "manifest", f"set {fill} in {MANIFEST} (shown on the leaderboard)")
    return Check(True, "manifest", f"team {submission.team!r}, method {submission.method!r}")


def _check_track(submission: Submission, track: PublicTrack, store: DataStore,
                 options: GradeOptions) -> Iterator[Check]:
    """The entry's files, its environment and placed files, then loading and running it on a
    few validation images, in that environment."""
    if track.name not in submission.tracks:
        yield Check(False, track.name, f"no [tracks.{track.name}] table in {MANIFEST}; add one "
                                       f"with {ENTRY_FORMS}")
        return
    try:
        entry = submission.entry(track.name)
    except SubmissionError as exc:
        yield Check(False, f"{track.name}: entry", str(exc))
        return
    relative = entry.path.relative_to(submission.root.resolve())
    yield Check(True, f"{track.name}: entry", f"{entry.kind} {relative}")
    try:
        placed = placed_files(entry, track)
        spec = environment_spec(entry, submission.root, track)
    except SubmissionError as exc:
        yield Check(False, f"{track.name}: entry", str(exc))
        return
    if placed:
        yield Check(True, f"{track.name}: files", ", ".join(f"{name} at {path}" for path, name
                                                             in entry.files))
    if spec is not None:
        yield _check_environment(track, spec, options)
    images, labels = _sample(store.get(track.validation, track.num_classes))
    what = f"{track.name}: loads and answers"
    try:
        answers = answer_array(entry, submission.root, track, images, options)
    except Exception as exc:  # the runner's one-line SubmissionError, or anything unforeseen
        yield Check(False, what, _message(exc, submission.root))
        return
    if answers.invalid:
        yield Check(False, what, f"{answers.invalid} of {len(images)} answers invalid (the grader "
                                 f"scores them wrong); first: {answers.first_error}")
        return
    correct = int(np.sum(answers.labels == labels))
    note = "" if correct else "; none correct: is input_scale right for this model?"
    yield Check(True, what, f"{len(images)} validation images, labels in 0..{track.num_classes} "
                            f"({correct}/{len(images)} correct{note})")


def _check_environment(track: PublicTrack, spec: EnvironmentSpec, options: GradeOptions) -> Check:
    """Whether the declared environment resolves and is built (building it if allowed)."""
    what = f"{track.name}: environment"
    try:
        built = options.environments.ensure(spec, build=options.build)
    except SubmissionError as exc:
        return Check(False, what, str(exc))
    how = f"built in {built.seconds:.0f} s" if built.seconds else "built"
    versions = ", ".join(f"{name} {built.packages[name]}" for name in KEY_PACKAGES
                         if name in built.packages)
    return Check(True, what, f"{spec.name} ({how}; {len(built.packages)} packages"
                             + (f": {versions}" if versions else "") + ")")


def _sample(data: ContestSet) -> tuple[np.ndarray, np.ndarray]:
    """``SAMPLE`` images spread over the file (contest files are grouped by identity)."""
    index = np.unique(np.linspace(0, len(data) - 1, min(SAMPLE, len(data))).round().astype(int))
    return data.images[index], data.labels[index]


def _message(exc: BaseException, root: Path) -> str:
    """One line, with paths relative to the submission folder as the leaderboard shows them."""
    return in_folder(one_line(exc), root.resolve())
