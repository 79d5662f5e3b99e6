"""Grade one submission entry on one track: hand over images (:mod:`harness.grading.handover`)
-> answer in the sandbox -> score.

Kept free of pytest so the same pipeline serves the plugin, ``harness check`` and scripts.
Labels stay in this process, and scoring happens here.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.definitions.data import DataStore, sha256_file
from harness.definitions.submissions import TrackEntry
from harness.definitions.tracks import PublicTrack, Track
from harness.errors import SubmissionError, TransientSubmissionError, in_folder, one_line
from harness.grading import stats
from harness.grading.handover import Handover, TrackImages
from harness.grading.scoring import PoisonedPredictions, score_track
from harness.sandbox.environments import EnvironmentSpec, EnvironmentStore, resolve
from harness.sandbox.isolation import Limits
from harness.sandbox.retuning import PROBE_KEYS, PROBE_SAMPLE
from harness.sandbox.runner import (
    Answers,
    EntryRun,
    Retune,
    Workers,
    invalid_message,
    run_entry,
    shareable,
)

MEASURED_KEYS = ("peak_rss", "startup", "answering", "probe")
"""Keys among the scores of what answering took (:func:`measured`) and the retuning probe's
wall time (None: not probed)."""
SEALED = "sealed"
"""In a contest, the key of the private part's scores beside the public part's (which are the
scores themselves): see :func:`score_answers`."""
@dataclass(frozen=True)
class GradeOptions:
    """Everything besides the submission and the data that decides a result."""

    allow_unsafe: bool = False
    sample: int | None = None
    """Grade a stratified sample of this many images per test set (None: every image)."""
    limits: Limits = field(default_factory=Limits)
    environments: EnvironmentStore = field(default_factory=EnvironmentStore)
    """Where submissions' environments are built and found (decides no result: an environment
    is named by what it is built from)."""
    build: bool = True
    """Build a missing environment (False: the entry fails with "environment not built", so a
    run prepared by ``harness env build`` stays offline)."""
    retune: bool = True
    """Run the retuning probe (P-ASR) on model entries of tracks with a retuning set."""

    @property
    def probe_sample(self) -> int:
        """Images per test set the retuned models answer: :data:`PROBE_SAMPLE`, or fewer when
        the run grades fewer."""
        return min(self.sample or PROBE_SAMPLE, PROBE_SAMPLE)


def input_scale(entry: TrackEntry, track: PublicTrack) -> float:
    """What the entry's network multiplies pixels by: its manifest's ``input_scale``, else the
    track's (the 2020 contest models expect pixels / 255, the lab model raw pixels)."""
    return entry.input_scale if entry.input_scale is not None else track.input_scale


def environment_spec(entry: TrackEntry, root: Path, track: PublicTrack) -> EnvironmentSpec | None:
    """The environment ``entry`` declares, against the benchmark ``track`` belongs to."""
    return resolve(entry.environment, entry.requirements, track.benchmark_root, root)


def placed_files(entry: TrackEntry, track: PublicTrack) -> list[tuple[str, Path]]:
    """The public track files ``entry`` asks to have in its folder; asking for a hidden set is
    a :class:`SubmissionError` (it is never placed)."""
    public = {"badnet": track.badnet, "validation": track.validation.path}
    if track.test is not None and not track.test.hidden:
        public["test"] = track.test.path
    placed = []
    for relative, name in entry.files:
        if name not in public:
            raise SubmissionError(f"files: '{relative}' = {name!r}: the {name} set of "
                                  f"{track.name} is hidden; only {', '.join(public)} can be "
                                  "placed")
        placed.append((relative, public[name]))
    return placed


def answer(entry: TrackEntry, root: Path, track: PublicTrack, images: Path, options: GradeOptions,
           progress: Callable[[int], None] | None = None, workers: Workers | None = None,
           tracks: int = 1, retune: Retune | None = None) -> Answers:
    """Run ``entry`` of the submission in ``root`` on an image file, in the sandbox, in the
    environment it declares (built first where allowed) with the public files it asks for;
    fine-tuned first with ``retune`` (the retuning probe).

    With ``workers`` an entry that runs no code of the submission's answers in the worker kept
    there, started for the first of the submission's ``tracks``; any other in its own."""
    placed = placed_files(entry, track)
    spec = environment_spec(entry, root, track)
    built = None if spec is None else options.environments.ensure(spec, build=options.build)
    run = EntryRun(num_classes=track.num_classes, input_scale=input_scale(entry, track),
                   limits=options.limits, allow_unsafe=options.allow_unsafe, progress=progress,
                   environment=None if built is None else built.folder, placed=tuple(placed),
                   retune=retune)
    if workers is not None and shareable(entry, options.allow_unsafe):
        return workers.answer(entry, root, images, run, tracks=tracks)
    return run_entry(entry, root, images, run)


def answer_array(entry: TrackEntry, root: Path, track: PublicTrack, images: np.ndarray,
                 options: GradeOptions) -> Answers:
    """:func:`answer` for images in memory (a few validation images in ``harness check``)."""
    with tempfile.TemporaryDirectory(prefix="harness-check-") as folder:
        path = Path(folder) / "images.npy"
        np.save(path, np.ascontiguousarray(images, dtype=np.uint8))
        path.chmod(0o644)
        return answer(entry, root, track, path, options)


def grade_track(entry: TrackEntry, root: Path, track: Track, handover: Handover,
                options: GradeOptions, progress: Callable[[int], None] | None = None,
                workers: Workers | None = None, tracks: int = 1) -> dict:
    """Answer the track's test images in the sandbox and score the answers."""
    mixed = handover.images(track)
    answers = answer(entry, root, track, mixed.path, options, progress, workers, tracks)
    return score_answers(track, mixed, handover.store, answers)


def probed(entry: TrackEntry, track: Track, options: GradeOptions) -> bool:
    """Whether the retuning probe runs for ``entry``: a model or weights file (a script is a
    black box, nothing to fine-tune) on a track with a retuning set, unless turned off."""
    return options.retune and track.retuning is not None and entry.kind in ("model", "weights")


def probe_track(entry: TrackEntry, root: Path, track: Track, handover: Handover,
                options: GradeOptions, workers: Workers | None = None, tracks: int = 1
                ) -> tuple[dict[str, Any], bool]:
    """The retuning probe of an entry that graded (:mod:`harness.sandbox.retuning`): fine-tune it on
    the track's retuning set in a sandboxed worker of its own, then answer ``handover``'s images (a
    sample of the track's test sets, mixed and unlabeled as for grading) and score them here.

    Returns the :data:`PROBE_KEYS` scores (all None when the entry is not probed) with the
    probe's wall time (``probe``, for ``timings.json``), and whether a failure may not recur (a
    timeout). A failure never fails the track: it is ``p_error``."""
    if not probed(entry, track, options):
        return {**dict.fromkeys(PROBE_KEYS), "probe": None}, False
    mixed, started = handover.images(track), time.monotonic()
    try:
        answers = answer(entry, root, track, mixed.path, options, workers=workers, tracks=tracks,
                         retune=handover.retuning(track))
        scores = score_answers(track, mixed, handover.store, answers)
    except SubmissionError as exc:
        message = in_folder(one_line(exc), root.resolve())
        public = private = {**dict.fromkeys(PROBE_KEYS), "p_error": message}
        transient = isinstance(exc, TransientSubmissionError)
    else:
        public, transient = _probe_keys(scores), False
        private = _probe_keys(scores[SEALED]) if SEALED in scores else public
    sealed = {SEALED: private} if mixed.public is not None else {}
    return {**public, "probe": round(time.monotonic() - started, 3), **sealed}, transient


def _probe_keys(scores: dict[str, Any]) -> dict[str, Any]:
    """The retuning probe's :data:`PROBE_KEYS` from the scores of the retuned model."""
    return {"p_asr": scores["asr"], "p_asr_ci": scores["asr_ci"],
            "p_clean_acc": scores["clean_acc"], "p_error": None}


def yardstick(track: Track, handover: Handover, options: GradeOptions,
              workers: Workers | None = None, tracks: int = 1) -> dict[str, Any] | None:
    """The retuning probe on the track's clean model, which never saw a trigger: the P-ASR that
    the budget alone causes, against which the entries' P-ASR reads (None: the track has no
    clean model or retuning set, or the probe is off). The organizers' model, run the way
    entries are, in the sandbox: the same code path gives the same numbers."""
    if track.clean_model is None or track.retuning is None or not options.retune:
        return None
    entry = TrackEntry(kind="model", path=track.clean_model)
    scores, _ = probe_track(entry, track.clean_model.parent, track, handover, options,
                            workers, tracks)
    labels = handover.store.get(track.retuning, track.num_classes).labels
    targets = {spec.target for spec in track.poisoned}
    return {"p_asr": scores["p_asr"], "p_asr_ci": scores["p_asr_ci"],
            "p_clean_acc": scores["p_clean_acc"], "error": scores["p_error"],
            "images": len(labels), "poisoned": int(np.isin(labels, list(targets)).sum())}


def score_answers(track: Track, mixed: TrackImages, store: DataStore, answers: Answers) -> dict:
    """Score a submission's answers on a track's mixed file, wherever they were computed (here
    or on a cluster node): the labels never leave this process.

    In a contest (``mixed.public`` set) the scores are the public part's, and the private
    part's are under :data:`SEALED`: one pass, both parts, never mixed."""
    total = len(answers.labels)
    if answers.invalid > Limits.invalid_fraction * total:
        raise SubmissionError(invalid_message(answers.invalid, total, answers.first_error))
    if mixed.public is None:
        return _score_part(track, mixed, store, answers)
    return {**_score_part(track, mixed.part(public=True), store, answers),
            SEALED: _score_part(track, mixed.part(public=False), store, answers)}


def _score_part(track: Track, mixed: TrackImages, store: DataStore, answers: Answers) -> dict:
    """:func:`score_answers` on the images ``mixed`` picks (all, or one part)."""
    total = len(answers.labels)
    n = track.num_classes
    clean_answers, *poisoned_answers = mixed.split(answers.labels)
    clean = store.get(track.test, n)
    poisoned = []
    for spec, predictions, pick in zip(track.poisoned, poisoned_answers, mixed.picks[1:],
                                       strict=True):
        data = store.get(spec.file, n)
        poisoned.append(PoisonedPredictions(
            trigger=spec.trigger, target=spec.target, predictions=predictions,
            true_labels=data.labels[pick] if spec.labels == "true" else None))
    scores = score_track(n, clean_answers, clean.labels[mixed.picks[0]], poisoned)
    return {**scores, **detection(mixed, answers), **entry_cost(answers, total),
            **measured(answers)}


def detection(mixed: TrackImages, answers: Answers) -> dict[str, Any]:
    """The threshold-free detection figure (``harness.results.record.DETECTION_KEYS``): the
    AUROC of the entry's detection scores, poisoned images (all sets) against clean ones, on
    the images ``mixed`` picks, with DeLong's 95% interval (:func:`harness.grading.stats.auroc`).
    None for an entry that gives labels only, and where no image of a class has a score."""
    result = None
    if answers.scores is not None:
        clean, *poisoned = mixed.split(answers.scores)
        result = stats.auroc(clean, np.concatenate(poisoned))
    if result is None:
        return {"auroc": None, "auroc_ci": None}
    area, interval = result
    return {"auroc": area, "auroc_ci": list(interval)}


def measured(answers: Answers) -> dict[str, float | int | None]:
    """What answering took (:data:`MEASURED_KEYS`): measured, not deterministic, so it goes to
    ``timings.json``, never into a record."""
    return {"peak_rss": None if answers.cost is None else answers.cost.peak_rss,
            "startup": round(answers.startup, 3), "answering": round(answers.answering, 3)}


def entry_cost(answers: Answers, images: int) -> dict[str, float | int | None]:
    """The entry's cost per graded image (``harness.results.record.COST_KEYS``) from the totals the
    worker observed; None where it observed nothing (an entry answered outside a worker)."""
    cost = answers.cost
    if cost is None or images == 0:
        return {"params": None, "macs_per_image": None, "passes_per_image": None}
    return {"params": cost.params,
            "macs_per_image": None if cost.macs is None else cost.macs / images,
            "passes_per_image": cost.passes / images}


def is_badnet(entry: TrackEntry, track: Track, badnet_sha256: str | None) -> bool:
    """Whether ``entry`` is the track's BadNet file itself, unchanged: the row DER is measured
    against (``badnet_sha256`` as :func:`harness.results.cache.track_fingerprint` hashed it)."""
    return (badnet_sha256 is not None and entry.kind == "model"
            and sha256_file(entry.path) == badnet_sha256)



def grade_trusted(predict: Callable[[np.ndarray], np.ndarray], track: Track,
                  handover: Handover) -> dict:
    """Score the project's own models (reports, ablations) in this process, on exactly the images
    and with exactly the scoring submissions get. Trusted code only: nothing here is sandboxed."""
    mixed = handover.images(track)
    labels = np.asarray(predict(np.load(mixed.path, mmap_mode="r")), dtype=np.int64)
    return score_answers(track, mixed, handover.store, Answers(labels, 0, None))
