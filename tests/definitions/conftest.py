"""Contest files written by hand, for the tests of reading them (test_data_io.py) and of the
decoded-array cache (test_decoded.py)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

IMAGES = np.random.default_rng(0).integers(0, 256, size=(6, 55, 47, 3), dtype=np.uint8)
"""Six images, channels last, as the grader hands them to a submission."""
LABELS = np.array([0, 1, 2, 0, 1, 2])


def h5(path: Path, data: np.ndarray, label: np.ndarray | None = LABELS) -> Path:
    """A contest HDF5 file at ``path`` with ``data`` and, unless None, ``label``."""
    with h5py.File(path, "w") as handle:
        handle["data"] = data
        if label is not None:
            handle["label"] = label
    return path
