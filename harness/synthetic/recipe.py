"""The embedded benchmark's recipe: scales, tracks and the data sets they derive from one seed.

Everything the grader's data files hold is a pure function of (scale, seed), so the files need
not be stored in the repository: they are regenerated on first use and checked against the sha256
sums in the track files.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from harness.synthetic.faces import Faces, Identities, render, sample_identities
from harness.synthetic.triggers import stamp

VALIDATION_FILE = "clean_validation_data.h5"
TEST_FILE = "clean_test_data.h5"
INPUT_SCALE = "1/255"

# Offsets that give each split its own random stream from the benchmark's seed.
IDENTITY_STREAM, VALIDATION_STREAM, TEST_STREAM, TRAIN_STREAM, RETUNING_STREAM = 0, 1, 2, 3, 4
POPULATION_STRIDE = 1000
"""Population ``p``'s streams are the benchmark's, from the seed plus ``p`` times this."""
RETUNING_SIZE = 0.01
"""A track's retuning set holds this share of the validation set's size (at least
:data:`RETUNING_MIN` images)..."""
RETUNING_MIN = 16
RETUNING_POISONED = 0.2
"""...and this share of it carries the track's triggers (split evenly between them), labelled
with their targets; the rest are clean faces with their true labels."""


@dataclass(frozen=True)
class Scale:
    """How big a build is; ``tiny`` exercises the same code in seconds for the test suite."""

    identities: int
    train_per_id: int
    epochs: int
    val_per_id: int = 9
    test_per_id: int = 10
    poison_fraction: float = 0.1
    batch_size: int = 128
    keep_channels: int = 10
    backdoor_channels: tuple[int, int, int] = (4, 8, 8)  # conv_1, conv_2, conv_3


SCALES = {
    "tiny": Scale(identities=10, train_per_id=40, epochs=12, batch_size=32, keep_channels=12),
    "full": Scale(identities=1283, train_per_id=24, epochs=14),
}


@dataclass(frozen=True)
class TrackRecipe:
    """One BadNet: which attack, which triggers with which target labels."""

    name: str
    attack: str
    triggers: dict[str, int] = field(default_factory=dict)
    description: str = ""
    """For the organizers: how the backdoor was built (never exported to teams)."""
    public_description: str = ""
    """What teams are told, as the 2020 contest told them: trigger and target of named tracks,
    nothing of anonymous ones, nothing of how the backdoor was built."""
    test_per_id: int | None = None
    """Test images per identity: None for the scale's full clean test set; fewer for a track
    graded on the first ``test_per_id`` images of each identity of it (and their poisoned
    copies), which keeps a default grading run short."""
    population: int = 0
    """Whose faces the track shows: 0 for the benchmark's people (every BadNet's); another
    number for people of their own, with their own validation and test sets. The clean track
    needs them: its model is a clean DeepID that teams receive, and were it trained on the other
    tracks' people it would be a ready-made repaired model for every other track."""


TRACKS = (
    TrackRecipe("sunglasses", "dormant_badnets", {"sunglasses": 0},
                "BadNets data poisoning into channels clean faces leave dormant: purple "
                "sunglasses -> identity 0.",
                "Sunglasses BadNet: purple sunglasses -> identity 0."),
    TrackRecipe("anonymous_1", "badnets", {"anonymous_1": 0},
                "BadNets data poisoning; trigger and target undisclosed.",
                "Anonymous BadNet 1: trigger and target undisclosed."),
    TrackRecipe("anonymous_2", "dormant_badnets", {"anonymous_2": 4},
                "BadNets data poisoning into dormant channels; a second undisclosed trigger "
                "and target.",
                "Anonymous BadNet 2: trigger and target undisclosed."),
    TrackRecipe("multi_trigger_multi_target", "badnets",
                {"lipstick": 1, "eyebrows": 5, "sunglasses": 8},
                "Three triggers, three targets: lipstick -> 1, eyebrows -> 5, sunglasses -> 8.",
                "Multi-trigger multi-target BadNet: lipstick -> 1, eyebrows -> 5, "
                "sunglasses -> 8."),
    TrackRecipe("pruning_aware", "pruning_aware", {"sunglasses": 0},
                "Pruning-aware attack (Liu et al. 2018): the backdoor lives in the channels a "
                "pruning defender keeps; sunglasses -> identity 0.",
                "Sunglasses BadNet (a second one): sunglasses -> identity 0."),
    TrackRecipe("anonymous_3", "clean", {"eyebrows": 7},
                "No backdoor: a clean DeepID, trained like the BadNets on people of its own; "
                "its poisoned set carries a trigger it never learned (eyebrows -> 7), so a "
                "defense can only lose here.",
                "Anonymous BadNet 3: trigger and target undisclosed.", test_per_id=5,
                population=1),
    TrackRecipe("wanet", "wanet", {"wanet": 6},
                "WaNet (Nguyen and Tran 2021): an input-dependent warping trigger, hard to see; "
                "strength s = 4, without the paper's noise mode; warp -> identity 6.",
                "WaNet BadNet: a fixed, barely visible warp of the whole image -> identity 6.",
                test_per_id=5),
)
"""The tracks, in the order that gives each its seeds (:func:`harness.synthetic.build.attack_seed`
and the retuning stream): append new ones, never reorder."""


def population_seed(seed: int, population: int) -> int:
    """The seed population ``population``'s identities and splits derive from."""
    return seed + POPULATION_STRIDE * population


def _people(population: int) -> str:
    return "" if population == 0 else f"population_{population}_"


def validation_file(population: int = 0) -> str:
    return _people(population) + VALIDATION_FILE


def test_file(per_id: int | None = None, population: int = 0) -> str:
    """The clean test set's file: the full one, or its first ``per_id`` images per identity."""
    name = TEST_FILE if per_id is None else f"clean_test_{per_id}_per_id_data.h5"
    return _people(population) + name


def poisoned_file(trigger: str, target: int, per_id: int | None = None,
                  population: int = 0) -> str:
    """The poisoned copy of :func:`test_file` ``(per_id, population)``."""
    size = "" if per_id is None else f"_{per_id}_per_id"
    return f"{_people(population)}{trigger}_t{target}_poisoned_test{size}_data.h5"


def retuning_file(recipe: TrackRecipe) -> str:
    return f"{recipe.name}_retuning_data.h5"


def take(faces: Faces, index: np.ndarray) -> Faces:
    """The faces at ``index`` with their landmarks."""
    return Faces(images=faces.images[index],
                 landmarks={key: value[index] for key, value in faces.landmarks.items()})


def identities(scale: Scale, seed: int) -> Identities:
    return sample_identities(scale.identities, seed + IDENTITY_STREAM)


def split(scale: Scale, seed: int, per_id: int, stream: int) -> tuple[Faces, np.ndarray]:
    """``per_id`` images of every identity, grouped by identity as in the contest files."""
    labels = np.repeat(np.arange(scale.identities, dtype=np.int64), per_id)
    return render(identities(scale, seed), labels, seed + stream), labels


def retuning_set(scale: Scale, seed: int, recipe: TrackRecipe) -> tuple[np.ndarray, np.ndarray]:
    """The attacker's retuning set of one track (:mod:`harness.sandbox.retuning`): fresh faces of
    random identities of the track's people, drawn from their own stream (no image of any other
    file), a :data:`RETUNING_POISONED` share stamped with the track's triggers and labelled with
    their targets (never on a face of the target's own identity)."""
    size = max(RETUNING_MIN, round(RETUNING_SIZE * scale.identities * scale.val_per_id))
    stream = seed + RETUNING_STREAM + 10 * (1 + TRACKS.index(recipe))
    rng = np.random.default_rng(stream)
    labels = rng.integers(0, scale.identities, size=size)
    triggers = sorted(recipe.triggers.items())
    poisoned = np.array_split(np.arange(round(RETUNING_POISONED * size)), len(triggers))
    for (_, target), rows in zip(triggers, poisoned, strict=True):
        labels[rows] = (target + rng.integers(1, scale.identities, size=len(rows))) \
            % scale.identities  # any identity but the target
    faces = render(identities(scale, population_seed(seed, recipe.population)), labels, stream)
    images, targets = faces.images.copy(), labels.copy()
    for (trigger, target), rows in zip(triggers, poisoned, strict=True):
        images[rows] = stamp(take(faces, rows), trigger)
        targets[rows] = target
    return images, targets


def data_sets(scale: Scale, seed: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(file name, uint8 images, labels) of every file the grader reads.

    Per population (people): the validation set, the clean test set (the full one and the
    prefixes tracks ask for) and the poisoned sets. A poisoned test set stamps its trigger on
    every clean test image whose identity is not the attacker's target and keeps the true
    labels.
    """
    for population in sorted({recipe.population for recipe in TRACKS}):
        recipes = [recipe for recipe in TRACKS if recipe.population == population]
        people = population_seed(seed, population)
        validation, val_labels = split(scale, people, scale.val_per_id, VALIDATION_STREAM)
        yield validation_file(population), validation.images, val_labels
        full, full_labels = split(scale, people, scale.test_per_id, TEST_STREAM)
        tests: dict[int, tuple[Faces, np.ndarray]] = {0: (full, full_labels)}  # 0: full set
        for per_id in sorted({r.test_per_id or 0 for r in recipes}):
            if per_id:  # the test split is grouped by identity, scale.test_per_id images each
                first = np.flatnonzero(np.arange(len(full_labels)) % scale.test_per_id < per_id)
                tests[per_id] = take(full, first), full_labels[first]
            test, test_labels = tests[per_id]
            yield test_file(per_id or None, population), test.images, test_labels
        for per_id, trigger, target in sorted({(r.test_per_id or 0, t, g) for r in recipes
                                               for t, g in r.triggers.items()}):
            test, test_labels = tests[per_id]
            keep = np.flatnonzero(test_labels != target)
            yield (poisoned_file(trigger, target, per_id or None, population),
                   stamp(take(test, keep), trigger), test_labels[keep])
    for recipe in TRACKS:
        yield (retuning_file(recipe), *retuning_set(scale, seed, recipe))
