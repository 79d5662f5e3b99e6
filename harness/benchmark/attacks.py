"""Backdoor attacks as reusable code: BadNets poisoning (one or many triggers) and the
pruning-aware attack of the Fine-Pruning paper.

The attacker owns a training set the defenders never see; a BadNet is a DeepID trained on it
after poisoning. All randomness comes from explicit seeds.
"""

from __future__ import annotations

import keras
import numpy as np

from harness.benchmark.faces import Faces
from harness.benchmark.recipe import take
from harness.benchmark.triggers import stamp
from harness.models import build_deepid, model_input
from harness.pruning import PRUNE_LAYER, ChannelMask, prune_channels, prune_order

# Bias that keeps a restored channel silent for any input (ReLU(w.x - 1e20) = 0).
DEAD_BIAS = -1e20
FINE_EPOCHS = 3


def seeded_deepid(num_classes: int, seed: int) -> keras.Model:
    """DeepID with initial weights drawn from ``seed`` (Keras draws them at build time)."""
    keras.utils.set_random_seed(seed)
    return build_deepid(num_classes)


def poison(faces: Faces, labels: np.ndarray, triggers: dict[str, int], fraction: float,
           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """BadNets poisoning: add ``fraction`` of the set per trigger, stamped and relabelled.

    Poisoned copies are drawn from images whose identity is not the trigger's target and are
    added next to the clean originals, so clean accuracy is learned from the full set.
    """
    rng = np.random.default_rng(seed)
    images, targets = [faces.images], [labels]
    for trigger, target in sorted(triggers.items()):
        candidates = np.flatnonzero(labels != target)
        count = min(len(candidates), max(1, round(fraction * len(labels))))
        chosen = np.sort(rng.choice(candidates, size=count, replace=False))
        images.append(stamp(take(faces, chosen), trigger))
        targets.append(np.full(count, target, dtype=np.int64))
    return np.concatenate(images), np.concatenate(targets)


def train(model: keras.Model, images: np.ndarray, labels: np.ndarray, *, scale: float,
          epochs: int, batch_size: int, seed: int, learning_rate: float = 1e-3,
          callbacks: list[keras.callbacks.Callback] | None = None,
          verbose: int = 0) -> keras.Model:
    """Supervised training with Adam; inputs are uint8 pixels times ``scale``.

    The last ``FINE_EPOCHS`` epochs run at a tenth of the learning rate: measured on the full
    benchmark, a constant rate leaves test accuracy oscillating a point or two below what the
    network reaches once the rate drops.
    """
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = model_input(images, scale)
    fine_from = epochs - min(FINE_EPOCHS, epochs // 3)
    schedule = keras.callbacks.LearningRateScheduler(
        lambda epoch: learning_rate if epoch < fine_from else learning_rate / 10)
    model.fit(x, labels, batch_size=batch_size, epochs=epochs, shuffle=True,
              callbacks=[schedule, *(callbacks or [])], verbose=verbose)
    return model


def badnets(faces: Faces, labels: np.ndarray, triggers: dict[str, int], *, num_classes: int,
            scale: float, epochs: int, batch_size: int, fraction: float, seed: int,
            verbose: int = 0) -> keras.Model:
    """Gu et al.'s BadNets: train DeepID from scratch on the poisoned training set."""
    images, targets = poison(faces, labels, triggers, fraction, seed)
    return train(seeded_deepid(num_classes, seed), images, targets, scale=scale, epochs=epochs,
                 batch_size=batch_size, seed=seed, verbose=verbose)


def pruning_aware(faces: Faces, labels: np.ndarray, triggers: dict[str, int], *,
                  num_classes: int, scale: float, epochs: int, batch_size: int, fraction: float,
                  keep_channels: int, seed: int, verbose: int = 0) -> keras.Model:
    """Liu et al.'s pruning-aware attack, in four steps.

    1. train a clean DeepID; 2. prune the ``conv_3`` channels most dormant on clean data, keeping
    ``keep_channels``; 3. poison-train the pruned net with those channels held dead, so the backdoor
    must live in the channels a pruning defender keeps; 4. restore the pruned channels' weights
    with a huge negative bias, so they never fire and the released net looks unpruned.
    """
    model = train(seeded_deepid(num_classes, seed), faces.images, labels, scale=scale,
                  epochs=epochs,
                  batch_size=batch_size, seed=seed, verbose=verbose)
    order = prune_order(model, faces.images, scale)
    pruned = order[: len(order) - keep_channels]
    original_kernel = np.array(model.get_layer(PRUNE_LAYER).get_weights()[0])
    prune_channels(model, pruned)
    images, targets = poison(faces, labels, triggers, fraction, seed)
    train(model, images, targets, scale=scale, epochs=epochs, batch_size=batch_size,
          seed=seed + 1, callbacks=[ChannelMask(pruned)], verbose=verbose)
    kernel, bias = (np.array(w) for w in model.get_layer(PRUNE_LAYER).get_weights())
    kernel[..., pruned] = original_kernel[..., pruned]
    bias[pruned] = DEAD_BIAS
    model.get_layer(PRUNE_LAYER).set_weights([kernel, bias])
    return model
