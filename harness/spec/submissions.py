"""Submissions are folders described by a ``submission.toml`` manifest.

The manifest says who submitted, which method, and for each track which artefact answers it:
a Keras model file (``model``), weights for a known architecture (``weights`` +
``architecture``), or a per-image script (``eval`` + ``args``, with ``workdir``, ``batch`` and
``files`` for the shapes real scripts take). ``environment`` and ``requirements`` say what the
code runs in (:mod:`harness.sandbox.environments`); both may be given at the top of the manifest and
overridden in a track's table. Everything here is untrusted input: paths must stay inside the
submission's folder and every problem is a one-line :class:`SubmissionError`.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from harness.errors import BenchmarkError, SubmissionError
from harness.spec.tracks import parse_scale

MANIFEST = "submission.toml"
EntryKind = Literal["model", "weights", "eval"]
ARCHITECTURES = ("deepid",)
PUBLIC_FILES = ("badnet", "validation", "test")
"""Track files a script may have placed in its folder (``files``); ``test`` only where the
benchmark marks it public. Hidden sets are never placed."""
INHERITED = ("environment", "requirements")
"""Keys a track table inherits from the top of the manifest unless it sets them itself."""
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENVIRONMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class TrackEntry:
    """How a submission answers one track."""

    kind: EntryKind
    path: Path
    architecture: str | None = None
    args: tuple[str, ...] = ("{image}",)
    input_scale: float | None = None
    environment: str | None = None
    """A named environment of the benchmark (None: the grader's own, unless ``requirements``)."""
    requirements: Path | None = None
    """The submission's own requirements file."""
    workdir: Path | None = None
    """The folder a script runs in (None: the submission folder)."""
    batch: str | None = None
    """The script's function that answers a whole array of images, as the manifest names it."""
    files: tuple[tuple[str, str], ...] = ()
    """Public track files placed read-only in the folder: (relative path, file name)."""


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


def _inside_any(root: Path, relative: Any, where: str) -> Path:
    """A path inside the submission folder (other than the folder itself) that need not exist."""
    if not isinstance(relative, str) or not relative:
        raise SubmissionError(f"{where}: paths must be non-empty strings")
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()) or path == root.resolve():
        raise SubmissionError(f"{where}: '{relative}' points outside the submission folder")
    return path


def _workdir(root: Path, value: Any, where: str) -> Path:
    path = _inside_any(root, value, f"{where} workdir") if value != "." else root.resolve()
    if not path.is_dir():
        raise SubmissionError(f"{where}: workdir '{value}' is not a folder of the submission")
    return path


def _files(root: Path, table: Any, where: str) -> tuple[tuple[str, str], ...]:
    """``files = { "<path in the folder>" = "validation" | "badnet" | "test" }``."""
    if not isinstance(table, dict):
        raise SubmissionError(f'{where}: files must be a table like {{ "data/valid.h5" = '
                              '"validation" }')
    placed = []
    for relative, name in sorted(table.items()):
        path = _inside_any(root, relative, f"{where} files")
        if name not in PUBLIC_FILES:
            raise SubmissionError(f"{where}: files: '{relative}' = {name!r}; a placed file is "
                                  f"one of {', '.join(PUBLIC_FILES)}")
        if path.is_dir():
            raise SubmissionError(f"{where}: files: '{relative}' is a folder of the submission")
        placed.append((path.relative_to(root.resolve()).as_posix(), name))
    return tuple(placed)


def _entry(root: Path, table: Any, where: str, top: dict[str, Any] | None = None) -> TrackEntry:
    if not isinstance(table, dict):
        raise SubmissionError(f"{where}: expected a table")
    inherited = top or {}
    table = {**{key: inherited[key] for key in INHERITED if key in inherited}, **table}
    kinds: list[EntryKind] = [k for k in ("model", "weights", "eval") if k in table]
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
    for key in ("workdir", "batch", "files"):
        if key in table and kind != "eval":
            raise SubmissionError(f"{where}: {key} is for eval scripts, not {kind} entries")
    environment = table.get("environment")
    if environment is not None and not (isinstance(environment, str)
                                        and _ENVIRONMENT.match(environment)):
        raise SubmissionError(f"{where}: environment must be the name of an environment, e.g. "
                              '"keras2"')
    batch = table.get("batch")
    if batch is not None and not (isinstance(batch, str) and _IDENTIFIER.match(batch)):
        raise SubmissionError(f"{where}: batch must name a function of the script, e.g. "
                              '"predict"')
    requirements = table.get("requirements")
    return TrackEntry(
        kind=kind, path=_inside(root, table[kind], where), architecture=architecture,
        args=tuple(args), input_scale=scale, environment=environment,
        requirements=None if requirements is None else _inside(root, requirements,
                                                                f"{where} requirements"),
        workdir=_workdir(root, table["workdir"], where) if "workdir" in table else None,
        batch=batch, files=_files(root, table.get("files", {}), where))


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
            entries[track] = _entry(root, table, f"{MANIFEST} [tracks.{track}]", spec)
        except SubmissionError as exc:
            entries[track] = exc
    return Submission(name=name, root=root, reference=reference, tracks=entries, **meta)


IGNORED_NAMES = frozenset({"__pycache__", ".DS_Store", ".ipynb_checkpoints"})
"""Files and folders that never change what a submission answers (caches, OS litter)."""


def submission_files(root: Path) -> list[Path]:
    """The submission's files in a stable order, caches and OS litter left out."""
    files = [path for path in root.rglob("*")
             if path.is_file() and not IGNORED_NAMES.intersection(path.relative_to(root).parts)]
    return sorted(files, key=lambda path: path.relative_to(root).as_posix())


def submission_digest(root: Path) -> str:
    """sha256 over the folder's relative file names and contents (hex).

    Names are hashed with the contents so that renaming a file changes the digest; lengths
    delimit the fields so that no two different folders can feed the hash the same bytes.
    """
    digest = hashlib.sha256()
    for path in submission_files(root):
        name = path.relative_to(root).as_posix().encode("utf-8")
        data = path.read_bytes()
        digest.update(len(name).to_bytes(8, "big") + name + len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()
