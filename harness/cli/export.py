"""``harness export-public``: write the bundle teams receive (no hidden data)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli import benchmark_folder
from harness.options import BENCHMARK, add_arguments


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = commands.add_parser(
        "export-public", help="write the bundle teams receive (no hidden data)",
        description="Copy the BadNets, the public data files and track files stripped of every "
                    "hidden set into DIR, a new or empty folder.")
    export.add_argument("dir", metavar="DIR", help="new or empty folder to write")
    add_arguments(export, (BENCHMARK,))
    export.set_defaults(run=run)


def run(args: argparse.Namespace, passthrough: list[str]) -> int:
    from harness.definitions.export import export_public
    from harness.definitions.tracks import load_bundle
    from harness.synthetic.materialize import generate_missing

    out = Path(args.dir)
    benchmark = load_bundle(benchmark_folder(args))
    generate_missing(benchmark, [data for data in benchmark.data_files() if not data.hidden])
    files = export_public(benchmark, out)
    print(f"wrote the public bundle to {out} ({len(files)} files; see {out / 'README.md'}):")
    for name in files:
        print(f"  {name}")
    return 0
