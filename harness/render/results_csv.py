"""``results.csv``: every record as one row, for spreadsheets and scripts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from harness.results.ranking import canonical
from harness.results.record import (
    DETECTION_KEYS,
    PROBE_KEYS,
    RECORD_INTERVAL_KEYS,
    RECORD_KEYS,
)
from harness.text import csv_cell

TEAM_TEXT_COLUMNS = ("submission", "team", "method", "error", "p_error")
"""The CSV columns whose text comes from a team (a name, or an error that quotes its code or
log): only these are neutralised against spreadsheet formulas, the others hold the grader's own
values (a negative utility stays a number)."""


def render_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """Every record as a CSV row, in ``results.json``'s order and with its values: the columns of
    a record less the packed outcomes, an interval as ``<key>_low``/``<key>_high`` and the
    per-trigger ASRs as ``asr[<trigger>]`` (empty where a track has no such trigger). The
    retuning probe's columns (:data:`PROBE_KEYS`) appear only when some record has a value in
    one, so results graded without the probe give the file they gave before it existed; so do
    the detection figure's (:data:`DETECTION_KEYS`), for results of entries that give labels
    only. Cells of
    :data:`TEAM_TEXT_COLUMNS` are one safe line that no spreadsheet runs as a formula."""
    rows = canonical(records)
    triggers = sorted({trigger for record in rows for trigger in record["per_trigger"]})
    probed = any(record[key] is not None for record in rows for key in PROBE_KEYS)
    scored = any(record["auroc"] is not None for record in rows)
    keys = [key for key in RECORD_KEYS if (probed or key not in PROBE_KEYS)
            and (scored or key not in DETECTION_KEYS)]
    intervals = [key for key in keys if key in RECORD_INTERVAL_KEYS]
    plain = [key for key in keys if key not in ("per_trigger", "outcomes", *intervals)]
    flat = []
    for record in rows:
        row = {key: csv_cell(record[key]) if key in TEAM_TEXT_COLUMNS and record[key] is not None
               else record[key] for key in plain}
        for key in intervals:
            row[f"{key}_low"], row[f"{key}_high"] = record[key] or (None, None)
        row.update({f"asr[{name}]": record["per_trigger"].get(name) for name in triggers})
        flat.append(row)
    columns = [*plain, *(f"{key}_{end}" for key in intervals for end in ("low", "high"))]
    columns += [f"asr[{name}]" for name in triggers]
    # object dtype: integers stay integers in columns that also hold None
    return pd.DataFrame(flat, columns=columns, dtype=object).to_csv(index=False,
                                                                    lineterminator="\n")
