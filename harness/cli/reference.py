"""``harness reference build``: rebuild the reference defenses (the reference submissions)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli import benchmark_folder
from harness.nets.quiet import import_tensorflow
from harness.options import BENCHMARK, add_arguments


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    reference = commands.add_parser("reference", help="the reference submissions")
    reference_commands = reference.add_subparsers(dest="reference_command", required=True)
    rebuild = reference_commands.add_parser(
        "build", help="rebuild reference defenses from the BadNets and validation data")
    add_arguments(rebuild, (BENCHMARK,))
    rebuild.add_argument("--out", default="submissions", help="submissions folder to write")
    rebuild.add_argument("--track", action="append", help="only this track (repeatable)")
    rebuild.add_argument("--defense", action="append", help="only this defense (repeatable)")
    rebuild.set_defaults(run=run)


def run(args: argparse.Namespace, passthrough: list[str]) -> int:
    from harness.definitions.tracks import load_bundle

    benchmark = load_bundle(benchmark_folder(args))
    tracks = [benchmark.track(name) for name in args.track or ()] or list(benchmark.tracks)
    import_tensorflow()  # before the defenses' modules import Keras
    from harness.defenses.reference import DEFENSES, build, defense
    from harness.synthetic.materialize import generate_missing

    defenses = [defense(name) for name in args.defense or ()] or list(DEFENSES)
    generate_missing(benchmark)
    build(tracks, defenses, Path(args.out))
    return 0
