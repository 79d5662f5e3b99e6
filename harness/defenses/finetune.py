"""Fine-tuning on clean validation data (the defense of Chen et al. 2017 that Liu et al. show
fails alone), and the fine-tuning step shared by fine-pruning and Neural Cleanse's unlearning.

The model trains on the fit part of the validation split and the epoch with the best clean
accuracy on the held-out part is kept: model selection never sees test or poisoned data.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from harness.defenses.base import Context, Repaired
from harness.nets.deepid import model_input
from harness.nets.pruning import ChannelMask

EPOCHS = 8
LEARNING_RATE = 1e-3
BATCH_SIZE = 64


def fine_tune(model: keras.Model, ctx: Context, *, images: np.ndarray | None = None,
              labels: np.ndarray | None = None, dead_channels: np.ndarray | None = None,
              epochs: int = EPOCHS, learning_rate: float = LEARNING_RATE,
              batch_size: int = BATCH_SIZE,
              callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict:
    """Train ``model`` in place and leave it at its best held-out epoch; returns notes.

    ``images``/``labels`` replace the fit split (e.g. with stamped copies added for unlearning);
    ``dead_channels`` are ``conv_3`` channels held at zero throughout (fine-pruning's mask);
    ``batch_size`` exists for reports (scripts/pruning_aware_experiment.py): no defense changes it;
    ``callbacks`` are extra Keras callbacks, e.g. a report's per-epoch probe (each epoch is its
    own ``fit`` call, so ``on_epoch_end`` sees epoch 0 every time).
    """
    fit, holdout = ctx.split()
    x = ctx.x(fit) if images is None else model_input(images, ctx.scale)
    y = ctx.labels[fit] if labels is None else labels
    x_hold, y_hold = ctx.x(holdout), ctx.labels[holdout]
    keras.utils.set_random_seed(ctx.seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy")
    hooks = [*([] if dead_channels is None else [ChannelMask(dead_channels)]), *callbacks]
    best, best_acc, history = model.get_weights(), -1.0, []
    for epoch in range(1, epochs + 1):
        model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=True, callbacks=hooks,
                  verbose=0)
        scores = model.predict(x_hold, batch_size=2048, verbose=0)
        accuracy = float(np.mean(scores.argmax(axis=1) == y_hold))
        history.append(accuracy)
        if accuracy > best_acc:
            best, best_acc, best_epoch = model.get_weights(), accuracy, epoch
    model.set_weights(best)
    return {"epochs": epochs, "learning_rate": learning_rate, "best_epoch": best_epoch,
            "holdout_acc": best_acc, "holdout_acc_by_epoch": history,
            "fit_images": len(y), "holdout_images": len(y_hold)}


def fine_tuning(ctx: Context) -> Repaired:
    """Fine-tune a copy of the BadNet on clean validation data only."""
    model = ctx.clone_badnet()
    return Repaired(model, fine_tune(model, ctx))
