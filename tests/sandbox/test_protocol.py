"""The grader-worker messages, the worker served in-process, the cost it reports, and the manifest
keys that shape a script's run (batch, workdir, files, environment)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.definitions.submissions import load_submission
from harness.errors import SubmissionError
from harness.sandbox import worker
from harness.sandbox.protocol import (
    INVALID,
    Chunk,
    Cost,
    Failed,
    Loaded,
    LoadFailed,
    LoadRequest,
    ProtocolError,
    read_reply,
    reply_line,
)
from tests.conftest import write_submission
from tests.sandbox.conftest import IMAGES, TINY_MACS, TINY_PARAMS, TWO_NETWORKS, tiny_network


def request(tmp_path: Path, script: Path, **changes) -> LoadRequest:
    fields = {"kind": "eval", "path": str(script), "num_classes": 10, "input_scale": 1.0,
              "args": ["{image}"], "architecture": None, "allow_unsafe": False,
              "image_timeout": 10.0, "scratch": str(tmp_path / "scratch"),
              "workdir": str(script.parent), "batch": None,
              "images": str(tmp_path / "images.npy")}
    return LoadRequest(**{**fields, **changes})


def chunk(labels: list[int], invalid: int = 0, error: str | None = None, *, params: int = 0,
          passes: int = 0, macs: int | None = 0, peak_rss: int = 1 << 30) -> Chunk:
    return Chunk(labels, invalid, error, params=params, passes=passes, macs=macs,
                 peak_rss=peak_rss)


def answers(reply: Chunk) -> tuple[list[int], int, str | None]:
    """A chunk's answers, without its cost (whose peak memory no test can predict)."""
    return reply.labels, reply.invalid, reply.error


@pytest.mark.parametrize("reply", [
    Loaded(images=5, chunk=64, batch=False), LoadFailed("SyntaxError: x"),
    Chunk(labels=[1, INVALID, 10], invalid=1, error="printed nothing", params=601_643,
          passes=3 * 9, macs=3 * 9 * 8_161_760, peak_rss=1_500_000_000),
    chunk([1], macs=None), Failed("boom", timed_out=False),
    Failed("timed out on 3 images in a row", timed_out=True)])
def test_replies_round_trip(reply):
    assert read_reply(reply_line(reply).encode()) == reply


def test_a_chunk_carries_its_cost_to_the_grader():
    line = reply_line(chunk([1, 2], params=7, passes=4, macs=None, peak_rss=9))
    assert json.loads(line) == {"type": "chunk", "labels": [1, 2], "invalid": 0, "error": None,
                                "params": 7, "passes": 4, "macs": None, "peak_rss": 9,
                                "scores": None}
    reply = read_reply(line)
    assert isinstance(reply, Chunk)
    assert reply.cost == Cost(params=7, passes=4, macs=None, peak_rss=9)


def test_a_chunk_may_carry_detection_scores_and_older_replies_have_none():
    scored = replace(chunk([1, 10]), scores=[0.25, 1])
    assert read_reply(reply_line(scored)) == scored
    scored.check(num_classes=10, remaining=4, chunk=64)
    line = json.loads(reply_line(chunk([1])))
    del line["scores"]  # a reply written before scores existed
    assert read_reply(json.dumps(line)).scores is None


@pytest.mark.parametrize(("scores", "reason"), [
    ([0.5], "1 scores for 2 answers"), ([0.5, 0.5, 0.5], "3 scores for 2 answers"),
    ([0.5, float("nan")], "not finite"), ([float("inf"), 0.5], "not finite"),
    ([10 ** 400, 0.5], "not finite")])
def test_scores_for_some_answers_or_not_finite_are_refused(scores, reason):
    with pytest.raises(ProtocolError, match=reason):
        replace(chunk([1, 2]), scores=scores).check(num_classes=10, remaining=4, chunk=64)


@pytest.mark.parametrize("scores", ['[0.5, "1"]', "[true]", '"0.5"', "0.5", "[null]"])
def test_scores_of_the_wrong_type_are_refused(scores):
    line = (b'{"type": "chunk", "labels": [1], "invalid": 0, "error": null, ' + COST.encode()
            + b', "scores": ' + scores.encode() + b'}')
    with pytest.raises(ProtocolError):
        read_reply(line)


COST = '"params": 1, "passes": 1, "macs": 5, "peak_rss": 10'


@pytest.mark.parametrize("line", [
    b"not json", b"[1, 2]", b'{"type": "chunk", "labels": [1], "invalid": 0}',
    b'{"type": "chunk", "labels": [1], "invalid": 0, "error": null}',  # no cost
    b'{"type": "chunk", "labels": [1], "invalid": 0, "error": null, "extra": 1, ' +
    COST.encode() + b'}',
    b'{"type": "chunk", "labels": ["1"], "invalid": 0, "error": null, ' + COST.encode() + b'}',
    b'{"type": "chunk", "labels": [true], "invalid": 0, "error": null, ' + COST.encode() + b'}',
    *(b'{"type": "chunk", "labels": [1], "invalid": 0, "error": null, ' +
      COST.replace(f'"{name}": {value}', f'"{name}": {wrong}').encode() + b'}'
      for name, value in [("params", 1), ("passes", 1), ("macs", 5), ("peak_rss", 10)]
      for wrong in ("true", "1.5", '"1"', "[1]", *(["null"] if name != "macs" else []))),
    b'{"type": "loaded", "images": 5, "chunk": 64, "batch": 1}',
    b'{"type": "shell", "command": "rm -rf /"}'])
def test_malformed_replies_are_refused(line):
    with pytest.raises(ProtocolError):
        read_reply(line)


@pytest.mark.parametrize(("reply", "reason"), [
    (chunk([]), "0 answers"),
    (chunk([1] * 5), "5 answers for a chunk of 4"),
    (chunk([11]), "outside [0, 10]"),
    (chunk([-2]), "outside [0, 10]"),
    (chunk([1, INVALID]), "does not add up"),
    (chunk([1], params=-1), "negative cost (params = -1)"),
    (chunk([1], passes=-3), "negative cost (passes = -3)"),
    (chunk([1], macs=-1), "negative cost (macs = -1)"),
    (chunk([1], peak_rss=-1), "negative cost (peak_rss = -1)")])
def test_chunks_are_checked_against_classes_and_images_left(reply, reason):
    with pytest.raises(ProtocolError, match=reason.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")):
        reply.check(num_classes=10, remaining=4, chunk=64)
    chunk([0, 10, INVALID], 1, "x").check(num_classes=10, remaining=4, chunk=64)
    chunk([0], params=0, passes=0, macs=None, peak_rss=0).check(num_classes=10, remaining=4,
                                                               chunk=64)


def serve(tmp_path: Path, load: LoadRequest, images: np.ndarray, monkeypatch, *,
          keras: bool = False, per_image: bool = False) -> list:
    """Run the worker's loop in this process on ``images``; its replies, parsed. ``keras``:
    patch Keras as the worker does (and undo it after the test), else leave it alone. A script
    answers in one chunk unless ``per_image`` (the worker's own chunk of one image)."""
    np.save(load.images, images)
    if not per_image:
        monkeypatch.setattr(worker, "SCRIPT_CHUNK", 64)
    monkeypatch.chdir(tmp_path)  # the worker changes directory; this process must get it back
    if keras:
        undo_keras_patches(monkeypatch)
    else:
        monkeypatch.setattr(worker, "patch_keras", lambda meter: None)  # process-wide
    monkeypatch.setattr(worker.sys, "path", list(worker.sys.path))
    replies = io.StringIO()
    worker.serve(io.StringIO(load.to_line()), replies)
    return [read_reply(line) for line in replies.getvalue().splitlines()]


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
    assert answers(replies[1]) == ([int(v) % 10 for v in IMAGES[:, 0, 0, 0]], 0, None)
    assert replies[1].cost.params == replies[1].cost.passes == replies[1].cost.macs == 0
    assert replies[1].cost.peak_rss > 10_000_000  # a Python process: more than 10 MB


def test_the_named_batch_function_answers_whole_chunks(tmp_path, monkeypatch):
    script = tmp_path / "eval.py"
    script.write_text("def answer_all(images):\n    return images[:, 0, 0, 1] % 10\n")
    replies = serve(tmp_path, request(tmp_path, script, batch="answer_all"), IMAGES, monkeypatch)
    assert replies[0] == Loaded(images=3, chunk=worker.MODEL_CHUNK, batch=True)
    assert answers(replies[1]) == ([int(v) % 10 for v in IMAGES[:, 0, 0, 1]], 0, None)
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
    assert answers(replies[1]) == ([7, 7, 7], 0, None)


def test_images_reach_scripts_as_exact_png_files(tmp_path):
    path = tmp_path / "x.png"
    worker.write_png(path, IMAGES[0])
    assert np.array_equal(np.asarray(Image.open(path)), IMAGES[0])
    assert Image.open(path).mode == "RGB"


def test_the_worker_imports_only_the_standard_library_and_numpy():
    """It runs in submissions' environments (other NumPy, Keras 2 or none): importing it must
    pull in neither Keras, TensorFlow, h5py nor Pillow."""
    code = ("import sys, harness.sandbox.worker\n"
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


# The cost the worker reports ---------------------------------------------------------------------


def undo_keras_patches(monkeypatch) -> None:
    """Have ``monkeypatch`` undo what the worker's ``patch_keras`` changes process-wide."""
    import keras

    for name in ("load_weights", "predict", "predict_on_batch", "__call__"):
        monkeypatch.setattr(keras.Model, name, getattr(keras.Model, name))
    for module in list(sys.modules.values()):
        if getattr(module, "load_model", None) is keras.models.load_model:
            monkeypatch.setattr(module, "load_model", keras.models.load_model)


@pytest.mark.parametrize("blends", [0, 3])
def test_a_model_entry_reports_its_parameters_passes_and_multiply_adds(tmp_path, monkeypatch,
                                                                       blends):
    """Cumulative per chunk; a network applied 1 + ``blends`` times inside the entry's graph
    counts its multiply-adds that many times, its parameters once."""
    model = tiny_network(tmp_path / "model.keras", blends)
    assert model.count_params() == TINY_PARAMS
    monkeypatch.setattr(worker, "MODEL_CHUNK", 2)
    load = request(tmp_path, tmp_path / "model.keras", kind="model", input_scale=1 / 255)
    replies = serve(tmp_path, load, np.concatenate([IMAGES, IMAGES[:2]]), monkeypatch)
    assert [answers(reply)[1:] for reply in replies[1:]] == [(0, None)] * 3
    assert [(reply.params, reply.passes, reply.macs) for reply in replies[1:]] == [
        (TINY_PARAMS, passes, passes * (1 + blends) * TINY_MACS) for passes in (2, 4, 5)]
    assert all(reply.peak_rss > 100_000_000 for reply in replies[1:])  # TensorFlow is loaded


ONE_NETWORK = """\
import sys
import keras
import numpy as np
from PIL import Image

model = keras.models.load_model(sys.argv[1])
x = np.asarray(Image.open(sys.argv[2]), dtype="float32")[None] / 255.0
print(int(np.argmax(model.predict(x, verbose=0))))
"""
EAGER_AND_BATCH = """\
import sys
import keras
import numpy as np
from PIL import Image

model = keras.models.load_model(sys.argv[1])
x = np.asarray(Image.open(sys.argv[2]), dtype="float32")[None] / 255.0
again = model.predict_on_batch(np.concatenate([x, x]))
print(int(np.argmax(model(x, training=False))))
"""
NO_NETWORK = """\
import keras


def answer(images):
    return images[:, 0, 0, 0] % 10
"""
LOADS_TWO_RUNS_ONE = """\
import keras
import numpy as np

model = keras.models.load_model("a.keras")
spare = keras.models.load_model("b.keras")


def predict(images):
    return np.argmax(model.predict(images.astype("float32") / 255.0, verbose=0), axis=1)
"""


@pytest.mark.parametrize(("source", "args", "batch", "networks", "passes", "macs"), [
    (ONE_NETWORK, ["a.keras", "{image}"], None, 1, 1, 1),
    (TWO_NETWORKS, ["a.keras", "b.keras", "{image}"], None, 2, 2, 2),
    (EAGER_AND_BATCH, ["a.keras", "{image}"], None, 1, 3, 3),  # model(x) and a batch of 2
    (EAGER_AND_BATCH, ["wrapped.keras", "{image}"], None, 1, 3, 3 * 4),  # its inner calls: 0
    (NO_NETWORK, [], "answer", 0, 0, 0),
    (LOADS_TWO_RUNS_ONE, [], "predict", 2, 1, 1),  # a loaded network counts, run or not
], ids=["predict-once", "disagreement", "eager-and-batch", "wrapped", "no-network",
        "batch-entry"])
def test_a_script_reports_the_networks_it_loaded_and_the_images_through_them(
        tmp_path, monkeypatch, source, args, batch, networks, passes, macs):
    """Per image (per-image scripts) or per chunk (a batch entry): ``passes`` images through
    networks, ``macs`` times :data:`TINY_MACS` each."""
    for name in ("a.keras", "b.keras"):
        tiny_network(tmp_path / name)
    tiny_network(tmp_path / "wrapped.keras", blends=3)
    script = tmp_path / "eval.py"
    script.write_text(source)
    replies = serve(tmp_path, request(tmp_path, script, args=args, batch=batch), IMAGES,
                    monkeypatch, keras=True)
    assert answers(replies[-1])[1:] == (0, None), replies[-1].error
    assert (replies[-1].params, replies[-1].passes, replies[-1].macs) == (
        networks * TINY_PARAMS, passes * len(IMAGES), macs * len(IMAGES) * TINY_MACS)


def test_a_network_that_cannot_be_traced_makes_the_multiply_adds_unknown(tmp_path, monkeypatch):
    """A subclassed model taking an image and a vector: the passes still count."""
    script = tmp_path / "eval.py"
    script.write_text(
        "import keras\nimport numpy as np\n\n\n"
        "class Pair(keras.Model):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.dense = keras.layers.Dense(10)\n\n"
        "    def call(self, inputs):\n        image, extra = inputs\n"
        "        flat = keras.ops.reshape(image, (-1, 55 * 47 * 3))\n"
        "        return self.dense(keras.ops.concatenate([flat, extra], axis=-1))\n\n\n"
        "model = Pair()\n\n\n"
        "def predict(images):\n    x = images.astype('float32')\n"
        "    return np.argmax(model.predict([x, np.ones((len(x), 5), 'float32')], verbose=0),"
        " axis=1)\n")
    replies = serve(tmp_path, request(tmp_path, script, batch="predict"), IMAGES, monkeypatch,
                    keras=True)
    assert (replies[-1].params, replies[-1].passes, replies[-1].macs) == (
        (55 * 47 * 3 + 5) * 10 + 10, len(IMAGES), None)


def test_a_worker_answers_file_after_file_until_its_input_ends(tmp_path, monkeypatch):
    """A model entry's worker answers every track of its submission: one request per file."""
    model = tiny_network(tmp_path / "model.keras")
    first = request(tmp_path, tmp_path / "model.keras", kind="model", input_scale=1 / 255,
                    images=str(tmp_path / "first.npy"))
    second = replace(first, images=str(tmp_path / "second.npy"))
    np.save(first.images, IMAGES)
    np.save(second.images, IMAGES[::-1][:2])
    monkeypatch.chdir(tmp_path)
    replies = io.StringIO()
    worker.serve(io.StringIO(first.to_line() + second.to_line()), replies)
    got = [read_reply(line) for line in replies.getvalue().splitlines()]
    expected = np.argmax(model.predict(IMAGES / 255, verbose=0), axis=1).tolist()
    assert [type(reply) for reply in got] == [Loaded, Chunk, Loaded, Chunk]
    assert answers(got[1])[0] == expected and answers(got[3])[0] == expected[::-1][:2]
    assert (got[1].passes, got[3].passes) == (3, 2)  # each file's cost is its own


SLEEPY = """\
import os, sys, time
count = int(open("count").read()) if os.path.exists("count") else 0
open("count", "w").write(str(count + 1))
time.sleep(5 if {hangs} else 0)
print(7)
"""


def test_a_script_that_times_out_three_images_in_a_row_is_stopped(tmp_path, monkeypatch):
    script = tmp_path / "eval.py"
    script.write_text(SLEEPY.format(hangs="True"))
    load = request(tmp_path, script, image_timeout=0.2)
    replies = serve(tmp_path, load, np.concatenate([IMAGES] * 3), monkeypatch, per_image=True)
    assert [answers(reply)[:2] for reply in replies[1:3]] == [([INVALID], 1)] * 2
    assert replies[3] == Failed("timed out on 3 images in a row (0.2 s each); stopped after 3 "
                                "of the track's images", timed_out=True)
    assert len(replies) == 4 and (tmp_path / "count").read_text() == "3"


def test_a_script_slow_on_some_images_is_never_cut(tmp_path, monkeypatch):
    """Timeouts that are not in a row are invalid answers, nothing more."""
    script = tmp_path / "eval.py"
    script.write_text(SLEEPY.format(hangs="count % 3 != 2"))  # two timeouts, then an answer
    load = request(tmp_path, script, image_timeout=0.2)
    replies = serve(tmp_path, load, np.concatenate([IMAGES] * 2), monkeypatch, per_image=True)
    assert [answers(reply)[0] for reply in replies[1:]] == [[INVALID], [INVALID], [7]] * 2


def test_a_batch_function_may_return_probabilities_with_a_poisoned_column(tmp_path, monkeypatch):
    """Rows of N+1 probabilities: the label is the argmax, the detection score column N; a row
    that is not finite is an invalid answer; any other shape makes every answer invalid."""
    script = tmp_path / "eval.py"
    script.write_text("import numpy as np\n\n"
                      "def answer_all(images):\n"
                      "    rows = np.full((len(images), 11), 0.05)\n"
                      "    rows[:, 10] = np.linspace(0.1, 0.9, len(images))\n"
                      "    rows[0, 3] = 0.8\n"
                      "    return rows\n")
    replies = serve(tmp_path, request(tmp_path, script, batch="answer_all"), IMAGES, monkeypatch)
    assert (replies[1].labels, replies[1].scores) == ([3, 10, 10], [0.1, 0.5, 0.9])
    rows = np.full((3, 11), 0.1)
    rows[1, 2] = np.nan
    assert worker.parse_batch(rows, 3, 10, "f(images)") == (
        [0, INVALID, 0], 1, "f(images) returned probabilities that are not finite",
        [0.1, 0.0, 0.1])
    labels, invalid, error, scores = worker.parse_batch(np.zeros((3, 10)), 3, 10, "f(images)")
    assert (labels, invalid, scores) == ([INVALID] * 3, 3, None)
    assert error == ("f(images) returned shape (3, 10) dtype float64; expected (3,) integers "
                     "or (3, 11) probabilities")
    assert worker.parse_batch(np.array([1, 11, 0]), 3, 10, "f") == (
        [1, INVALID, 0], 1, "f answered outside [0, 10]", None)


def test_a_model_entry_with_n_plus_one_outputs_scores_each_image(tmp_path, monkeypatch):
    """The tiny network has 10 softmax outputs: with 9 classes the last is "poisoned", and its
    probability, as the model gives it, is each image's detection score; with 10 classes it
    gives labels only."""
    model = tiny_network(tmp_path / "model.keras")
    monkeypatch.setattr(worker, "MODEL_CHUNK", 2)
    load = request(tmp_path, tmp_path / "model.keras", kind="model", input_scale=1 / 255,
                   num_classes=9)
    replies = serve(tmp_path, load, IMAGES, monkeypatch)
    expected = model.predict(IMAGES.astype("float32") / 255, verbose=0)
    assert [label for reply in replies[1:] for label in reply.labels] == \
        expected.argmax(axis=1).tolist()
    assert [score for reply in replies[1:] for score in reply.scores] == \
        pytest.approx(expected[:, 9].tolist(), abs=1e-6)
    plain = serve(tmp_path, replace(load, num_classes=10), IMAGES, monkeypatch)
    assert all(reply.scores is None for reply in plain[1:])
