"""The grading options, declared once: the plugin (:mod:`harness.plugin.options`) adds each as
``--harness-NAME``, and ``harness grade`` adds the user-facing ones as ``--NAME`` and forwards
what the user gave. An option that can change a record says so (:class:`Keyed`): the cache key
holds it (:data:`KEYED`).

Declaring them twice once let a command-line option reach the plugin wrong; with one table, an
option cannot exist on one side only or mean something else on the other. The table lives outside
``harness.plugin`` because ``harness grade`` reads it before pytest imports the plugin, and pytest
can rewrite the asserts of a plugin only if it imports it first.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import positive_int
from harness.results.cache import FOLDER_NAME
from harness.sandbox.isolation import Limits

if TYPE_CHECKING:  # the table is read before pytest starts: it imports no grading code
    from harness.grading.item import GradeOptions

PREFIX = "--harness-"
"""What the plugin's options start with, so that they never clash with pytest's or a plugin's."""


@dataclass(frozen=True)
class Keyed:
    """How an option that can change a record enters the cache key
    (:meth:`harness.plugin.reuse.Reuse.options`)."""

    name: str
    """Its name in the key."""
    value: Callable[[GradeOptions], object]
    """Its value, as the grading options hold it (the options given to the plugin are read into
    them by :func:`harness.plugin.session.grade_options`)."""


@dataclass(frozen=True)
class Option:
    """One grading option: ``--NAME`` for ``harness grade``, ``--harness-NAME`` for the plugin."""

    name: str
    help: str
    default: object = None
    type: Callable[[str], object] | None = None
    metavar: str | None = None
    flag: bool = False
    """A switch (``store_true``), given or not."""
    choices: tuple[str, ...] | None = None
    exclusive: str = ""
    """Options sharing this word exclude each other on the command line."""
    keyed: Keyed | None = None
    """Set for an option that can change a record: it is then part of the cache key."""

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def plugin_dest(self) -> str:
        """Where pytest keeps the plugin's option (``config.getoption``)."""
        return "harness_" + self.dest

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``add_argument`` (argparse) and ``addoption`` (pytest)."""
        if self.flag:
            return {"action": "store_true", "help": self.help}
        found = {"help": self.help, "default": self.default, "type": self.type,
                 "metavar": self.metavar, "choices": self.choices}
        return {key: value for key, value in found.items() if value is not None}

    def forwarded(self, value: object) -> list[str]:
        """The plugin's arguments for ``value`` given on the command line (none: the default)."""
        if self.flag:
            return [PREFIX + self.name] if value else []
        return [] if value == self.default else [PREFIX + self.name, str(value)]


ENV_CACHE = Option("env-cache", metavar="DIR",
                   help="folder of built environments (default: $HARNESS_ENV_CACHE, else "
                        "~/.cache/backdoor-grader/environments)")
NO_BUILD = Option("no-build", flag=True,
                  help="never build an environment; entries whose environment is not built fail "
                       "with 'environment not built' (build ahead with: harness env build)")
BENCHMARK = Option("benchmark", help="benchmark folder (default: the embedded data/)")
ALLOW_UNSAFE = Option("allow-unsafe-models", flag=True,
                      help="load models with Lambda layers (they run arbitrary code)",
                      keyed=Keyed("allow_unsafe", lambda grading: grading.allow_unsafe))
ALLOW_UNSANDBOXED = Option("allow-unsandboxed", flag=True,
                           help="where no sandbox can be built, run submissions with resource "
                                "limits only (they can read files and use the network); "
                                "without it such a machine grades nothing")
SAMPLE = Option("sample", metavar="K", type=positive_int,
                help="grade a stratified sample of K images per test set (faster, wider "
                     "intervals)",
                keyed=Keyed("sample", lambda grading: grading.sample))
IMAGE_TIMEOUT = Option("image-timeout", metavar="S", type=float, default=Limits.image_timeout,
                       help="wall-clock seconds a submission may take per image "
                            f"(default {Limits.image_timeout:g})",
                       keyed=Keyed("image_timeout", lambda grading: grading.limits.image_timeout))
TRACK_TIMEOUT = Option("track-timeout", metavar="S", type=float, default=Limits.track_timeout,
                       help="wall-clock seconds per submission and track "
                            f"(default {Limits.track_timeout:g})")
NO_RETUNE = Option("no-retune", flag=True,
                   help="skip the retuning probe (P-ASR after fine-tuning each model entry on the "
                        "attacker's retuning set) and its yardstick")

WHAT = (
    BENCHMARK,
    Option("out", default=".", help="where leaderboard.md and results.json go"),
    ALLOW_UNSAFE,
    ALLOW_UNSANDBOXED,
    SAMPLE,
    IMAGE_TIMEOUT,
    TRACK_TIMEOUT,
)
"""What is graded and how: before pytest's own options in ``harness grade --help``."""

REUSE = (
    Option("cache", metavar="DIR", exclusive="cache",
           help="result cache: finished items are reused, an interrupted run resumes "
                f"(default: OUT/{FOLDER_NAME})"),
    Option("no-cache", flag=True, exclusive="cache", help="grade everything, store nothing"),
    NO_RETUNE,
    Option("changed-since", metavar="REF",
           help="grade only submissions with files changed since git REF (or untracked); take "
                "the others from the cache or the baseline"),
    Option("baseline", metavar="FILE",
           help="with --changed-since: results file for unchanged submissions the cache lacks "
                "(default: OUT/results.json, if present)"),
    Option("summary-md", metavar="FILE",
           help="append a Markdown summary of the submissions graded in this run "
                "(e.g. $GITHUB_STEP_SUMMARY)"),
    ENV_CACHE,
    NO_BUILD,
)
"""What is reused and built: after pytest's ``-k``, ``-x`` and ``--junitxml``."""

BACKEND = (
    Option("backend", choices=("local", "ray"), default="local",
           help="local: this machine (default); ray: Ray tasks on a cluster "
                "(pip install 'backdoor-grader[ray]')"),
    Option("ray-address", metavar="ADDRESS",
           help="with --backend ray: the cluster's address, e.g. 10.0.0.1:6379 "
                "(default: RAY_ADDRESS, else a Ray instance on this machine)"),
    Option("ray-cpus", metavar="N", type=float, default=1.0,
           help="with --backend ray: CPUs reserved per item (default 1)"),
)
"""Where items are answered: last."""

PROGRESS_FD = Option("progress-fd", metavar="FD", type=int,
                     help="terminal file descriptor for progress bars (set by harness grade)")

SPLIT = Option("split", metavar="FILE",
               help="a contest's split record: score each hidden set's public part, and seal "
                    "the private part's records (set by harness contest)")
SEALED = Option("sealed", metavar="DIR",
                help="with --harness-split: where the private part's results.json goes, never "
                     "beside the published outputs (set by harness contest)")
CONTEST = (SPLIT, SEALED)
"""What ``harness contest`` sets: never offered by ``harness grade``."""

USER = WHAT + REUSE + BACKEND
"""The options ``harness grade`` offers and forwards."""
OPTIONS = (*USER, PROGRESS_FD, *CONTEST)
KEYED = tuple(option.keyed for option in OPTIONS if option.keyed is not None)
"""How the options that can change a record enter the cache key, in the table's order."""


def add_arguments(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """Add ``options`` to a subcommand as ``--NAME``; those sharing ``exclusive`` in a group."""
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for option in options:
        target: argparse._ActionsContainer = parser
        if option.exclusive:
            if option.exclusive not in groups:
                groups[option.exclusive] = parser.add_mutually_exclusive_group()
            target = groups[option.exclusive]
        target.add_argument("--" + option.name, **option.kwargs())


def forward(args: argparse.Namespace) -> list[str]:
    """The plugin's arguments for each user-facing option given on the command line."""
    return [part for option in USER for part in option.forwarded(getattr(args, option.dest))]
