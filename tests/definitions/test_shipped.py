"""What a fresh clone ships: the default benchmark's track files and BadNets, the organizers'
template for the real files, and the reference submissions, all consistent with each other.
(Grading the full default benchmark is the README's first command, not a unit test.)"""

from __future__ import annotations

import json

import pytest

from harness.defenses.reference import DEFENSES
from harness.definitions.data import sha256_file, write_contest_file
from harness.definitions.submissions import MANIFEST, load_submission
from harness.definitions.tracks import load_benchmark
from harness.sandbox.models import load_model_file
from harness.synthetic.build import CLEAN_MODEL
from harness.synthetic.recipe import SCALES, TRACKS, retuning_set
from tests.conftest import REPO

DEFAULT = load_benchmark(REPO / "data")


def test_default_benchmark_has_the_contest_tracks_a_clean_one_and_a_warp_with_pinned_data():
    assert [t.name for t in DEFAULT.tracks] == [
        "anonymous_1", "anonymous_2", "anonymous_3", "multi_trigger_multi_target",
        "pruning_aware", "sunglasses", "wanet"]
    assert DEFAULT.generate == {"scale": "full", "seed": 2020, "cache": "cache"}
    half = {recipe.name for recipe in TRACKS if recipe.test_per_id == 5}
    assert half == {"anonymous_3", "wanet"}
    for track in DEFAULT.tracks:
        assert track.num_classes == 1283 and track.input_scale == pytest.approx(1 / 255)
        assert all(spec.sha256 for spec in track.data_files())
        assert track.validation.size == 11547
        assert track.test.size == (6415 if track.name in half else 12830)
    # anonymous_3 shows people of its own: a validation set no other track has.
    validations = {t.name: t.validation.sha256 for t in DEFAULT.tracks}
    assert list(validations.values()).count(validations["anonymous_3"]) == 1
    assert len(set(validations.values())) == 2


def test_shipped_build_numbers_meet_the_issue():
    """The committed BadNets as the benchmark build measured them: the WaNet BadNet within
    about a point of the clean model's accuracy with ASR near 1, the clean track's "BadNet" at
    no ASR at all."""
    report = json.loads((REPO / "data" / "build.json").read_text())
    wanet, clean = report["tracks"]["wanet"], report["tracks"]["anonymous_3"]
    assert wanet["clean_acc"] >= report["clean"]["clean_acc"] - 0.015
    assert wanet["asr"]["wanet"] >= 0.95
    assert clean["clean_acc"] >= 0.95 and clean["asr"]["eyebrows"] <= 0.01


@pytest.mark.parametrize("track", DEFAULT.tracks, ids=lambda t: t.name)
def test_shipped_badnets_are_legacy_h5_deepids(track):
    model = load_model_file(track.badnet)
    assert model.count_params() == 601_643
    assert [layer.name for layer in model.layers][1:4] == ["conv_1", "pool_1", "conv_2"]


def test_shipped_tracks_name_the_clean_model_and_a_hidden_retuning_set():
    """The retuning probe's inputs: one clean DeepID (the yardstick, built by the benchmark
    build) for every track, and each track's own retuning set, hidden."""
    clean = {recipe.name for recipe in TRACKS if recipe.attack == "clean"}
    assert {t.clean_model for t in DEFAULT.tracks if t.name not in clean} \
        == {(REPO / "data" / CLEAN_MODEL).resolve()}
    assert all(DEFAULT.track(name).clean_model == DEFAULT.track(name).badnet for name in clean)
    model = load_model_file(REPO / "data" / CLEAN_MODEL)
    assert model.count_params() == 601_643 and model.output_shape == (None, 1283)
    badnets = {sha256_file(t.badnet) for t in DEFAULT.tracks}
    assert sha256_file(REPO / "data" / CLEAN_MODEL) not in badnets
    assert json.loads((REPO / "data" / "build.json").read_text())["clean"]["clean_acc"] >= 0.95
    for track in DEFAULT.tracks:
        assert track.retuning.hidden and track.retuning.sha256
        assert track.retuning.path == REPO / "data" / "cache" / f"{track.name}_retuning_data.h5"


@pytest.mark.parametrize("recipe", TRACKS, ids=lambda r: r.name)
def test_shipped_retuning_pins_match_the_regenerated_files(recipe, tmp_path):
    """The sha256 and size the track files pin are what the recipe writes on first use (only the
    retuning sets are regenerated here: a few hundred images, not the 100,000 of a full run)."""
    track = DEFAULT.track(recipe.name)
    images, labels = retuning_set(SCALES[DEFAULT.generate["scale"]], DEFAULT.generate["seed"],
                                  recipe)
    digest = write_contest_file(tmp_path / track.retuning.path.name, images, labels)
    assert (digest, len(labels)) == (track.retuning.sha256, track.retuning.size)


def test_real_file_template_names_the_official_files():
    template = load_benchmark(REPO / "benchmarks" / "csaw-hackml-2020")
    assert {t.name for t in template.tracks} >= {"sunglasses", "anonymous_1", "lab3"}
    assert template.track("lab3").input_scale == 1.0
    assert template.track("sunglasses").poisoned[0].labels == "target"
    # The 2020 contest had no retuning sets nor clean model: the keys are there commented out.
    assert all(t.retuning is None and t.clean_model is None for t in template.tracks)
    assert all("# [retuning]" in t.source.read_text() for t in template.tracks)


@pytest.mark.parametrize("spec", DEFENSES, ids=lambda d: d.name)
def test_every_reference_defense_answers_every_track(spec):
    submission = load_submission(REPO / "submissions" / spec.name / MANIFEST)
    assert submission.reference and submission.method == spec.method
    for track in DEFAULT.tracks:
        assert submission.entry(track.name).path.is_file()
