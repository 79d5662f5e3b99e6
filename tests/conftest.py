"""Shared fixtures: a tiny benchmark built by the project's own build command, and helpers to
lay out submission folders and run the CLI the way users do (a separate process)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

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
