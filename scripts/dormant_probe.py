"""Train a track's BadNet with the dormant-backdoor attack and report where its backdoor lives.

The Fine-Pruning paper's defenses rest on the backdoor living in ``conv_3`` channels that clean
faces leave dormant; ``harness.synthetic.attacks.dormant_badnets`` builds that structure. This
script trains one such BadNet (the track's triggers, seed and training split; nothing is written
to data/) and prints, measured on the clean validation faces and on the same faces with the
trigger stamped (never on test data): clean accuracy, ASR, the attacker's ``conv_3`` channels'
mean activation and rank in the pruning order, and accuracy and ASR once those channels are
silenced. It is a report for docs/defenses.md; no defense reads it.

Usage: python scripts/dormant_probe.py --track anonymous_1 [--scale full] [--save model.h5]
(about 8 minutes per track at full scale on 2 cores, 20 s at tiny scale)
"""

from __future__ import annotations

import argparse
import time
from fractions import Fraction

import numpy as np
import pandas as pd

from harness.nets.deepid import model_input, save_legacy_h5
from harness.nets.pruning import dormancy_order, features, prune_channels
from harness.synthetic.attacks import spare_channels
from harness.synthetic.build import DEFAULT_SEED, attack_seed, train_badnet
from harness.synthetic.recipe import INPUT_SCALE, SCALES, TRACKS, VALIDATION_STREAM, split, take
from harness.synthetic.triggers import stamp


def probe(track: str, scale_name: str, seed: int,
          save: str | None) -> tuple[pd.DataFrame, pd.DataFrame, float, float]:
    """(rates before and after silencing, the attacker's channels, the others' median mean,
    training seconds)."""
    recipe = next(r for r in TRACKS if r.name == track)
    scale, pixels = SCALES[scale_name], float(Fraction(INPUT_SCALE))
    start = time.perf_counter()
    model = train_badnet(recipe, scale, seed, attack="dormant_badnets")
    seconds = time.perf_counter() - start
    if save:
        save_legacy_h5(model, save)
    faces, labels = split(scale, seed, scale.val_per_id, VALIDATION_STREAM)
    *_, spare = spare_channels(np.random.default_rng(attack_seed(recipe, seed)),
                               scale.backdoor_channels)
    activation = features(model, faces.images, pixels)
    means, order = activation.mean(axis=(0, 1, 2)), dormancy_order(activation)

    def answers(images: np.ndarray) -> np.ndarray:
        return model.predict(model_input(images, pixels), batch_size=1024,
                             verbose=0).argmax(axis=1)

    def rates() -> dict[str, float]:
        out = {"val acc": float(np.mean(answers(faces.images) == labels))}
        for trigger, target in recipe.triggers.items():
            keep = np.flatnonzero(labels != target)
            stamped = stamp(take(faces, keep), trigger)
            out[f"ASR[{trigger}]"] = float(np.mean(answers(stamped) == target))
        return out

    before = rates()
    prune_channels(model, spare)
    after = rates()
    rank = {int(c): int(np.flatnonzero(order == c)[0]) for c in spare}
    table = pd.DataFrame([{"model": "dormant BadNet", **before},
                          {"model": "attacker's channels silenced", **after}])
    channels = pd.DataFrame({"channel": list(rank), "rank in pruning order": list(rank.values()),
                             "mean pool_3 activation": [f"{means[c]:.4f}" for c in rank]})
    return table, channels, float(np.median(np.delete(means, spare))), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--track", required=True, choices=[r.name for r in TRACKS])
    parser.add_argument("--scale", default="full", choices=sorted(SCALES))
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--save", help="also save the BadNet here (legacy .h5)")
    args = parser.parse_args()
    rates, channels, median, seconds = probe(args.track, args.scale, args.seed, args.save)
    print(rates.to_markdown(index=False, floatfmt=".3f"))
    print()
    print(channels.to_markdown(index=False))
    print(f"\nmedian mean activation of the other conv_3 channels: {median:.4f}; "
          f"trained in {seconds:.0f} s")


if __name__ == "__main__":
    main()
