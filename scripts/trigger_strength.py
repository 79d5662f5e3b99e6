"""Where each shipped backdoor lives, how big its trigger is, and whether it survives blending.

Three defenses in docs/defenses.md depend on these properties of a backdoor rather than on their
own settings: pruning removes ``conv_3`` channels in the order clean faces leave them dormant,
Neural Cleanse flags a label whose reverse-engineered trigger is much smaller than other labels'
(its mask's L1 norm, in pixels), and STRIP flags an input whose prediction survives being blended
50/50 with clean faces. This prints, per track and trigger: the positions, in the pruning
defense's recorded order, of the five ``conv_3`` channels whose mean ``pool_3`` activation the
trigger raises most, and how many channels the 4-point pruning removes; the pixels the trigger
changes (median over faces); the BadNet's target rate on triggered faces blended with other
clean faces at trigger weights 1, 0.75 and 0.5 (STRIP's blend).

Faces are the clean validation faces regenerated from the benchmark recipe (the defender's own
data, never test data). A report for the docs; no defense reads it.

Usage: python scripts/trigger_strength.py [--faces 2000] (about a minute on 2 cores)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from harness.defenses.reference import load_badnet
from harness.definitions.layout import default_benchmark
from harness.definitions.tracks import load_benchmark
from harness.nets.deepid import model_input
from harness.nets.pruning import features
from harness.synthetic.build import DEFAULT_SEED
from harness.synthetic.recipe import (
    SCALES,
    TRACKS,
    VALIDATION_STREAM,
    population_seed,
    split,
    take,
)
from harness.synthetic.triggers import stamp

WEIGHTS = (1.0, 0.75, 0.5)


def strength_rows(count: int, seed: int, submissions: Path) -> pd.DataFrame:
    tracks = {track.name: track for track in load_benchmark(default_benchmark()).tracks}
    pruning = json.loads((submissions / "pruning" / "build.json").read_text())
    people: dict[int, tuple] = {}  # population -> its validation faces and labels
    rows = []
    for recipe in TRACKS:
        if recipe.population not in people:
            people[recipe.population] = split(SCALES["full"],
                                              population_seed(seed, recipe.population),
                                              SCALES["full"].val_per_id, VALIDATION_STREAM)
        faces, labels = people[recipe.population]
        chosen = np.random.default_rng(seed).choice(len(labels), size=count, replace=False)
        track = tracks[recipe.name]
        model = load_badnet(track)
        position = np.argsort(pruning[recipe.name]["prune_order"])  # channel -> place in order
        for trigger, target in recipe.triggers.items():
            keep = chosen[labels[chosen] != target]
            clean = faces.images[keep].astype(np.float32)
            stamped = stamp(take(faces, keep), trigger).astype(np.float32)
            changed = (np.abs(stamped - clean).max(axis=-1) > 0).sum(axis=(1, 2))
            # Each triggered face is blended with a different clean face, as STRIP does.
            partner = np.roll(clean, 1, axis=0)
            gain = (features(model, stamped, track.input_scale).mean(axis=(0, 1, 2))
                    - features(model, clean, track.input_scale).mean(axis=(0, 1, 2)))
            places = np.sort(position[np.argsort(-gain)[:5]])
            row = {"track": recipe.name, "attack": recipe.attack, "trigger": trigger,
                   "top-5 gain channels' places": ", ".join(map(str, places)),
                   "4pt prunes": pruning[recipe.name]["depths"]["4pt"],
                   "pixels changed": int(np.median(changed))}
            for weight in WEIGHTS:
                blended = weight * stamped + (1.0 - weight) * partner
                answers = model.predict(model_input(blended, track.input_scale),
                                        batch_size=1024, verbose=0).argmax(axis=1)
                row[f"target rate @{weight:g}"] = float(np.mean(answers == target))
            rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=2000, help="validation faces to sample")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--submissions", type=Path, default=Path("submissions"))
    args = parser.parse_args()
    print(strength_rows(args.faces, args.seed, args.submissions).to_markdown(
        index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
