"""The committed results are what the docs and the leaderboard show.

``results.json`` must have graded the submission folders as committed (their digests),
``leaderboard.md`` must be its rendering, and docs/defenses.md's defense x track table must be
what ``scripts/defense_table.py`` prints from ``results.json`` and the reference builds'
``build.json``: a rebuild without a regrade, or a regrade without the docs, fails here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from harness.definitions.submissions import submission_digest
from harness.render.board import board
from harness.render.leaderboard import markdown
from harness.results.io import read_results

REPO = Path(__file__).resolve().parents[2]


def _defense_table() -> ModuleType:
    spec = importlib.util.spec_from_file_location("defense_table",
                                                  REPO / "scripts" / "defense_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_graded_the_committed_submissions() -> None:
    _, records = read_results(REPO / "results.json")
    graded = {record["submission"]: record["sha256"] for record in records}
    current = {name: submission_digest(REPO / "submissions" / name) for name in graded}
    assert graded == current


def test_leaderboard_is_rendered_from_results() -> None:
    benchmark, records = read_results(REPO / "results.json")
    assert markdown(board(benchmark, records)) == (REPO / "leaderboard.md").read_text()


def test_docs_defense_table_matches_results() -> None:
    _, records = read_results(REPO / "results.json")
    table = _defense_table().defense_markdown(records, REPO / "submissions")
    tracks = {record["track"] for record in records}
    assert len(tracks) == 7
    assert len(table.splitlines()) == 2 + 7 * len(tracks)  # header, rule, seven defenses each
    assert table in (REPO / "docs" / "defenses.md").read_text()


def test_docs_retuning_table_matches_results() -> None:
    """docs/defenses.md's retuning-probe table is what the committed results hold: every
    reference on every track with its P-ASR, under the track's yardstick."""
    benchmark, records = read_results(REPO / "results.json")
    table = _defense_table().retuning_markdown(benchmark, records)
    tracks = {record["track"] for record in records}
    assert len(table.splitlines()) == 2 + 8 * len(tracks)  # header, rule, yardstick + seven each
    assert table in (REPO / "docs" / "defenses.md").read_text()
