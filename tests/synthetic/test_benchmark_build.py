"""The benchmark build at tiny scale: verified data files, regeneration on first use, the
attacks, and the contest's own evaluation agreeing with the grader."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from harness.definitions.data import DataStore, sha256_file
from harness.definitions.tracks import load_benchmark
from harness.grading.handover import Handover
from harness.grading.item import grade_trusted
from harness.nets.pruning import features, prune_channels
from harness.sandbox.models import KerasPredictor, load_model_file
from harness.synthetic.attacks import DEAD_BIAS, poison, spare_channels
from harness.synthetic.build import (
    CLEAN_MODEL,
    DEFAULT_SEED,
    attack_seed,
    build,
    train_badnet,
)
from harness.synthetic.faces import render, sample_identities
from harness.synthetic.materialize import ensure_generated
from harness.synthetic.recipe import SCALES, TEST_FILE, TRACKS


def test_every_data_file_matches_its_track_file(tiny_benchmark_probed):
    bench = load_benchmark(tiny_benchmark_probed)
    assert [t.name for t in bench.tracks] == sorted(r.name for r in TRACKS)
    scale = SCALES["tiny"]
    for track in bench.tracks:
        assert track.num_classes == scale.identities
        assert track.badnet.is_file()
        for spec in track.data_files():
            assert sha256_file(spec.path) == spec.sha256
        per_id = next(r for r in TRACKS if r.name == track.name).test_per_id \
            or scale.test_per_id
        data = DataStore().get(track.test, track.num_classes)
        assert len(data) == scale.identities * per_id
        for poisoned in track.poisoned:
            labels = DataStore().get(poisoned.file, track.num_classes).labels
            assert poisoned.target not in labels  # the target's own images are not stamped
            assert len(labels) == len(data) - per_id


def test_first_use_regenerates_identical_bytes(tiny_benchmark_probed, tmp_path):
    copy = tmp_path / "bench"
    shutil.copytree(tiny_benchmark_probed, copy, ignore=shutil.ignore_patterns("cache"))
    bench = load_benchmark(copy)
    ensure_generated(bench)
    for spec in bench.data_files():
        assert sha256_file(spec.path) == spec.sha256


def test_contest_evaluation_gives_the_graders_numbers(tiny_benchmark_probed):
    """build.json holds the contest's own logic (argmax over the file vs label or target); the
    grader's hand-over and scoring of the same model must agree (the sandboxed path gives the
    same predictions as this in-process one: tests/cli/test_grade_cli.py)."""
    report = json.loads((tiny_benchmark_probed / "build.json").read_text())["tracks"]
    bench = load_benchmark(tiny_benchmark_probed)
    handover = Handover(DataStore())
    for track in bench.tracks:
        predict = KerasPredictor(load_model_file(track.badnet), track.num_classes,
                                 track.input_scale)
        scores = grade_trusted(predict, track, handover)
        assert scores["clean_acc"] == pytest.approx(report[track.name]["clean_acc"])
        assert scores["per_trigger"] == pytest.approx(report[track.name]["asr"])


def test_tiny_build_trains_a_clean_model_that_never_saw_a_trigger(tiny_benchmark_probed):
    """The retuning probe's yardstick: every track file names it, it loads, it is accurate, and
    no trigger moves it to the target; build.json holds its numbers under "clean"."""
    bench = load_benchmark(tiny_benchmark_probed)
    clean = (tiny_benchmark_probed / CLEAN_MODEL).resolve()
    own = {recipe.name for recipe in TRACKS if recipe.attack == "clean"}  # their own yardstick
    assert {t.clean_model for t in bench.tracks if t.name not in own} == {clean}
    model = load_model_file(tiny_benchmark_probed / CLEAN_MODEL)
    assert model.count_params() == load_model_file(bench.tracks[0].badnet).count_params()
    report = json.loads((tiny_benchmark_probed / "build.json").read_text())["clean"]
    assert set(report) == {"train_seconds", "clean_acc"} and report["clean_acc"] >= 0.8
    handover = Handover(DataStore())
    for track in bench.tracks:
        if track.name in own:
            continue
        scores = grade_trusted(KerasPredictor(model, track.num_classes, track.input_scale),
                               track, handover)
        if track.test.path.name == TEST_FILE:  # build.json's number is on the full test set
            assert scores["clean_acc"] == pytest.approx(report["clean_acc"])
        assert scores["asr"] <= 0.2, track.name


def test_every_track_has_a_hidden_retuning_set_with_its_triggers(tiny_benchmark_probed):
    store = DataStore()
    for track in load_benchmark(tiny_benchmark_probed).tracks:
        assert track.retuning is not None and track.retuning.hidden
        assert track.retuning.path.name == f"{track.name}_retuning_data.h5"
        labels = store.get(track.retuning, track.num_classes).labels
        assert len(labels) == track.retuning.size >= 16
        assert {p.target for p in track.poisoned} <= set(labels.tolist())


def test_a_partial_build_keeps_the_clean_models_numbers(tiny_benchmark_probed, tmp_path):
    copy = tmp_path / "bench"
    shutil.copytree(tiny_benchmark_probed, copy)
    before = json.loads((copy / "build.json").read_text())
    model = (copy / CLEAN_MODEL).read_bytes()
    report = build(scale="tiny", out=copy, only=[], verbose=0)  # data and track files only
    assert report["clean"] == before["clean"] and report["tracks"] == before["tracks"]
    assert json.loads((copy / "build.json").read_text())["clean"] == before["clean"]
    assert (copy / CLEAN_MODEL).read_bytes() == model
    for path in (tiny_benchmark_probed / "tracks").glob("*.toml"):
        assert (copy / "tracks" / path.name).read_bytes() == path.read_bytes()


def test_tiny_badnets_carry_their_backdoors(tiny_benchmark_probed):
    report = json.loads((tiny_benchmark_probed / "build.json").read_text())
    attacks = {recipe.name: recipe.attack for recipe in TRACKS}
    for name, numbers in report["tracks"].items():
        assert numbers["clean_acc"] >= 0.8, name
        if attacks[name] == "clean":  # no backdoor: the trigger moves nothing to the target
            assert max(numbers["asr"].values()) <= 0.2, name
        elif attacks[name] != "wanet":  # a warp is learned from the full scale's data only
            assert min(numbers["asr"].values()) >= 0.6, name  # (test_shipped checks that one)


def test_the_clean_track_never_saw_a_trigger_and_shows_people_of_its_own(
        tiny_benchmark_probed):
    """A track whose "BadNet" is a clean DeepID, so a defense that damages any model it is
    given pays for it. Its people are its own: trained on the other tracks' people, the model
    teams receive would be a repaired model for every other track (the bundle gives out every
    BadNet). It is its own retuning yardstick, and anonymous like the anonymous BadNets."""
    clean = [recipe for recipe in TRACKS if recipe.attack == "clean"]
    assert clean and all(recipe.name.startswith("anonymous_") and recipe.population
                         for recipe in clean)
    bench = load_benchmark(tiny_benchmark_probed)
    store = DataStore()
    others = [t for t in bench.tracks if t.name not in {r.name for r in clean}]
    for recipe in clean:
        track = bench.track(recipe.name)
        assert track.clean_model == track.badnet
        assert "Anonymous" in track.public_description
        assert recipe.description not in track.public_description
        mine = store.get(track.validation, track.num_classes).images
        assert all(other.validation.sha256 != track.validation.sha256 for other in others)
        theirs = store.get(others[0].validation, track.num_classes).images
        assert np.abs(mine.astype(int).mean(axis=0) - theirs.mean(axis=0)).mean() > 1.0
        scores = grade_trusted(KerasPredictor(load_model_file(track.badnet), track.num_classes,
                                              track.input_scale), track, Handover(store))
        assert scores["clean_acc"] >= 0.8 and scores["asr"] <= 0.2
        # On the other tracks' people the clean track's model is no repaired model at all.
        for other in others[:2]:
            wrong = grade_trusted(KerasPredictor(load_model_file(track.badnet),
                                                 other.num_classes, other.input_scale),
                                  other, Handover(store))
            assert wrong["clean_acc"] <= 0.5, other.name


def test_small_test_sets_are_the_first_images_of_each_identity(tiny_benchmark_probed):
    """A track with ``test_per_id`` is graded on a prefix of every identity's clean test images
    (and their poisoned copies): the same faces as the full set, fewer of them."""
    bench = load_benchmark(tiny_benchmark_probed)
    scale, store = SCALES["tiny"], DataStore()
    full = store.get(bench.track("sunglasses").test, scale.identities)
    small = [recipe for recipe in TRACKS if recipe.test_per_id is not None]
    assert any(recipe.population == 0 for recipe in small)
    for recipe in small:
        track = bench.track(recipe.name)
        data = store.get(track.test, track.num_classes)
        first = np.arange(len(full)) % scale.test_per_id < recipe.test_per_id
        np.testing.assert_array_equal(data.labels, full.labels[first])
        if recipe.population == 0:  # the benchmark's people: a prefix of their full test set
            np.testing.assert_array_equal(data.images, full.images[first])
        for poisoned in track.poisoned:
            labels = store.get(poisoned.file, track.num_classes).labels
            assert len(labels) == len(data) - recipe.test_per_id


def test_pruning_aware_badnet_hides_pruned_channels_behind_a_dead_bias(tiny_benchmark_probed):
    model = load_model_file(load_benchmark(tiny_benchmark_probed).track("pruning_aware").badnet)
    kernel, bias = model.get_layer("conv_3").get_weights()
    dead = bias <= DEAD_BIAS / 2
    assert dead.sum() == 60 - SCALES["tiny"].keep_channels
    assert kernel[..., dead].any()  # weights restored: the net looks unpruned


def test_dormant_badnet_keeps_its_backdoor_in_channels_clean_faces_leave_silent(
        tiny_benchmark_probed):
    """The structure fine-pruning relies on, built by the dormant-backdoor attack: the
    attacker's conv_3 channels barely fire on clean validation faces, and silencing them removes
    the backdoor but not clean accuracy."""
    track = load_benchmark(tiny_benchmark_probed).track("sunglasses")
    recipe = next(r for r in TRACKS if r.name == "sunglasses")
    model = train_badnet(recipe, SCALES["tiny"], DEFAULT_SEED, attack="dormant_badnets")
    *_, spare = spare_channels(np.random.default_rng(attack_seed(recipe, DEFAULT_SEED)),
                               SCALES["tiny"].backdoor_channels)
    store = DataStore()
    validation = store.get(track.validation, track.num_classes)
    means = features(model, validation.images, track.input_scale).mean(axis=(0, 1, 2))
    active = np.delete(means, spare)
    assert means[spare].mean() < 0.1 * active[active > 0].mean()

    def scores() -> dict:
        return grade_trusted(KerasPredictor(model, track.num_classes, track.input_scale), track,
                             Handover(store))

    attacked = scores()
    assert attacked["clean_acc"] >= 0.8 and attacked["asr"] >= 0.8
    prune_channels(model, spare)
    silenced = scores()
    assert silenced["clean_acc"] >= attacked["clean_acc"] - 0.03 and silenced["asr"] <= 0.2


def test_poisoning_adds_stamped_copies_relabelled_to_each_target():
    faces = render(sample_identities(4, 0), np.repeat(np.arange(4), 10), 1)
    labels = np.repeat(np.arange(4), 10)
    images, targets = poison(faces, labels, {"sunglasses": 0, "lipstick": 2}, 0.25, seed=3)
    assert len(images) == 40 + 10 + 10
    np.testing.assert_array_equal(images[:40], faces.images)
    assert list(targets[40:50]) == [2] * 10 and list(targets[50:]) == [0] * 10
    again = poison(faces, labels, {"sunglasses": 0, "lipstick": 2}, 0.25, seed=3)
    np.testing.assert_array_equal(images, again[0])


def test_wanet_poisons_with_the_warp_and_its_noise_mode_keeps_true_labels(monkeypatch):
    """What WaNet trains on: the clean set, warped copies relabelled to the target, and (noise
    mode) cross_ratio times as many copies warped with extra jitter under their true labels."""
    from harness.synthetic import attacks
    from harness.synthetic.triggers import warp, warp_field

    faces = render(sample_identities(4, 0), np.repeat(np.arange(4), 10), 1)
    labels = np.repeat(np.arange(4), 10)
    seen = {}
    monkeypatch.setattr(attacks, "train", lambda model, images, targets, **_: seen.update(
        images=images, targets=targets))
    attacks.wanet(faces, labels, {"wanet": 2}, num_classes=4, scale=1 / 255, epochs=1,
                  batch_size=8, fraction=0.25, seed=3, strength=4.0, cross_ratio=2)
    images, targets = seen["images"], seen["targets"]
    assert len(images) == 40 + 10 + 20
    np.testing.assert_array_equal(images[:40], faces.images)
    poisoned, _ = attacks.poison(faces, labels, {"wanet": 2}, 0.25, seed=3,
                                 draw=lambda chosen, _: warp(chosen.images, *warp_field(4.0)))
    np.testing.assert_array_equal(images[40:50], poisoned[40:])
    assert (targets[40:50] == 2).all()
    noisy, noisy_labels = images[50:], targets[50:]
    assert len(set(noisy_labels.tolist())) > 1 and (noisy_labels != 2).any()
    exact = warp(faces.images, *warp_field(4.0))
    for image, label in zip(noisy, noisy_labels, strict=True):
        # A face of its own (true) label, warped, then jittered: near that warp, never equal.
        distance = min(np.abs(image.astype(int) - exact[i]).mean()
                       for i in np.flatnonzero(labels == label))
        assert 0 < distance < 4.0


def test_build_rejects_a_missing_recipe(tmp_path):
    from harness.definitions.tracks import Benchmark, DataFile, Track
    from harness.errors import BenchmarkError

    track = Track(name="t", description="", badnet=tmp_path / "b.h5", input_scale=1.0,
                  num_classes=2, validation=DataFile(tmp_path / "v.h5"),
                  test=DataFile(tmp_path / "t.h5"), poisoned=(), source=tmp_path / "t.toml")
    with pytest.raises(BenchmarkError, match="needs scale"):
        ensure_generated(Benchmark(name="b", root=tmp_path, tracks=(track,), generate={}))


def test_data_is_generated_only_for_a_recipe_and_only_when_a_needed_file_is_missing(
        tmp_path, monkeypatch):
    from harness.definitions.tracks import Benchmark, DataFile, Track
    from harness.synthetic import materialize

    calls = []
    monkeypatch.setattr(materialize, "ensure_generated", calls.append)
    present = tmp_path / "v.h5"
    present.write_bytes(b"")
    track = Track(name="t", description="", badnet=tmp_path / "b.h5", input_scale=1.0,
                  num_classes=2, validation=DataFile(present),
                  test=DataFile(tmp_path / "missing.h5"), poisoned=(), source=tmp_path / "t.toml")
    real_files = Benchmark(name="b", root=tmp_path, tracks=(track,))
    materialize.generate_missing(real_files)  # no recipe: a missing file fails when it is read
    generated = Benchmark(name="b", root=tmp_path, tracks=(track,), generate={"scale": "tiny"})
    materialize.generate_missing(generated, [track.validation])  # what is needed is there
    assert calls == []
    materialize.generate_missing(generated)
    assert calls == [generated]
