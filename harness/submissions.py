"""Submissions are folders described by a ``submission.toml`` manifest.

The manifest says who submitted, which method, and for each track which artefact answers it:
a Keras model file (``model``), weights for a known architecture (``weights`` +
``architecture``), or a per-image script (``eval`` + ``args``). Everything here is untrusted
input: paths must stay inside the submission's folder and every problem is a one-line
:class:`SubmissionError`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from harness.errors import BenchmarkError, SubmissionError
from harness.provenance import submission_digest
from harness.tracks import parse_scale

MANIFEST = "submission.toml"
EntryKind = Literal["model", "weights", "eval"]
ARCHITECTURES = ("deepid",)


@dataclass(frozen=True)
class TrackEntry:
    """How a submission answers one track."""

    kind: EntryKind
    path: Path
    architecture: str | None = None
    args: tuple[str, ...] = ("{image}",)
    input_scale: float | None = None


@dataclass(frozen=True)
class Submission:
    """A parsed manifest. Problems are kept (``problem`` for the whole manifest, an error in
    place of a track's entry) instead of raised, so a broken manifest still yields one error row
    per track rather than disappearing from the leaderboard."""

    name: str
    root: Path
    team: str = ""
    method: str = ""
    description: str = ""
    reference: bool = False
    tracks: dict[str, TrackEntry | SubmissionError] = field(default_factory=dict)
    problem: str | None = None
    sha256: str = ""

    @property
    def meta(self) -> dict[str, Any]:
        return {"submission": self.name, "team": self.team, "method": self.method,
                "reference": self.reference, "sha256": self.sha256}

    def entry(self, track: str) -> TrackEntry:
        """The entry for ``track`` or a SubmissionError saying why there is none."""
        if self.problem:
            raise SubmissionError(self.problem)
        if track not in self.tracks:
            unknown = sorted(self.tracks)
            hint = f" (manifest has {unknown})" if unknown else ""
            raise SubmissionError(f"no [tracks.{track}] entry in {MANIFEST}{hint}")
        entry = self.tracks[track]
        if isinstance(entry, SubmissionError):
            raise entry
        return entry


def _inside(root: Path, relative: Any, where: str) -> Path:
    if not isinstance(relative, str) or not relative:
        raise SubmissionError(f"{where}: file name must be a non-empty string")
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise SubmissionError(f"{where}: '{relative}' points outside the submission folder")
    if not path.is_file():
        raise SubmissionError(f"{where}: file '{relative}' not found")
    return path


def _entry(root: Path, table: Any, where: str) -> TrackEntry:
    if not isinstance(table, dict):
        raise SubmissionError(f"{where}: expected a table")
    kinds = [k for k in ("model", "weights", "eval") if k in table]
    if len(kinds) != 1:
        found = kinds or 'none; e.g. model = "<file>.h5"'
        raise SubmissionError(f"{where}: give exactly one of model, weights or eval "
                              f"(found {found})")
    kind: EntryKind = kinds[0]
    architecture = table.get("architecture")
    if kind == "weights" and architecture not in ARCHITECTURES:
        raise SubmissionError(f"{where}: weights need architecture = one of {list(ARCHITECTURES)}"
                              f", got {architecture!r}")
    args = table.get("args", ["{image}"])
    if kind == "eval" and (not isinstance(args, list) or "{image}" not in args
                           or not all(isinstance(a, str) for a in args)):
        raise SubmissionError(f"{where}: args must be a list of strings containing '{{image}}'")
    scale = None
    if "input_scale" in table:
        try:
            scale = parse_scale(table["input_scale"], where)
        except BenchmarkError as exc:
            raise SubmissionError(str(exc)) from None
    return TrackEntry(kind=kind, path=_inside(root, table[kind], where),
                      architecture=architecture, args=tuple(args), input_scale=scale)


def load_submission(manifest: Path) -> Submission:
    """Parse a manifest; problems are kept in ``problem`` (see :class:`Submission`)."""
    root = manifest.parent
    submission = _parse(manifest)
    return replace(submission, sha256=submission_digest(root))


def _parse(manifest: Path) -> Submission:
    root = manifest.parent
    name = root.name
    try:
        spec = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return Submission(name=name, root=root, problem=f"{MANIFEST}: cannot parse: {exc}")
    meta = {key: spec.get(key, "") for key in ("team", "method", "description")}
    reference = spec.get("reference", False)
    if not all(isinstance(v, str) for v in meta.values()) or not isinstance(reference, bool):
        return Submission(name=name, root=root, problem=f"{MANIFEST}: team, method and "
                          "description must be strings and reference a boolean")
    tracks = spec.get("tracks", {})
    if not isinstance(tracks, dict) or not tracks:
        return Submission(name=name, root=root, reference=reference,
                          problem=f"{MANIFEST}: no [tracks.<name>] tables", **meta)
    entries: dict[str, TrackEntry | SubmissionError] = {}
    for track, table in tracks.items():
        try:
            entries[track] = _entry(root, table, f"{MANIFEST} [tracks.{track}]")
        except SubmissionError as exc:
            entries[track] = exc
    return Submission(name=name, root=root, reference=reference, tracks=entries, **meta)
