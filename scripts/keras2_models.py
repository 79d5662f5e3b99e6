"""Rewrite the project's legacy ``.h5`` model files, in place, in the form Keras 2 and Keras 3 both
load, and check that both give the answers the file gave before.

Keras 3 saves legacy ``.h5`` files with a ``model_config`` Keras 2 cannot read, so a 2020-style
script that calls ``keras.models.load_model`` on the BadNet it is given (in the benchmark's
``keras2`` environment) failed on the project's own BadNets. ``harness.nets.legacy`` rewrites that
attribute into Keras 2's form; the weights keep every byte. For each file (by default the
embedded benchmark's ``data/models/*.h5`` and the reference submissions' ``submissions/*/*.h5``;
``.keras`` archives are a Keras-3-only format and are left alone) this script:

1. runs the file with Keras 3 (the grader's ``load_model_file``) on ``--images`` clean validation
   faces of the embedded benchmark, spread over its identities, at the benchmark's input scale;
2. rewrites its ``model_config`` (skipped with ``--check-only``, and a no-op on a file already
   rewritten);
3. checks that every weight dataset is byte-identical and Keras 3's outputs bit-identical;
4. loads every file with ``keras.models.load_model`` in the ``keras2`` environment (built if it is
   not) on the same inputs, and checks that its labels are Keras 3's and its outputs within 1e-5.

It prints one line per file (max |Keras 2 - Keras 3|, label agreement) and exits 1 on any
failure.

Usage: python scripts/keras2_models.py [--images 512] [--check-only] [FILE ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5
"""Largest difference allowed between Keras 2's and Keras 3's softmax outputs."""


def default_files() -> list[Path]:
    return sorted((REPO / "data" / "models").glob("*.h5")) + sorted(
        (REPO / "submissions").glob("*/*.h5"))


def shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def weight_bytes(path: Path) -> dict[str, bytes]:
    """Every dataset of the file (the weights), by its path in the file, as raw bytes."""
    found: dict[str, bytes] = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: found.__setitem__(name, item[()].tobytes())
                          if isinstance(item, h5py.Dataset) else None)
    return found


def validation_inputs(count: int) -> np.ndarray:
    """``count`` clean validation faces of the embedded benchmark, every identity in turn, as
    the networks' float input."""
    from harness.definitions.data import DataStore
    from harness.definitions.tracks import load_benchmark
    from harness.nets.deepid import model_input

    track = load_benchmark(REPO / "data").tracks[0]
    faces = DataStore().get(track.validation, track.num_classes).images
    step = max(1, len(faces) // count)
    return model_input(np.asarray(faces[::step][:count]), track.input_scale)


def keras2_python() -> Path:
    from harness.sandbox.environments import EnvironmentStore, resolve

    spec = resolve("keras2", None, REPO / "data", REPO)
    assert spec is not None
    return EnvironmentStore().ensure(spec).python


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="default: data/models/*.h5 and "
                        "submissions/*/*.h5")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--check-only", action="store_true",
                        help="rewrite nothing; only compare Keras 2's answers with Keras 3's")
    args = parser.parse_args()

    from harness.nets.legacy import keras2_outputs, write_keras2_config
    from harness.sandbox.models import load_model_file

    files = [path.resolve() for path in args.files] or default_files()
    inputs = validation_inputs(args.images)
    failed = False
    keras3: list[np.ndarray] = []
    for path in files:
        before_weights = weight_bytes(path)
        before = np.asarray(load_model_file(path)(inputs, training=False))
        changed = False if args.check_only else write_keras2_config(path)
        after = np.asarray(load_model_file(path)(inputs, training=False))
        same_weights = weight_bytes(path) == before_weights
        same_outputs = np.array_equal(before, after)
        keras3.append(after)
        if not (same_weights and same_outputs):
            failed = True
        print(f"{'rewritten' if changed else 'unchanged'} {shown(path)}: weights "
              f"{'identical' if same_weights else 'CHANGED'}, Keras 3 outputs "
              f"{'bit-identical' if same_outputs else 'CHANGED'}", flush=True)
    with tempfile.TemporaryDirectory(prefix="keras2-models-") as work:
        version, keras2 = keras2_outputs(keras2_python(), files, inputs, Path(work))
    print(f"Keras {version} (keras2 environment) against Keras 3, {len(inputs)} validation "
          "faces:")
    for path, mine, theirs in zip(files, keras2, keras3, strict=True):
        diff = float(np.abs(mine - theirs).max())
        agree = float(np.mean(mine.argmax(axis=1) == theirs.argmax(axis=1)))
        ok = diff <= TOLERANCE and agree == 1.0
        failed = failed or not ok
        print(f"{'ok  ' if ok else 'FAIL'}  {shown(path)}: max |diff| {diff:.3g}, "
              f"labels agree {agree:.2%}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
