"""What the plugin asks a backend (:mod:`harness.grading.backends`): one item to answer, a
progress bar over its images, and the :class:`Backend` protocol that the local and the Ray
backends both follow. Apart from either backend, so that the Ray backend, imported only when
asked for, and the module that picks it do not import each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.definitions.submissions import TrackEntry
from harness.definitions.tracks import Track

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
