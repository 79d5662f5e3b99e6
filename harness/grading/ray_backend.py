"""``harness grade --backend ray``: the same grading items, answered as Ray tasks on a cluster.

Only the answering moves: each item's sandboxed worker (:func:`harness.sandbox.runner.run_entry`)
runs in a Ray task on whichever node has room, and the labels come back to the grading process,
which scores them exactly as a local run does (:func:`harness.grading.item.score_answers`), so the
results are the same bytes. The test labels never leave the grading process.

Nodes need no shared file system: a track's mixed image file travels once through Ray's object
store (each node keeps one copy in shared memory for all its tasks) and is written once per node,
content-addressed as locally; a submission's folder travels as its files' bytes, once per
submission. Every node must run the same installation of the grader (the same container image or
virtual environment) with bubblewrap, as a grading machine does.

All items are submitted when the run loop starts (:meth:`RayBackend.start`), so the cluster works
on all of them at once while pytest reports them in order as their answers arrive.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.definitions.data import write_once
from harness.definitions.submissions import TrackEntry
from harness.errors import (
    HarnessError,
    SubmissionError,
    TransientSubmissionError,
    clipped,
    in_folder,
    one_line,
)
from harness.grading.handover import Handover
from harness.grading.item import (
    GradeOptions,
    environment_spec,
    input_scale,
    placed_files,
    score_answers,
)
from harness.grading.request import Progress, Request
from harness.sandbox.environments import EnvironmentSpec
from harness.sandbox.isolation import REASON_CHARS
from harness.sandbox.runner import Answers, EntryRun, run_entry

NODE_FOLDER = "harness-ray-images"
"""Folder under each node's temporary directory holding the mixed image files it received."""


@dataclass(frozen=True)
class Job:
    """What a node needs to answer one item, besides the images and the submission's files."""

    entry: TrackEntry
    """The entry with its paths relative to the submission folder."""
    image_name: str
    num_classes: int
    input_scale: float
    options: GradeOptions
    environment: EnvironmentSpec | None = None
    """The entry's environment, resolved here; the node builds it into its own cache (or finds
    it built there by ``harness env build``)."""


def _folder_files(root: Path) -> dict[str, bytes | str]:
    """A submission folder as relative path -> bytes, or -> link target for a symbolic link
    (copied as a link, never followed, as :func:`harness.sandbox.isolation.private_copy` does)."""
    files: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            files[relative] = os.readlink(path)
        elif path.is_file():
            files[relative] = path.read_bytes()
    return files


def _unpack(files: dict[str, bytes | str], root: Path) -> None:
    root.mkdir()
    for relative, content in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            target.symlink_to(content)
        else:
            target.write_bytes(content)


def _node_images(name: str, images: np.ndarray) -> Path:
    """The mixed file on this node: written by the first task that needs it, then shared."""
    path = Path(tempfile.gettempdir()) / NODE_FOLDER / name
    write_once(path, images.shape, images.dtype, lambda: images)
    return path


def answer_on_node(job: Job, files: dict[str, bytes | str], images: np.ndarray,
                   placed: dict[str, bytes]) -> tuple[str, Any, Any, Any, Any, Any]:
    """The Ray task: answer a track's mixed images with one entry, in this node's sandbox.

    Returns ``("ok", labels, invalid, first_error, cost, scores)`` or ``("error", kind, message,
    None, None, None)``:
    exceptions are sent as text, so that the grading process raises the same one-line error a
    local run would (a pickled traceback would not be one line). ``placed`` holds the public
    track files the entry asks for, by their path in the submission folder.
    """
    path = _node_images(job.image_name, images)
    with tempfile.TemporaryDirectory(prefix="harness-ray-") as temporary:
        root = Path(temporary) / "submission"
        _unpack(files, root)
        public = Path(temporary) / "public"
        public.mkdir()
        sources = []
        for index, (relative, content) in enumerate(sorted(placed.items())):
            (public / str(index)).write_bytes(content)
            (public / str(index)).chmod(0o444)
            sources.append((relative, public / str(index)))
        workdir = None if job.entry.workdir is None else root / job.entry.workdir
        entry = replace(job.entry, path=root / job.entry.path, workdir=workdir)
        try:
            built = None if job.environment is None else job.options.environments.ensure(
                job.environment, build=job.options.build)
            run = EntryRun(num_classes=job.num_classes, input_scale=job.input_scale,
                           limits=job.options.limits, allow_unsafe=job.options.allow_unsafe,
                           environment=None if built is None else built.folder,
                           placed=tuple(sources))
            answers = run_entry(entry, root, path, run)
        except TransientSubmissionError as exc:
            return "error", "transient", str(exc), None, None, None
        except SubmissionError as exc:
            return "error", "submission", in_folder(str(exc), root), None, None, None
        except Exception as exc:  # noqa: BLE001 - reported as the submission's, as locally
            return "error", "other", in_folder(one_line(exc), root), None, None, None
    return ("ok", answers.labels, answers.invalid, answers.first_error, answers.cost,
            answers.scores)


class RayBackend:
    """Submits items to a Ray cluster (all of them when the run starts, so the cluster works on
    them at once) and hands each item its answers, scored here, when it asks."""

    builds_environments = False

    def __init__(self, address: str | None, handover: Handover, options: GradeOptions,
                 cpus_per_task: float = 1.0) -> None:
        try:
            import ray
        except ImportError:
            raise HarnessError("--backend ray needs Ray: pip install 'backdoor-grader[ray]'"
                               ) from None
        self.ray = ray
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise HarnessError(f"cannot reach the Ray cluster at {address or 'auto'}: "
                               f"{clipped(str(exc), REASON_CHARS)}") from None
        self.handover = handover
        self.options = options
        self.task = ray.remote(num_cpus=cpus_per_task, max_retries=0)(answer_on_node)
        self.pending: dict[str, Any] = {}
        self._images: dict[Path, Any] = {}
        self._files: dict[Path, Any] = {}
        self._placed: dict[tuple[tuple[str, Path], ...], Any] = {}

    def start(self, requests: Iterable[Request]) -> None:
        """Submit every item; one whose entry cannot be submitted (a bad environment or placed
        file) is left to raise its error row when it runs, without a node."""
        for request in requests:
            try:
                self._submit(request)
            except SubmissionError:
                continue

    def scores(self, request: Request, progress: Progress) -> dict[str, Any]:
        """Score the item's answers here (no progress bar: the cluster answers it whole)."""
        mixed = self.handover.images(request.track)
        if request.key not in self.pending:
            self._submit(request)
        return score_answers(request.track, mixed, self.handover.store,
                             self._answers(request.key))

    def _submit(self, request: Request) -> None:
        """Start answering one item; :meth:`_answers` collects it.

        The entry's environment is resolved and its placed files read here, where the benchmark
        is; a problem with either is the item's error row, raised here as in a local run.
        """
        entry, root, track = request.entry, request.root, request.track
        mixed = self.handover.images(track)
        spec = environment_spec(entry, root, track)
        placed = placed_files(entry, track)
        key = tuple(placed)
        if key not in self._placed:
            self._placed[key] = self.ray.put({relative: source.read_bytes()
                                              for relative, source in placed})
        if mixed.path not in self._images:
            self._images[mixed.path] = self.ray.put(np.load(mixed.path))
        if root not in self._files:
            self._files[root] = self.ray.put(_folder_files(root))
        relative = entry.path.resolve().relative_to(root.resolve())
        scale = input_scale(entry, track)
        workdir = None if entry.workdir is None else entry.workdir.relative_to(root.resolve())
        job = Job(entry=replace(entry, path=relative, workdir=workdir, requirements=None),
                  image_name=mixed.path.name, num_classes=track.num_classes, input_scale=scale,
                  options=self.options, environment=spec)
        self.pending[request.key] = self.task.remote(job, self._files[root],
                                                     self._images[mixed.path], self._placed[key])

    def _answers(self, key: str) -> Answers:
        """Wait for an item's answers; raises the item's error as a local run would."""
        status, first, second, third, cost, scores = self.ray.get(self.pending.pop(key))
        if status == "ok":
            return Answers(np.asarray(first, dtype=np.int64), int(second), third, cost,
                           scores=None if scores is None else np.asarray(scores, np.float64))
        if first == "transient":
            raise TransientSubmissionError(second)
        raise SubmissionError(second)

    def close(self) -> None:
        """Cancel what no item will collect (a run stopped by -x) and leave the cluster."""
        for reference in self.pending.values():
            self.ray.cancel(reference, force=True)
        self.pending.clear()
        self.ray.shutdown()
