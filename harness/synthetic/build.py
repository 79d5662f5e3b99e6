"""``python -m harness benchmark build``: rebuild the embedded benchmark from its seed.

Writes ``benchmark.toml``, one track file per BadNet (with the sha256 of every data file), the
BadNets and the clean model (the retuning probe's yardstick, :data:`CLEAN_MODEL`) as legacy
Keras-2 ``.h5`` files, the data files into the git-ignored cache, and ``build.json`` with what was
measured (time, clean accuracy and ASR of each BadNet; time and clean accuracy of the clean
model, under ``"clean"``).
"""

from __future__ import annotations

import json
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from harness.definitions.data import DataStore
from harness.definitions.layout import META, TRACKS_DIR
from harness.definitions.tracks import DataFile
from harness.errors import UsageError
from harness.nets.deepid import model_input, save_legacy_h5
from harness.synthetic import attacks
from harness.synthetic.materialize import write_data
from harness.synthetic.recipe import (
    INPUT_SCALE,
    SCALES,
    TEST_FILE,
    TRACKS,
    TRAIN_STREAM,
    Scale,
    TrackRecipe,
    poisoned_file,
    population_seed,
    retuning_file,
    split,
    test_file,
    validation_file,
)

DEFAULT_SEED = 2020
CACHE = "cache"
CLEAN_MODEL = "models/clean_net.h5"
"""A DeepID trained on the attacker's training split without poisoning: the model that never saw
a trigger, which the retuning probe's yardstick retunes (:mod:`harness.sandbox.retuning`). Every
track file names it (``clean_model``); ``export-public`` never copies it."""
CLEAN = "clean"
"""The name ``build(only=...)`` (``benchmark build --only``) gives the clean model."""


def track_spec(recipe: TrackRecipe, scale: Scale, files: dict[str, dict[str, Any]]) -> dict:
    """The track file's content, in the format :mod:`harness.definitions.tracks` reads."""
    def entry(name: str) -> dict[str, Any]:
        return {"file": f"{CACHE}/{name}", **files[name]}

    badnet = f"models/{recipe.name}_bd_net.h5"
    return {
        "name": recipe.name,
        "description": recipe.description,
        "public_description": recipe.public_description,
        "badnet": badnet,
        "input_scale": INPUT_SCALE,
        "num_classes": scale.identities,
        # A clean track's own model never saw a trigger: it is its own yardstick.
        "clean_model": badnet if recipe.attack == "clean" else CLEAN_MODEL,
        "validation": {**entry(validation_file(recipe.population)), "hidden": False},
        "test": {**entry(test_file(recipe.test_per_id, recipe.population)), "hidden": True},
        "poisoned": [{"trigger": trigger, "target": target, "labels": "true",
                      **entry(poisoned_file(trigger, target, recipe.test_per_id,
                                            recipe.population)),
                      "hidden": True}
                     for trigger, target in recipe.triggers.items()],
        "retuning": {**entry(retuning_file(recipe)), "hidden": True},
    }


CLEAN_SLOT = 5
"""The clean model's place among the seeds: it was built after the first five BadNets, and
later tracks take the places after it (so adding a track changes no existing model's seed)."""


def attack_seed(recipe: TrackRecipe, seed: int) -> int:
    """Each BadNet's own seed, derived from the benchmark's."""
    slot = TRACKS.index(recipe)
    return seed + 100 * (1 + slot + (slot >= CLEAN_SLOT))


def train_badnet(recipe: TrackRecipe, scale: Scale, seed: int, verbose: int = 0,
                 attack: str | None = None):
    """Train one BadNet on the attacker's own (never distributed) training split, with the
    recipe's attack or ``attack`` instead (scripts/dormant_probe.py)."""
    attack = attack or recipe.attack
    faces, labels = split(scale, population_seed(seed, recipe.population), scale.train_per_id,
                          TRAIN_STREAM)
    common: dict[str, Any] = dict(num_classes=scale.identities, scale=float(Fraction(INPUT_SCALE)),
                  epochs=scale.epochs, batch_size=scale.batch_size,
                  fraction=scale.poison_fraction, seed=attack_seed(recipe, seed),
                  verbose=verbose)
    if attack == "pruning_aware":
        return attacks.pruning_aware(faces, labels, recipe.triggers,
                                     keep_channels=scale.keep_channels, **common)
    if attack == "dormant_badnets":
        return attacks.dormant_badnets(faces, labels, recipe.triggers,
                                       backdoor_channels=scale.backdoor_channels, **common)
    if attack == "wanet":
        return attacks.wanet(faces, labels, recipe.triggers, **common)
    if attack == "clean":  # the track's trigger is only ever stamped on its test images
        return attacks.badnets(faces, labels, {}, **common)
    return attacks.badnets(faces, labels, recipe.triggers, **common)


def clean_seed(seed: int) -> int:
    """The clean model's seed, apart from every BadNet's (:func:`attack_seed`)."""
    return seed + 100 * (1 + CLEAN_SLOT)


def train_clean(scale: Scale, seed: int, verbose: int = 0):
    """Train the clean DeepID: the same data, schedule and network as a BadNet, no trigger."""
    faces, labels = split(scale, seed, scale.train_per_id, TRAIN_STREAM)
    return attacks.badnets(faces, labels, {}, num_classes=scale.identities,
                           scale=float(Fraction(INPUT_SCALE)), epochs=scale.epochs,
                           batch_size=scale.batch_size, fraction=0.0, seed=clean_seed(seed),
                           verbose=verbose)


def contest_accuracy(model, images: np.ndarray, expected: np.ndarray | int) -> float:
    """The contest's own evaluation: argmax over the model's outputs on uint8 ``images``,
    compared with the labels (or the target)."""
    x = model_input(images, float(Fraction(INPUT_SCALE)))
    predicted = np.argmax(model.predict(x, batch_size=1024, verbose=0), axis=1)
    return float(np.mean(predicted == expected))


def _accuracy(model, store: DataStore, path: Path, target: int | None = None) -> float:
    """:func:`contest_accuracy` over a data file, against its labels (or ``target``)."""
    data = store.get(DataFile(path), model.output_shape[-1])
    return contest_accuracy(model, data.images, data.labels if target is None else target)


def build(scale: str = "full", out: Path = Path("data"), only: list[str] | None = None,
          seed: int = DEFAULT_SEED, verbose: int = 2) -> dict[str, Any]:
    """Rebuild data, BadNets, the clean model and track files; returns (and writes) the build
    report. ``only`` names the BadNets (tracks) to retrain, and ``"clean"`` for the clean model;
    None retrains all. A name in ``only`` that is neither is refused before anything is written."""
    known = [recipe.name for recipe in TRACKS] + [CLEAN]
    unknown = [name for name in only or () if name not in known]
    if unknown:
        raise UsageError(f"no BadNet {', '.join(map(repr, unknown))} to rebuild "
                         f"(known: {', '.join(known)})")
    spec = SCALES[scale]
    store = DataStore()  # each data file is read once for all BadNets' evaluations
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"scale": scale, "seed": seed, "tracks": {}}
    report_path = out / "build.json"
    if report_path.exists():  # what this run does not rebuild keeps its numbers
        previous = json.loads(report_path.read_text())
        report["tracks"] = previous["tracks"]
        if CLEAN in previous:
            report[CLEAN] = previous[CLEAN]
    start = time.perf_counter()
    files = write_data(out / CACHE, spec, seed)
    report["data_seconds"] = round(time.perf_counter() - start, 1)
    (out / META).write_text(tomli_w.dumps({
        "name": f"embedded synthetic YouTube-Face ({scale})",
        "description": "Procedural faces in the CSAW-HackML-2020 file format; data files are "
                       "regenerated from the seed on first use and checked against the track "
                       "files' sha256.",
        "generate": {"scale": scale, "seed": seed, "cache": CACHE}}))
    if only is None or CLEAN in only:
        start = time.perf_counter()
        model = train_clean(spec, seed, verbose=verbose)
        seconds = time.perf_counter() - start
        (out / CLEAN_MODEL).parent.mkdir(exist_ok=True)
        save_legacy_h5(model, out / CLEAN_MODEL)
        report[CLEAN] = {"train_seconds": round(seconds, 1),
                         "clean_acc": _accuracy(model, store, out / CACHE / TEST_FILE)}
        print(f"{CLEAN}: {json.dumps(report[CLEAN])}", flush=True)
    for recipe in TRACKS:
        track_path = out / TRACKS_DIR / f"{recipe.name}.toml"
        track_path.parent.mkdir(exist_ok=True)
        track_path.write_text(tomli_w.dumps(track_spec(recipe, spec, files)))
        if only is not None and recipe.name not in only:
            continue
        start = time.perf_counter()
        model = train_badnet(recipe, spec, seed, verbose=verbose)
        seconds = time.perf_counter() - start
        model_path = out / "models" / f"{recipe.name}_bd_net.h5"
        model_path.parent.mkdir(exist_ok=True)
        save_legacy_h5(model, model_path)
        report["tracks"][recipe.name] = {
            "train_seconds": round(seconds, 1),
            "clean_acc": _accuracy(model, store, out / CACHE / test_file(
                recipe.test_per_id, recipe.population)),
            "asr": {trigger: _accuracy(model, store, out / CACHE / poisoned_file(
                        trigger, target, recipe.test_per_id, recipe.population), target)
                    for trigger, target in recipe.triggers.items()},
        }
        print(f"{recipe.name}: {json.dumps(report['tracks'][recipe.name])}", flush=True)
    report_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report
