"""``results.csv`` (:mod:`harness.render.results_csv`): one row per record, with the JSON values."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.grading import stats
from harness.render.results_csv import render_csv
from harness.results import record as schema
from tests.conftest import (
    N_PROBE,
    PROBE_ERROR,
    golden_records,
    probed_records,
)


def test_csv_has_one_row_per_record_with_the_json_values(tmp_path: Path) -> None:
    import pandas as pd

    path = tmp_path / "results.csv"
    path.write_text(render_csv(golden_records()), encoding="utf-8")
    table = pd.read_csv(path)
    assert len(table) == len(golden_records())
    assert "outcomes" not in table.columns
    assert {"der", "params", "macs_per_image", "passes_per_image", "clean_acc_ci_low",
            "asr[eyebrows]", "asr[sunglasses]"} <= set(table.columns)
    row = table[(table.submission == "fine-pruning") & (table.track == "sunglasses")].iloc[0]
    assert row.clean_acc == 0.951 and row.params == 601_643 and row.badnet == False  # noqa: E712
    assert row.der == pytest.approx(0.9715)
    assert row["asr[sunglasses]"] == 0.03 and pd.isna(row["asr[eyebrows]"])
    failed = table[table.status == "error"].iloc[0]
    assert failed.error.startswith("eval.py exited") and pd.isna(failed.clean_acc)
    assert render_csv(list(reversed(golden_records()))) == path.read_text()


def test_csv_splits_the_p_asr_interval_like_the_others(tmp_path: Path) -> None:
    import pandas as pd

    path = tmp_path / "results.csv"
    path.write_text(render_csv(probed_records()), encoding="utf-8")
    table = pd.read_csv(path)
    assert {"p_asr", "p_asr_ci_low", "p_asr_ci_high", "p_clean_acc", "p_error"} <= \
        set(table.columns)
    assert "p_asr_ci" not in table.columns
    intervals = [c for c in table.columns if c.endswith(("_low", "_high"))]
    assert intervals == [f"{key}_{end}" for key in schema.RECORD_INTERVAL_KEYS
                         for end in ("low", "high")]
    row = table[(table.submission == "fine-pruning") & (table.track == "sunglasses")].iloc[0]
    low, high = stats.wilson(175, N_PROBE)
    assert row.p_asr == 0.875 and row.p_clean_acc == 0.93
    assert row.p_asr_ci_low == round(low, 6) and row.p_asr_ci_high == round(high, 6)
    twin = table[(table.submission == "pruning-twin") & (table.track == "sunglasses")].iloc[0]
    assert twin.p_error == PROBE_ERROR and pd.isna(twin.p_asr) and pd.isna(twin.p_asr_ci_low)
    plain = pd.read_csv(__import__("io").StringIO(render_csv(golden_records())))
    assert not any(c.startswith("p_") for c in plain.columns)


def test_csv_has_the_auroc_where_some_entry_gives_scores() -> None:
    import io

    import pandas as pd

    table = pd.read_csv(io.StringIO(render_csv(golden_records())))
    assert {"auroc", "auroc_ci_low", "auroc_ci_high"} <= set(table.columns)
    strip = table[(table.submission == "strip-detector") & (table.track == "sunglasses")].iloc[0]
    assert (strip.auroc, strip.auroc_ci_low, strip.auroc_ci_high) == (0.9874, 0.9791, 0.9957)
    assert table.auroc.isna().sum() == len(table) - 1
    plain = render_csv([{**r, "auroc": None, "auroc_ci": None} for r in golden_records()])
    assert "auroc" not in plain
