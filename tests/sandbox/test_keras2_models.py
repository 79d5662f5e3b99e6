"""The project's legacy ``.h5`` models load in Keras 2 as well as in Keras 3.

A 2020-style script calls ``keras.models.load_model`` on the BadNet it is given, in the
benchmark's ``keras2`` environment (TensorFlow 2.15); the files Keras 3 saves carry a
configuration Keras 2 cannot read, so :func:`harness.nets.deepid.save_legacy_h5` rewrites it into
Keras 2's form (:mod:`harness.nets.legacy`). Here: that form still loads in Keras 3 to the same
network (fast), the shipped BadNets and reference models are in it (fast), and Keras 2.15 loads
each shipped BadNet and answers as the grader's Keras 3 does (slow: the keras2 environment).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from harness.nets.deepid import build_deepid, model_input, save_legacy_h5
from harness.nets.legacy import keras2_config, keras2_outputs, write_keras2_config
from harness.sandbox.models import load_model_file
from harness.synthetic.build import DEFAULT_SEED
from harness.synthetic.faces import render
from harness.synthetic.recipe import SCALES, TRACKS, VALIDATION_STREAM, identities
from harness.synthetic.triggers import stamp
from tests.conftest import REPO

SHIPPED = sorted((REPO / "data" / "models").glob("*.h5"))
REFERENCES = sorted((REPO / "submissions").glob("*/*.h5"))


def _config(path: Path) -> dict:
    with h5py.File(path, "r") as handle:
        return json.loads(handle.attrs["model_config"])


def _is_keras2_form(config: dict) -> bool:
    """No trace of Keras 3's serialization: dtypes are names, nodes are lists of
    ``[layer, node, tensor, kwargs]``, inputs have ``batch_input_shape``."""
    for layer in config["config"]["layers"]:
        layer_config = layer["config"]
        if isinstance(layer_config.get("dtype"), dict) or "batch_shape" in layer_config:
            return False
        for node in layer["inbound_nodes"]:
            if not isinstance(node, list) or not all(isinstance(t, list) for t in node):
                return False
    return True


def _faces() -> np.ndarray:
    """Fresh faces of the full benchmark's identities (rendered from the recipe, no data file),
    clean and with every shipped trigger stamped: inputs on which the BadNets' backdoors fire."""
    scale = SCALES["full"]
    labels = np.arange(0, scale.identities, scale.identities // 24)[:24]
    faces = render(identities(scale, DEFAULT_SEED), labels, DEFAULT_SEED + VALIDATION_STREAM + 99)
    triggers = sorted({name for recipe in TRACKS for name in recipe.triggers})
    return np.concatenate([faces.images, *[stamp(faces, name) for name in triggers]])


def test_saved_form_is_keras2s_and_keras3_loads_it_to_the_same_network(tmp_path: Path) -> None:
    keras.utils.set_random_seed(3)
    model = build_deepid(7)
    images = np.random.default_rng(3).integers(0, 256, (8, 55, 47, 3), dtype=np.uint8)
    inputs = model_input(images, 1 / 255)
    path = tmp_path / "deepid.h5"
    save_legacy_h5(model, path)
    config = _config(path)
    assert _is_keras2_form(config)
    assert keras2_config(config) == config  # already Keras 2's form: nothing left to rewrite
    assert not write_keras2_config(path)
    loaded = load_model_file(path)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert np.array_equal(np.asarray(loaded(inputs)), np.asarray(model(inputs)))


def test_rewriting_a_keras3_file_keeps_every_weight_byte(tmp_path: Path) -> None:
    keras.utils.set_random_seed(4)
    model = build_deepid(5)
    path = tmp_path / "keras3.h5"
    keras.saving.save_model(model, path, include_optimizer=False)  # Keras 3's own form
    assert not _is_keras2_form(_config(path))

    def weights() -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        with h5py.File(path, "r") as handle:
            handle.visititems(lambda name, item: found.__setitem__(name, item[()].tobytes())
                              if isinstance(item, h5py.Dataset) else None)
        return found

    before = weights()
    assert write_keras2_config(path)
    assert weights() == before and len(before) == 14  # kernel and bias of 7 layers
    assert _is_keras2_form(_config(path))
    inputs = model_input(np.full((2, 55, 47, 3), 128, dtype=np.uint8), 1 / 255)
    assert np.array_equal(np.asarray(load_model_file(path)(inputs)), np.asarray(model(inputs)))


@pytest.mark.parametrize("make", [
    lambda x: keras.layers.Lambda(lambda t: t * 2.0, name="code")(x),
    lambda x: keras.layers.BatchNormalization(renorm=True, name="renorm")(x),
], ids=["unknown layer type", "Keras-3-only setting"])
def test_a_network_keras2_would_misread_is_refused_and_not_written(tmp_path: Path,
                                                                   make) -> None:
    inputs = keras.Input((55, 47, 3))
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(make(inputs)))
    path = tmp_path / "model.h5"
    with pytest.raises(ValueError, match="cannot write a Keras-2 configuration"):
        save_legacy_h5(keras.Model(inputs, outputs), path)
    assert not path.exists()


@pytest.mark.parametrize("path", SHIPPED + REFERENCES, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_legacy_models_are_in_keras2s_form(path: Path) -> None:
    config = _config(path)
    assert _is_keras2_form(config) and keras2_config(config) == config


def test_keras2_loads_the_shipped_badnets_with_the_graders_answers(keras2, tmp_path) -> None:
    """``keras.models.load_model`` in TensorFlow 2.15, as a 2020 script calls it, on every
    model of data/models: the same labels as the grader's Keras 3 on clean and triggered faces,
    outputs within 1e-5."""
    inputs = model_input(_faces(), 1 / 255)
    version, outputs = keras2_outputs(keras2.python, SHIPPED, inputs, tmp_path)
    assert version.startswith("2.15")
    for path, theirs in zip(SHIPPED, outputs, strict=True):
        ours = np.asarray(load_model_file(path)(inputs, training=False))
        assert np.array_equal(theirs.argmax(axis=1), ours.argmax(axis=1)), path.name
        assert np.abs(theirs - ours).max() <= 1e-5, path.name
