"""Fine-pruning at several pruning depths on one track: a report for the docs, not a selection.

The reference fine-pruning stops pruning at a 4-point validation drop (the paper's rule). This
prints what deeper pruning, followed by the same masked fine-tuning, does to clean accuracy and
ASR on the hidden test sets, to show whether these BadNets' backdoors can be reached at all.
No defense reads these numbers.

Usage: python scripts/fine_pruning_ablation.py [--track sunglasses] [--drops 0.04 0.10 0.30 0.50]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from harness.cli import default_benchmark
from harness.data import DataStore
from harness.defenses.base import Context
from harness.defenses.finetune import fine_tune
from harness.defenses.prune import pruned_copy, sweep
from harness.grading import Handover, grade_trusted
from harness.models import KerasPredictor
from harness.reference import SEED, load_badnet
from harness.tracks import load_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", type=Path, default=default_benchmark())
    parser.add_argument("--track", default="sunglasses")
    parser.add_argument("--drops", type=float, nargs="+", default=[0.04, 0.10, 0.30, 0.50])
    args = parser.parse_args()

    track = load_benchmark(args.benchmark).track(args.track)
    store = DataStore()
    handover = Handover(store)
    validation = store.get(track.validation, track.num_classes)
    ctx = Context(badnet=load_badnet(track), images=validation.images, labels=validation.labels,
                  scale=track.input_scale, num_classes=track.num_classes, seed=SEED)
    result = sweep(ctx.badnet, ctx)
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
