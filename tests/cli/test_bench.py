"""``python -m harness bench`` as a user runs it: its usage errors, and ``--end-to-end`` on a tiny
folder (slow). The measuring itself is tested in tests/bench/."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.definitions.tracks import load_benchmark
from tests.conftest import benchmark_subset, run_harness, write_submission


@pytest.mark.parametrize(("argv", "message"), [
    (["bench", "-n", "2"], "-n: only with --end-to-end"),
    (["bench", "subs"], "SUBMISSIONS: only with --end-to-end"),
    (["bench", "--end-to-end", "--model", "m.h5"], "--model: not with --end-to-end"),
    (["bench", "--end-to-end", "no-such-folder"], "no-such-folder: no such folder"),
])
def test_bench_usage_errors(argv: list[str], message: str,
                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_end_to_end_on_a_tiny_folder(tiny_benchmark: Path, tmp_path: Path) -> None:
    """The command grades a one-entry folder (the BadNet itself) and prints both tables."""
    bench_dir = benchmark_subset(tiny_benchmark, tmp_path / "b", ["sunglasses"])
    badnet = load_benchmark(bench_dir).track("sunglasses").badnet
    write_submission(tmp_path / "subs", "no-defense", {"sunglasses": {"model": "m.h5"}},
                     {"m.h5": badnet})
    done = run_harness("bench", "--end-to-end", tmp_path / "subs", "--benchmark", bench_dir,
                       "--sample", "20", "--rounds", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "--no-cache --no-retune --sample 20 (exit 0)" in done.stdout
    for row in ("| wall / floor ", "| worker start-up ", "| answering ", "| rendering ",
                "| left "):
        assert row in done.stdout
    assert not (tmp_path / "results.json").exists()  # the run wrote into its own folder
