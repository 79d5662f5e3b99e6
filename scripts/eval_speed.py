"""How fast the sandboxed runner answers a track with each submission contract.

    python scripts/eval_speed.py [--track sunglasses] [--images 12830] [--naive 5]
                                 [--environment keras2]

Grades the realistic per-image script of examples/per-image-eval (loads its model on every call,
prints noise) on the track's clean test images, in the sandbox, and compares it with the same
model as a batch ``predict(images)`` script, as a model file, and with the naive way of running
the contract (one ``python3 eval.py model.h5 image.png`` process per image, timed on a few
images). With ``--environment NAME`` the two script contracts run again in that environment of
the benchmark (built first if needed), all on one Keras-2-saved copy of the BadNet that both Keras
versions read. Prints a Markdown table; docs/submitting.md quotes it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tabulate import tabulate

from harness.definitions.data import DataStore
from harness.definitions.layout import default_benchmark
from harness.definitions.submissions import TrackEntry
from harness.definitions.tracks import load_benchmark
from harness.sandbox.environments import EnvironmentStore, resolve
from harness.sandbox.isolation import Limits, detect
from harness.sandbox.runner import EntryRun, run_entry
from harness.synthetic.materialize import generate_missing

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "per-image-eval" / "eval.py"
BATCH = """\
import keras
import numpy as np

model = keras.models.load_model("model.h5", compile=False)


def predict(images):
    return np.argmax(model.predict(images.astype("float32") / 255.0, verbose=0), axis=1)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--track", default="sunglasses")
    parser.add_argument("--images", type=int, default=None, help="default: the whole test set")
    parser.add_argument("--naive", type=int, default=5, help="images run one process each")
    parser.add_argument("--environment", help="also run the scripts in this environment")
    args = parser.parse_args()

    benchmark = load_benchmark(default_benchmark())
    generate_missing(benchmark)
    track = benchmark.track(args.track)
    images = DataStore().get(track.test, track.num_classes).images[:args.images]
    print(f"{detect().note}; {len(images)} images of {track.name}'s clean test set", flush=True)

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        data = work / "images.npy"
        np.save(data, images)
        data.chmod(0o644)
        root = work / "submission"
        root.mkdir()
        built = None
        if args.environment:
            spec = resolve(args.environment, None, benchmark.root, root)
            assert spec is not None
            built = EnvironmentStore().ensure(spec)
            _keras2_copy(built.python, track.badnet, track.num_classes, root / "model.h5")
        else:
            shutil.copy(track.badnet, root / "model.h5")
        shutil.copy(EXAMPLE, root / "eval.py")
        (root / "batch.py").write_text(BATCH)
        contracts = [
            ("per-image eval.py (loads its model per call)",
             TrackEntry(kind="eval", path=root / "eval.py", args=("model.h5", "{image}"))),
            ("batch predict(images) in eval.py",
             TrackEntry(kind="eval", path=root / "batch.py", batch="predict")),
            ("model file (.h5)", TrackEntry(kind="model", path=root / "model.h5")),
        ]
        runs = [(name, entry, None) for name, entry in contracts]
        if built is not None:
            runs += [(f"{name} in {args.environment}", entry, built.folder)
                     for name, entry in contracts[:2]]
        reference = None
        for name, entry, environment in runs:
            start = time.perf_counter()
            answers = run_entry(entry, root, data, EntryRun(
                num_classes=track.num_classes, input_scale=track.input_scale, limits=Limits(),
                environment=environment))
            seconds = time.perf_counter() - start
            reference = answers.labels if reference is None else reference
            assert answers.invalid == 0 and np.array_equal(answers.labels, reference), name
            rows.append([name, len(images), f"{seconds:.1f}", f"{1000 * seconds / len(images):.2f}",
                         f"{len(images) / seconds:,.0f}"])
        naive = _naive(root, images[:args.naive], work)
        rows.append([f"naive: one process per image ({args.naive} images)", args.naive,
                     f"{naive * args.naive:.1f}", f"{1000 * naive:.0f}", f"{1 / naive:.2f}"])
    print(tabulate(rows, headers=["contract", "images", "wall s", "ms/image", "images/s"],
                   tablefmt="github", disable_numparse=True))


def _keras2_copy(python: Path, badnet: Path, num_classes: int, target: Path) -> None:
    """The BadNet saved by Keras 2 (the contest's format), which Keras 3 reads too."""
    code = ("import sys; from harness.nets.deepid import build_deepid; "
            "m = build_deepid(int(sys.argv[2])); m.load_weights(sys.argv[1]); m.save(sys.argv[3])")
    subprocess.run([python, "-c", code, badnet, str(num_classes), target], check=True,
                   capture_output=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def _naive(root: Path, images: np.ndarray, work: Path) -> float:
    """Mean seconds per image when every image starts its own Python and TensorFlow."""
    start = time.perf_counter()
    for index, image in enumerate(images):
        path = work / f"naive_{index}.png"
        Image.fromarray(image).save(path)
        subprocess.run([sys.executable, "eval.py", "model.h5", str(path)], cwd=root, check=True,
                       capture_output=True)
    return (time.perf_counter() - start) / len(images)


if __name__ == "__main__":
    main()
