"""``python -m harness new <name>``: start a submission folder from a commented template.

The template names every track of the benchmark and shows the three entry forms, but leaves the
entries and the team's details empty on purpose: ``python -m harness check`` then lists exactly
what the author still has to fill in, instead of a half-guessed manifest passing by accident.
"""

from __future__ import annotations

import argparse
import json
import re
from fractions import Fraction
from pathlib import Path

from harness.cli import benchmark_folder
from harness.definitions.submissions import MANIFEST
from harness.definitions.tracks import Benchmark, PublicTrack, load_bundle
from harness.errors import UsageError

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Folder names that are the same on every OS, need no quoting in a shell and cannot climb out
of the submissions folder: the name is also the submission's name on the leaderboard."""

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

HEADER = """\
# Submission manifest. Fill in every "..." below, put your model files in this folder, then run
#   python -m harness check {folder}
# which loads each entry as the grader does and tells you what is still missing.

team = ""          # your team's name, shown on the leaderboard
method = ""        # the defense in a few words, e.g. "fine-pruning"
description = ""   # optional: one sentence on what you did

# One [tracks.<name>] table per track. Give exactly ONE of these three forms, with file names
# relative to this folder:
#
#   model = "sunglasses.h5"              # a Keras model: legacy Keras-2 .h5 or .keras
#
#   weights = "sunglasses.weights.h5"    # weights only, for the contest's DeepID network
#   architecture = "deepid"
#
#   eval = "eval.py"                     # a per-image script (docs/submitting.md)
#   args = ["{{image}}"]
#   # optional, for scripts: workdir = "src", batch = "predict",
#   # files = {{ "data/clean_validation_data.h5" = "validation", "models/bd_net.h5" = "badnet" }}
#
# A model outputs N scores (argmax is the answer) or N+1 (argmax N flags the image as poisoned).
# Optional: input_scale = "1/255" overrides the pixel scaling the track feeds your model.
# Code written for Keras 2 or needing other packages: environment = "keras2" and/or
# requirements = "requirements.txt" (here for every track, or in a track's table).
"""

README = """\
# {name}

A submission to {benchmark} ({count} tracks).

1. Put one repaired model per track in this folder (the same file may serve several tracks).
2. Fill in `submission.toml`: team, method, and one entry per track (the comments show how).
3. Check it the way the grader will load it:

   ```bash
   python -m harness check {folder}
   ```

   Every line must read `ok`; each `FAIL` line says what to change.
"""


def check_name(name: str) -> None:
    """Refuse a name that is not a safe folder name, saying what is allowed."""
    if not SAFE_NAME.fullmatch(name):
        raise UsageError(f"{name!r} is not a safe submission name: use letters, digits, '.', "
                           "'_' and '-', starting with a letter or digit, at most 64 characters")


def _key(name: str) -> str:
    """A TOML key for a track name: bare when allowed, else a quoted string (JSON escapes are
    valid TOML basic-string escapes)."""
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name)


def _scale_text(scale: float) -> str:
    fraction = Fraction(scale).limit_denominator(1000)
    return str(fraction) if float(fraction) == scale else repr(scale)


def _track_table(track: PublicTrack) -> str:
    lines = [f"[tracks.{_key(track.name)}]"]
    if track.public_description:
        lines.append(f"# {' '.join(track.public_description.split())}")
    lines += [f"# {track.num_classes} identities; pixels 0..255 are scaled by "
              f"{_scale_text(track.input_scale)} before your model sees them.",
              f'# model = "{track.name}.h5"']
    return "\n".join(lines)


def scaffold(name: str, parent: Path, benchmark: Benchmark[PublicTrack]) -> Path:
    """Write ``parent/name/`` with a template manifest and README; returns the folder.

    Refuses to touch an existing folder: it may hold a team's work.
    """
    check_name(name)
    folder = parent / name
    if folder.exists():
        raise UsageError(f"{folder} already exists; pick another name or edit that folder")
    folder.mkdir(parents=True)
    tables = "\n\n".join(_track_table(track) for track in benchmark.tracks)
    (folder / MANIFEST).write_text(f"{HEADER.format(folder=folder)}\n{tables}\n",
                                   encoding="utf-8")
    (folder / "README.md").write_text(
        README.format(name=name, benchmark=benchmark.name, count=len(benchmark.tracks),
                      folder=folder), encoding="utf-8")
    return folder


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    new = commands.add_parser("new", help="start a submission folder from a template")
    new.add_argument("name", help="submission (folder) name: letters, digits, '.', '_', '-'")
    new.add_argument("--dir", default="submissions", help="where to create it "
                                                          "(default: submissions)")
    new.add_argument("--benchmark", help="benchmark whose tracks the template lists (default: "
                                         "the embedded data/)")
    new.set_defaults(run=run)


def run(args: argparse.Namespace, passthrough: list[str]) -> int:
    folder = scaffold(args.name, Path(args.dir), load_bundle(benchmark_folder(args)))
    print(f"created {folder}/submission.toml and {folder}/README.md; fill them in, then run: "
          f"python -m harness check {folder}")
    return 0
