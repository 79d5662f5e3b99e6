"""Command line: ``harness grade``, ``check``, ``new``, ``render``, ``export-public`` and the
builders (``env build``, ``benchmark build``, ``reference build``).

One module per subcommand, each with ``add_parser(commands)`` and ``run(args, passthrough)``;
``grade`` is a thin front for pytest with the grading plugin, so pytest's own options (-k, -x,
--junitxml, -q) behave as pytest users expect and its exit status is kept: 0 all passed, 1 some
submission failed, 2 a usage or benchmark error. The grader's own errors (a bad argument, a broken
benchmark, no sandbox) are answered once, by :func:`main`, in argparse's one usage-error line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from harness.definitions.layout import default_benchmark
from harness.errors import HarnessError, UsageError


def benchmark_folder(args: argparse.Namespace) -> Path:
    """The ``--benchmark`` a subcommand was given, else the embedded one."""
    return Path(args.benchmark or default_benchmark())


def submissions_folder(text: str) -> Path:
    """The submissions folder a command was given; a usage error if there is none, before
    anything is read or written (``grade`` also takes one submission's manifest)."""
    path = Path(text)
    if not path.exists():
        raise UsageError(f"{path}: no such folder")
    return path


class Parser(argparse.ArgumentParser):
    """argparse, answering a malformed command line (an unknown option, a value of the wrong
    type) the way every other usage error is answered: one line, exit status 2. argparse's own
    answer adds the usage lines; ``--help`` still shows them."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    from harness.cli import (
        bench,
        benchmark,
        check,
        contest,
        env,
        export,
        grade,
        new,
        reference,
        render,
        sandbox,
    )

    top = Parser(prog="harness", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    for command in (grade, benchmark, reference, check, env, new, bench, render, export,
                    sandbox, contest):
        command.add_parser(commands)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    args = parser().parse_args(argv)
    try:
        code: int = args.run(args, passthrough)
    except HarnessError as exc:  # one line, as argparse answers a usage error; never a traceback
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    return code
