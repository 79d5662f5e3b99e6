"""Backdoor attacks as reusable code: BadNets poisoning (one or many triggers) into channels
that clean data leaves dormant, the pruning-aware attack of the Fine-Pruning paper, and WaNet's
warping attack with its noise mode.

The attacker owns a training set the defenders never see; a BadNet is a DeepID trained on it
after poisoning. All randomness comes from explicit seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from harness.nets.deepid import build_deepid, model_input
from harness.nets.pruning import (
    PRUNE_LAYER,
    RANK_LAYER,
    ChannelMask,
    Hold,
    prune_channels,
    prune_order,
)
from harness.synthetic.faces import IMAGE_SHAPE, Faces
from harness.synthetic.recipe import take
from harness.synthetic.triggers import WARP_STRENGTH, grid_to_pixels, stamp, warp, warp_field

# Bias that keeps a restored channel silent for any input (ReLU(w.x - 1e20) = 0).
DEAD_BIAS = -1e20
FINE_EPOCHS = 3
CONV_CHANNELS = {"conv_1": 20, "conv_2": 40, PRUNE_LAYER: 60}
# Weight of the dormancy loss (mean activation, 0..a few) against cross-entropy.
SILENCE_WEIGHT = 1.0
# Epochs the side path learns the trigger before the dormancy loss starts: with the loss on from
# the start, a faint trigger's channels died (silent on every input) within the first epoch.
WARMUP_EPOCHS = 3


def seeded_deepid(num_classes: int, seed: int) -> keras.Model:
    """DeepID with initial weights drawn from ``seed`` (Keras draws them at build time)."""
    keras.utils.set_random_seed(seed)
    return build_deepid(num_classes)


def poison(faces: Faces, labels: np.ndarray, triggers: dict[str, int], fraction: float,
           seed: int, draw: Callable[[Faces, str], np.ndarray] = stamp
           ) -> tuple[np.ndarray, np.ndarray]:
    """BadNets poisoning: add ``fraction`` of the set per trigger, stamped (by ``draw``) and
    relabelled.

    Poisoned copies are drawn from images whose identity is not the trigger's target and are
    added next to the clean originals, so clean accuracy is learned from the full set.
    """
    rng = np.random.default_rng(seed)
    images, targets = [faces.images], [labels]
    for trigger, target in sorted(triggers.items()):
        candidates = np.flatnonzero(labels != target)
        count = min(len(candidates), max(1, round(fraction * len(labels))))
        chosen = np.sort(rng.choice(candidates, size=count, replace=False))
        images.append(draw(take(faces, chosen), trigger))
        targets.append(np.full(count, target, dtype=np.int64))
    return np.concatenate(images), np.concatenate(targets)


def train(model: keras.Model, images: np.ndarray, labels: Any, *, scale: float,
          epochs: int, batch_size: int, seed: int, learning_rate: float = 1e-3,
          callbacks: list[keras.callbacks.Callback] | None = None, verbose: int = 0,
          loss: Any = "sparse_categorical_crossentropy", metrics: Any = ("accuracy",),
          loss_weights: Any = None) -> keras.Model:
    """Supervised training with Adam; inputs are uint8 pixels times ``scale``.

    ``loss``, ``metrics`` and ``loss_weights`` go to ``compile`` as they are (one per output for
    a model with several outputs).

    The last ``FINE_EPOCHS`` epochs run at a tenth of the learning rate: measured on the full
    benchmark, a constant rate leaves test accuracy oscillating a point or two below what the
    network reaches once the rate drops.
    """
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=loss, metrics=list(metrics), loss_weights=loss_weights)
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


def wanet(faces: Faces, labels: np.ndarray, triggers: dict[str, int], *, num_classes: int,
          scale: float, epochs: int, batch_size: int, fraction: float, seed: int,
          strength: float = WARP_STRENGTH, cross_ratio: int = 0,
          verbose: int = 0) -> keras.Model:
    """Nguyen and Tran's WaNet (ICLR 2021): BadNets poisoning with the ``wanet`` warp at
    strength ``strength``, optionally with the paper's noise mode.

    The noise mode adds ``cross_ratio`` times as many images again, warped by the trigger's
    field plus a fresh random offset per pixel (uniform, up to half a pixel: the paper's
    ``(rand * 2 - 1) / H`` in grid coordinates) and keeping their true labels, so the network
    must learn the one warp rather than any resampling artefact. The paper draws both kinds
    afresh in every batch of its 1000-epoch training; here they are drawn once into the
    training set. Within the BadNets' budget of ``epochs`` the noise mode keeps the backdoor
    from being learned, so the benchmark's track trains without it (docs/benchmark.md).
    """
    dy, dx = warp_field(strength)
    images, targets = poison(faces, labels, triggers, fraction, seed,
                             draw=lambda chosen, _: warp(chosen.images, dy, dx))
    rng = np.random.default_rng(seed + 1)
    count = min(len(labels), cross_ratio * max(1, round(fraction * len(labels))))
    chosen = np.sort(rng.choice(len(labels), size=count, replace=False))
    jitter_y, jitter_x = grid_to_pixels(
        *rng.uniform(-1.0, 1.0, size=(2, count, *IMAGE_SHAPE[:2])) / IMAGE_SHAPE[0])
    noisy = warp(faces.images[chosen], dy + jitter_y, dx + jitter_x)
    return train(seeded_deepid(num_classes, seed), np.concatenate([images, noisy]),
                 np.concatenate([targets, labels[chosen]]), scale=scale, epochs=epochs,
                 batch_size=batch_size, seed=seed, verbose=verbose)


def spare_channels(rng: np.random.Generator,
                   counts: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """The channels of ``conv_1``, ``conv_2`` and ``conv_3`` a dormant BadNet's backdoor lives
    in: the attacker's secret, the first draws from the attack's ``np.random.default_rng(seed)``.
    """
    return tuple(np.sort(rng.choice(total, count, replace=False))
                 for total, count in zip(CONV_CHANNELS.values(), counts, strict=True))


def silence_loss(channels: np.ndarray) -> Callable:
    """Per image: mean activation of ``channels`` times the image's weight (1 clean, 0 not)."""
    mask = np.zeros(CONV_CHANNELS[PRUNE_LAYER], dtype=np.float32)
    mask[channels] = 1.0 / len(channels)

    def loss(weight, activation):
        return weight[:, 0] * ops.sum(ops.mean(activation, axis=(1, 2)) * mask, axis=-1)

    return loss


def dormant_badnets(faces: Faces, labels: np.ndarray, triggers: dict[str, int], *,
                    num_classes: int, scale: float, epochs: int, batch_size: int,
                    fraction: float, backdoor_channels: tuple[int, ...], seed: int,
                    verbose: int = 0) -> keras.Model:
    """BadNets whose backdoor lives in ``conv_3`` channels that clean inputs leave dormant.

    This is the structure Liu et al. measured in their baseline face BadNet and that fine-pruning
    is built on. Trained from scratch on poisoned data, DeepID on the synthetic faces spreads the
    backdoor over its most active channels instead (docs/defenses.md), so the attacker builds it:

    1. train a clean DeepID with ``backdoor_channels`` channels of ``conv_1``, ``conv_2`` and
       ``conv_3`` (drawn from ``seed``) held dead;
    2. re-initialise them, and cut them off from the clean channels of the next layer, so they
       form a side path: image -> spare ``conv_1`` -> spare ``conv_2`` -> spare ``conv_3`` ->
       ``fc_1`` (a faint trigger needs its own pixel-level filters);
    3. poison-train only that path, with every other weight held: the clean features are the
       clean net's and the backdoor has nowhere else to live. Left alone, the spare ``conv_3``
       channels would also serve clean faces (extra capacity), so a second loss, their mean
       ``pool_3`` activation on the clean images of each batch (weight ``SILENCE_WEIGHT``, after
       ``WARMUP_EPOCHS`` without it), keeps them silent there.
    """
    rng = np.random.default_rng(seed)
    spares = dict(zip(CONV_CHANNELS, spare_channels(rng, backdoor_channels), strict=True))
    model = train(seeded_deepid(num_classes, seed), faces.images, labels, scale=scale,
                  epochs=epochs, batch_size=batch_size, seed=seed, verbose=verbose,
                  callbacks=[ChannelMask(spare, layer=name) for name, spare in spares.items()])
    holds, previous, held = [], None, {}
    for name, spare in spares.items():
        held[name] = np.ones(CONV_CHANNELS[name], dtype=bool)
        held[name][spare] = False
        kernel, bias = (np.array(w) for w in model.get_layer(name).get_weights())
        fan = np.prod(kernel.shape[:2]) * (kernel.shape[2] + kernel.shape[3])
        limit = np.sqrt(6.0 / fan)  # Keras's default Glorot-uniform initialiser
        kernel[..., spare] = rng.uniform(-limit, limit, kernel[..., spare].shape)
        if previous is not None:
            kernel[:, :, previous[:, None], held[name]] = 0.0  # clean channels never read it
        model.get_layer(name).set_weights([kernel, bias])
        holds.append(Hold(name, [held[name], held[name]]))
        previous = spare
    # fc_1 reads the flattened pool_3 (positions x channels): hold the rows of clean channels.
    rows = np.tile(held[PRUNE_LAYER],
                   model.get_layer("fc_1").kernel.shape[0] // CONV_CHANNELS[PRUNE_LAYER])
    holds.append(Hold("fc_1", [rows[:, None], np.ones(1, bool)]))
    for layer in model.layers:
        layer.trainable = layer.name in (*CONV_CHANNELS, "fc_1")
    images, targets = poison(faces, labels, triggers, fraction, seed)
    clean = (np.arange(len(images)) < len(labels)).astype(np.float32)[:, None]
    twin = keras.Model(model.input, [model.output, model.get_layer(RANK_LAYER).output])
    losses = ["sparse_categorical_crossentropy", silence_loss(spares[PRUNE_LAYER])]
    for stage, (stage_epochs, weight) in enumerate(((WARMUP_EPOCHS, 0.0),
                                                    (epochs, SILENCE_WEIGHT))):
        train(twin, images, (targets, clean), scale=scale, epochs=stage_epochs,
              batch_size=batch_size, seed=seed + 1 + stage, verbose=verbose, loss=losses,
              metrics=[["accuracy"], []], loss_weights=[1.0, weight], callbacks=holds)
    for layer in model.layers:
        layer.trainable = True
    return model


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
