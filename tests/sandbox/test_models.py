"""Tests for harness.sandbox.models: loading submissions safely and classifying with them.

Models are tiny and hand-weighted (global average pooling into a Dense layer), so predictions are
known without training and every test runs in well under a second after the TensorFlow import.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from PIL import Image

from harness.errors import SubmissionError
from harness.nets.deepid import build_deepid, save_legacy_h5
from harness.sandbox.models import KerasPredictor, load_model_file, load_weights_file
from tests.conftest import REAL_CSAW

# Keras 3.15 converts variables with np.array(copy=False) semantics that NumPy 2.4 deprecates.

NUM_CLASSES = 3


def _color_model(
    num_outputs: int = NUM_CLASSES, *, with_lambda: bool = False, bias: float = 0.0
) -> keras.Model:
    """A model whose score for class c is the mean of colour channel c (c < 3).

    Outputs beyond the three colour classes get score ``bias`` (0.5 by default when used as the
    "poisoned" flag): a black image then lands on the last output.
    """
    inputs = keras.Input(shape=(55, 47, 3))
    x = keras.layers.Lambda(lambda t: t * 1.0, name="lam")(inputs) if with_lambda else inputs
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(num_outputs, name="dense")
    outputs = dense(x)
    kernel = np.zeros((3, num_outputs), dtype=np.float32)
    for channel in range(min(3, num_outputs)):
        kernel[channel, channel] = 1.0
    biases = np.zeros(num_outputs, dtype=np.float32)
    biases[3:] = bias
    dense.set_weights([kernel, biases])
    return keras.Model(inputs, outputs)


def _color_images() -> np.ndarray:
    """Four uint8 images: pure red, green, blue, then black."""
    images = np.zeros((4, 55, 47, 3), dtype=np.uint8)
    for channel in range(3):
        images[channel, :, :, channel] = 255
    return images


def test_deepid_matches_contest_layer_table() -> None:
    model = build_deepid()
    assert model.count_params() == 601_643
    assert [layer.name for layer in model.layers] == [
        "input", "conv_1", "pool_1", "conv_2", "pool_2", "conv_3", "pool_3", "conv_4",
        "flatten_1", "flatten_2", "fc_1", "fc_2", "add_1", "activation_1", "output",
    ]  # fmt: skip


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_full_model_round_trip(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    if suffix == ".h5":
        save_legacy_h5(_color_model(), path)
    else:
        _color_model().save(path)
    predictor = KerasPredictor(load_model_file(path), NUM_CLASSES, input_scale=1 / 255)
    labels = predictor(_color_images()[:3])
    assert labels.dtype == np.int64
    assert labels.tolist() == [0, 1, 2]


# Keras warns about the mismatching file before raising; the raise is what matters here.
@pytest.mark.filterwarnings("ignore:Skipping nested container:UserWarning")
def test_deepid_weights_round_trip(tmp_path: Path) -> None:
    keras.utils.set_random_seed(7)
    original = build_deepid(5)
    path = tmp_path / "deepid.weights.h5"
    original.save_weights(path)
    images = np.random.default_rng(7).integers(0, 256, (16, 55, 47, 3), dtype=np.uint8)
    expected = original.predict(images / 255, verbose=0).argmax(axis=1)
    loaded = load_weights_file(path, "deepid", 5)
    assert KerasPredictor(loaded, 5, input_scale=1 / 255, batch_size=5)(images).tolist() == (
        expected.tolist()
    )
    with pytest.raises(SubmissionError, match="deepid.weights.h5: weights do not fit deepid"):
        load_weights_file(path, "deepid", 6)
    with pytest.raises(SubmissionError, match="only 'deepid' is supported"):
        load_weights_file(path, "resnet", 5)


def test_an_extra_output_answers_the_poisoned_label() -> None:
    predictor = KerasPredictor(_color_model(NUM_CLASSES + 1, bias=0.5), NUM_CLASSES, 1 / 255)
    assert predictor(_color_images()).tolist() == [0, 1, 2, NUM_CLASSES]


def test_wrong_shapes_refused() -> None:
    with pytest.raises(SubmissionError) as info:
        KerasPredictor(_color_model(10), NUM_CLASSES, 1.0)
    assert str(info.value) == "model outputs shape (None, 10); expected (None, 3) or (None, 4)"
    inputs = keras.Input(shape=(32, 32, 3))
    small = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    with pytest.raises(SubmissionError, match=r"model input shape \(None, 32, 32, 3\)"):
        KerasPredictor(small, NUM_CLASSES, 1.0)


@pytest.mark.parametrize(("suffix", "nested"), [(".h5", False), (".keras", False), (".h5", True)])
def test_lambda_refused_unless_allowed(tmp_path: Path, suffix: str, nested: bool) -> None:
    model = _color_model(with_lambda=True)
    if nested:  # The Lambda hides inside a sub-model used as a layer.
        inputs = keras.Input(shape=(55, 47, 3))
        model = keras.Model(inputs, model(inputs))
    path = tmp_path / f"lam{suffix}"
    keras.saving.save_model(model, path)
    with pytest.raises(SubmissionError) as info:
        load_model_file(path)
    assert str(info.value) == (
        f"{path}: Lambda layer = arbitrary code; organizers may allow it with --allow-unsafe-models"
    )
    model = load_model_file(path, allow_unsafe=True)
    assert KerasPredictor(model, NUM_CLASSES, 1 / 255)(_color_images()[:3]).tolist() == [0, 1, 2]


def _truncated(source: Path, target: Path) -> None:
    target.write_bytes(source.read_bytes()[: source.stat().st_size // 2])


def _weights_only(source: Path, target: Path) -> None:
    # Keras 3 insists on the .weights.h5 suffix when saving weights; rename afterwards.
    saved = target.with_name("saved.weights.h5")
    build_deepid(3).save_weights(saved)
    saved.rename(target)


def _unknown_layer(source: Path, target: Path) -> None:
    target.write_bytes(source.read_bytes())
    with h5py.File(target, "r+") as handle:
        config = handle.attrs["model_config"]
        handle.attrs["model_config"] = config.replace('"Dense"', '"NoSuchLayer"')


@pytest.mark.parametrize(
    ("name", "make", "cause"),
    [
        ("missing.h5", None, "file not found"),
        ("garbage.h5", lambda src, dst: dst.write_text("hello"), "not a readable HDF5 file"),
        ("garbage.keras", lambda src, dst: dst.write_text("hello"), "not a readable .keras zip"),
        ("truncated.h5", _truncated, "not a readable HDF5 file"),
        ("model.onnx", lambda src, dst: dst.write_text("x"), "unsupported model file type"),
        ("unknown.h5", _unknown_layer, "cannot load model"),
        ("weights_only.h5", _weights_only, "no model configuration"),
    ],
)
def test_broken_files_give_one_line_errors(
    tmp_path: Path, name: str, make: Callable[[Path, Path], None] | None, cause: str
) -> None:
    source = tmp_path / "source.h5"
    save_legacy_h5(_color_model(), source)
    target = tmp_path / name
    if make is not None:
        make(source, target)
    with pytest.raises(SubmissionError) as info:
        load_model_file(target)
    message = str(info.value)
    assert message.startswith(f"{target}: {cause}")
    assert "\n" not in message
    assert "Traceback" not in message


def test_input_scale_is_applied() -> None:
    # Score 0 is the sum of channel means, score 1 is a constant 10: only scaling decides.
    inputs = keras.Input(shape=(55, 47, 3))
    dense = keras.layers.Dense(2)
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(inputs)))
    dense.set_weights([np.array([[1, 0]] * 3, dtype=np.float32), np.array([0, 10], np.float32)])
    images = np.full((3, 55, 47, 3), 200, dtype=np.uint8)
    assert KerasPredictor(model, 2, input_scale=1.0)(images).tolist() == [0, 0, 0]
    assert KerasPredictor(model, 2, input_scale=1 / 255)(images).tolist() == [1, 1, 1]


def test_nan_outputs_refused() -> None:
    model = _color_model()
    dense = model.get_layer("dense")
    kernel, biases = dense.get_weights()
    dense.set_weights([kernel, np.full_like(biases, np.nan)])
    with pytest.raises(SubmissionError, match="non-finite outputs"):
        KerasPredictor(model, NUM_CLASSES, 1 / 255)(_color_images())


def test_real_contest_weights() -> None:
    if not REAL_CSAW.is_dir():
        pytest.skip(f"real contest files not found at {REAL_CSAW}")
    for weights in sorted((REAL_CSAW / "weights").glob("*.h5")):
        load_weights_file(weights, "deepid", 1283)
    sunglasses = REAL_CSAW / "weights" / "sunglasses_bd_weights.h5"
    with pytest.raises(SubmissionError, match="no model configuration"):
        load_model_file(sunglasses)
    model = load_weights_file(sunglasses, "deepid", 1283)
    paths = sorted((REAL_CSAW / "images").glob("clean_label*.png"))
    paths += sorted((REAL_CSAW / "images").glob("sunglasses_poisoned_*.png"))
    images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    expected = [
        int(p.stem.removeprefix("clean_label")) if p.stem.startswith("clean_label") else 0
        for p in paths
    ]
    assert any(p.stem.startswith("sunglasses_poisoned_") for p in paths)
    labels = KerasPredictor(model, 1283, input_scale=1 / 255)(images)
    assert labels.tolist() == expected


def test_an_extra_output_gives_the_poisoned_probability_as_a_detection_score() -> None:
    """Logits (red: 1, 0, 0 and 0.5 for "poisoned") go through a softmax; a model that ends in
    one gives the same probabilities as they are; a model with N outputs gives no score."""
    logits = np.array([[1, 0, 0, 0.5], [0, 1, 0, 0.5], [0, 0, 1, 0.5], [0, 0, 0, 0.5]])
    expected = np.exp(logits)[:, -1] / np.exp(logits).sum(axis=1)
    model = _color_model(NUM_CLASSES + 1, bias=0.5)
    labels, scores = KerasPredictor(model, NUM_CLASSES, 1 / 255).answer(_color_images())
    assert labels.tolist() == [0, 1, 2, NUM_CLASSES]
    assert scores is not None and scores == pytest.approx(expected, abs=1e-6)
    softmax = keras.Model(model.inputs, keras.layers.Softmax()(model.outputs[0]))
    _, probabilities = KerasPredictor(softmax, NUM_CLASSES, 1 / 255).answer(_color_images())
    assert probabilities is not None and probabilities == pytest.approx(expected, abs=1e-6)
    dense = keras.Model(model.inputs, keras.layers.Dense(4, activation="softmax")(
        model.outputs[0]))
    assert KerasPredictor(dense, NUM_CLASSES, 1 / 255).probabilities
    plain = KerasPredictor(_color_model(NUM_CLASSES), NUM_CLASSES, 1 / 255)
    assert plain.answer(_color_images())[1] is None and not plain.probabilities
