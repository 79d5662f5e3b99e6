"""What a result was computed from: the grader and its toolchain (the submission's bytes are
:func:`harness.definitions.submissions.submission_digest`).

A result is only comparable with another when both came from the same inputs, so every result
records a digest of the submission's files and the versions that could change a prediction.
"""

from __future__ import annotations

import platform
from importlib import metadata

from harness import __version__
from harness.grading.stats import GRADING_SEED
from harness.sandbox.isolation import detect

UNSANDBOXED = "none: resource limits only (--allow-unsandboxed)"
"""The provenance's ``sandbox`` entry of a run graded without a sandbox. A sandboxed run (the
only kind a run without that option makes) has no such entry, so its provenance reads as it
always did."""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def environment() -> dict[str, str | int]:
    """Versions that can change a prediction or a score, the grading seed, and whether the run
    had no sandbox: a record graded without one is never reused by a sandboxed run (the cache
    key and a baseline's provenance differ), and the board says so."""
    versions: dict[str, str | int] = {
        "harness": __version__,
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "tensorflow": _version("tensorflow"),
        "keras": _version("keras"),
        "seed": GRADING_SEED,
    }
    if detect().bwrap is None:
        versions["sandbox"] = UNSANDBOXED
    return versions
