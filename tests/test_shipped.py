"""What a fresh clone ships: the default benchmark's track files and BadNets, the organizers'
template for the real files, and the reference submissions, all consistent with each other.
(Grading the full default benchmark is the README's first command, not a unit test.)"""

from __future__ import annotations

import pytest
from conftest import REPO

from harness.models import load_model_file
from harness.reference import DEFENSES
from harness.submissions import MANIFEST, load_submission
from harness.tracks import load_benchmark

DEFAULT = load_benchmark(REPO / "data")


def test_default_benchmark_has_the_five_contest_tracks_with_pinned_data():
    assert [t.name for t in DEFAULT.tracks] == [
        "anonymous_1", "anonymous_2", "multi_trigger_multi_target", "pruning_aware", "sunglasses"]
    assert DEFAULT.generate == {"scale": "full", "seed": 2020, "cache": "cache"}
    for track in DEFAULT.tracks:
        assert track.num_classes == 1283 and track.input_scale == pytest.approx(1 / 255)
        assert all(spec.sha256 for spec in track.data_files())
        assert track.validation.size == 11547 and track.test.size == 12830


@pytest.mark.parametrize("track", DEFAULT.tracks, ids=lambda t: t.name)
def test_shipped_badnets_are_legacy_h5_deepids(track):
    model = load_model_file(track.badnet)
    assert model.count_params() == 601_643
    assert [layer.name for layer in model.layers][1:4] == ["conv_1", "pool_1", "conv_2"]


def test_real_file_template_names_the_official_files():
    template = load_benchmark(REPO / "benchmarks" / "csaw-hackml-2020")
    assert {t.name for t in template.tracks} >= {"sunglasses", "anonymous_1", "lab3"}
    assert template.track("lab3").input_scale == 1.0
    assert template.track("sunglasses").poisoned[0].labels == "target"


@pytest.mark.parametrize("spec", DEFENSES, ids=lambda d: d.name)
def test_every_reference_defense_answers_every_track(spec):
    submission = load_submission(REPO / "submissions" / spec.name / MANIFEST)
    assert submission.reference and submission.method == spec.method
    for track in DEFAULT.tracks:
        assert submission.entry(track.name).path.is_file()
