"""What the sandbox tests share: images and a small network of hand-countable cost for the worker
(test_protocol.py, test_metering.py, test_sandbox.py), a script that runs two networks, and a
listener that counts who reached the grader's loopback (test_sandbox.py, test_environments.py), and
the benchmark's ``keras2`` environment."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import numpy as np
import pytest

IMAGES = np.random.default_rng(0).integers(0, 256, (3, 55, 47, 3), dtype=np.uint8)


TINY_MACS = 53 * 45 * 4 * (3 * 3 * 3) + 24 * 20 * 4 * (3 * 3) + 1920 * 10
"""One image through :func:`tiny_network`: 3x3 convolution of 3 into 4 channels (53x45 out),
3x3 depthwise convolution of 4 channels (24x20 out, after 2x2 pooling), 1920 inputs x 10 outputs."""
TINY_PARAMS = (3 * 3 * 3 * 4 + 4) + (3 * 3 * 4 + 4) + (1920 * 10 + 10)


def tiny_network(path: Path | None = None, blends: int = 0):
    """A small network with hand-countable cost, saved to ``path``; with ``blends``, wrapped
    STRIP-style: the network applied to ``blends`` copies of the input inside the graph, and to
    the input itself."""
    import keras
    from keras import ops

    inputs = keras.Input((55, 47, 3))
    x = keras.layers.Conv2D(4, (3, 3), activation="relu")(inputs)
    x = keras.layers.MaxPooling2D((2, 2))(x)
    x = keras.layers.DepthwiseConv2D((3, 3))(x)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x))
    model = inner = keras.Model(inputs, outputs)
    if blends:
        wrapped = keras.Input((55, 47, 3))
        copies = ops.reshape(ops.repeat(ops.expand_dims(wrapped, 1), blends, axis=1),
                             (-1, 55, 47, 3))
        mean = ops.mean(ops.reshape(inner(copies), (-1, blends, 10)), axis=1)
        model = keras.Model(wrapped, ops.add(mean, inner(wrapped)))
    if path is not None:
        model.save(path)
    return model


TWO_NETWORKS = """\
import sys
import keras
import numpy as np
from PIL import Image

first = keras.models.load_model(sys.argv[1])
second = keras.models.load_model(sys.argv[2])
x = np.asarray(Image.open(sys.argv[3]), dtype="float32")[None] / 255.0
a = int(np.argmax(first.predict(x, verbose=0)))
b = int(np.argmax(second.predict(x, steps=1)))  # Keras's own predict, not the fast one
print(b if a == b else 10)
"""


class Listener:
    """A TCP server on the grader's loopback that counts who reached it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()


@pytest.fixture(scope="session")
def keras2():
    """The embedded benchmark's ``keras2`` environment, built (or found) in the user's cache
    (test_environments.py, test_keras2_models.py)."""
    from harness.sandbox.environments import EnvironmentStore, resolve
    from tests.conftest import REPO

    spec = resolve("keras2", None, REPO / "data", REPO)
    assert spec is not None
    return EnvironmentStore().ensure(spec)
