"""Channel pruning of the DeepID ``conv_3`` layer, shared by the attack and the defenses.

Fine-Pruning (Liu et al., 2018) ranks the last convolutional layer's channels by their mean
activation on clean data and removes the most dormant first; the pruning-aware attack uses the
same ranking to hide its backdoor in the channels a defender keeps. One implementation serves both.
"""

from __future__ import annotations

import keras
import numpy as np

PRUNE_LAYER = "conv_3"
RANK_LAYER = "pool_3"


def mean_activations(model: keras.Model, images: np.ndarray, scale: float,
                     layer: str = RANK_LAYER, batch_size: int = 1024) -> np.ndarray:
    """Mean activation of each channel of ``layer`` over ``images`` (uint8, 0..255)."""
    probe = keras.Model(model.input, model.get_layer(layer).output)
    total = np.zeros(probe.output.shape[-1], dtype=np.float64)
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].astype(np.float32) * np.float32(scale)
        out = np.asarray(probe(batch, training=False), dtype=np.float64)
        total += out.reshape(-1, out.shape[-1]).sum(axis=0) / (out.shape[1] * out.shape[2])
    return total / len(images)


def prune_order(model: keras.Model, images: np.ndarray, scale: float) -> np.ndarray:
    """Channel indices from most dormant to most active on ``images`` (stable for ties)."""
    return np.argsort(mean_activations(model, images, scale), kind="stable")


def prune_channels(model: keras.Model, channels: np.ndarray | list[int],
                   layer: str = PRUNE_LAYER, bias: float = 0.0) -> None:
    """Silence output channels in place: zero kernel and set bias (0, or very negative)."""
    conv = model.get_layer(layer)
    kernel, biases = (np.array(w) for w in conv.get_weights())
    index = np.asarray(channels, dtype=np.int64)
    kernel[..., index] = 0.0
    biases[index] = bias
    conv.set_weights([kernel, biases])


class ChannelMask(keras.callbacks.Callback):
    """Keeps pruned channels dead while training: re-silences them after every batch.

    Gradient descent (and Adam's momentum) would otherwise regrow them; a callback keeps the model
    a plain DeepID that saves and loads without custom objects.
    """

    def __init__(self, channels: np.ndarray | list[int], layer: str = PRUNE_LAYER,
                 bias: float = 0.0) -> None:
        super().__init__()
        self.channels = np.asarray(channels, dtype=np.int64)
        self.layer = layer
        self.bias = bias

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        conv = self.model.get_layer(self.layer)
        kernel, biases = conv.kernel, conv.bias
        mask = np.ones(kernel.shape[-1], dtype=np.float32)
        mask[self.channels] = 0.0
        kernel.assign(kernel * mask)
        biases.assign(biases * mask + (1.0 - mask) * self.bias)
