"""Where a grading item's images are answered: in a sandboxed worker on this machine, or in a Ray
task on a cluster (:mod:`harness.grading.ray_backend`).

The plugin asks one :class:`Backend` for each item's scores and does not know which one it has.
The answers are scored in this process either way, so the labels never leave it and both give the
same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.grading.handover import Handover
from harness.grading.item import GradeOptions, grade_track
from harness.grading.request import Backend, Progress, Request
from harness.sandbox.runner import Workers


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
