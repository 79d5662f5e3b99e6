"""Picture montages of face images, for people to check data and triggers by eye.

No unit test can say whether a synthetic face looks like the real aligned crops or a trigger like
the contest's; a montage lets a person judge, and the docs embed the benchmark's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness.render.agg import pyplot


def grid(rows: Sequence[np.ndarray], gap: int = 2) -> np.ndarray:
    """Tile rows of images (each (m, H, W, 3) uint8) into one picture with white gaps."""
    height, width = rows[0].shape[1:3]
    columns = max(len(row) for row in rows)
    out = np.full((len(rows) * (height + gap), columns * (width + gap), 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            y, x = r * (height + gap), c * (width + gap)
            out[y:y + height, x:x + width] = image
    return out


def save_montage(rows: Sequence[np.ndarray], names: Sequence[str], path: Path,
                 pixels_per_pixel: float = 2.0) -> None:
    """Write the rows as one PNG with a name left of each row."""
    plt = pyplot()
    picture = grid(rows)
    scale = pixels_per_pixel / 100  # at 100 dpi
    margin = 0.25 + 0.075 * max(len(name) for name in names)  # inches for the row names
    figure = plt.figure(figsize=(picture.shape[1] * scale + margin, picture.shape[0] * scale),
                        dpi=100)
    left = margin / figure.get_figwidth()
    axes = figure.add_axes((left, 0, 1 - left, 1))
    axes.imshow(picture, interpolation="nearest")
    axes.axis("off")
    row_height = picture.shape[0] / len(rows)
    for r, name in enumerate(names):
        axes.text(-4, (r + 0.5) * row_height, name, ha="right", va="center", fontsize=9)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)
