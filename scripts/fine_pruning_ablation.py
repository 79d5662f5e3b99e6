"""Fine-pruning at several pruning depths on one track: a report for the docs, not a selection.

The reference fine-pruning stops pruning at a 4-point validation drop (the paper's rule). This
prints what deeper pruning, followed by the same masked fine-tuning, does to clean accuracy and
ASR on the hidden test sets, to show whether these BadNets' backdoors can be reached at all.
With ``--trace EPOCHS`` it instead fine-prunes at the first depth for EPOCHS epochs and prints,
after every epoch, the held-out accuracy model selection sees and the ASR on the embedded
benchmark's validation faces (regenerated from its recipe) with the track's triggers stamped:
whether more fine-tuning would wear the backdoor down. No defense reads these numbers.

Usage: python scripts/fine_pruning_ablation.py [--track sunglasses] [--drops 0.04 0.10 0.30 0.50]
       python scripts/fine_pruning_ablation.py --track pruning_aware --trace 16
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from harness.defenses.finetune import fine_tune
from harness.defenses.prune import pruned_copy, sweep
from harness.defenses.reference import defender_context
from harness.definitions.data import DataStore
from harness.definitions.layout import default_benchmark
from harness.definitions.tracks import Track, load_benchmark
from harness.grading.handover import Handover
from harness.grading.item import grade_trusted
from harness.nets.deepid import model_input
from harness.sandbox.models import KerasPredictor
from harness.synthetic.build import DEFAULT_SEED
from harness.synthetic.recipe import SCALES, TRACKS, VALIDATION_STREAM, split, take
from harness.synthetic.triggers import stamp


class TriggeredRates(keras.callbacks.Callback):
    """ASR per trigger on stamped validation faces after every epoch."""

    def __init__(self, stamped: dict[str, tuple[np.ndarray, int]]) -> None:
        super().__init__()
        self.stamped = stamped
        self.rates: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.rates.append({
            f"ASR[{trigger}]": float(np.mean(
                self.model.predict(x, batch_size=2048, verbose=0).argmax(axis=1) == target))
            for trigger, (x, target) in self.stamped.items()})


def stamped_validation(track: Track, count: int = 2000) -> dict[str, tuple[np.ndarray, int]]:
    """Per trigger of the track's recipe: ``count`` non-target validation faces, stamped."""
    recipe = next(r for r in TRACKS if r.name == track.name)
    scale = SCALES["full"]
    faces, labels = split(scale, DEFAULT_SEED, scale.val_per_id, VALIDATION_STREAM)
    rng = np.random.default_rng(DEFAULT_SEED)
    out = {}
    for trigger, target in recipe.triggers.items():
        keep = rng.choice(np.flatnonzero(labels != target), size=count, replace=False)
        out[trigger] = (model_input(stamp(take(faces, keep), trigger), track.input_scale), target)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", type=Path, default=default_benchmark())
    parser.add_argument("--track", default="sunglasses")
    parser.add_argument("--drops", type=float, nargs="+", default=[0.04, 0.10, 0.30, 0.50])
    parser.add_argument("--trace", type=int, metavar="EPOCHS",
                        help="trace ASR per epoch at the first depth instead")
    args = parser.parse_args()

    track = load_benchmark(args.benchmark).track(args.track)
    store = DataStore()
    handover = Handover(store)
    ctx = defender_context(track, store)
    result = sweep(ctx.badnet, ctx)
    if args.trace:
        depth = result.depth(args.drops[0])
        probe = TriggeredRates(stamped_validation(track))
        notes = fine_tune(pruned_copy(ctx, result.order[:depth]), ctx,
                          dead_channels=result.order[:depth], epochs=args.trace,
                          callbacks=[probe])
        table = pd.DataFrame([{"epoch": epoch, "holdout acc": accuracy, **rates}
                              for epoch, (accuracy, rates) in enumerate(
                                  zip(notes["holdout_acc_by_epoch"], probe.rates, strict=True),
                                  start=1)])
        print(f"{track.name}: {depth} channels pruned; held-out selection picks epoch "
              f"{notes['best_epoch']}")
        print(table.set_index("epoch").to_markdown(floatfmt=".3f"))
        return
    rows = []
    for drop in args.drops:
        depth = result.depth(drop)
        model = pruned_copy(ctx, result.order[:depth])
        notes = fine_tune(model, ctx, dead_channels=result.order[:depth])
        scores = grade_trusted(KerasPredictor(model, track.num_classes, track.input_scale),
                               track, handover)
        rows.append({"drop": f"{round(drop * 100)}pt", "pruned": depth,
                     "val acc pruned": result.accuracy[depth],
                     "holdout acc tuned": notes["holdout_acc"], "epoch": notes["best_epoch"],
                     "clean acc": scores["clean_acc"], "ASR": scores["asr"]})
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
