"""The official CSAW-HackML-2020 files (``../shared/real-csaw``), graded through the real CLI.

The folder is not part of the project; these tests skip cleanly without it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from PIL import Image

from harness.definitions.data import write_contest_file
from tests.conftest import REAL_CSAW, run_harness, write_submission

pytestmark = pytest.mark.skipif(not REAL_CSAW.is_dir(), reason="../shared/real-csaw is absent")


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def real_benchmark(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A track over the real images: clean ones labelled by file name, poisoned ones as in the
    contest's files (label = the attacker's target)."""
    root = tmp_path_factory.mktemp("real-csaw")
    images = REAL_CSAW / "images"
    clean = sorted(images.glob("clean_label*.png"))
    poisoned = sorted(images.glob("sunglasses_poisoned_*.png"))
    labels = np.array([int(p.stem.removeprefix("clean_label")) for p in clean])
    write_contest_file(root / "clean.h5", np.stack([read_png(p) for p in clean]), labels)
    write_contest_file(root / "poisoned.h5", np.stack([read_png(p) for p in poisoned]),
                       np.zeros(len(poisoned), dtype=np.int64))
    shutil.copy(REAL_CSAW / "weights" / "sunglasses_bd_weights.h5", root / "bd_weights.h5")
    (root / "tracks").mkdir()
    (root / "tracks" / "sunglasses.toml").write_text(tomli_w.dumps({
        "name": "sunglasses", "badnet": "bd_weights.h5", "badnet_architecture": "deepid",
        "input_scale": "1/255", "num_classes": 1283,
        # Five real images serve as both sets here, so the file is marked public in both.
        "validation": {"file": "clean.h5"}, "test": {"file": "clean.h5", "hidden": False},
        "poisoned": [{"trigger": "sunglasses", "target": 0, "file": "poisoned.h5",
                      "labels": "target"}]}))
    return root


def test_official_sunglasses_badnet_graded_as_no_defense(real_benchmark, tmp_path):
    write_submission(tmp_path / "submissions", "no-defense",
                     {"sunglasses": {"weights": "bd.h5", "architecture": "deepid"}},
                     {"bd.h5": REAL_CSAW / "weights" / "sunglasses_bd_weights.h5"})
    result = run_harness("grade", "submissions", "--benchmark", real_benchmark, "--out",
                         tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (record,) = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    assert (record["clean_acc"], record["asr"], record["utility"]) == (1.0, 1.0, 0.0)
    assert record["robust_acc"] is None  # contest files store the target, not the true label
    assert (record["n_clean"], record["n_poisoned"]) == (5, 5)


def test_wrong_input_scale_collapses_the_official_model(real_benchmark, tmp_path):
    """The scale is part of the track's spec: raw pixels break the 2020 models."""
    write_submission(tmp_path / "submissions", "raw-pixels",
                     {"sunglasses": {"weights": "bd.h5", "architecture": "deepid",
                                     "input_scale": 1}},
                     {"bd.h5": REAL_CSAW / "weights" / "sunglasses_bd_weights.h5"})
    run_harness("grade", "submissions", "--benchmark", real_benchmark, "--out", tmp_path / "o",
                cwd=tmp_path)
    (record,) = json.loads((tmp_path / "o" / "results.json").read_text())["results"]
    assert record["clean_acc"] < 1.0
