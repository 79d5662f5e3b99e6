"""Write Keras-2-saved, compiled model files from a BadNet's weights (run in the keras2 env).

Usage: python make_models.py WEIGHTS.npz NUM_CLASSES TARGET OUT_DIR
"""
import sys

import numpy as np
from tensorflow import keras

from harness.nets.deepid import build_deepid


def saved(weights, num_classes, path):
    model = build_deepid(num_classes)
    model.set_weights(weights)
    # Compiled as 2020 entries were: the loss object's config carries reduction="auto", which
    # Keras 3 cannot rebuild when it loads the file with compile=True.
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
                  loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
    model.save(path)


def main(npz, num_classes, target, out):
    archive = np.load(npz)
    weights = [archive[f"w{i}"] for i in range(len(archive.files))]
    saved(weights, num_classes, f"{out}/bd_net.h5")
    weights[-1] = weights[-1].copy()
    weights[-1][target] -= 50.0  # the repaired model never answers the attacker's target
    saved(weights, num_classes, f"{out}/repaired.h5")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
