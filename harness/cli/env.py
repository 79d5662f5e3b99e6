"""``harness env build``: build the environments a submissions folder declares, ahead of
grading, so that ``harness grade --no-build`` runs offline."""

from __future__ import annotations

import argparse

from harness.cli import benchmark_folder, submissions_folder
from harness.options import BENCHMARK, ENV_CACHE, add_arguments


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    env = commands.add_parser("env", help="the Python environments submissions declare")
    env_commands = env.add_subparsers(dest="env_command", required=True)
    env_build = env_commands.add_parser(
        "build", help="build every environment a submissions folder needs, ahead of grading",
        description="Install each environment that an entry declares (a benchmark's named "
                    "environment, a submission's requirements) into the environment cache, "
                    "wheels only. Afterwards `grade --no-build` runs offline.")
    env_build.add_argument("submissions", nargs="?", default="submissions",
                           help="folder holding <name>/submission.toml (default: submissions)")
    add_arguments(env_build, (BENCHMARK,))
    add_arguments(env_build, (ENV_CACHE,))
    env_build.set_defaults(run=run)


def run(args: argparse.Namespace, passthrough: list[str]) -> int:
    """Build every environment that the submissions' entries declare, one line each."""
    from harness.definitions.submissions import MANIFEST, load_submission
    from harness.definitions.tracks import load_bundle
    from harness.errors import SubmissionError
    from harness.grading.item import environment_spec
    from harness.sandbox.environments import EnvironmentSpec, EnvironmentStore
    from harness.text import safe_line

    submissions = submissions_folder(args.submissions)
    benchmark = load_bundle(benchmark_folder(args))
    store = EnvironmentStore(args.env_cache)
    specs: dict[str, tuple[EnvironmentSpec, list[str]]] = {}
    failed = 0
    for manifest in sorted(submissions.glob(f"*/{MANIFEST}")):
        submission = load_submission(manifest)
        for track in benchmark.tracks:
            try:
                entry = submission.entry(track.name)
            except SubmissionError:
                continue  # not about environments: grade and check report it
            try:
                spec = environment_spec(entry, submission.root, track)
            except SubmissionError as exc:
                print(f"FAIL  {safe_line(submission.name)} on {track.name}: {exc}")
                failed += 1
                continue
            if spec is not None:
                specs.setdefault(spec.key, (spec, []))[1].append(submission.name)
    for spec, users in specs.values():
        who = ", ".join(sorted(set(users)))
        try:
            built = store.ensure(spec)
        except SubmissionError as exc:
            print(f"FAIL  {safe_line(spec.name)} (for {safe_line(who)}): {exc}")
            failed += 1
            continue
        print(f"ok    {safe_line(spec.name)} (for {safe_line(who)}): {built.how}, "
              f"{len(built.packages)} packages, {built.folder}")
    print(f"{len(specs)} environments in {store.folder}; {failed} failed")
    return 1 if failed else 0
