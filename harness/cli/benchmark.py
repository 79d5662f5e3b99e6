"""``harness benchmark build``: rebuild the embedded benchmark's data and BadNets from seeds."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.definitions.layout import EMBEDDED
from harness.nets.quiet import import_tensorflow


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    benchmark = commands.add_parser("benchmark", help="the embedded benchmark")
    benchmark_commands = benchmark.add_subparsers(dest="benchmark_command", required=True)
    build = benchmark_commands.add_parser("build", help="rebuild data and BadNets from seeds")
    build.add_argument("--scale", choices=("tiny", "full"), default="full")
    build.add_argument("--out", default=str(EMBEDDED), help="benchmark folder to write")
    build.add_argument("--only", nargs="*", metavar="TRACK",
                       help="rebuild only these BadNets ('clean': the clean model)")
    build.set_defaults(run=run)


def run(args: argparse.Namespace, passthrough: list[str]) -> int:
    import_tensorflow()
    from harness.synthetic.build import build

    build(scale=args.scale, out=Path(args.out), only=args.only)
    return 0
