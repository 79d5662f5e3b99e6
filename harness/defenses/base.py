"""What every defense receives and returns.

A defense sees the BadNet and the clean validation data, and nothing else: no test data, no
poisoned data, no trigger, no target label. Everything it chooses (pruning depth, epochs,
thresholds) must come from the validation data, split deterministically by ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from harness.nets.deepid import model_input


@dataclass(frozen=True)
class Context:
    """The defender's knowledge: a BadNet and clean validation images with their labels."""

    badnet: keras.Model
    images: np.ndarray  # uint8 (n, 55, 47, 3), pixel values 0..255
    labels: np.ndarray  # int (n,)
    scale: float  # the track's input scale: the model sees images * scale
    num_classes: int
    seed: int = 0

    def split(self, holdout: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
        """Indices (fit, holdout): a stratified split, the same for every defense.

        Fine-tuning fits on one part and picks its epoch on the other, so no choice is made on
        the data it was trained on (and never on test data).
        """
        rng = np.random.default_rng(self.seed)
        held: list[np.ndarray] = []
        for label in np.unique(self.labels):
            members = np.flatnonzero(self.labels == label)
            count = max(1, round(holdout * len(members))) if len(members) > 1 else 0
            held.extend(rng.choice(members, size=count, replace=False))
        held_mask = np.zeros(len(self.labels), dtype=bool)
        held_mask[np.asarray(held, dtype=np.int64)] = True
        return np.flatnonzero(~held_mask), np.flatnonzero(held_mask)

    def clone_badnet(self) -> keras.Model:
        """A fresh copy of the BadNet with its weights: defenses never modify the original."""
        model = keras.models.clone_model(self.badnet)
        model.set_weights(self.badnet.get_weights())
        return model

    def x(self, index: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Validation images at ``index`` as the model's float32 input."""
        return model_input(self.images[index], self.scale)


@dataclass
class Repaired:
    """A defense's output: the model to submit and notes for the docs (JSON-serialisable).

    ``suffix`` is ``.h5`` (legacy Keras 2, what most contest entries used) unless the model uses
    Keras ops outside layers, which only the ``.keras`` format stores.
    """

    model: keras.Model
    notes: dict[str, Any] = field(default_factory=dict)
    suffix: str = ".h5"
