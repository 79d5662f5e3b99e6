"""Write a PNG montage of synthetic faces and of every trigger, for a person to inspect.

Why: the face model and the triggers are judged by eye (do they look like the real aligned crops
and the contest's triggers?), which no unit test can do.

Usage: python scripts/montage_faces.py [out.png] [--identities 8] [--per-id 6] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from harness.render.montage import save_montage
from harness.synthetic.faces import Faces, render, sample_identities
from harness.synthetic.triggers import TRIGGERS, stamp


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
    save_montage(rows, names, Path(args.out))
    print(f"{args.identities} identities x {args.per_id} images, then the first image of each "
          f"with every trigger ({', '.join(TRIGGERS)}): {args.out}")


if __name__ == "__main__":
    main()
