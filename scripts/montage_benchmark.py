"""Write a PNG montage of a benchmark: per track, clean test images and the same identities with
each of the track's triggers, read from the data files the grader reads. A trigger that paints
nothing (a warp) gets a row more: the change it makes, amplified.

Usage: python scripts/montage_benchmark.py [--benchmark data] [--out docs/images/benchmark.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from harness.definitions.data import DataStore
from harness.definitions.layout import default_benchmark
from harness.definitions.tracks import load_benchmark
from harness.render.montage import save_montage
from harness.synthetic.materialize import generate_missing

AMPLIFY = 10


def paints_nothing(stamped: np.ndarray, faces: np.ndarray) -> bool:
    """Whether every stamped value lies within its clean face's own range, channel by channel:
    a trigger that only moves pixels (a warp), whose faces look alike side by side."""
    low, high = faces.min(axis=(1, 2), keepdims=True), faces.max(axis=(1, 2), keepdims=True)
    return bool(((stamped >= low) & (stamped <= high)).all())


def first_of_each(labels: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Index of the first image of each wanted label."""
    return np.array([np.flatnonzero(labels == label)[0] for label in wanted])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", type=Path, default=default_benchmark())
    parser.add_argument("--out", type=Path, default=Path("docs/images/benchmark.png"))
    parser.add_argument("--columns", type=int, default=8)
    args = parser.parse_args()

    benchmark = load_benchmark(args.benchmark)
    generate_missing(benchmark)
    store = DataStore()
    rows, names = [], []
    for track in benchmark.tracks:
        clean = store.get(track.test, track.num_classes)
        sets = [(p, store.get(p.file, track.num_classes)) for p in track.poisoned]
        shared = set(np.unique(clean.labels))
        for _, data in sets:
            shared &= set(np.unique(data.labels))
        wanted = np.array(sorted(shared)[: args.columns])
        faces = clean.images[first_of_each(clean.labels, wanted)]
        rows.append(faces)
        names.append(f"{track.name}: clean")
        for spec, data in sets:
            stamped = data.images[first_of_each(data.labels, wanted)]  # the same faces
            rows.append(stamped)
            names.append(f"{track.name}: {spec.trigger} -> {spec.target}")
            if paints_nothing(stamped, faces):
                change = np.abs(stamped.astype(np.int16) - faces)
                rows.append(np.clip(change * AMPLIFY, 0, 255).astype(np.uint8))
                names.append(f"{track.name}: |{spec.trigger} - clean| x {AMPLIFY}")
    save_montage(rows, names, args.out)
    print(f"{len(rows)} rows of {args.columns} images: {args.out}")


if __name__ == "__main__":
    main()
