"""What a result was computed from: the submission's bytes, the grader and its toolchain.

A result is only comparable with another when both came from the same inputs, so every result
records a digest of the submission's files and the versions that could change a prediction.
The same digest keys the result cache: a changed byte anywhere in the folder means a new result.
"""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path

from harness import __version__

GRADING_SEED = 2020
"""Seed of everything random in grading (stratified samples, bootstrap tests)."""

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


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def environment() -> dict[str, str | int]:
    """Versions that can change a prediction or a score, and the grading seed."""
    return {
        "harness": __version__,
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "tensorflow": _version("tensorflow"),
        "keras": _version("keras"),
        "seed": GRADING_SEED,
    }
