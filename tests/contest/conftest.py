"""A contest on the tiny benchmark: a contest file, and entries cheap enough to grade many
versions of: batch ``predict`` scripts that answer every hidden image from a lookup table
(a version's "model"), built from the hidden labels and the contest's split so that a team can
do well on one part and badly on the other."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import benchmark_subset

TRACK = "sunglasses"
LOOKUP_SCRIPT = '''"""{comment}"""
import hashlib
import json
import os

import numpy as np

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "answers.json")) as f:
    TABLE = json.load(f)


def predict(images):
    return np.array([TABLE.get(hashlib.sha256(np.ascontiguousarray(image).tobytes())
                               .hexdigest()[:20], 0) for image in images])
'''
Policy = Callable[[str, str, int, int, int | None, int], int]
"""``(part, kind, index, true label, target, classes) -> answer``: part is public or private,
kind clean or poisoned (target None for clean images)."""

CONTEST_TOML = """
name = "Tiny contest"
benchmark = "bench"
state = "state"
references = ["no-defense"]

[split]
seed = 11
public = 0.4

[quota]
per_day = 2
total = 4

[final]
rule = "{rule}"

[[phases]]
name = "development"
start = "2026-12-01T00:00:00Z"
end = "2026-12-04T00:00:00Z"

[[phases]]
name = "test"
start = "2026-12-04T00:00:00Z"
end = "2026-12-06T00:00:00Z"
show = "nothing"
quota = {{ per_day = 1, total = 2, count_failed = true }}

[[teams]]
name = "Team Alpha"
folder = "alpha"
logins = ["alice"]

[[teams]]
name = "Team Beta"
folder = "beta"
logins = ["bob", "bea"]

[[teams]]
name = "Team Gamma"
folder = "gamma"
logins = ["gus"]
"""


@pytest.fixture(scope="module")
def contest_bench(tiny_benchmark: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny benchmark cut to one track: each version starts one sandboxed worker."""
    return benchmark_subset(tiny_benchmark, tmp_path_factory.mktemp("contest") / "bench",
                            [TRACK])


def write_contest(folder: Path, bench: Path, rule: str = "best_public") -> Path:
    """``folder/contest.toml`` for the benchmark copied to ``folder/bench``."""
    if not (folder / "bench").exists():
        (folder / "bench").symlink_to(bench.resolve())
    path = folder / "contest.toml"
    path.write_text(CONTEST_TOML.format(rule=rule), encoding="utf-8")
    return path


def image_key(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()[:20]


def lookup_answers(bench: Path, split_record: Path, policy: Policy) -> dict[str, int]:
    """Every hidden image of the benchmark's tracks, answered by ``policy``."""
    from harness.contest.split import load_split
    from harness.definitions.data import DataStore
    from harness.definitions.tracks import load_benchmark

    benchmark = load_benchmark(bench)
    store = DataStore()
    split = load_split(split_record, benchmark, store)
    answers: dict[str, int] = {}
    for track in benchmark.tracks:
        sets = [(track.test, None), *((spec.file, spec.target) for spec in track.poisoned)]
        for data_file, target in sets:
            data = store.get(data_file, track.num_classes)
            for index, image in enumerate(data.images):
                part = "public" if split[data.sha256][index] else "private"
                kind = "clean" if target is None else "poisoned"
                answers[image_key(image)] = policy(part, kind, index, int(data.labels[index]),
                                                   target, track.num_classes)
    return answers


def lookup_entry(folder: Path, answers: dict[str, int] | bytes, comment: str,
                 reference: bool = False) -> Path:
    """A submission folder answering from ``answers`` (a table, or a file's bytes as is)."""
    import tomli_w

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "eval.py").write_text(LOOKUP_SCRIPT.format(comment=comment), encoding="utf-8")
    table = answers if isinstance(answers, bytes) else \
        json.dumps(answers, sort_keys=True).encode()
    (folder / "answers.json").write_bytes(table)
    manifest = {"team": f"{folder.name} (manifest)", "method": comment,
                "reference": reference,
                "tracks": {TRACK: {"eval": "eval.py", "batch": "predict"}}}
    (folder / "submission.toml").write_text(tomli_w.dumps(manifest), encoding="utf-8")
    return folder
