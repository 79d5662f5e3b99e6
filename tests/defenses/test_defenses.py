"""Reference defenses on the tiny benchmark: what each promises structurally, and the reference
build command producing gradable submission folders."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from harness.defenses.base import Context
from harness.defenses.fineprune import fine_pruning, fine_pruning_g
from harness.defenses.prune import DROPS, pruned_copy, sweep
from harness.defenses.reference import load_badnet
from harness.definitions.data import DataStore
from harness.definitions.tracks import load_benchmark
from harness.nets.pruning import ChannelMask, Hold
from harness.sandbox.models import load_model_file
from tests.conftest import run_harness


@pytest.fixture(scope="module")
def ctx(tiny_benchmark: Path) -> Context:
    track = load_benchmark(tiny_benchmark).track("sunglasses")
    validation = DataStore().get(track.validation, track.num_classes)
    return Context(badnet=load_badnet(track), images=validation.images, labels=validation.labels,
                   scale=track.input_scale, num_classes=track.num_classes, seed=1)


def accuracy(model, ctx: Context) -> float:
    return float(np.mean(model.predict(ctx.x(), verbose=0).argmax(axis=1) == ctx.labels))


def test_split_is_stratified_disjoint_and_deterministic(ctx):
    fit, holdout = ctx.split()
    assert set(fit).isdisjoint(holdout) and len(fit) + len(holdout) == len(ctx.labels)
    assert set(ctx.labels[holdout]) == set(ctx.labels)  # every identity held out
    again = ctx.split()
    assert np.array_equal(fit, again[0]) and np.array_equal(holdout, again[1])


def test_pruning_sweep_matches_really_pruned_networks(ctx):
    result = sweep(ctx.badnet, ctx)
    assert len(result.accuracy) == 61 and sorted(result.order) == list(range(60))
    for depth in (0, 30, 55):
        assert accuracy(pruned_copy(ctx, result.order[:depth]), ctx) == pytest.approx(
            result.accuracy[depth])
    depths = [result.depth(drop) for drop in DROPS]
    assert depths == sorted(depths)
    assert result.accuracy[depths[1]] <= result.accuracy[0] - 0.04


def test_fine_pruning_keeps_pruned_channels_dead_and_wraps_into_a_safe_g_net(ctx, tmp_path):
    repaired = fine_pruning(ctx)
    dead = np.array(repaired.notes["prune_order"][: repaired.notes["pruned_channels"]])
    kernel, bias = repaired.model.get_layer("conv_3").get_weights()
    assert len(dead) > 0 and not kernel[..., dead].any() and not bias[dead].any()
    assert 1 <= repaired.notes["best_epoch"] <= repaired.notes["epochs"]

    g = fine_pruning_g(ctx, repaired.model)
    path = tmp_path / f"g{g.suffix}"
    g.model.save(path)
    loaded = load_model_file(path)  # safe mode: refuses Lambda layers
    assert loaded.output.shape[-1] == ctx.num_classes + 1
    x = ctx.x()
    answers = loaded.predict(x, verbose=0).argmax(axis=1)
    bad = ctx.badnet.predict(x, verbose=0).argmax(axis=1)
    good = repaired.model.predict(x, verbose=0).argmax(axis=1)
    np.testing.assert_array_equal(answers, np.where(bad == good, good, ctx.num_classes))


def test_reference_build_writes_gradable_folders(tiny_benchmark, tmp_path):
    out = tmp_path / "submissions"
    built = run_harness("reference", "build", "--benchmark", tiny_benchmark, "--out", out,
                        "--track", "sunglasses", "--defense", "no-defense",
                        "--defense", "pruning", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    notes = json.loads((out / "pruning" / "build.json").read_text())["sunglasses"]
    assert set(notes["depths"]) == {"2pt", "4pt", "10pt"} and notes["build_seconds"] >= 0
    graded = run_harness("grade", out, "--benchmark", tiny_benchmark, "--out", tmp_path,
                         "-k", "sunglasses", cwd=tmp_path)
    assert graded.returncode == 0, graded.stdout
    records = json.loads((tmp_path / "results.json").read_text())["results"]
    assert {(r["submission"], r["reference"]) for r in records} == {
        ("no-defense", True), ("pruning", True)}


def test_hold_keeps_chosen_entries_while_the_rest_trains():
    """Hold (and ChannelMask built on it) undoes every update to the held entries, Adam's
    momentum included, and leaves the others to gradient descent."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")])
    kernel, bias = (np.array(w) for w in model.get_layer("dense").get_weights())
    held = np.zeros((4, 3), dtype=bool)
    held[:, 0] = True
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    x, y = np.random.default_rng(0).normal(size=(64, 4)), np.ones((64, 3))
    model.fit(x, y, batch_size=8, epochs=2, verbose=0,
              callbacks=[Hold("dense", [held, None]), ChannelMask([2], layer="dense", bias=-5.0)])
    new_kernel, new_bias = model.get_layer("dense").get_weights()
    np.testing.assert_array_equal(new_kernel[:, 0], kernel[:, 0])
    assert not new_kernel[:, 2].any() and new_bias[2] == -5.0
    assert (new_kernel[:, 1] != kernel[:, 1]).all() and new_bias[0] != bias[0]
