"""The retuning probe: the request that carries it, fine-tuning itself, and its determinism."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.sandbox.protocol import (
    LoadRequest,
    ProtocolError,
    RetuneRequest,
    read_reply,
    read_request,
)
from harness.sandbox.retuning import Budget, budget_text

REPO = Path(__file__).resolve().parents[2]
LOAD = {"kind": "model", "path": "/submission/m.h5", "num_classes": 10, "input_scale": 1.0,
        "args": ["{image}"], "architecture": None, "allow_unsafe": False, "image_timeout": 10.0,
        "scratch": "/tmp", "workdir": "/submission", "batch": None, "images": "/inputs/a.npy"}
RETUNE = {"retuning_images": "/inputs/r-images.npy", "retuning_labels": "/inputs/r-labels.npy",
          "epochs": 5, "batch_size": 16, "learning_rate": 1e-4, "seed": 3}
BUDGET = Budget(epochs=3, batch_size=8, learning_rate=1e-3, seed=1)


def test_requests_round_trip_and_say_what_they_ask():
    load, retune = LoadRequest(**LOAD), RetuneRequest(**LOAD, **RETUNE)
    assert read_request(load.to_line()) == load
    assert read_request(retune.to_line()) == retune
    assert type(read_request(load.to_line())) is LoadRequest  # a plain load is never a retune


@pytest.mark.parametrize("line", [
    '{"type": "shell", "command": "id"}',
    '{"type": "retune"}',
    '{"type": "load", "epochs": 5}',
    "not json"])
def test_malformed_requests_are_refused(line):
    with pytest.raises(ProtocolError):
        read_request(line)
    with pytest.raises(ProtocolError):  # a request is never taken for a reply either
        read_reply('{"type": "retune"}')


def test_the_budget_reads_as_the_board_states_it():
    assert budget_text(Budget(epochs=5, batch_size=16, learning_rate=1e-4, seed=0)) == \
        "Adam, learning rate 0.0001, 5 epochs, batch 16"


def _data(classes: int = 10, count: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random images with a bright corner patch (the "trigger") on every other one, labelled 0."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 55, 47, 3), dtype=np.uint8)
    labels = rng.integers(1, classes, count)
    images[::2, :8, :8] = 255
    labels[::2] = 0
    return images, labels


@pytest.mark.slow
def test_fine_tuning_teaches_the_trigger():
    """Within its budget, fine-tuning on the retuning set makes fresh triggered images go to
    the target: the re-learning the probe measures. The loss is taken from the logits under
    the final softmax, so images the model is sure are something else still teach it."""
    import keras

    from harness.nets.deepid import build_deepid
    from harness.sandbox.models import KerasPredictor
    from harness.sandbox.retuning import retune

    keras.utils.set_random_seed(0)
    model = build_deepid(10)
    images, labels = _data()
    fresh, _ = _data(seed=1)
    triggered = fresh[::2]
    before = np.mean(KerasPredictor(model, 10, 1 / 255)(triggered) == 0)
    losses = retune(model, images, labels, 1 / 255,
                    Budget(epochs=8, batch_size=8, learning_rate=1e-3, seed=1))
    after = np.mean(KerasPredictor(model, 10, 1 / 255)(triggered) == 0)
    assert before < 0.5 < 0.9 <= after
    assert losses["last_loss"] < losses["first_loss"]


@pytest.mark.slow
def test_a_model_that_cannot_be_fine_tuned_says_why():
    """No trainable weight, or none the loss reaches (an answer built from an argmax): a
    one-line reason, never a crash."""
    import keras

    from harness.nets.deepid import IMAGE_SHAPE, build_deepid
    from harness.sandbox.retuning import RetuneError, retune

    frozen = build_deepid(10)
    frozen.trainable = False
    images, labels = _data()
    with pytest.raises(RetuneError, match="no trainable weights"):
        retune(frozen, images, labels, 1 / 255, BUDGET)
    inputs = keras.Input(IMAGE_SHAPE)
    scores = build_deepid(10)(inputs)
    one_hot = keras.layers.Activation("linear")(
        keras.ops.one_hot(keras.ops.argmax(scores, axis=-1), 10))
    with pytest.raises(RetuneError, match="no trainable weight of the model is reached"):
        retune(keras.Model(inputs, one_hot), images, labels, 1 / 255, BUDGET)


DETERMINISM = """
import hashlib, sys
import numpy as np
from harness.sandbox import worker
worker._single_threaded()
import keras
from harness.nets.deepid import build_deepid
from harness.sandbox.retuning import Budget, retune
keras.utils.set_random_seed(0)
model = build_deepid(10)
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (40, 55, 47, 3), dtype=np.uint8)
labels = rng.integers(0, 10, 40)
retune(model, images, labels, 1 / 255, Budget(epochs=2, batch_size=8, learning_rate=1e-3, seed=1))
digest = hashlib.sha256()
for weight in model.get_weights():
    digest.update(np.ascontiguousarray(weight).tobytes())
print(digest.hexdigest())
"""


@pytest.mark.slow
def test_fine_tuning_in_a_worker_gives_the_same_weights_every_time():
    """The worker's single-threaded, deterministic TensorFlow: two processes fine-tune to the
    same bytes, whatever the machine's cores (so P-ASR is byte-stable)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    digests = {subprocess.run([sys.executable, "-c", DETERMINISM], env=env, check=True,
                              capture_output=True, text=True).stdout.strip() for _ in range(2)}
    assert len(digests) == 1 and len(next(iter(digests))) == 64

