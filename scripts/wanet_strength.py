"""How strong a WaNet warp the benchmark's training budget can learn: one BadNet per setting.

WaNet (Nguyen and Tran, ICLR 2021) warps with strength s = 0.5 and trains 1000 epochs, adding
two "noise mode" images per warped one (the warp plus random per-pixel jitter, true labels). The
embedded benchmark trains every BadNet 14 epochs. This trains the ``wanet`` track's BadNet
(same data, seed and budget as ``benchmark build``) at each ``--strength`` with and without the
noise mode (``--cross-ratio``: noise images per poisoned image; the paper's is 2), and prints
clean accuracy on the track's clean test set and ASR on its faces warped at that strength.
docs/benchmark.md ("The warping track") has the table; no build reads it.

Usage (2 CPU cores: 7-9 minutes per BadNet, twice that at 28 epochs):
    python scripts/wanet_strength.py --strength 1 2 --cross-ratio 2
    python scripts/wanet_strength.py --strength 2 3 4 --cross-ratio 0
    python scripts/wanet_strength.py --strength 2 --cross-ratio 0 --epochs 28
"""

from __future__ import annotations

import argparse
import time
from fractions import Fraction

import pandas as pd

from harness.definitions.data import DataStore
from harness.definitions.layout import default_benchmark
from harness.definitions.tracks import load_benchmark
from harness.nets import quiet
from harness.synthetic import attacks
from harness.synthetic.build import DEFAULT_SEED, attack_seed, contest_accuracy
from harness.synthetic.materialize import generate_missing
from harness.synthetic.recipe import INPUT_SCALE, SCALES, TRACKS, TRAIN_STREAM, split
from harness.synthetic.triggers import warp, warp_field


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strength", type=float, nargs="+", default=[2.0])
    parser.add_argument("--cross-ratio", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--epochs", type=int, default=SCALES["full"].epochs,
                        help="training epochs (the benchmark's: %(default)s)")
    args = parser.parse_args()
    quiet.import_tensorflow()

    recipe = next(r for r in TRACKS if r.attack == "wanet")
    (trigger, target), = recipe.triggers.items()
    scale, seed = SCALES["full"], DEFAULT_SEED
    benchmark = load_benchmark(default_benchmark())
    track = benchmark.track(recipe.name)
    generate_missing(benchmark, [track.test])
    test = DataStore().get(track.test, track.num_classes)
    faces, labels = split(scale, seed, scale.train_per_id, TRAIN_STREAM)
    pixels = float(Fraction(INPUT_SCALE))
    rows = []
    for strength in args.strength:
        keep = test.labels != target
        warped = warp(test.images[keep], *warp_field(strength))
        for cross_ratio in args.cross_ratio:
            start = time.perf_counter()
            model = attacks.wanet(faces, labels, recipe.triggers, num_classes=scale.identities,
                                  scale=pixels, epochs=args.epochs,
                                  batch_size=scale.batch_size, fraction=scale.poison_fraction,
                                  seed=attack_seed(recipe, seed), strength=strength,
                                  cross_ratio=cross_ratio)
            rows.append({"s": strength, "noise mode (cross ratio)": cross_ratio,
                         "epochs": args.epochs,
                         "clean acc": contest_accuracy(model, test.images, test.labels),
                         f"ASR ({trigger} -> {target})": contest_accuracy(model, warped, target),
                         "train s": round(time.perf_counter() - start)})
            print(rows[-1], flush=True)
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
