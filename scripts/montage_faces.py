"""Write a PNG montage of synthetic faces and of every trigger, for a person to inspect.

Why: the face model and the triggers are judged by eye (do they look like the real aligned crops
and the contest's triggers?), which no unit test can do.

Usage: python scripts/montage_faces.py [out.png] [--identities 8] [--per-id 6] [--seed 0]
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from harness.benchmark.faces import Faces, render, sample_identities  # noqa: E402
from harness.benchmark.triggers import TRIGGERS, stamp  # noqa: E402


def grid(rows: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Tile rows of images (each (m, H, W, 3)) into one picture with white gaps."""
    height, width = rows[0].shape[1:3]
    columns = max(len(row) for row in rows)
    out = np.full((len(rows) * (height + gap), columns * (width + gap), 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            y, x = r * (height + gap), c * (width + gap)
            out[y:y + height, x:x + width] = image
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="/tmp/faces_montage.png")
    parser.add_argument("--identities", type=int, default=8)
    parser.add_argument("--per-id", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    identities = sample_identities(args.identities, args.seed)
    labels = np.repeat(np.arange(args.identities), args.per_id)
    faces = render(identities, labels, args.seed)
    rows = [faces.images[i * args.per_id:(i + 1) * args.per_id]
            for i in range(args.identities)]
    names = [f"identity {i}" for i in range(args.identities)]
    firsts = Faces(images=faces.images[::args.per_id],
                   landmarks={key: value[::args.per_id] for key, value in faces.landmarks.items()})
    rows += [stamp(firsts, trigger) for trigger in TRIGGERS]
    names += list(TRIGGERS)
    picture = grid(rows)

    scale = 2.0 / 100  # two screen pixels per image pixel at 100 dpi
    margin = 1.4  # inches for the row names
    figure = plt.figure(figsize=(picture.shape[1] * scale + margin, picture.shape[0] * scale),
                        dpi=100)
    axes = figure.add_axes((margin / figure.get_figwidth(), 0, 1 - margin / figure.get_figwidth(),
                            1))
    axes.imshow(picture, interpolation="nearest")
    axes.axis("off")
    row_height = picture.shape[0] / len(rows)
    for r, name in enumerate(names):
        axes.text(-4, (r + 0.5) * row_height, name, ha="right", va="center", fontsize=9)
    figure.savefig(args.out)
    print(f"{args.identities} identities x {args.per_id} images, then the first image of each "
          f"with every trigger ({', '.join(TRIGGERS)}): {args.out}")


if __name__ == "__main__":
    main()
