"""The retuning probe: does a repair hold when the attacker fine-tunes the repaired model a little?

Min et al. (NeurIPS 2024, "Uncovering, Explaining, and Mitigating the Superficial Safety of
Backdoor Defense") found that purified models re-learn their backdoor from a handful of poisoned
samples (their Retuning Attack), while a model that never had the backdoor does not: a low ASR can
be superficial. The probe fine-tunes a copy of a repaired model on a small *retuning set* (the
attacker's data: a few images, some stamped with the track's trigger and labelled with its target,
the rest clean) for a fixed :class:`Budget`, then answers poisoned test images again: the share
that goes to the target is the P-ASR. The same probe on a model that never saw the trigger (the
track's clean model) is the yardstick: the re-learning that the budget alone causes.

This module is imported by the sandboxed worker (:mod:`harness.sandbox.worker`), which may run in a
team's environment: it imports the standard library and NumPy only, TensorFlow inside
:func:`retune`, and the training loop works with Keras 2 and Keras 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.errors import HarnessError


@dataclass(frozen=True)
class Budget:
    """How much the attacker may fine-tune: Adam (as the BadNets were trained) on the retuning
    set."""

    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    """Seeds the order of the retuning images in each epoch."""


BUDGET = Budget(epochs=5, batch_size=16, learning_rate=1e-4, seed=2024)
"""The probe's budget for every entry and the yardstick (docs/defenses.md, "Does the repair
hold?")."""
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7
"""Adam's constants, as Keras has them."""
FORMAT = 1
"""Version of what the probe computes (budget, loss, sample): part of every cache key, so a
record made another way is never taken for one made this way."""
PROBE_SAMPLE = 2000
"""Images per test set the retuned model answers (a stratified sample, as ``--sample``; fewer
when the run itself grades fewer): P-ASR to about +-2 points at 95%."""


def budget_text(budget: Budget = BUDGET) -> str:
    """The budget in words, as the board states it."""
    return (f"Adam, learning rate {budget.learning_rate:g}, {budget.epochs} epochs, "
            f"batch {budget.batch_size}")


PROBE_KEYS = ("p_asr", "p_asr_ci", "p_clean_acc", "p_error")
"""What the probe adds to an entry's record: ``p_asr``, the share of poisoned images answered
with the target after fine-tuning, ``p_asr_ci`` its 95% Wilson interval, ``p_clean_acc`` clean
accuracy after it, ``p_error`` why the probe failed for this entry (one line; the track itself
stays OK). All None where the probe did not run (scripts, probe off, a track without a retuning
set). Reported, never scored."""


class RetuneError(HarnessError):
    """The model cannot be fine-tuned (no weight the loss reaches, non-finite loss): said as it
    is on the board."""


def _probabilities(outputs: Any) -> bool:
    """Whether a model's outputs are probabilities (a softmax) rather than logits."""
    values = np.asarray(outputs, dtype=np.float64)
    return bool(values.min() >= 0 and np.allclose(values.sum(axis=1), 1.0, atol=1e-3))


def retune(model: Any, images: np.ndarray, labels: np.ndarray, scale: float,
           budget: Budget) -> dict[str, float]:
    """Fine-tune ``model`` in place on ``images`` (uint8) and ``labels`` within ``budget``.

    Cross-entropy on the model's first ``N`` or ``N + 1`` outputs (on probabilities when the
    model ends in a softmax, else on logits), in inference mode (``training=False``: dropout off,
    batch-normalisation statistics kept, so a few dozen images cannot wreck them and no random
    draw enters), by hand-written Adam (the same in Keras 2 and 3, whose optimizer APIs
    differ). Deterministic given single-threaded TensorFlow with op determinism on (the worker
    sets both). Returns the mean loss of the first and the last epoch.
    """
    import tensorflow as tf

    from harness.nets.deepid import model_input  # Keras: only where a model is fine-tuned

    variables = list(model.trainable_variables)
    if not variables:
        raise RetuneError("the model has no trainable weights")
    x = model_input(images, scale)
    y = np.asarray(labels, dtype=np.int32)
    probabilities = _probabilities(model(tf.constant(x[:min(len(x), 64)]), training=False))
    lr = np.float32(budget.learning_rate)
    first = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
    second = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
    steps = tf.Variable(0.0, trainable=False)

    @tf.function(reduce_retracing=True)
    def step(batch: Any, targets: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = _loss(model(batch, training=False), targets, probabilities)
        gradients = tape.gradient(loss, variables)
        steps.assign_add(1.0)
        rate = lr * tf.sqrt(1.0 - BETA_2 ** steps) / (1.0 - BETA_1 ** steps)
        for variable, m, v, gradient in zip(variables, first, second, gradients, strict=True):
            if gradient is not None:
                gradient = tf.convert_to_tensor(gradient)
                m.assign(BETA_1 * m + (1.0 - BETA_1) * gradient)
                v.assign(BETA_2 * v + (1.0 - BETA_2) * tf.square(gradient))
                variable.assign_sub(rate * m / (tf.sqrt(v) + EPSILON))
        return loss

    @tf.function
    def reached(batch: Any, targets: Any) -> list[bool]:
        with tf.GradientTape() as tape:
            loss = _loss(model(batch, training=False), targets, probabilities)
        return [gradient is not None for gradient in tape.gradient(loss, variables)]

    if not any(reached(tf.constant(x[:1]), tf.constant(y[:1]))):  # what fine-tuning can move
        raise RetuneError("no trainable weight of the model is reached by the loss (its answer "
                          "does not depend differentiably on its weights, e.g. an argmax inside "
                          "its graph)")
    rng = np.random.default_rng(budget.seed)
    losses = []
    for _ in range(budget.epochs):
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), budget.batch_size):
            pick = order[start:start + budget.batch_size]
            loss = float(step(tf.constant(x[pick]), tf.constant(y[pick])))
            if not np.isfinite(loss):
                raise RetuneError("the loss became non-finite while fine-tuning")
            total += loss * len(pick)
        losses.append(total / len(x))
    return {"first_loss": losses[0], "last_loss": losses[-1]}


def _loss(outputs: Any, targets: Any, probabilities: bool) -> Any:
    """Mean cross-entropy of ``outputs`` against ``targets``: from the logits under a final
    softmax where the graph shows them (as Keras itself computes it, so a confidently wrong
    answer still has a gradient), else from the probabilities or logits the model gives."""
    import tensorflow as tf

    op = getattr(outputs, "op", None)
    if probabilities and op is not None and op.type == "Softmax":
        outputs, probabilities = op.inputs[0], False
    if probabilities:
        picked = tf.gather(outputs, targets, axis=1, batch_dims=1)
        return -tf.reduce_mean(tf.math.log(picked + 1e-7))
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets,
                                                                         logits=outputs))
