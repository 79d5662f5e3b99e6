"""The grader-worker messages, the worker served in-process, and the manifest keys that shape a
script's run (batch, workdir, files, environment)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_submission
from PIL import Image

from harness import worker
from harness.errors import SubmissionError
from harness.protocol import (
    INVALID,
    Chunk,
    Failed,
    Loaded,
    LoadFailed,
    LoadRequest,
    ProtocolError,
    read_reply,
    reply_line,
)
from harness.submissions import load_submission


def request(tmp_path: Path, script: Path, **changes) -> LoadRequest:
    fields = {"kind": "eval", "path": str(script), "num_classes": 10, "input_scale": 1.0,
              "args": ["{image}"], "architecture": None, "allow_unsafe": False,
              "image_timeout": 10.0, "scratch": str(tmp_path / "scratch"),
              "workdir": str(script.parent), "batch": None}
    return LoadRequest(**{**fields, **changes})


@pytest.mark.parametrize("reply", [
    Loaded(images=5, chunk=64, batch=False), LoadFailed("SyntaxError: x"),
    Chunk(labels=[1, INVALID, 10], invalid=1, error="printed nothing"), Failed("boom")])
def test_replies_round_trip(reply):
    assert read_reply(reply_line(reply).encode()) == reply


@pytest.mark.parametrize("line", [
    b"not json", b"[1, 2]", b'{"type": "chunk", "labels": [1], "invalid": 0}',
    b'{"type": "chunk", "labels": [1], "invalid": 0, "error": null, "extra": 1}',
    b'{"type": "chunk", "labels": ["1"], "invalid": 0, "error": null}',
    b'{"type": "chunk", "labels": [true], "invalid": 0, "error": null}',
    b'{"type": "loaded", "images": 5, "chunk": 64, "batch": 1}',
    b'{"type": "shell", "command": "rm -rf /"}'])
def test_malformed_replies_are_refused(line):
    with pytest.raises(ProtocolError):
        read_reply(line)


@pytest.mark.parametrize(("chunk", "reason"), [
    (Chunk([], 0, None), "0 answers"),
    (Chunk([1] * 5, 0, None), "5 answers for a chunk of 4"),
    (Chunk([11], 0, None), "outside [0, 10]"),
    (Chunk([-2], 0, None), "outside [0, 10]"),
    (Chunk([1, INVALID], 0, None), "does not add up")])
def test_chunks_are_checked_against_classes_and_images_left(chunk, reason):
    with pytest.raises(ProtocolError, match=reason.replace("[", r"\[")):
        chunk.check(num_classes=10, remaining=4, chunk=64)
    Chunk([0, 10, INVALID], 1, "x").check(num_classes=10, remaining=4, chunk=64)


def serve(tmp_path: Path, load: LoadRequest, images: np.ndarray, monkeypatch) -> list:
    """Run the worker's loop in this process on ``images``; its replies, parsed."""
    path = tmp_path / "images.npy"
    np.save(path, images)
    monkeypatch.setenv("HARNESS_IMAGES", str(path))
    monkeypatch.chdir(tmp_path)  # the worker changes directory; this process must get it back
    monkeypatch.setattr(worker, "_patch_keras", lambda: None)  # it patches Keras process-wide
    monkeypatch.setattr(worker.sys, "path", list(worker.sys.path))
    replies = io.StringIO()
    worker.serve(io.StringIO(load.to_line()), replies)
    return [read_reply(line) for line in replies.getvalue().splitlines()]


IMAGES = np.random.default_rng(0).integers(0, 256, (3, 55, 47, 3), dtype=np.uint8)


def test_a_predict_helper_is_not_taken_for_the_batch_entry(tmp_path, monkeypatch):
    """``predict(model, data)`` is a helper in many real scripts: without ``batch`` in the
    manifest the script runs once per image, as its command line does."""
    script = tmp_path / "sub" / "eval.py"
    script.parent.mkdir()
    script.write_text("import sys\nfrom PIL import Image\n\n"
                      "def predict(model, data):\n    return model(data)\n\n"
                      "x = Image.open(sys.argv[1])\nprint('class', x.getpixel((0, 0))[0] % 10)\n")
    replies = serve(tmp_path, request(tmp_path, script), IMAGES, monkeypatch)
    assert replies[0] == Loaded(images=3, chunk=worker.SCRIPT_CHUNK, batch=False)
    assert replies[1] == Chunk([int(v) % 10 for v in IMAGES[:, 0, 0, 0]], 0, None)


def test_the_named_batch_function_answers_whole_chunks(tmp_path, monkeypatch):
    script = tmp_path / "eval.py"
    script.write_text("def answer_all(images):\n    return images[:, 0, 0, 1] % 10\n")
    replies = serve(tmp_path, request(tmp_path, script, batch="answer_all"), IMAGES, monkeypatch)
    assert replies[0] == Loaded(images=3, chunk=worker.MODEL_CHUNK, batch=True)
    assert replies[1] == Chunk([int(v) % 10 for v in IMAGES[:, 0, 0, 1]], 0, None)
    missing = serve(tmp_path, request(tmp_path, script, batch="predict"), IMAGES, monkeypatch)
    assert missing == [LoadFailed("RuntimeError: the manifest names batch = 'predict', but the "
                                  "script defines no such function")]


def test_a_script_runs_in_its_workdir(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "answer.txt").write_text("7")
    script = tmp_path / "src" / "eval.py"
    script.parent.mkdir()
    script.write_text("print(open('../models/answer.txt').read())\n")
    replies = serve(tmp_path, request(tmp_path, script, workdir=str(script.parent)), IMAGES,
                    monkeypatch)
    assert replies[1] == Chunk([7, 7, 7], 0, None)


def test_images_reach_scripts_as_exact_png_files(tmp_path):
    path = tmp_path / "x.png"
    worker.write_png(path, IMAGES[0])
    assert np.array_equal(np.asarray(Image.open(path)), IMAGES[0])
    assert Image.open(path).mode == "RGB"


def test_the_worker_imports_only_the_standard_library_and_numpy():
    """It runs in submissions' environments (other NumPy, Keras 2 or none): importing it must
    pull in neither Keras, TensorFlow, h5py nor Pillow."""
    code = ("import sys, harness.worker\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'keras', 'tensorflow', 'h5py', 'PIL', 'pandas', 'pytest', 'tqdm'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, check=True)
    assert json.loads(result.stdout.replace("'", '"')) == []


def manifest(tmp_path: Path, table: dict, **top) -> str:
    folder = write_submission(tmp_path, "team", {"sunglasses": table},
                              {"eval.py": b"print(1)\n", "m.h5": b"x"})
    (folder / "src").mkdir()
    if top:
        text = (folder / "submission.toml").read_text()
        (folder / "submission.toml").write_text(
            "".join(f'{key} = "{value}"\n' for key, value in top.items()) + text)
    try:
        entry = load_submission(folder / "submission.toml").entry("sunglasses")
    except SubmissionError as exc:
        return str(exc)
    return repr((entry.environment, entry.workdir and entry.workdir.name, entry.batch,
                 entry.files))


@pytest.mark.parametrize(("table", "top", "expected"), [
    ({"eval": "eval.py", "workdir": "src", "batch": "predict",
      "files": {"data/valid.h5": "validation"}}, {},
     "(None, 'src', 'predict', (('data/valid.h5', 'validation'),))"),
    ({"eval": "eval.py"}, {"environment": "keras2"}, "('keras2', None, None, ())"),
    ({"eval": "eval.py", "environment": "grader"}, {"environment": "keras2"},
     "('grader', None, None, ())"),
    ({"eval": "eval.py", "workdir": "../.."}, {}, "points outside the submission folder"),
    ({"eval": "eval.py", "workdir": "eval.py"}, {}, "workdir 'eval.py' is not a folder"),
    ({"eval": "eval.py", "files": {"../x.h5": "validation"}}, {}, "points outside"),
    ({"eval": "eval.py", "files": {"x.h5": "labels"}}, {}, "one of badnet, validation, test"),
    ({"eval": "eval.py", "batch": "os.system"}, {}, "batch must name a function"),
    ({"model": "m.h5", "workdir": "src"}, {}, "workdir is for eval scripts"),
    ({"eval": "eval.py", "environment": "../keras2"}, {}, "environment must be the name"),
])
def test_manifest_keys_for_real_scripts(tmp_path, table, top, expected):
    assert expected in manifest(tmp_path, table, **top)
