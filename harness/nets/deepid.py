"""The contest's DeepID network, built and saved by the project's own code (the synthetic
benchmark's BadNets, the reference defenses, the tests), and the one pixel convention every
network here is fed with.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from absl import logging as absl_logging

from harness.nets.legacy import write_keras2_config

IMAGE_SHAPE = (55, 47, 3)
"""Height, width, channels of the contest's face crops (channels last)."""

LEGACY_SUFFIXES = (".h5", ".hdf5")
"""File endings of the legacy Keras-2 HDF5 format."""


def model_input(images: np.ndarray, scale: float) -> np.ndarray:
    """Pixels 0..255 as the network's float32 input: ``images * scale``."""
    return images.astype(np.float32) * np.float32(scale)


def build_deepid(num_classes: int = 1283) -> keras.Model:
    """Build the contest's DeepID network with the contest's layer names and layer order.

    The contest published weights only (Keras 2.2/2.3); Keras loads those by layer order, so the
    order and names here must match the original model exactly (601,643 parameters at 1283
    classes).
    """
    layers = keras.layers
    inputs = keras.Input(shape=IMAGE_SHAPE, name="input")
    x = layers.Conv2D(20, (4, 4), activation="relu", name="conv_1")(inputs)
    x = layers.MaxPooling2D((2, 2), name="pool_1")(x)
    x = layers.Conv2D(40, (3, 3), activation="relu", name="conv_2")(x)
    x = layers.MaxPooling2D((2, 2), name="pool_2")(x)
    x = layers.Conv2D(60, (3, 3), activation="relu", name="conv_3")(x)
    pool_3 = layers.MaxPooling2D((2, 2), name="pool_3")(x)
    conv_4 = layers.Conv2D(80, (2, 2), activation="relu", name="conv_4")(pool_3)
    flat_1 = layers.Flatten(name="flatten_1")(pool_3)
    flat_2 = layers.Flatten(name="flatten_2")(conv_4)
    fc_1 = layers.Dense(160, name="fc_1")(flat_1)
    fc_2 = layers.Dense(160, name="fc_2")(flat_2)
    x = layers.Add(name="add_1")([fc_1, fc_2])
    x = layers.Activation("relu", name="activation_1")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="output")(x)
    return keras.Model(inputs, outputs, name="deepid")


def save_legacy_h5(model: keras.Model, path: Path) -> None:
    """Save a full model as a legacy ``.h5`` file, the format most contest submissions used,
    in the form Keras 2 and Keras 3 both load (:mod:`harness.nets.legacy`): Keras 3 saves it,
    then its ``model_config`` is rewritten as Keras 2 writes it (the weights as Keras 3 wrote
    them). A network with a layer type that rewriting does not know raises ValueError.

    Keras 3 logs a deprecation warning for this format; the choice is deliberate here (the
    benchmark mimics real submissions), so the warning is silenced for this call only.
    """
    path = Path(path)
    if path.suffix.lower() not in LEGACY_SUFFIXES:
        raise ValueError(f"{path}: a legacy model file must end in .h5 or .hdf5")
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        keras.saving.save_model(model, path, include_optimizer=False)
    finally:
        absl_logging.set_verbosity(verbosity)
    try:
        write_keras2_config(path)
    except ValueError:
        path.unlink()
        raise
