"""Where a grading item's images are answered: in a sandboxed worker on this machine, or in a Ray
task on a cluster (:mod:`harness.grading.ray_backend`).

The plugin asks one :class:`Backend` for each item's scores and does not know which one it has.
The answers are scored in this process either way, so the labels never leave it and both give the
same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.grading.handover import Handover
from harness.grading.item import GradeOptions, grade_track
from harness.sandbox.runner import Workers
from harness.spec.submissions import TrackEntry
from harness.spec.tracks import Track

Progress = Callable[[int], AbstractContextManager[Callable[[int], None] | None]]
"""Opens a progress bar over an item's ``total`` images and gives its update (None: no bar)."""


@dataclass(frozen=True)
class Request:
    """One item to answer: an entry of the submission in ``root`` on ``track``."""

    key: str
    """Names the item (its pytest node id)."""
    entry: TrackEntry
    root: Path
    track: Track


class Backend(Protocol):
    builds_environments: bool
    """Whether entries' environments are built on this machine, so worth building before the
    first item runs (a Ray node builds its own)."""

    def start(self, requests: Iterable[Request]) -> None:
        """The items this run will grade, in order, before the first runs: a backend that works
        ahead starts on them; ``requests`` is lazy, so one that does not never reads it."""

    def scores(self, request: Request, progress: Progress) -> dict[str, Any]:
        """The item's scores; raises the submission's error as its one-line row."""

    def close(self) -> None:
        """Stop what no item will use any more."""


class LocalBackend:
    """Answers each item when it runs, in a worker on this machine; a model entry's worker is
    kept for the submission's next track."""

    builds_environments = True

    def __init__(self, handover: Handover, options: GradeOptions, tracks: int) -> None:
        self.handover = handover
        self.options = options
        self.tracks = tracks
        """How many tracks each submission has: its kept worker is started for the first."""
        self.workers = Workers()

    def start(self, requests: Iterable[Request]) -> None:
        return None

    def scores(self, request: Request, progress: Progress) -> dict[str, Any]:
        total = len(self.handover.images(request.track).order)
        with progress(total) as update:
            return grade_track(request.entry, request.root, request.track, self.handover,
                               self.options, update, self.workers, self.tracks)

    def close(self) -> None:
        self.workers.close()


def backend(name: str, handover: Handover, options: GradeOptions, tracks: int, *,
            ray_address: str | None = None, ray_cpus: float = 1.0) -> Backend:
    """The backend ``--backend NAME`` picks; Ray is imported only when asked for (optional)."""
    if name == "ray":
        from harness.grading.ray_backend import RayBackend

        return RayBackend(ray_address, handover, options, ray_cpus)
    return LocalBackend(handover, options, tracks)
