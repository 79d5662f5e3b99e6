"""Hostile and broken submissions (the corpus in tests/hostile/) graded beside good ones.

Each hostile entry must end as its own error row with the right one-line reason (or, for the
entries that only misbehave on the side, as a normal row), the good entries must be graded exactly
as when graded alone, the grader must finish, and nothing outside the sandbox may change.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.definitions.submissions import TrackEntry
from harness.definitions.tracks import load_benchmark
from harness.errors import SubmissionError
from harness.results.provenance import UNSANDBOXED
from harness.sandbox import isolation as sandbox
from harness.sandbox.isolation import Limits
from harness.sandbox.runner import Cost, EntryRun, Worker, Workers, run_entry, shareable
from tests.conftest import EVAL_SCRIPT, REPO, benchmark_subset, lambda_model, write_submission
from tests.sandbox.conftest import (
    IMAGES,
    TINY_MACS,
    TINY_PARAMS,
    TWO_NETWORKS,
    Listener,
    tiny_network,
)

HOSTILE = Path(__file__).parents[1] / "hostile"
SANDBOXED = sandbox.detect().bwrap is not None
needs_bwrap = pytest.mark.skipif(not SANDBOXED, reason="bubblewrap cannot run here: the "
                                 "file-system and network checks need the sandbox")
OUTSIDE = [Path("/escape.txt"), Path("/tmp/escape.txt"), Path.home() / "escape.txt"]
NOBODY = 65534
"""The ordinary user the grader runs as in the tests that need one."""
SECRET_VARIABLE = "the-labels-are-here"
"""In the grader's environment: no submission may ever see it or get it published."""
SECRET_FILE = "the-organizers-private-token"
"""In a file only the grader's user can read: likewise."""
SANDBOX_ATTACKS = ("escape", "socket", "shadow-modules", "privilege-probe", "log-swap",
                   "label-hunter", "badnet")
"""The corpus's entries that attack the sandbox itself (with the BadNet to compare with)."""

BATCH_SCRIPT = """\
import keras
import numpy as np

model = keras.models.load_model("model.h5", compile=False)


def predict(images):
    return np.argmax(model.predict(images.astype("float32") / 255.0, verbose=0), axis=1)
"""
"""The optional batch entry point: one call per chunk of images."""


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its sha256: what 'nothing changed' is checked against."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def lay_out_corpus(subs: Path, badnet: Path, escapes: list[Path], port: int, secret: Path,
                   only: Sequence[str] | None = None) -> None:
    """The hostile corpus beside good entries in ``subs``, as this file grades it and as
    ``scripts/hostile_corpus.py`` times it: the entries of tests/hostile/, a Lambda model, a good
    per-image script, a good batch script and the BadNet on the sunglasses track (of these, the
    entries named in ``only``, when given). The escape, socket and shadowing entries try to
    write ``escapes`` and to reach ``port`` on the loopback; the log-swapping one aims at
    ``secret``, a file only the grader can read (written here)."""
    shutil.copytree(HOSTILE, subs)
    shutil.copy(badnet, subs / "shadow-modules" / "model.h5")
    lambda_model(badnet, subs / "lambda-model" / "model.keras")
    track = {"sunglasses": {"eval": "eval.py", "args": ["model.h5", "{image}"]}}
    write_submission(subs, "good-script", track,
                     {"eval.py": EVAL_SCRIPT.encode(), "model.h5": badnet})
    write_submission(subs, "good-batch", {"sunglasses": {"eval": "eval.py", "batch": "predict"}},
                     {"eval.py": BATCH_SCRIPT.encode(), "model.h5": badnet})
    write_submission(subs, "badnet", {"sunglasses": {"model": "model.h5"}}, {"model.h5": badnet})
    secret.write_text(SECRET_FILE)
    secret.chmod(0o600)
    probe = {"paths": [str(path) for path in escapes], "port": port, "secrets": [str(secret)]}
    for name in ("escape", "socket", "shadow-modules", "log-swap"):
        (subs / name / "probe.json").write_text(json.dumps(probe))
    for folder in subs.iterdir():
        if only is not None and folder.name not in only:
            shutil.rmtree(folder)


def ordinary_user(argv: Sequence[str | Path], root: Path) -> list[str | Path]:
    """``argv`` run as an ordinary user when this process is root (as is): ``nobody`` through
    setpriv where that user can run the grader on ``root`` (which becomes its), else the grader
    as ``nobody`` in a user namespace of its own, which has no capability and reads files as
    the user it was (an interpreter under ``/root`` stays reachable). Either way the grader is
    not root, so bubblewrap must make the sandbox unprivileged."""
    if os.geteuid() != 0:
        return list(argv)
    give(root, NOBODY)
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    probe = [*setpriv, sys.executable, "-c", "import os, sys, harness; "
             f"os.listdir({str(root)!r}); "
             "sys.exit(not os.access(os.path.realpath(sys.executable), os.X_OK))"]
    if subprocess.run(probe, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                      cwd=root).returncode == 0:
        return [*setpriv, *argv]
    give(root, os.getuid())
    return ["unshare", "--user", f"--map-user={NOBODY}", f"--map-group={NOBODY}", *argv]


def give(root: Path, uid: int) -> None:
    for path in [root, *root.rglob("*")]:
        os.chown(path, uid, uid, follow_symlinks=False)


def without_namespaces(argv: Sequence[str | Path]) -> list[str | Path]:
    """``argv`` where the kernel refuses new namespaces, as in a locked-down container: a user
    namespace whose limit of further user namespaces is 0, entered with no capability left."""
    return ["unshare", "--user", f"--map-user={NOBODY}", f"--map-group={NOBODY}", "--keep-caps",
            "sh", "-c", 'echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv '
            '--inh-caps=-all --ambient-caps=-all "$@"', "sh", *argv]


def grade_corpus(root: Path, bench_dir: Path, only: Sequence[str] | None = None,
                 run_as: Callable[[list[str | Path]], list[str | Path]] = list,
                 options: Sequence[str] = ()) -> dict[str, Any]:
    """Lay out the corpus in ``root`` (of it, ``only``), grade it through ``python -m harness
    grade`` as ``run_as`` says, and return what the tests look at."""
    subs = root / "submissions"
    listener = Listener()
    lay_out_corpus(subs, load_benchmark(bench_dir).track("sunglasses").badnet,
                   [root / "escape.txt", subs / "escape" / "escaped.txt", REPO / "escape.txt"],
                   listener.port, root / "secret.txt", only)
    before = snapshot(root)
    outside_before = {path: path.exists() for path in OUTSIDE}
    # The run's temporary folders (private copies, image files) go under its own TMPDIR, which
    # then names every sandbox of this run on its command line.
    temporary = root / "tmp"
    temporary.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "HARNESS_PROBE_SECRET": SECRET_VARIABLE,
           "TMPDIR": str(temporary)}
    command: list[str | Path] = [
        sys.executable, "-m", "harness", "grade", "submissions", "--benchmark", bench_dir,
        "--out", root / "out", "--no-cache", "--image-timeout", "2", "--track-timeout", "20",
        *options]
    result = subprocess.run(run_as(command), cwd=root, env=env, capture_output=True, text=True,
                            timeout=900)
    results = root / "out" / "results.json"
    records = json.loads(results.read_text())["results"] if results.exists() else []
    left = subprocess.run(["pgrep", "-f", str(temporary)], capture_output=True, text=True)
    outputs = "".join(path.read_text(errors="replace") for path in (root / "out").glob("*")
                      if path.is_file())
    return {"root": root, "result": result, "by": {r["submission"]: r for r in records},
            "before": before, "after": snapshot(root), "outside_before": outside_before,
            "connections": listener.connections, "left": left.stdout.split(),
            "published": outputs + result.stdout + result.stderr}


@pytest.fixture(scope="module")
def hostile(tiny_benchmark: Path, tmp_path_factory: pytest.TempPathFactory):
    """The whole corpus, graded by the grader as the user running the tests (root in CI)."""
    root = tmp_path_factory.mktemp("hostile")
    bench_dir = benchmark_subset(tiny_benchmark, root / "benchmark", ["sunglasses"])
    return grade_corpus(root, bench_dir)


@pytest.fixture(scope="module")
def hostile_ordinary(tiny_benchmark: Path):
    """The entries that attack the sandbox itself, graded by the grader as an ordinary user
    (when the tests run as root; as they are otherwise): the two modes build the sandbox
    differently (setpriv as root, a user namespace otherwise). In a folder of its own under
    the system's temporary folder, which that user can reach (pytest's is root's alone)."""
    root = Path(tempfile.mkdtemp(prefix="harness-ordinary-"))
    try:
        bench_dir = benchmark_subset(tiny_benchmark, root / "benchmark", ["sunglasses"])
        yield grade_corpus(root, bench_dir, only=SANDBOX_ATTACKS,
                           run_as=lambda argv: ordinary_user(argv, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["grader's user", "ordinary user"])
def attacked(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The sandbox attacks graded in either mode."""
    return request.getfixturevalue("hostile" if request.param == "grader's user"
                                   else "hostile_ordinary")


def test_the_run_finishes_and_reports_every_entry(hostile):
    result, by = hostile["result"], hostile["by"]
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stdout
    expected = {path.name for path in HOSTILE.iterdir()} | {"good-script", "good-batch", "badnet"}
    assert set(by) == expected
    assert all("\n" not in (record["error"] or "") for record in by.values())


def test_good_entries_are_graded_as_if_alone(hostile):
    by = hostile["by"]
    reference = by["badnet"]
    assert reference["status"] == "ok" and reference["asr"] > 0.5
    for name in ("good-script", "good-batch"):
        record = by[name]
        assert record["status"] == "ok", record["error"]
        assert (record["clean_acc"], record["asr"], record["n_invalid"]) == \
            (reference["clean_acc"], reference["asr"], 0)


@pytest.mark.parametrize(("name", "reason"), [
    ("crash", "worker died while answering"),
    ("crash", "SIGSEGV"),
    ("infinite-loop", "timed out while answering"),
    ("memory-bomb", "MemoryError"),
    ("prints-nothing", "printed nothing"),
    ("prints-garbage", "printed no integer"),
    ("out-of-range", "printed 99999, outside [0, 10]"),
    ("syntax-error", "cannot load: SyntaxError"),
    ("missing-import", "No module named 'torchvision_is_not_here'"),
    ("missing-model", "file 'repaired.h5' not found"),
    ("lambda-model", "Lambda layer"),
    ("corrupt-h5", "model.h5"),
])
def test_each_broken_entry_gets_its_reason(hostile, name, reason):
    record = hostile["by"][name]
    assert record["status"] == "error"
    assert reason in record["error"], record["error"]


def test_fork_bomb_is_an_error_and_no_sandbox_outlives_the_run(hostile):
    assert hostile["by"]["fork-bomb"]["status"] == "error"
    assert hostile["left"] == []  # a worker's processes die with its sandbox's PID namespace


@needs_bwrap
def test_nothing_outside_the_sandbox_changed(attacked):
    hostile = attacked
    before, after = hostile["before"], hostile["after"]
    changed = {name for name in before.keys() | after.keys()
               if before.get(name) != after.get(name) and not name.startswith(("out/", "tmp/"))}
    assert changed == set()
    assert {path: path.exists() for path in OUTSIDE} == hostile["outside_before"]
    assert not (REPO / "escape.txt").exists()
    assert hostile["by"]["escape"]["status"] == "ok"  # it answered; its writes went nowhere


@needs_bwrap
def test_no_labels_secrets_or_network_inside(attacked):
    hostile = attacked
    hunter = hostile["by"]["label-hunter"]
    assert hunter["status"] == "ok" and hunter["false_flag_rate"] == 0.0, hunter
    assert hostile["by"]["socket"]["status"] == "ok"
    assert hostile["connections"] == 0


@needs_bwrap
def test_no_module_of_a_model_entrys_folder_runs(attacked):
    """Its folder shadows numpy, keras, tensorflow and the grader's own package and holds a
    sitecustomize.py and a .pth: each would stop the worker. The worker starts isolated, so the
    entry answers exactly as the BadNet it holds."""
    shadow, badnet = attacked["by"]["shadow-modules"], attacked["by"]["badnet"]
    assert shadow["status"] == "ok", shadow["error"]
    assert (shadow["clean_acc"], shadow["asr"]) == (badnet["clean_acc"], badnet["asr"])


@needs_bwrap
def test_the_worker_holds_no_privilege(attacked):
    """Not root, no capability in any set, no way to remount or write the grader's package:
    otherwise the probe would have flagged every image."""
    probe = attacked["by"]["privilege-probe"]
    assert probe["status"] == "ok", probe["error"]
    assert (probe["false_flag_rate"], probe["detect_rate"]) == (0.0, 0.0)
    assert not (REPO / "harness" / "planted.py").exists()


@needs_bwrap
def test_a_swapped_log_publishes_nothing_but_its_own_line(attacked):
    """The worker's log is a descriptor the grader holds: replacing paths with links to the
    grader's secrets changes nothing, and the error row quotes what the entry itself logged."""
    error = attacked["by"]["log-swap"]["error"]
    assert error.endswith("last line of its log: log-swap: the last line of its own log"), error
    assert SECRET_FILE not in attacked["published"]
    assert SECRET_VARIABLE not in attacked["published"]


@needs_bwrap
def test_without_namespaces_nothing_is_graded(tiny_benchmark, tmp_path):
    """Fail closed: where bubblewrap cannot build a sandbox the grader refuses in one line
    (exit 2) before any submission runs."""
    bench_dir = benchmark_subset(tiny_benchmark, tmp_path / "benchmark", ["sunglasses"])
    graded = grade_corpus(tmp_path, bench_dir, only=("escape", "badnet"),
                          run_as=without_namespaces)
    result = graded["result"]
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no sandbox: bubblewrap cannot create namespaces" in lines[0]
    assert "--allow-unsandboxed" in lines[0] and "Traceback" not in result.stdout
    assert graded["by"] == {} and not (tmp_path / "submissions" / "escape" / "escaped.txt").exists()


@needs_bwrap
def test_harness_sandbox_proves_isolation_or_fails(tmp_path):
    """What CI runs before grading: exit 0 with one line where the sandbox holds (here, as the
    grader's user and as an ordinary one), exit 2 with one line where none can be built."""
    command: list[str | Path] = [sys.executable, "-m", "harness", "sandbox"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for argv in (command, ordinary_user(command, tmp_path)):
        result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith("no root, no capability, no network")
    result = subprocess.run(without_namespaces(command), capture_output=True, text=True,
                            env=env, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: no sandbox: bubblewrap "
                                                   "cannot create namespaces")


@needs_bwrap
def test_allow_unsandboxed_grades_with_limits_only_and_says_so(tiny_benchmark, tmp_path):
    """The organizer's explicit choice: graded, one warning, and the provenance (results.json
    and the board) says the run had no sandbox."""
    bench_dir = benchmark_subset(tiny_benchmark, tmp_path / "benchmark", ["sunglasses"])
    graded = grade_corpus(tmp_path, bench_dir, only=("badnet",), run_as=without_namespaces,
                          options=["--allow-unsandboxed"])
    result = graded["result"]
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "harness: WARNING: no sandbox (bubblewrap cannot create namespaces" in result.stderr
    provenance = json.loads((tmp_path / "out" / "results.json").read_text())["benchmark"]
    assert provenance["provenance"]["sandbox"] == UNSANDBOXED
    assert UNSANDBOXED in (tmp_path / "out" / "leaderboard.md").read_text()
    assert graded["by"]["badnet"]["status"] == "ok"


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "file", "args", "networks", "passes", "macs"), [
    ("model", "wrapped.keras", (), 1, 1, 4),
    ("eval", "eval.py", ("a.keras", "b.keras", "{image}"), 2, 2, 2)])
def test_the_runner_hands_over_the_cost_of_the_whole_run(tmp_path, kind, file, args, networks,
                                                         passes, macs):
    """Through the sandboxed worker, in several chunks for the script: the last chunk's
    cumulative cost. The wrapped model runs its network 4 times per image inside its graph; the
    script runs two networks on each image."""
    root = tmp_path / "submission"
    root.mkdir()
    tiny_network(root / "a.keras")
    tiny_network(root / "b.keras")
    tiny_network(root / "wrapped.keras", blends=3)
    (root / "eval.py").write_text(TWO_NETWORKS)
    images = np.concatenate([IMAGES] * 30)  # 90: a chunk per image for the script
    np.save(tmp_path / "images.npy", images)
    (tmp_path / "images.npy").chmod(0o644)
    answers = run_entry(TrackEntry(kind=kind, path=root / file, args=args), root,
                        tmp_path / "images.npy", EntryRun(num_classes=10, input_scale=1 / 255))
    assert answers.invalid == 0, answers.first_error
    assert answers.cost is not None and answers.cost.peak_rss > 100_000_000
    assert answers.cost == Cost(params=networks * TINY_PARAMS, passes=passes * len(images),
                                macs=macs * len(images) * TINY_MACS,
                                peak_rss=answers.cost.peak_rss)


@pytest.mark.slow
def test_a_model_entrys_worker_answers_every_track_in_turn(tmp_path):
    """Start-up once per submission: the second file goes to the same process, answers as a
    worker of its own would, and loads in far less time than the first (no Python, no
    TensorFlow start-up)."""
    root = tmp_path / "submission"
    root.mkdir()
    tiny_network(root / "a.keras")
    folder = tmp_path / "images"
    folder.mkdir()
    for name, images in (("one.npy", IMAGES), ("two.npy", IMAGES[::-1])):
        np.save(folder / name, images)
        (folder / name).chmod(0o644)
    entry = TrackEntry(kind="model", path=root / "a.keras")
    run = EntryRun(num_classes=10, input_scale=1 / 255, limits=Limits())
    workers = Workers()
    try:
        first = workers.answer(entry, root, folder / "one.npy", run, tracks=2)
        assert workers.current is not None
        process = workers.current.process
        second = workers.answer(entry, root, folder / "two.npy", run, tracks=2)
        assert workers.current.process is process and workers.current.answered == 2
    finally:
        workers.close()
    assert process.poll() is not None  # closed: the process group is gone
    alone = run_entry(entry, root, folder / "two.npy", run)
    assert second.labels.tolist() == alone.labels.tolist() == first.labels.tolist()[::-1]
    assert second.startup < first.startup / 2
    assert shareable(entry, allow_unsafe=False) and not shareable(entry, allow_unsafe=True)
    assert not shareable(TrackEntry(kind="eval", path=root / "eval.py"), allow_unsafe=False)
    chosen = TrackEntry(kind="model", path=root / "a.keras", requirements=root / "req.txt")
    assert not shareable(chosen, allow_unsafe=False)  # its packages are the team's code


@pytest.mark.slow
def test_detection_scores_reach_the_grader_from_a_model_and_a_batch_function(tmp_path):
    """A model entry with N+1 outputs: each image's probability of class N, aligned with the
    labels; with N outputs, none. A batch function returning probabilities: its column N, NaN
    where the answer is invalid (a row that is not finite)."""
    root = tmp_path / "submission"
    root.mkdir()
    model = tiny_network(root / "a.keras")
    (root / "eval.py").write_text(
        "import numpy as np\n\ndef answer_all(images):\n"
        "    rows = np.full((len(images), 11), 0.05)\n"
        "    rows[:, 10] = np.arange(len(images)) / 10\n"
        "    rows[1, 0] = np.nan\n"
        "    return rows\n")
    np.save(tmp_path / "images.npy", IMAGES)
    (tmp_path / "images.npy").chmod(0o644)
    entry = TrackEntry(kind="model", path=root / "a.keras")
    scored = run_entry(entry, root, tmp_path / "images.npy",
                       EntryRun(num_classes=9, input_scale=1 / 255, limits=Limits()))
    expected = model.predict(IMAGES.astype("float32") / 255, verbose=0)
    assert scored.labels.tolist() == expected.argmax(axis=1).tolist()
    assert scored.scores is not None
    assert scored.scores.tolist() == pytest.approx(expected[:, 9].tolist(), abs=1e-6)
    plain = run_entry(entry, root, tmp_path / "images.npy",
                      EntryRun(num_classes=10, input_scale=1 / 255, limits=Limits()))
    assert plain.scores is None
    script = TrackEntry(kind="eval", path=root / "eval.py", batch="answer_all")
    batch = run_entry(script, root, tmp_path / "images.npy",
                      EntryRun(num_classes=10, input_scale=1.0, limits=Limits()))
    assert batch.labels.tolist() == [0, -1, 10] and batch.invalid == 1
    assert batch.scores is not None and batch.scores[0] == 0.0 and batch.scores[2] == 0.2
    assert np.isnan(batch.scores[1])


@pytest.mark.slow
@needs_bwrap
def test_a_worker_sees_the_images_of_its_current_item_only(tmp_path):
    """A worker answering two image files in turn (as a model entry's answers every track)
    finds one file in its input folder each time: never another item's, whose clean images it
    could match against this one's to tell the poisoned ones apart."""
    root = tmp_path / "submission"
    root.mkdir()
    (root / "eval.py").write_text("import os\nprint(len(os.listdir('/input')))\n")
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("one.npy", "two.npy"):
        np.save(folder / name, IMAGES)
        (folder / name).chmod(0o644)
    entry = TrackEntry(kind="eval", path=root / "eval.py", args=("{image}",))
    with Worker(root, limits=Limits(), tracks=2) as worker:
        seen = [worker.answer(entry, folder / name, EntryRun(num_classes=10, input_scale=1.0))
                .labels.tolist() for name in ("one.npy", "two.npy")]
    assert seen == [[1, 1, 1], [1, 1, 1]]


@pytest.mark.slow
def test_answering_stops_once_the_invalid_answers_decide_the_track(tmp_path):
    """More than half of the answers invalid makes an error row: the grader stops as soon as
    the answers so far make that certain, not after the last image."""
    root = tmp_path / "submission"
    root.mkdir()
    (root / "eval.py").write_text("print('no number here')\n")
    np.save(tmp_path / "images.npy", np.concatenate([IMAGES] * 20))  # 60 images
    (tmp_path / "images.npy").chmod(0o644)
    with pytest.raises(SubmissionError) as error:
        run_entry(TrackEntry(kind="eval", path=root / "eval.py", args=("{image}",)), root,
                  tmp_path / "images.npy", EntryRun(num_classes=10, input_scale=1.0))
    assert str(error.value).startswith(
        "31 of 60 answers invalid after 31 images, so the track cannot pass the limit of 50%; "
        "stopped; first: ")


@pytest.mark.slow
def test_a_process_the_script_forks_never_answers_as_the_worker(tmp_path):
    """A forked copy of the script returns into the worker's code with the worker's channel:
    it must end there, so the grader reads the worker's answers only, once each."""
    root = tmp_path / "submission"
    root.mkdir()
    (root / "eval.py").write_text("import os\nos.fork()\nprint(3)\n")
    np.save(tmp_path / "images.npy", IMAGES)
    (tmp_path / "images.npy").chmod(0o644)
    answers = run_entry(TrackEntry(kind="eval", path=root / "eval.py", args=("{image}",)), root,
                        tmp_path / "images.npy", EntryRun(num_classes=10, input_scale=1.0))
    assert (answers.labels.tolist(), answers.invalid) == ([3, 3, 3], 0)
