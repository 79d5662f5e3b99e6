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
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from harness.definitions.tracks import parse_scale
from harness.errors import BenchmarkError, SubmissionError, clipped, one_line
from harness.text import file_name

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


MAX_PATH_CHARS = 255
"""The longest path a manifest may name: one file name's limit on common file systems, far more
than a real submission needs, and short enough that no system call fails on it."""


def _relative(relative: Any, where: str) -> str:
    """A path as a manifest gives it, before it touches the file system: a string the operating
    system can take (a NUL byte or an overlong name would raise there, not here)."""
    if not isinstance(relative, str) or not relative:
        raise SubmissionError(f"{where}: paths must be non-empty strings")
    if len(relative) > MAX_PATH_CHARS:
        raise SubmissionError(f"{where}: a path of {len(relative)} characters "
                              f"({relative[:20]!r}...); at most {MAX_PATH_CHARS}")
    if any(ord(char) < 32 for char in relative):
        raise SubmissionError(f"{where}: the path {relative!r} holds a control character")
    return relative


def _inside_any(root: Path, relative: Any, where: str) -> Path:
    """``root / relative`` with links resolved: a path inside the submission folder (other than
    the folder itself) that need not exist."""
    text = _relative(relative, where)
    try:
        path = (root / text).resolve()
    except (OSError, RuntimeError) as exc:  # a link loop, a name the file system refuses
        raise SubmissionError(f"{where}: '{text}': {exc.__class__.__name__}") from None
    if not path.is_relative_to(root.resolve()) or path == root.resolve():
        raise SubmissionError(f"{where}: '{text}' points outside the submission folder")
    return path


def _inside(root: Path, relative: Any, where: str) -> Path:
    """A regular file inside the submission folder (a FIFO or a device is never opened)."""
    path = _inside_any(root, relative, where)
    if not _lstat_is(path, stat.S_ISREG):
        found = "is not a regular file" if os.path.lexists(path) else "not found"
        raise SubmissionError(f"{where}: file '{relative}' {found}")
    return path


def _lstat_is(path: Path, test: Any) -> bool:
    """Whether ``path`` exists and its own type (a link is not followed) passes ``test``."""
    try:
        return bool(test(path.lstat().st_mode))
    except OSError:
        return False


def _workdir(root: Path, value: Any, where: str) -> Path:
    path = _inside_any(root, value, f"{where} workdir") if value != "." else root.resolve()
    if not _lstat_is(path, stat.S_ISDIR):
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
        if _lstat_is(path, stat.S_ISDIR):
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
    """Parse a manifest; problems are kept in ``problem`` (see :class:`Submission`), the
    folder's own (:func:`folder_problem`) before the manifest's."""
    root = manifest.parent
    submission = _parse(manifest)
    try:
        entries = folder_entries(root)
        problem, sha256 = folder_problem(root, entries), digest_of(root, entries)
    except (OSError, SubmissionError) as exc:  # a file unreadable, or changed while hashed
        problem, sha256 = one_line(exc), ""
    return replace(submission, sha256=sha256, problem=problem or submission.problem)


MAX_MANIFEST_BYTES = 1 << 20
"""The largest manifest read: a real one is a few hundred bytes; a bigger file is refused
unread rather than parsed into memory."""


def _read_manifest(manifest: Path) -> str:
    """The manifest's text: a regular file (a link, a FIFO or a device is refused without being
    followed or read) of at most :data:`MAX_MANIFEST_BYTES`, in UTF-8."""
    with os.fdopen(_open_regular(manifest), "rb") as handle:
        data = handle.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ValueError(f"larger than {MAX_MANIFEST_BYTES} bytes")
    return data.decode("utf-8")


def _parse(manifest: Path) -> Submission:
    root = manifest.parent
    name = root.name
    try:
        spec = tomllib.loads(_read_manifest(manifest))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and TOMLDecodeError included
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
_LINK = 1 << 63
"""Set in the length field of a link's target in the digest: no file's length reaches it."""
_SPECIAL = 1 << 62
"""Set, with the file type bits, in the length field of a FIFO, socket or device."""


@dataclass(frozen=True)
class FolderEntry:
    """A file, link or special file of a submission folder, as :func:`os.lstat` sees it."""

    relative: str
    """Its path in the folder, ``/``-separated (a name that is not UTF-8 keeps its bytes as
    surrogates, :func:`os.fsdecode`)."""
    path: Path
    mode: int
    """Its own ``st_mode``: a link is never followed."""


def folder_entries(root: Path) -> list[FolderEntry]:
    """Everything in the submission folder but folders, caches and OS litter, sorted by relative
    path. Nothing is followed or opened: a link to ``/`` or a link loop is one entry, a FIFO is
    listed, not read. A folder that is itself a link is not entered (:func:`folder_problem`)."""
    if root.is_symlink():
        return []
    found = []
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        try:
            with os.scandir(folder) as listing:
                children = [(entry.name, entry.stat(follow_symlinks=False).st_mode)
                            for entry in listing if entry.name not in IGNORED_NAMES]
        except OSError as exc:  # unreadable, or nested past the longest path the system takes
            raise SubmissionError(f"cannot list the folder '{prefix or '.'}': "
                                  f"{exc.strerror or exc}") from None
        for name, mode in children:
            relative, path = prefix + name, folder / name
            if stat.S_ISDIR(mode):
                pending.append((path, relative + "/"))
            else:
                found.append(FolderEntry(relative, path, mode))
    return sorted(found, key=lambda entry: entry.relative)


def folder_problem(root: Path, entries: list[FolderEntry]) -> str | None:
    """Why the folder cannot be graded, on one line, or None: the folder is a link, or holds a
    file whose name is not UTF-8 (it could not be named in a row), a FIFO, socket or device
    (nothing a submission needs; opening one can block or read the grader's machine), or a link
    leading out of the folder (bound into the sandbox, it would reach the grader's files)."""
    if root.is_symlink():
        return "the submission folder is a symbolic link; submit the folder itself"
    for entry in entries:
        try:
            entry.relative.encode("utf-8")
        except UnicodeEncodeError:
            return f"the file name '{clipped(file_name(entry.relative))}' is not UTF-8; rename it"
        if stat.S_ISLNK(entry.mode):
            target = os.readlink(entry.path)
            inside = os.path.normpath(os.path.join(os.path.dirname(entry.relative), target))
            if os.path.isabs(target) or inside == ".." or inside.startswith("../"):
                return (f"'{clipped(entry.relative)}' is a symbolic link out of the submission "
                        f"folder (to '{clipped(target)}')")
        elif not stat.S_ISREG(entry.mode):
            return (f"'{clipped(entry.relative)}' is not a regular file (a FIFO, socket or "
                    "device); a submission holds files, folders and links inside it only")
    return None


def _open_regular(path: Path) -> int:
    """A descriptor of ``path`` if it is a regular file; OSError (a link, a FIFO: never followed,
    never blocked on) otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path.name} is not a regular file")
    return fd


def submission_digest(root: Path) -> str:
    """sha256 of the submission folder (hex); see :func:`digest_of`."""
    return digest_of(root, folder_entries(root))


def digest_of(root: Path, entries: list[FolderEntry]) -> str:
    """sha256 over the folder's relative file names and contents (hex).

    Names are hashed with the contents so that renaming a file changes the digest; lengths
    delimit the fields so that no two different folders can feed the hash the same bytes. A
    link is hashed as its target's text (length tagged :data:`_LINK`), never followed; a special
    file as its type (tagged :data:`_SPECIAL`), never opened. Regular files are hashed as they
    always were, so the digests of existing submissions, and the records keyed by them, hold.
    """
    digest = hashlib.sha256()
    for entry in entries:
        name = os.fsencode(entry.relative)
        digest.update(len(name).to_bytes(8, "big") + name)
        if stat.S_ISLNK(entry.mode):
            target = os.fsencode(os.readlink(entry.path))
            digest.update((_LINK | len(target)).to_bytes(8, "big") + target)
        elif not stat.S_ISREG(entry.mode):
            digest.update((_SPECIAL | stat.S_IFMT(entry.mode)).to_bytes(8, "big"))
        else:
            _hash_file(digest, entry.path)
    return digest.hexdigest()


def _hash_file(digest: Any, path: Path) -> None:
    """Feed a regular file's length and bytes to ``digest``, a block at a time."""
    with os.fdopen(_open_regular(path), "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        digest.update(size.to_bytes(8, "big"))
        read = 0
        while block := handle.read(1 << 20):
            read += len(block)
            digest.update(block)
    if read != size:
        raise SubmissionError(f"'{path.name}' changed while it was read")
