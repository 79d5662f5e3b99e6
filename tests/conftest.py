"""Shared fixtures: a tiny benchmark built by the project's own build command, and helpers to
lay out submission folders and run the CLI the way users do (a separate process)."""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from harness.definitions.tracks import DataFile, PoisonedSet, Track
from harness.grading import stats
from harness.render.board import board
from harness.render.leaderboard import markdown
from harness.results import record as schema
from harness.results.ranking import Ranked
from harness.results.record import error_record, ok_record

REPO = Path(__file__).resolve().parents[1]
REAL_CSAW = REPO.parent / "shared" / "real-csaw"
SLOW_FIXTURES = {"tiny_benchmark", "tiny_benchmark_probed", "keras2", "real_benchmark"}
"""Fixtures that build a benchmark (training BadNets), a Python environment, or stand for a run
of the grading CLI: every test that needs one is ``slow``."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``pytest -m "not slow"`` is the fast suite (seconds): a test is slow when it trains a
    model, builds an environment, starts a sandbox or grades (a fixture above, or marked)."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_benchmark_probed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded benchmark at tiny scale (10 identities), built once per test session, as
    the build writes it: with the retuning probe's inputs (retuning sets, the clean model)."""
    from harness.synthetic.build import build

    out = tmp_path_factory.mktemp("tiny-benchmark")
    build(scale="tiny", out=out, verbose=0)
    shutil.copytree(REPO / "data" / "environments", out / "environments")  # as data/ has them
    return out


@pytest.fixture(scope="session")
def tiny_benchmark(tiny_benchmark_probed: Path, tmp_path_factory: pytest.TempPathFactory
                   ) -> Path:
    """The tiny benchmark without the retuning probe's inputs, so its tracks get no probe: what
    most grading tests use, the probe having tests of its own (test_grade_cli, test_retuning)
    that use :func:`tiny_benchmark_probed`. It costs each model entry a second sandboxed worker
    and the session's suite minutes."""
    import tomli_w

    out = tmp_path_factory.mktemp("tiny-benchmark-no-probe")
    shutil.copytree(tiny_benchmark_probed, out, dirs_exist_ok=True)
    for path in (out / "tracks").glob("*.toml"):
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
        spec.pop("retuning", None)
        spec.pop("clean_model", None)
        path.write_text(tomli_w.dumps(spec), encoding="utf-8")
    return out


def write_submission(root: Path, name: str, tracks: dict[str, dict[str, str]],
                     files: dict[str, Path | bytes] | None = None, **meta: object) -> Path:
    """Create ``root/name/submission.toml`` with the given track tables and files."""
    import tomli_w

    folder = root / name
    folder.mkdir(parents=True)
    for file_name, content in (files or {}).items():
        target = folder / file_name
        if isinstance(content, Path):
            shutil.copy(content, target)
        else:
            target.write_bytes(content)
    manifest = {"team": meta.get("team", name), "method": meta.get("method", "test"),
                "reference": meta.get("reference", False), "tracks": tracks}
    (folder / "submission.toml").write_text(tomli_w.dumps(manifest))
    return folder


def run_harness(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m harness ...`` in a fresh process, as a user or CI runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def benchmark_subset(source: Path, dest: Path, tracks: list[str]) -> Path:
    """A copy of benchmark ``source`` with only the named tracks: the tests of one submission
    need two tracks, not five (each track starts a sandboxed worker)."""
    shutil.copytree(source, dest)
    for path in (dest / "tracks").glob("*.toml"):
        if path.stem not in tracks:
            path.unlink()
    return dest


def lambda_model(badnet: Path, path: Path) -> Path:
    """A working model that wraps the BadNet behind a Lambda layer (arbitrary code)."""
    import keras

    from harness.sandbox.models import load_model_file

    inner = load_model_file(badnet)
    inputs = keras.Input((55, 47, 3))
    outputs = inner(keras.layers.Lambda(lambda x: x * 1.0)(inputs))
    keras.Model(inputs, outputs).save(path)
    return path


EVAL_SCRIPT = (REPO / "examples" / "per-image-eval" / "eval.py").read_text()
"""A CSAW-HackML per-image script as teams wrote them: model path first, noisy output."""


# Hand-made records, benchmarks and readers of the Markdown leaderboard: the results and render
# tests build their inputs with these.

DATA_FILES = ("clean_test.h5", "sunglasses_poisoned.h5", "eyebrows_poisoned.h5", "lipstick.h5")


BENCHMARK = {
    "name": "csaw-hackml-toy",
    "tracks": ["sunglasses", "multi-trigger"],
    "data_hashes": {name: hashlib.sha256(name.encode()).hexdigest() for name in DATA_FILES},
    "provenance": {
        "harness": "0.0.0",
        "python": "3.11.2",
        "numpy": "2.4.6",
        "tensorflow": "2.20.0",
        "keras": "3.15.0",
        "seed": 2020,
    },
}


N_CLEAN, N_PER_TRIGGER = 1000, 100


def meta(name: str, team: str = "team", method: str = "method", reference: bool = False) -> dict:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return {"submission": name, "team": team, "method": method, "reference": reference,
            "sha256": digest}


def first(hits: int, n: int) -> np.ndarray:
    """Outcomes with the first ``hits`` of ``n`` images right: two such vectors nest, which is
    how close defenses behave (they fail on the same hard images)."""
    return np.arange(n) < hits


def scores(
    clean_acc: float,
    per_trigger: dict[str, float],
    detect_rate: float = 0.0,
    false_flag_rate: float = 0.0,
    robust_acc: float | None = None,
) -> dict:
    """Scores as score_track returns them, for 1000 clean images and poisoned sets of 100: the
    rates are those the images give (``clean_acc`` 0.9781 is 978 right), as a results file is
    checked against its outcomes."""
    clean_hits = round(clean_acc * N_CLEAN)
    hits = {trigger: round(rate * N_PER_TRIGGER) for trigger, rate in per_trigger.items()}
    attack = np.concatenate([first(hit, N_PER_TRIGGER) for hit in hits.values()])
    attack_hits, n_poisoned = int(attack.sum()), attack.size
    clean_acc, asr = clean_hits / N_CLEAN, attack_hits / n_poisoned
    return {
        "clean_acc": clean_acc,
        "asr": asr,
        "per_trigger": {trigger: hit / N_PER_TRIGGER for trigger, hit in hits.items()},
        "detect_rate": detect_rate,
        "false_flag_rate": false_flag_rate,
        "robust_acc": robust_acc,
        "utility": clean_acc - asr,
        "n_clean": N_CLEAN,
        "n_poisoned": n_poisoned,
        "n_invalid": 0,
        "clean_acc_ci": list(stats.wilson(clean_hits, N_CLEAN)),
        "asr_ci": list(stats.wilson(attack_hits, n_poisoned)),
        "utility_ci": list(stats.newcombe_difference(clean_hits, N_CLEAN, attack_hits, n_poisoned)),
        "outcomes": {"clean": stats.pack_outcomes(first(clean_hits, N_CLEAN)),
                     "attack": stats.pack_outcomes(attack)},
    }


def cost(params: int, macs: float | None, passes: float) -> dict:
    """An entry's cost as :func:`harness.grading.item.entry_cost` gives it."""
    return {"params": params, "macs_per_image": macs, "passes_per_image": passes}


DEEPID = cost(601_643, 4_526_600.0, 1.0)
"""The contest network's size and one pass per image."""


def detection(auroc: float, low: float, high: float) -> dict:
    """The detection figure of an entry that gives detection scores
    (:func:`harness.grading.item.detection`)."""
    return {"auroc": auroc, "auroc_ci": [low, high]}


def golden_records() -> list[dict]:
    """The BadNet itself, defenses, a detector, a failing entry, and ties broken by clean acc and
    name; costs measured for some entries and not others; the detector gives detection scores on
    one track (an AUROC), the others labels only."""
    baseline = meta("badnet-original", "organizers", "no defense", reference=True)
    pruning = meta("fine-pruning", "Blue | Team", "fine-pruning (Liu et al. 2018)")
    strip = meta("strip-detector", "gamma", "STRIP input filter")
    cleanse = meta("neural-cleanse", "delta", "Neural Cleanse")
    twin = meta("pruning-twin", "epsilon", "pruning, less fine-tuning")
    return [
        ok_record(baseline, "sunglasses",
                  {**scores(0.9781, {"sunglasses": 1.0}, robust_acc=0.0), **DEEPID}, badnet=True),
        ok_record(
            baseline,
            "multi-trigger",
            {**scores(0.9620, {"eyebrows": 0.916, "lipstick": 0.908}, robust_acc=0.02), **DEEPID},
            badnet=True,
        ),
        ok_record(pruning, "sunglasses",
                  {**scores(0.9512, {"sunglasses": 0.031}, 0.0, 0.002, 0.874), **DEEPID}),
        ok_record(
            pruning, "multi-trigger", scores(0.9340, {"eyebrows": 0.12, "lipstick": 0.06}, 0.01)
        ),
        ok_record(strip, "sunglasses", {**scores(0.9113, {"sunglasses": 0.0}, 0.962, 0.048),
                                        **cost(601_643, 9 * 4_526_600.0, 9.0),
                                        **detection(0.9874, 0.9791, 0.9957)}),
        ok_record(
            strip, "multi-trigger", scores(0.9050, {"eyebrows": 0.05, "lipstick": 0.21}, 0.7, 0.05)
        ),
        ok_record(cleanse, "sunglasses", scores(0.9400, {"sunglasses": 0.004}, robust_acc=0.91)),
        error_record(cleanse, "multi-trigger", "eval.py exited with status 1: KeyError | 'conv_3'"),
        ok_record(twin, "sunglasses", scores(0.9312, {"sunglasses": 0.011}, 0.0, 0.002, 0.85)),
        ok_record(
            twin, "multi-trigger", scores(0.9340, {"eyebrows": 0.12, "lipstick": 0.06}, 0.01)
        ),
    ]


N_PROBE = 200
"""Poisoned images the retuning probe answers in these records."""


BUDGET = "Adam, learning rate 0.0001, 5 epochs, batch 16"


def probe(p_asr: float | None, p_clean_acc: float | None = None,
          p_error: str | None = None) -> dict:
    """The retuning probe's results as the grader adds them to scores (Wilson interval)."""
    interval = None if p_asr is None else list(stats.wilson(round(p_asr * N_PROBE), N_PROBE))
    return {"p_asr": p_asr, "p_asr_ci": interval, "p_clean_acc": p_clean_acc, "p_error": p_error}


def yardstick(p_asr: float | None, error: str | None = None, images: int = 115,
              poisoned: int = 23) -> dict:
    """A track's yardstick: the probe on its clean model."""
    measured = probe(p_asr, None if p_asr is None else 0.771)
    return {"p_asr": measured["p_asr"], "p_asr_ci": measured["p_asr_ci"],
            "p_clean_acc": measured["p_clean_acc"], "error": error, "images": images,
            "poisoned": poisoned}


PROBE_ERROR = "the model cannot be fine-tuned: no trainable weight of the model is reached by " \
    "the loss"


PROBED = {
    ("badnet-original", "sunglasses"): probe(1.0, 0.97),
    ("fine-pruning", "sunglasses"): probe(0.875, 0.93),
    ("neural-cleanse", "sunglasses"): probe(0.31, 0.92),
    ("pruning-twin", "sunglasses"): probe(None, p_error=PROBE_ERROR),
    ("fine-pruning", "multi-trigger"): probe(0.6, 0.9),
}
"""Probe results of model entries; the STRIP script and the multi-trigger rows not named here
were not probed."""


def probed_records() -> list[dict]:
    """The golden records with the retuning probe's results where it ran."""
    records = []
    for record in golden_records():
        extra = PROBED.get((record["submission"], record["track"]))
        records.append(record if extra is None else {**record, **extra})
    return records


def probed_benchmark(**yardsticks: dict) -> dict:
    """The benchmark with a retuning entry: the given yardsticks by track (``multi_trigger`` for
    multi-trigger), else the sunglasses one measured."""
    tracks = {name.replace("_", "-"): entry for name, entry in yardsticks.items()}
    if not yardsticks:
        tracks = {"sunglasses": yardstick(0.306)}
    return {**BENCHMARK, "retuning": schema.retuning_summary(BUDGET, tracks)}


def leaderboard_md(records: list[dict]) -> str:
    """The Markdown leaderboard of ``records`` on :data:`BENCHMARK`."""
    return markdown(board(BENCHMARK, records))


def section(text: str, heading: str) -> str:
    """The body of one ``##`` section of a rendered leaderboard."""
    body = text.split(f"\n{heading}\n", 1)[1]
    return body.split("\n## ", 1)[0].split("\n---\n", 1)[0]


def table_header(body: str) -> list[str]:
    """Column names of the first Markdown table in ``body``."""
    line = next(line for line in body.splitlines() if line.startswith("|"))
    return [cell.strip() for cell in line.split("|")[1:-1]]


def table_rows(body: str) -> list[list[str]]:
    """Cells of each row of the first Markdown table in ``body`` (header and rule excluded)."""
    lines = [line for line in body.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[2:]]


def column(table: list[Ranked], key: str) -> list:
    """One column of a ranking, top row first."""
    return [row[key] for row in table]


def cells(table: list[Ranked], keys: list[str]) -> list[list]:
    """The ranking's values of ``keys`` row by row, NaN as None so that equal rows compare equal."""
    return [[None if isinstance(row[key], float) and math.isnan(row[key]) else row[key]
             for key in keys] for row in table]


# A hand-made track over a stand-in data store: the hand-over, the cache key and the baseline are
# tested on it without files.

class FakeStore:
    """DataStore stand-in: images whose first pixel is their index, labels = index % 10."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sets = {}
        for name, size in sizes.items():
            images = np.zeros((size, 55, 47, 3), np.uint8)
            images[:, 0, 0, 0] = np.arange(size) % 256
            images[:, 0, 0, 1] = np.arange(size) // 256
            self.sets[name] = type("Set", (), {"images": images, "labels": np.arange(size) % 10,
                                               "sha256": f"{name}-{size}"})

    def get(self, data_file: DataFile, num_classes: int):
        return self.sets[data_file.path.name]


@pytest.fixture
def fake_store() -> type[FakeStore]:
    """Makes a :class:`FakeStore` from set sizes by file name: ``fake_store({"test": 300})``."""
    return FakeStore


@pytest.fixture
def hand_made_track(tmp_path: Path) -> Track:
    """A track of ten classes over the files ``val``, ``test``, ``pa`` and ``pb`` (triggers a and
    b) in ``tmp_path``, never written: their sets come from a :class:`FakeStore`."""
    def file(name):
        return DataFile(tmp_path / name)
    return Track(name="t", description="", badnet=tmp_path / "b.h5", input_scale=1.0,
                 num_classes=10, validation=file("val"), test=file("test"),
                 poisoned=(PoisonedSet("a", 0, file("pa")), PoisonedSet("b", 1, file("pb"))),
                 source=tmp_path / "t.toml")
