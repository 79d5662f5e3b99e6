"""What a result was computed from: the grader and its toolchain (the submission's bytes are
:func:`harness.spec.submissions.submission_digest`).

A result is only comparable with another when both came from the same inputs, so every result
records a digest of the submission's files and the versions that could change a prediction.
"""

from __future__ import annotations

import platform
from importlib import metadata

from harness import __version__
from harness.grading.stats import GRADING_SEED


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
