"""Neural Cleanse (Wang et al., 2019): reverse-engineer a minimal trigger for every label, flag the
labels whose trigger is abnormally small, and unlearn the flagged triggers by fine-tuning.

A backdoor is a shortcut: every input stamped with a small trigger goes to the target label, so
the smallest mask that sends clean images to the target is far smaller than for any other label.
For a label y the trigger is a mask ``m`` (55x47, in [0, 1]) and a pattern ``p`` (55x47x3, pixel
values) stamped as ``x' = (1 - m) * x + m * p``; it minimises
``cross-entropy(model(x'), y) + lambda_y * |m|_1`` on clean images of other labels, with the
paper's per-label ``lambda`` schedule (raised while the trigger succeeds, lowered while it fails),
and a label's norm is the smallest ``|m|_1`` seen while at least 99% of its batch went to y.

Budget: the contest's 1283 labels must be done in about six minutes on two CPU cores, where the
paper spends thousands of steps per label. So the labels are optimised in batches (``SLOTS``
labels at once in one tensor; a label that stops early hands its slot to the next one at once) in
two phases: a cheap ``SCAN`` of every label with few images and few steps, then a ``REFINE`` of
the labels with the smallest norms (the only possible outliers) with more images and steps,
warm-started from the scan. Refinement shrinks norms, so the outlier test must not compare refined
candidates with a scan-only median: ``REFERENCE_LABELS`` labels drawn at random from the rest are
refined too, and the scan norms of all unrefined labels are multiplied by the median
refined/scan ratio of those reference labels before the test (the scan is most of the search's
time: docs/defenses.md). Norms are still shrinking when the scan stops, so early stopping rarely
fires there; it frees the slots of labels that converge fast, which backdoor targets do.

The outlier test is the paper's: anomaly index ``|median - norm| / (1.4826 * MAD)`` over all
labels, flagging labels below the median with an index above 2. Repair is the paper's unlearning:
the flagged labels' reversed triggers are stamped on part of the fit split with the images' true
labels, and a copy of the BadNet is fine-tuned on that (epoch chosen on the holdout split).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from harness.defenses.base import Context, Repaired
from harness.defenses.finetune import fine_tune
from harness.nets.deepid import IMAGE_SHAPE

H, W = IMAGE_SHAPE[:2]
AREA = H * W  # the norm of a label no trigger was found for: "needs the whole image"


@dataclass(frozen=True)
class Phase:
    """How hard each label is optimised in one pass."""

    images_per_label: int  # clean images each label's trigger is stamped on per step
    max_steps: int
    patience: int  # stop a label this many steps after its norm last improved by 1%


SCAN = Phase(images_per_label=4, max_steps=60, patience=12)
REFINE = Phase(images_per_label=16, max_steps=100, patience=20)
SLOTS = 128  # labels optimised together: one forward pass of SLOTS * images_per_label images
CANDIDATE_LABELS = 24  # smallest scan norms, refined
REFERENCE_LABELS = 16  # random other labels, refined to put all norms on the refined scale

SUCCESS = 0.99  # attack success on a label's batch that makes its mask count
# Adam on the mask and pattern logits with the paper's code's betas; the paper's 0.1 on its tanh
# parametrisation, since tanh(a) / 2 + 1 / 2 = sigmoid(2 a).
LEARNING_RATE = 0.2
BETA_1, BETA_2 = 0.5, 0.9
INIT_COST = 1e-2  # ten times the paper's initial lambda: the budget allows ~60 steps, not 1000s
COST_PATIENCE = 5  # steps of success (failure) before lambda is raised (lowered)
COST_UP, COST_DOWN = 1.5, 1.5**1.5
IMPROVEMENT = 0.01  # relative norm decrease that resets the early-stopping counter

MAD_SCALE = 1.4826  # makes the MAD a consistent estimate of the standard deviation
ANOMALY_THRESHOLD = 2.0
UNLEARN_FRACTION = 0.2  # of the fit split, stamped with a flagged trigger (the paper's share)


@dataclass
class Triggers:
    """Per-label results: the logits of each label's best mask and pattern (its last ones, to
    warm-start the next phase, if it never reached ``SUCCESS``), its norm (``AREA`` if it never
    did) and its final lambda."""

    mask_logits: np.ndarray  # (labels, H, W, 1)
    pattern_logits: np.ndarray  # (labels, H, W, 3)
    norms: np.ndarray  # (labels,) float64
    costs: np.ndarray  # (labels,) float32

    def stamp(self, label: int, images: np.ndarray) -> np.ndarray:
        """``images`` (uint8 or float pixels) with ``label``'s trigger, as float32 pixels."""
        mask = _sigmoid(self.mask_logits[label])
        pattern = np.float32(255.0) * _sigmoid(self.pattern_logits[label])
        return (np.float32(1.0) - mask) * images.astype(np.float32) + mask * pattern


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function via tanh, which cannot overflow for very negative logits."""
    half = np.float32(0.5)
    return (half * (np.float32(1.0) + np.tanh(half * x))).astype(np.float32)


def _head(model: keras.Model) -> tuple[keras.Model, keras.Variable, keras.Variable]:
    """The BadNet up to its output layer, and that layer's kernel and bias: the trigger search
    needs logits, because the softmax probability of a far-off label underflows to a constant and
    gives no gradient."""
    last = model.layers[-1]
    if not isinstance(last, keras.layers.Dense):
        raise ValueError(f"expected a Dense output layer, found {type(last).__name__}")
    return keras.Model(model.input, last.input), last.kernel, last.bias


class _Slots:
    """``SLOTS`` labels' masks and patterns with their Adam state, optimised in one tensor.

    The state lives in TF variables so a step is one compiled call; a label's slot is reset in
    place when it is handed to the next label, so the traced step is reused for the whole run.
    """

    def __init__(self, ctx: Context, images: np.ndarray, slots: int, per_label: int) -> None:
        self.features, self.kernel, self.bias = _head(ctx.badnet)
        self.images = tf.constant(images)  # uint8: a quarter of the memory of float32
        self.scale = np.float32(ctx.scale)
        self.slots, self.per_label = slots, per_label

        def zeros(channels: int) -> tf.Variable:
            return tf.Variable(tf.zeros((slots, H, W, channels)), trainable=False)

        self.mask, self.pattern = zeros(1), zeros(3)
        self.moments = [zeros(1), zeros(1), zeros(3), zeros(3)]  # m/v of mask, m/v of pattern
        self.best_mask, self.best_pattern = zeros(1), zeros(3)
        self.steps = tf.Variable(tf.zeros(slots), trainable=False)
        self.best_norm = tf.Variable(tf.fill((slots,), np.inf), trainable=False)
        self.step = tf.function(self._step)

    def load(self, slots: np.ndarray, mask_logits: np.ndarray, pattern_logits: np.ndarray) -> None:
        """Start the labels in ``slots`` from the given logits, with fresh optimiser state."""
        index = tf.constant(slots[:, None], dtype=tf.int64)
        for variable, values in ((self.mask, mask_logits), (self.pattern, pattern_logits),
                                 (self.best_mask, mask_logits),
                                 (self.best_pattern, pattern_logits)):
            variable.scatter_nd_update(index, values)
        for moment in self.moments:
            moment.scatter_nd_update(index, np.zeros((len(slots), *moment.shape[1:]), np.float32))
        self.steps.scatter_nd_update(index, np.zeros(len(slots), np.float32))
        self.best_norm.scatter_nd_update(index, np.full(len(slots), np.inf, np.float32))

    def _step(self, index: tf.Tensor, targets: tf.Tensor, costs: tf.Tensor) -> tuple:
        """One Adam step for every slot; returns (attack success, mask norm) before the step.

        The slots' losses are summed: they share no variables, so each slot gets exactly the
        gradient of its own loss.
        """
        x = tf.cast(tf.gather(self.images, index), tf.float32)  # (slots, per_label, H, W, 3)
        with tf.GradientTape() as tape:
            tape.watch([self.mask, self.pattern])
            mask = tf.sigmoid(self.mask)
            pattern = 255.0 * tf.sigmoid(self.pattern)
            stamped = (1.0 - mask[:, None]) * x + (mask * pattern)[:, None]
            features = self.features(tf.reshape(stamped * self.scale, (-1, *IMAGE_SHAPE)),
                                     training=False)
            logits = tf.matmul(features, self.kernel) + self.bias
            logits = tf.reshape(logits, (self.slots, self.per_label, -1))
            wanted = tf.broadcast_to(targets[:, None], (self.slots, self.per_label))
            entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(wanted, logits)
            norms = tf.reduce_sum(mask, axis=(1, 2, 3))
            loss = tf.reduce_sum(tf.reduce_mean(entropy, axis=1) + costs * norms)
        grads = tape.gradient(loss, [self.mask, self.pattern])
        hits = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), wanted),
                       tf.float32)
        success = tf.reduce_mean(hits, axis=1)
        improved = (success >= SUCCESS) & (norms < self.best_norm)
        self.best_norm.assign(tf.where(improved, norms, self.best_norm))
        keep = improved[:, None, None, None]
        self.best_mask.assign(tf.where(keep, self.mask, self.best_mask))
        self.best_pattern.assign(tf.where(keep, self.pattern, self.best_pattern))
        self._adam(grads)
        return success, norms

    def _adam(self, grads: list[tf.Tensor]) -> None:
        """Adam with a step count per slot, so a freshly loaded slot gets full bias correction."""
        self.steps.assign_add(tf.ones(self.slots))
        t = self.steps[:, None, None, None]
        rate = LEARNING_RATE * tf.sqrt(1.0 - BETA_2**t) / (1.0 - BETA_1**t)
        for variable, grad, first, second in ((self.mask, grads[0], *self.moments[:2]),
                                              (self.pattern, grads[1], *self.moments[2:])):
            first.assign(BETA_1 * first + (1.0 - BETA_1) * grad)
            second.assign(BETA_2 * second + (1.0 - BETA_2) * tf.square(grad))
            variable.assign_sub(rate * first / (tf.sqrt(second) + 1e-7))


def _draw(rng: np.random.Generator, image_labels: np.ndarray, targets: np.ndarray,
          count: int) -> np.ndarray:
    """Indices (len(targets), count) of images whose label is not the slot's target: an image
    already of the target class says nothing about a trigger."""
    index = rng.integers(0, len(image_labels), size=(len(targets), count))
    clash = image_labels[index] == targets[:, None]
    while clash.any():
        index[clash] = rng.integers(0, len(image_labels), size=int(clash.sum()))
        clash = image_labels[index] == targets[:, None]
    return index


@dataclass
class _Progress:
    """Host-side bookkeeping of the labels in the slots (``-1`` = empty slot)."""

    label: np.ndarray
    steps: np.ndarray
    cost: np.ndarray
    streak: np.ndarray  # consecutive successes (> 0) or failures (< 0), for the lambda schedule
    best: np.ndarray
    stale: np.ndarray  # steps since the best norm last improved by IMPROVEMENT

    @classmethod
    def empty(cls, slots: int) -> _Progress:
        return cls(label=np.full(slots, -1), steps=np.zeros(slots, np.int64),
                   cost=np.zeros(slots, np.float32), streak=np.zeros(slots, np.int64),
                   best=np.full(slots, np.inf), stale=np.zeros(slots, np.int64))

    def update(self, success: np.ndarray, norms: np.ndarray) -> None:
        """The paper's lambda schedule and the early-stopping counters, after one step."""
        self.steps += 1
        ok = success >= SUCCESS
        self.streak = np.where(ok, np.maximum(self.streak, 0) + 1, np.minimum(self.streak, 0) - 1)
        raise_cost, lower_cost = self.streak >= COST_PATIENCE, self.streak <= -COST_PATIENCE
        self.cost = np.where(raise_cost, self.cost * COST_UP,
                             np.where(lower_cost, self.cost / COST_DOWN, self.cost))
        self.streak[raise_cost | lower_cost] = 0
        better = ok & (norms < self.best * (1.0 - IMPROVEMENT))
        self.stale = np.where(better, 0, self.stale + 1)
        self.best = np.where(ok, np.minimum(self.best, norms), self.best)

    def finished(self, phase: Phase) -> np.ndarray:
        done = (self.steps >= phase.max_steps) | (np.isfinite(self.best)
                                                  & (self.stale >= phase.patience))
        return np.flatnonzero(done & (self.label >= 0))


def reverse_engineer(ctx: Context, triggers: Triggers, labels: np.ndarray, phase: Phase,
                     images: np.ndarray, image_labels: np.ndarray, rng: np.random.Generator,
                     ) -> int:
    """Optimise ``labels``' triggers in place, starting from ``triggers``; returns the steps run.

    A label's result replaces the stored one whenever it reached ``SUCCESS``: a refined norm,
    measured on more images, is the better estimate even when it is larger.
    """
    slots = min(SLOTS, len(labels))
    state = _Slots(ctx, images, slots, phase.images_per_label)
    progress = _Progress.empty(slots)
    queue = deque(labels)
    steps = 0

    def fill(free: np.ndarray) -> None:
        free = free[: len(queue)]
        if not len(free):
            return
        new = np.array([queue.popleft() for _ in free])
        state.load(free, triggers.mask_logits[new], triggers.pattern_logits[new])
        progress.label[free] = new
        progress.steps[free], progress.streak[free], progress.stale[free] = 0, 0, 0
        progress.cost[free], progress.best[free] = triggers.costs[new], np.inf

    fill(np.arange(slots))
    while (progress.label >= 0).any():
        targets = np.maximum(progress.label, 0).astype(np.int32)
        index = _draw(rng, image_labels, targets, phase.images_per_label)
        success, norms = state.step(tf.constant(index, tf.int32), tf.constant(targets),
                                    tf.constant(progress.cost))
        progress.update(success.numpy(), norms.numpy())
        steps += 1
        done = progress.finished(phase)
        if len(done):
            _store(triggers, state, progress, done)
            progress.label[done] = -1
            fill(done)
    return steps


def _store(triggers: Triggers, state: _Slots, progress: _Progress, done: np.ndarray) -> None:
    """Copy finished slots' results into ``triggers``: the best trigger and its norm if the label
    reached ``SUCCESS``; else its last trigger, but only if no earlier phase found one, so a
    stored trigger always goes with its stored norm."""
    best_norm = state.best_norm.numpy()
    best = (state.best_mask.numpy(), state.best_pattern.numpy())
    last = (state.mask.numpy(), state.pattern.numpy())
    for slot in done:
        label = progress.label[slot]
        triggers.costs[label] = progress.cost[slot]
        found = np.isfinite(best_norm[slot])
        if found or triggers.norms[label] >= AREA:
            mask, pattern = best if found else last
            triggers.mask_logits[label], triggers.pattern_logits[label] = mask[slot], pattern[slot]
        if found:
            triggers.norms[label] = best_norm[slot]


def initial_triggers(num_classes: int, rng: np.random.Generator) -> Triggers:
    """Every label starts from a half-opaque mask over the whole image and a random pattern: a
    large trigger succeeds at once, and the L1 cost then shrinks it to what the label needs."""
    return Triggers(
        mask_logits=np.zeros((num_classes, H, W, 1), np.float32),
        pattern_logits=rng.normal(0.0, 1.0, (num_classes, H, W, 3)).astype(np.float32),
        norms=np.full(num_classes, float(AREA)),
        costs=np.full(num_classes, INIT_COST, np.float32),
    )


def anomaly_indices(norms: np.ndarray) -> tuple[np.ndarray, float]:
    """The paper's anomaly index of every label, signed: positive below the median."""
    median = float(np.median(norms))
    mad = float(np.median(np.abs(norms - median))) * MAD_SCALE
    return (median - norms) / max(mad, 1e-12), median


def refined_norms(scan: np.ndarray, refined: np.ndarray, candidates: np.ndarray,
                  references: np.ndarray) -> tuple[np.ndarray, float]:
    """All norms on the refined scale: refined labels keep their refined norm, the others get
    their scan norm times the median refined/scan ratio of the random reference labels."""
    ratio = float(np.median(refined[references] / scan[references])) if len(references) else 1.0
    norms = scan * ratio
    chosen = np.concatenate([candidates, references])
    norms[chosen] = refined[chosen]
    return norms, ratio


def detect(ctx: Context) -> tuple[Triggers, dict]:
    """Reverse-engineer every label's trigger and run the outlier test; returns triggers, notes."""
    rng = np.random.default_rng(ctx.seed)
    fit, _ = ctx.split()
    images, image_labels = ctx.images[fit], ctx.labels[fit]
    start = time.perf_counter()
    triggers = initial_triggers(ctx.num_classes, rng)
    scan_steps = reverse_engineer(ctx, triggers, np.arange(ctx.num_classes), SCAN, images,
                                  image_labels, rng)
    scan_seconds = time.perf_counter() - start
    scan = triggers.norms.copy()
    order = np.argsort(scan, kind="stable")
    candidates = order[:CANDIDATE_LABELS]
    rest = order[CANDIDATE_LABELS:]
    references = np.sort(rng.choice(rest, size=min(REFERENCE_LABELS, len(rest)), replace=False))
    refine_steps = reverse_engineer(ctx, triggers, np.concatenate([candidates, references]),
                                    REFINE, images, image_labels, rng)
    norms, ratio = refined_norms(scan, triggers.norms, candidates, references)
    triggers.norms = norms
    seconds = time.perf_counter() - start
    index, median = anomaly_indices(norms)
    flagged = np.flatnonzero(index > ANOMALY_THRESHOLD)
    smallest = np.argsort(norms, kind="stable")[:5]
    notes = {
        "flagged_labels": flagged.tolist(),
        "flagged_anomaly_indices": [round(float(index[k]), 3) for k in flagged],
        "smallest_norms": [{"label": int(k), "norm": round(float(norms[k]), 2),
                            "anomaly_index": round(float(index[k]), 3)} for k in smallest],
        "median_norm": round(median, 2),
        "refine_scale_ratio": round(ratio, 4),
        "reverse_seconds": round(seconds, 1),
        "scan_seconds": round(scan_seconds, 1),
        "scan_steps": scan_steps,
        "refine_steps": refine_steps,
        "refined_labels": len(candidates) + len(references),
    }
    return triggers, notes


def unlearning_set(ctx: Context, triggers: Triggers, flagged: np.ndarray,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The fit split plus ``UNLEARN_FRACTION`` of it stamped with the flagged triggers (cycled),
    all with their true labels: the network learns that the trigger means nothing."""
    fit, _ = ctx.split()
    chosen = rng.choice(fit, size=max(1, round(UNLEARN_FRACTION * len(fit))), replace=False)
    stamped = [triggers.stamp(int(flagged[i % len(flagged)]), ctx.images[k][None])
               for i, k in enumerate(chosen)]
    images = np.concatenate([ctx.images[fit].astype(np.float32), *stamped])
    return images, np.concatenate([ctx.labels[fit], ctx.labels[chosen]])


def unlearn(ctx: Context, triggers: Triggers, flagged: np.ndarray) -> tuple[keras.Model, dict]:
    """A copy of the BadNet fine-tuned on the unlearning set; returns it with the fine-tuning
    notes (epoch chosen on the holdout split).

    The fine-tuning defense's own schedule is used, so unlearning differs from plain fine-tuning
    only by the stamped images and the two references isolate what the reversed triggers add.
    """
    images, labels = unlearning_set(ctx, triggers, flagged, np.random.default_rng(ctx.seed))
    model = ctx.clone_badnet()
    return model, fine_tune(model, ctx, images=images, labels=labels)


def neural_cleanse(ctx: Context) -> Repaired:
    """Detect backdoor target labels and unlearn their reversed triggers; returns the BadNet
    unchanged if no label is flagged."""
    triggers, notes = detect(ctx)
    flagged = np.asarray(notes["flagged_labels"], dtype=np.int64)
    if not len(flagged):
        notes["repair"] = "none: no label flagged, the BadNet is returned unchanged"
        return Repaired(ctx.badnet, notes)
    model, notes["unlearning"] = unlearn(ctx, triggers, flagged)
    return Repaired(model, notes)
