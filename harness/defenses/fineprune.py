"""Fine-pruning (Liu et al. 2018), the reference defense, and its G-net variant.

Prune the dormant ``conv_3`` channels to the 4-point validation drop, then fine-tune with those
channels held dead (so gradient descent cannot regrow the backdoor there). The G-net of the
student report (seed 000) runs the BadNet beside the repaired net and answers N, "poisoned", when
they disagree: a backdoored input moves the BadNet to the target but not the repaired net.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from harness.defenses.base import Context, Repaired
from harness.defenses.finetune import fine_tune
from harness.defenses.prune import LEADERBOARD_DROP, pruned_copy, sweep


def fine_pruning(ctx: Context) -> Repaired:
    result = sweep(ctx.badnet, ctx)
    depth = result.depth(LEADERBOARD_DROP)
    dead = result.order[:depth]
    model = pruned_copy(ctx, dead)
    notes = {"pruned_channels": depth, "prune_order": result.order.tolist(),
             "val_acc_unpruned": float(result.accuracy[0]),
             "val_acc_pruned": float(result.accuracy[depth])}
    notes.update(fine_tune(model, ctx, dead_channels=dead))
    return Repaired(model, notes)


def g_net(badnet: keras.Model, repaired: keras.Model, num_classes: int) -> keras.Model:
    """N+1 outputs: the repaired net's class one-hot when both nets agree, else class N.

    Built from Keras ops on symbolic tensors, no Lambda layer, so the grader loads it in safe
    mode; ops outside layers are stored only by the ``.keras`` format.
    """
    inputs = keras.Input(badnet.input.shape[1:], name="input")
    bad_class = ops.argmax(badnet(inputs), axis=-1)
    good_class = ops.argmax(repaired(inputs), axis=-1)
    answer = ops.where(ops.equal(bad_class, good_class), good_class,
                       ops.full_like(good_class, num_classes))
    return keras.Model(inputs, ops.one_hot(answer, num_classes + 1), name="g_net")


def fine_pruning_g(ctx: Context, repaired: keras.Model) -> Repaired:
    """Wrap an already fine-pruned model (see :func:`fine_pruning`) with the BadNet."""
    badnet = ctx.clone_badnet()
    badnet.name = "badnet"
    repaired.name = "repaired"
    model = g_net(badnet, repaired, ctx.num_classes)
    answers = np.concatenate([model.predict(ctx.x(slice(i, i + 2048)), verbose=0).argmax(axis=1)
                              for i in range(0, len(ctx.images), 2048)])
    return Repaired(model, {"val_false_flag_rate": float(np.mean(answers == ctx.num_classes))},
                    suffix=".keras")
