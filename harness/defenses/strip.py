"""STRIP (Gao et al., 2019): reject an input as poisoned when the BadNet's predictions stay
confident however strongly the input is perturbed.

A trigger dominates the prediction: blended half-and-half with clean images, a triggered input is
still sent to the target label, while a clean face becomes ambiguous. STRIP blends each input with
``BLENDS`` fixed clean validation images, averages the Shannon entropy of the BadNet's
predictions over the blends, and answers ``num_classes`` ("poisoned") when that entropy is below a
boundary, else the BadNet's own class. The boundary is the ``FALSE_REJECTION`` quantile of the
entropies of held-out clean validation images, so about 1% of clean inputs are rejected; the
blend images come from the fit split, so the boundary is measured on images the detector was not
built from.

Every blend costs the grader a full forward pass per image: with ``BLENDS`` = 8 a graded image
costs 9 passes, so a track's four or five 12,830-image sets stay in the minutes on a CPU, where
the paper's 100 blends would take an hour. Fewer blends make the entropy noisier, for clean and
triggered inputs alike; the boundary is calibrated with the same blends, so the false-rejection
rate still holds.

The detector is delivered as one Keras model with ``num_classes + 1`` one-hot outputs, built from
Keras layers and ``keras.ops`` calls only (no ``Lambda``, no custom classes), so the grader loads
it with ``safe_mode``. Keras ops outside layers are stored only by the ``.keras`` format. The
blend images are a constant of the graph, kept as integer pixel values so the stored
configuration stays small.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from harness.defenses.base import Context, Repaired
from harness.nets.deepid import IMAGE_SHAPE

BLENDS = 8
WEIGHT = 0.5  # of the blended clean image; the input keeps 1 - WEIGHT
FALSE_REJECTION = 0.01
QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
_TINY = 1e-30  # p * log(max(p, _TINY)) is 0 for p = 0 instead of NaN


def blend_images(ctx: Context) -> np.ndarray:
    """``BLENDS`` clean images drawn from the fit split (uint8), the same for a given seed."""
    fit, _ = ctx.split()
    rng = np.random.default_rng(ctx.seed)
    return ctx.images[np.sort(rng.choice(fit, size=BLENDS, replace=False))]


def _mean_entropy(badnet: keras.Model, inputs: keras.KerasTensor, blends: np.ndarray,
                  scale: float) -> keras.KerasTensor:
    """Mean prediction entropy (nats) of ``inputs`` blended with each of ``blends``.

    The blend ``(1 - w) * x + w * v * scale`` is computed as ``(x * k + v) * (w * scale)`` with
    ``k = (1 - w) / (w * scale)``: the same value, with ``v`` stored as whole pixel values.
    """
    count = len(blends)
    k = np.float32((1.0 - WEIGHT) / (WEIGHT * scale))
    pixels = ops.add(ops.multiply(ops.expand_dims(inputs, 1), k), blends.astype(np.float32))
    mixed = ops.multiply(pixels, np.float32(WEIGHT * scale))  # (batch, count, 55, 47, 3)
    probs = badnet(ops.reshape(mixed, (-1, *IMAGE_SHAPE)))
    probs = ops.reshape(probs, (-1, count, probs.shape[-1]))
    entropy = ops.negative(ops.sum(ops.multiply(probs, ops.log(ops.maximum(probs, _TINY))),
                                   axis=-1))
    return ops.mean(entropy, axis=-1)


def entropy_model(badnet: keras.Model, blends: np.ndarray, scale: float) -> keras.Model:
    """Model input -> mean blend entropy: what the detector thresholds, for calibration."""
    inputs = keras.Input(IMAGE_SHAPE, name="input")
    return keras.Model(inputs, _mean_entropy(badnet, inputs, blends, scale), name="strip_entropy")


def detector(badnet: keras.Model, blends: np.ndarray, scale: float,
             boundary: float) -> keras.Model:
    """The graded model: one-hot of ``num_classes`` if the mean entropy is below ``boundary``,
    else of the BadNet's class."""
    num_classes = badnet.output.shape[-1]
    inputs = keras.Input(IMAGE_SHAPE, name="input")
    entropy = _mean_entropy(badnet, inputs, blends, scale)
    predicted = ops.argmax(badnet(inputs), axis=-1)
    answer = ops.where(ops.less(entropy, np.float32(boundary)), num_classes, predicted)
    return keras.Model(inputs, ops.one_hot(answer, num_classes + 1), name="strip")


def strip(ctx: Context) -> Repaired:
    """Calibrate STRIP's boundary on the holdout split and wrap the BadNet in the detector."""
    blends = blend_images(ctx)
    _, holdout = ctx.split()
    entropies = entropy_model(ctx.badnet, blends, ctx.scale).predict(
        ctx.x(holdout), batch_size=256, verbose=0)
    boundary = float(np.quantile(entropies, FALSE_REJECTION))
    notes = {
        "blends": BLENDS,
        "blend_weight": WEIGHT,
        "boundary": boundary,
        "holdout_false_rejection": float(np.mean(entropies < np.float32(boundary))),
        "holdout_images": len(holdout),
        "entropy_quantiles": {str(q): float(np.quantile(entropies, q)) for q in QUANTILES},
    }
    return Repaired(detector(ctx.badnet, blends, ctx.scale, boundary), notes, suffix=".keras")
