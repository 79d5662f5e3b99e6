"""Grade one submission entry on one track: load -> predict -> score.

Kept free of pytest so the same pipeline serves the plugin, the reference builder and scripts.
The submission only ever sees images; labels stay in this process and scoring happens here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from harness.data import DataStore
from harness.errors import SubmissionError
from harness.scoring import PoisonedPredictions, score_track
from harness.submissions import TrackEntry
from harness.tracks import Track

Predict = Callable[[np.ndarray], np.ndarray]


def load_predictor(entry: TrackEntry, track: Track, *, allow_unsafe: bool = False) -> Predict:
    """Turn a manifest entry into a function images -> labels in [0, N]."""
    if entry.kind == "eval":
        raise SubmissionError("eval.py contract not supported yet (it needs the sandboxed "
                              "runner); submit a model file instead")
    from harness import models  # TensorFlow loads only when a model is graded

    if entry.kind == "model":
        model = models.load_model_file(entry.path, allow_unsafe=allow_unsafe)
    else:
        model = models.load_weights_file(entry.path, entry.architecture or "", track.num_classes)
    scale = entry.input_scale if entry.input_scale is not None else track.input_scale
    return models.KerasPredictor(model, num_classes=track.num_classes, input_scale=scale)


def checked(predict: Predict, images: np.ndarray, num_classes: int) -> np.ndarray:
    """Run ``predict`` and refuse answers that are not one label in [0, N] per image."""
    labels = np.asarray(predict(images))
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise SubmissionError(f"predictions have shape {labels.shape} and dtype {labels.dtype}; "
                              f"expected ({len(images)},) integers")
    if len(labels) and (labels.min() < 0 or labels.max() > num_classes):
        raise SubmissionError(f"predictions span [{labels.min()}, {labels.max()}]; expected "
                              f"0..{num_classes}")
    return labels.astype(np.int64)


def grade_track(predict: Predict, track: Track, store: DataStore) -> dict:
    """Predict the track's clean and poisoned test sets and score them."""
    n = track.num_classes
    clean = store.get(track.test, n)
    poisoned = []
    for spec in track.poisoned:
        data = store.get(spec.file, n)
        poisoned.append(PoisonedPredictions(
            trigger=spec.trigger, target=spec.target,
            predictions=checked(predict, data.images, n),
            true_labels=data.labels if spec.labels == "true" else None))
    return score_track(n, checked(predict, clean.images, n), clean.labels, poisoned)
