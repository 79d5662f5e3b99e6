"""Channel pruning of the DeepID ``conv_3`` layer, shared by the attack and the defenses.

Fine-Pruning (Liu et al., 2018) ranks the last convolutional layer's channels by their mean
activation on clean data and removes the most dormant first; the pruning-aware attack uses the
same ranking to hide its backdoor in the channels a defender keeps. One implementation serves both.
"""

from __future__ import annotations

import keras
import numpy as np

from harness.nets.deepid import model_input

PRUNE_LAYER = "conv_3"
RANK_LAYER = "pool_3"


def features(model: keras.Model, images: np.ndarray, scale: float, layer: str = RANK_LAYER,
             batch_size: int = 2048) -> np.ndarray:
    """Activations of ``layer`` for every image, computed in batches."""
    probe = keras.Model(model.input, model.get_layer(layer).output)
    return np.concatenate([np.asarray(probe(model_input(images[i:i + batch_size], scale),
                                            training=False))
                           for i in range(0, len(images), batch_size)])


def dormancy_order(activations: np.ndarray) -> np.ndarray:
    """Channel indices from most dormant to most active (mean over images and positions;
    stable for ties, so dead channels keep index order)."""
    return np.argsort(activations.mean(axis=(0, 1, 2), dtype=np.float64), kind="stable")


def prune_order(model: keras.Model, images: np.ndarray, scale: float) -> np.ndarray:
    """``conv_3`` channels ranked by mean ``pool_3`` activation on ``images``, dormant first."""
    return dormancy_order(features(model, images, scale))


def prune_channels(model: keras.Model, channels: np.ndarray | list[int],
                   layer: str = PRUNE_LAYER, bias: float = 0.0) -> None:
    """Silence output channels in place: zero kernel and set bias (0, or very negative)."""
    conv = model.get_layer(layer)
    kernel, biases = (np.array(w) for w in conv.get_weights())
    index = np.asarray(channels, dtype=np.int64)
    kernel[..., index] = 0.0
    biases[index] = bias
    conv.set_weights([kernel, biases])


class Hold(keras.callbacks.Callback):
    """Holds chosen entries of one layer's weights at fixed values while training.

    Why a callback: re-setting the entries after every batch keeps the model a plain DeepID that
    saves and loads without custom objects, and undoes whatever gradient descent (and Adam's
    momentum) did to them. ``masks[i]`` marks the held entries of the layer's i-th weight (None:
    not held); ``values[i]`` is what they are held at (None: their value when training starts).
    """

    def __init__(self, layer: str, masks: list[np.ndarray | None],
                 values: list[np.ndarray | None] | None = None) -> None:
        super().__init__()
        self.layer = layer
        self.masks = masks
        self.values = values or [None] * len(masks)
        self._held: list[tuple] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        weights = self.model.get_layer(self.layer).weights
        pairs = zip(weights, self.masks, self.values, strict=True)
        self._held = [(variable, np.broadcast_to(mask, variable.shape),
                       np.array(variable.numpy() if value is None else value, dtype=np.float32))
                      for variable, mask, value in pairs if mask is not None]

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        for variable, mask, value in self._held:
            variable.assign(np.where(mask, value, variable.numpy()))


class ChannelMask(Hold):
    """Keeps pruned channels dead while training: zero kernel, bias 0 (or very negative)."""

    def __init__(self, channels: np.ndarray | list[int], layer: str = PRUNE_LAYER,
                 bias: float = 0.0) -> None:
        self.channels = np.asarray(channels, dtype=np.int64)
        self.bias = bias
        super().__init__(layer, [])

    def on_train_begin(self, logs: dict | None = None) -> None:
        count = self.model.get_layer(self.layer).bias.shape[0]
        mask = np.zeros(count, dtype=bool)
        mask[self.channels] = True
        self.masks = [mask, mask]
        self.values = [np.zeros(1, np.float32), np.full(count, self.bias, np.float32)]
        super().on_train_begin(logs)
