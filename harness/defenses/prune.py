"""Pruning (Liu et al. 2018, section "pruning defense"): remove the ``conv_3`` channels most
dormant on clean data, one at a time, until validation accuracy has dropped by a set margin.

Silencing a ``conv_3`` channel (zero kernel and bias) zeroes its ``pool_3`` feature map exactly,
so the whole sweep runs the network's head on ``pool_3`` features computed once: 60 depths cost
about one forward pass instead of 60.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from harness.defenses.base import Context, Repaired
from harness.nets.pruning import PRUNE_LAYER, RANK_LAYER, dormancy_order, features, prune_channels

DROPS = (0.02, 0.04, 0.10)
LEADERBOARD_DROP = 0.04


@dataclass(frozen=True)
class Sweep:
    """Validation accuracy after pruning the first k channels of ``order``, k = 0..channels."""

    order: np.ndarray
    accuracy: np.ndarray

    def depth(self, drop: float) -> int:
        """Channels to prune: the first depth at which accuracy has fallen ``drop`` below the
        unpruned network's (all channels if it never does)."""
        fallen = np.flatnonzero(self.accuracy <= self.accuracy[0] - drop)
        return int(fallen[0]) if len(fallen) else len(self.order)


def sweep(model: keras.Model, ctx: Context, batch_size: int = 2048) -> Sweep:
    """Rank channels by mean ``pool_3`` activation on validation data and score every depth."""
    pooled = features(model, ctx.images, ctx.scale, batch_size=batch_size)
    order = dormancy_order(pooled)
    head = keras.Model(model.get_layer(RANK_LAYER).output, model.output)
    mask = np.ones(pooled.shape[-1], dtype=np.float32)
    accuracy = []
    for k in range(len(order) + 1):
        if k:
            mask[order[k - 1]] = 0.0
        scores = np.concatenate([np.asarray(head(pooled[i:i + batch_size] * mask,
                                                 training=False))
                                 for i in range(0, len(pooled), batch_size)])
        accuracy.append(float(np.mean(scores.argmax(axis=1) == ctx.labels)))
    return Sweep(order=order, accuracy=np.array(accuracy))


def pruned_copy(ctx: Context, channels: np.ndarray) -> keras.Model:
    model = ctx.clone_badnet()
    prune_channels(model, channels, layer=PRUNE_LAYER)
    return model


def pruning(ctx: Context) -> Repaired:
    """The pruning defense's leaderboard row: the 4-point model; 2 and 10 points in the notes."""
    result = sweep(ctx.badnet, ctx)
    depths = {f"{round(drop * 100)}pt": result.depth(drop) for drop in DROPS}
    notes = {
        "val_acc_unpruned": float(result.accuracy[0]),
        "prune_order": result.order.tolist(),
        "depths": depths,
        "val_acc_at_depth": {key: float(result.accuracy[d]) for key, d in depths.items()},
    }
    chosen = result.depth(LEADERBOARD_DROP)
    return Repaired(pruned_copy(ctx, result.order[:chosen]), notes)
