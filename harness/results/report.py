"""Result records, ``results.json``, the CSV export and the Markdown leaderboard.

A record is one submission on one track, OK or failed; every record has the same keys so that tables
and JSON never need special cases. The tables themselves (:class:`Table`, :func:`board`) are made
once here, as text cells, and laid out by the Markdown renderer below and by the web page
(:mod:`harness.render.page`), so both show the same numbers, intervals and shared ranks. Outputs are
byte-for-byte reproducible (sorted records, sorted keys, floats rounded to 6 decimals, no
timestamps) so that a leaderboard can be committed, diffed and re-derived from ``results.json``;
they are written atomically so that a crash never leaves a half-written file where a reader
expects a complete one.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness import __version__
from harness.errors import HarnessError
from harness.grading import stats
from harness.grading.scoring import submission_score
from harness.render import plots
from harness.sandbox.retuning import PROBE_KEYS

META_KEYS = ("submission", "team", "method", "reference", "sha256")
METRIC_KEYS = (
    "clean_acc",
    "asr",
    "detect_rate",
    "false_flag_rate",
    "robust_acc",
    "utility",
    "n_clean",
    "n_poisoned",
    "n_invalid",
)
INTERVAL_KEYS = ("clean_acc_ci", "asr_ci", "utility_ci")
"""95% intervals ``[low, high]`` of clean accuracy, ASR and utility."""
SCORE_KEYS = (*METRIC_KEYS, "per_trigger", *INTERVAL_KEYS, "outcomes")
"""The keys :func:`harness.grading.scoring.score_track` returns."""
COST_KEYS = ("params", "macs_per_image", "passes_per_image")
"""What an entry costs to run, as the worker observed it (None where unknown): parameters of the
networks it ran, multiply-adds per graded image (all networks, all passes) and network passes per
graded image. Deterministic, unlike wall time and memory (those go to ``timings.json``)."""
RECORD_KEYS = (*META_KEYS, "track", "status", "error", "sample", "badnet", *SCORE_KEYS, "der",
               *COST_KEYS, *PROBE_KEYS)
"""``badnet``: the entry is the track's BadNet file itself, unchanged (the baseline DER is
measured against); ``der``: defense effectiveness rating against that row (see :func:`der`)."""
RECORD_INTERVAL_KEYS = (*INTERVAL_KEYS, "p_asr_ci")
"""Every record key that holds a 95% interval ``[low, high]`` (or None)."""
BENCHMARK_KEYS = ("name", "data_hashes", "tracks", "provenance")
RETUNING = "retuning"
"""Optional benchmark key: the retuning probe's budget and, per track, its yardstick (the probe
on the track's clean model); see :func:`retuning_summary`. Absent when the probe was off or no
track has a retuning set."""
RETUNING_KEYS = ("budget", "tracks")
YARDSTICK_KEYS = ("p_asr", "p_asr_ci", "p_clean_acc", "error", "images", "poisoned")
"""A track's entry under ``benchmark["retuning"]["tracks"]``: the probe's results on the clean
model (``error``: why it could not be measured, else None), the retuning set's size and how many
of its images carry a trigger."""
PROBE_ERROR_PREFIX = "retuning probe: "
"""How the Errors section introduces a probe failure (``p_error``) of an OK record."""
RANK_COLUMNS = (
    "rank",
    "tied",
    "submission",
    "team",
    "method",
    "reference",
    "score",
    "mean_clean_acc",
    "mean_asr",
    "mean_der",
    "mean_p_asr",
    "tracks_ok",
)

DECIMALS = 6
"""Precision of stored floats: far below any meaningful difference, well above float noise."""
NO_RESULT = "no result recorded"
"""Error message of a (submission, track) pair the grader produced no record for."""
MISSING = "-"
"""How the leaderboard shows a value that does not exist (failed track, unknown true labels)."""
REFERENCE_MARK = "(ref)"
TIE_MARK = "="
"""Prefix of a rank shared by rows that the paired bootstrap cannot tell apart."""
INTERVALS = {"clean_acc": "clean_acc_ci", "asr": "asr_ci", "utility": "utility_ci",
             "p_asr": "p_asr_ci"}
"""Metrics shown with an interval, and the record key holding it."""
TRACK_METRICS = (
    ("clean acc", "clean_acc"),
    ("ASR", "asr"),
    ("detect", "detect_rate"),
    ("false flag", "false_flag_rate"),
    ("robust acc", "robust_acc"),
    ("utility", "utility"),
    ("DER", "der"),
)
"""Track table columns (header, record key), in display order."""
PROBE_COLUMN = ("P-ASR", "p_asr")
"""The retuning probe's column (header, record key): right after DER, on tracks that show it."""
HASH_CHARS = 12


# Records -----------------------------------------------------------------------------------------


def _meta_fields(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Copy the submission's identity, checked, so that sorting and tables can rely on its types."""
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise ValueError(f"submission metadata lacks {', '.join(missing)}")
    for key in ("submission", "team", "method", "sha256"):
        if not isinstance(meta[key], str):
            raise ValueError(f"submission metadata {key!r} must be a string, got {meta[key]!r}")
    if not meta["submission"]:
        raise ValueError("submission metadata 'submission' must not be empty")
    if not isinstance(meta["reference"], bool):
        reference = meta["reference"]
        raise ValueError(f"submission metadata 'reference' must be a bool, got {reference!r}")
    return {key: meta[key] for key in META_KEYS}


def _check_track_name(track: str) -> str:
    if not isinstance(track, str) or not track:
        raise ValueError(f"track must be a non-empty string, got {track!r}")
    return track


def _plain_number(value: Any) -> int | float | None:
    """Turn NumPy scalars into Python numbers, which is what ``json`` can write."""
    if value is None:
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value)


def _check_sample(sample: int | None) -> int | None:
    """The per-set sample size the grader ran with (``--sample K``), or None for full sets."""
    if sample is None:
        return None
    if isinstance(sample, bool) or not isinstance(sample, numbers.Integral) or sample < 1:
        raise ValueError(f"sample must be a positive integer or None, got {sample!r}")
    return int(sample)


def error_record(
    meta: Mapping[str, Any], track: str, message: str, *, sample: int | None = None
) -> dict[str, Any]:
    """Record a failed track; the message is collapsed to one line because tables show it as is."""
    line = " ".join(str(message).split())
    if not line:
        raise ValueError("an error record needs a non-empty message")
    return {
        **_meta_fields(meta),
        "track": _check_track_name(track),
        "status": "error",
        "error": line,
        "sample": _check_sample(sample),
        "badnet": False,
        **dict.fromkeys(METRIC_KEYS),
        "per_trigger": {},
        **dict.fromkeys(INTERVAL_KEYS),
        "outcomes": {},
        "der": None,
        **dict.fromkeys(COST_KEYS),
        **dict.fromkeys(PROBE_KEYS),
    }


def _interval(value: Any, what: str) -> list[float]:
    """``[low, high]`` as a list of Python floats (JSON has no tuples, so stored ones are lists)."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"{what} must be [low, high], got {value!r}")
    low, high = (float(limit) for limit in value)
    if not low <= high:
        raise ValueError(f"{what} must be [low, high] with low <= high, got {value!r}")
    return [low, high]


def ok_record(
    meta: Mapping[str, Any],
    track: str,
    scores: Mapping[str, Any],
    *,
    sample: int | None = None,
    badnet: bool = False,
) -> dict[str, Any]:
    """Record a scored track; ``scores`` is what :func:`harness.grading.scoring.score_track`
    returned, with the entry's cost (:data:`COST_KEYS`) where it was measured and the retuning
    probe's results (:data:`PROBE_KEYS`) where it ran; absent ones are None. ``der`` is filled in
    when the records of the whole track are known (:func:`with_der`)."""
    if not set(SCORE_KEYS) <= set(scores) <= {*SCORE_KEYS, *COST_KEYS, *PROBE_KEYS}:
        expected, got = sorted(SCORE_KEYS), sorted(scores)
        raise ValueError(
            f"scores must have the keys {expected} (and cost and probe keys), got {got}")
    if not isinstance(badnet, bool):
        raise ValueError(f"badnet must be a bool, got {badnet!r}")
    record = {
        **_meta_fields(meta),
        "track": _check_track_name(track),
        "status": "ok",
        "error": None,
        "sample": _check_sample(sample),
        "badnet": badnet,
        **{key: _plain_number(scores[key]) for key in METRIC_KEYS},
        "per_trigger": {str(name): float(asr) for name, asr in scores["per_trigger"].items()},
        **{key: _interval(scores[key], key) for key in INTERVAL_KEYS},
        "outcomes": {part: scores["outcomes"][part] for part in ("clean", "attack")},
        "der": None,
        **{key: _cost(scores.get(key), key) for key in COST_KEYS},
        **_probe({key: scores.get(key) for key in PROBE_KEYS}, "", collapse=True),
    }
    _outcomes(record)  # refuse outcomes that do not match the counts now, not when ranking
    return record


def _cost(value: Any, key: str) -> int | float | None:
    """A cost figure: a non-negative number, or None where it was not measured."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{key} must be a non-negative number or None, got {value!r}")
    return _plain_number(value)


def _share(value: Any, what: str) -> float | None:
    """A rate: a number in [0, 1], or None where it was not measured."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{what} must be a number in [0, 1] or None, got {value!r}")
    return float(value)


def _one_line(value: Any, what: str, *, collapse: bool = False) -> str | None:
    """A message that tables show as is: one non-empty line, or None. ``collapse`` makes it one
    line (a fresh message); without, one that is not is refused (a stored one)."""
    if value is None:
        return None
    line = " ".join(value.split()) if isinstance(value, str) else None
    if not line or (not collapse and line != value):
        raise ValueError(f"{what} must be a non-empty one-line string or None, got {value!r}")
    return line


def _probe(values: Mapping[str, Any], where: str, *, collapse: bool = False) -> dict[str, Any]:
    """The retuning probe's :data:`PROBE_KEYS`, checked; ``where`` ends each key's name in an
    error (`` of record (submission, track)``)."""
    p_asr = _share(values["p_asr"], f"p_asr{where}")
    interval = values["p_asr_ci"]
    if interval is not None:
        if p_asr is None:
            raise ValueError(f"p_asr_ci{where} is given without a p_asr: {interval!r}")
        interval = _interval(interval, f"p_asr_ci{where}")
    return {
        "p_asr": p_asr,
        "p_asr_ci": interval,
        "p_clean_acc": _share(values["p_clean_acc"], f"p_clean_acc{where}"),
        "p_error": _one_line(values["p_error"], f"p_error{where}", collapse=collapse),
    }


def probe_error(message: str) -> str:
    """A probe failure as the Errors section lists it: prefixed with :data:`PROBE_ERROR_PREFIX`
    unless it already is."""
    return message if message.startswith(PROBE_ERROR_PREFIX) else PROBE_ERROR_PREFIX + message


def der(badnet: Mapping[str, Any], record: Mapping[str, Any]) -> float:
    """Defense effectiveness rating of an OK record against its track's BadNet row:
    ``[max(0, dASR) - max(0, dACC) + 1] / 2`` with ``dASR`` the drop in ASR and ``dACC`` the drop
    in clean accuracy (BackdoorBench; FT-SAM). 0.5 is the BadNet itself, 1 removes the whole
    attack at no accuracy cost, 0 is the reverse."""
    drop_asr = badnet["asr"] - record["asr"]
    drop_acc = badnet["clean_acc"] - record["clean_acc"]
    return round((max(0.0, drop_asr) - max(0.0, drop_acc) + 1) / 2, DECIMALS) + 0.0


def with_der(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The records with ``der`` set: for OK records of a track with an OK BadNet row (the first
    by name; all such rows answer alike), against it; None elsewhere. DER derives from the
    records of a whole track, so it is set here, once they are all known, not per item."""
    badnets: dict[str, Mapping[str, Any]] = {}
    for record in sorted(records, key=lambda record: record["submission"]):
        if record["status"] == "ok" and record["badnet"]:
            badnets.setdefault(record["track"], record)
    return [
        {**record, "der": der(badnets[record["track"]], record)
         if record["status"] == "ok" and record["track"] in badnets else None}
        for record in records
    ]


def _outcomes(record: Mapping[str, Any]) -> stats.Outcomes | None:
    """A record's per-image outcomes for paired tests; None for a failed track."""
    if record["status"] != "ok":
        return None
    try:
        return stats.Outcomes(
            clean=stats.unpack_outcomes(record["outcomes"]["clean"], record["n_clean"]),
            attack=stats.unpack_outcomes(record["outcomes"]["attack"], record["n_poisoned"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        pair = (record["submission"], record["track"])
        raise ValueError(f"OK record {pair} has invalid outcomes: {exc}") from None


def _tracks(benchmark: Mapping[str, Any]) -> list[str]:
    """The benchmark's track names, after checking the benchmark has what every output needs."""
    if not isinstance(benchmark, Mapping):
        raise ValueError(f"benchmark must be a mapping, got {type(benchmark).__name__}")
    missing = [key for key in BENCHMARK_KEYS if key not in benchmark]
    if missing:
        raise ValueError(f"benchmark lacks {', '.join(missing)}")
    tracks = benchmark["tracks"]
    if (
        not isinstance(tracks, list | tuple)
        or not tracks
        or not all(isinstance(track, str) for track in tracks)
        or len(set(tracks)) != len(tracks)
    ):
        raise ValueError(f"benchmark tracks must be a non-empty list of distinct names: {tracks!r}")
    if not isinstance(benchmark["provenance"], Mapping):
        raise ValueError(f"benchmark provenance must be a mapping: {benchmark['provenance']!r}")
    if RETUNING in benchmark:
        _check_retuning(benchmark[RETUNING], tracks)
    return list(tracks)


def _count_of(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)


def _yardstick(entry: Any, where: str, *, collapse: bool = False) -> dict[str, Any]:
    """One track's yardstick (:data:`YARDSTICK_KEYS`), checked."""
    if not isinstance(entry, Mapping) or set(entry) != set(YARDSTICK_KEYS):
        got = sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__
        raise ValueError(f"{where} must have the keys {sorted(YARDSTICK_KEYS)}, got {got}")
    probe = _probe({**entry, "p_error": None}, f" of {where}")
    error = _one_line(entry["error"], f"error of {where}", collapse=collapse)
    images = _count_of(entry["images"], f"images of {where}")
    poisoned = _count_of(entry["poisoned"], f"poisoned of {where}")
    if poisoned > images:
        raise ValueError(f"{where} has more poisoned images ({poisoned}) than images ({images})")
    return {"p_asr": probe["p_asr"], "p_asr_ci": probe["p_asr_ci"],
            "p_clean_acc": probe["p_clean_acc"], "error": error, "images": images,
            "poisoned": poisoned}


def _check_retuning(retuning: Any, tracks: Sequence[str], *,
                    collapse: bool = False) -> dict[str, Any]:
    """``benchmark["retuning"]`` (:data:`RETUNING_KEYS`), checked and in canonical form."""
    if not isinstance(retuning, Mapping) or set(retuning) != set(RETUNING_KEYS):
        got = sorted(retuning) if isinstance(retuning, Mapping) else type(retuning).__name__
        raise ValueError(f"benchmark retuning must have the keys {sorted(RETUNING_KEYS)}, "
                         f"got {got}")
    budget = _one_line(retuning["budget"], "benchmark retuning budget", collapse=collapse)
    if budget is None:
        raise ValueError("benchmark retuning budget must be a non-empty one-line string")
    entries = retuning["tracks"]
    if not isinstance(entries, Mapping):
        raise ValueError(f"benchmark retuning tracks must be a mapping, got {entries!r}")
    stray = sorted(str(name) for name in entries if name not in tracks)
    if stray:
        raise ValueError(f"benchmark retuning has tracks not in the benchmark: {stray}")
    return {"budget": budget,
            "tracks": {name: _yardstick(entry, f"the retuning yardstick of track {name!r}",
                                        collapse=collapse)
                       for name, entry in sorted(entries.items())}}


def retuning_summary(budget: str, yardsticks: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The benchmark's optional ``"retuning"`` entry, checked, with plain Python numbers and
    one-line messages: ``budget`` describes the optimizer's part of the probe's budget ("Adam,
    learning rate 0.0001, 5 epochs, batch 16"); ``yardsticks`` maps each probed track to its
    :data:`YARDSTICK_KEYS` (the probe on the track's clean model). Track names are checked
    against the benchmark when results are written."""
    tracks = list(yardsticks)
    return _check_retuning({"budget": budget, "tracks": yardsticks}, tracks, collapse=True)


def _check_ranked_metrics(record: Mapping[str, Any], pair: tuple[str, str]) -> None:
    """An OK record must carry what ranking and tables use, or they fail obscurely."""
    for key in ("clean_acc", "asr", "utility"):
        value = record[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ValueError(f"OK record {pair} has no valid {key}: {value!r}")
    for key in INTERVAL_KEYS:
        _interval(record[key], f"{key} of OK record {pair}")
    _outcomes(record)


def _check_records(tracks: Sequence[str], records: Sequence[Mapping[str, Any]]) -> None:
    """Reject records that would make outputs ambiguous: a duplicate pair would sort arbitrarily."""
    seen: set[tuple[str, str]] = set()
    for record in records:
        if not isinstance(record, Mapping):
            raise ValueError(f"a record must be a mapping, got {type(record).__name__}")
        # Records written before the retuning probe lack its keys: they read as not probed.
        missing = [key for key in RECORD_KEYS if key not in record and key not in PROBE_KEYS]
        if missing:  # names the pair, not the record: its packed outcomes run to kilobytes
            pair = (record.get("submission"), record.get("track"))
            raise ValueError(f"record {pair} lacks {', '.join(missing)}")
        _meta_fields(record)
        _check_sample(record["sample"])
        if not isinstance(record["badnet"], bool):
            raise ValueError(f"record {record['submission']!r} has badnet {record['badnet']!r}")
        for key in COST_KEYS:
            _cost(record[key], key)
        pair = (record["submission"], record["track"])
        if record["status"] not in ("ok", "error"):
            raise ValueError(f"record {pair} has status {record['status']!r}, not 'ok' or 'error'")
        if record["status"] == "ok":
            _check_ranked_metrics(record, pair)
        probe = _probe(_probe_values(record), f" of record {pair}")
        if record["status"] == "error" and any(value is not None for value in probe.values()):
            raise ValueError(f"error record {pair} has retuning probe results")
        if record["track"] not in tracks:
            raise ValueError(f"record {pair} is for a track not in the benchmark: {tracks}")
        if pair in seen:
            raise ValueError(f"two records for submission {pair[0]!r} on track {pair[1]!r}")
        seen.add(pair)
    _check_same_images(records)


def _probe_values(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record's :data:`PROBE_KEYS`, None where a record written before the probe lacks them."""
    return {key: record.get(key) for key in PROBE_KEYS}


def _check_same_images(records: Sequence[Mapping[str, Any]]) -> None:
    """OK records of one track must come from the same images: paired tests compare them image
    by image, and a table mixing full sets with samples would compare unlike numbers."""
    images: dict[str, tuple[Any, ...]] = {}
    for record in records:
        if record["status"] == "ok":
            shape = (record["n_clean"], record["n_poisoned"], record["sample"])
            if images.setdefault(record["track"], shape) != shape:
                raise ValueError(
                    f"OK records of track {record['track']!r} were graded on different images "
                    f"(n_clean, n_poisoned, sample): {images[record['track']]} and {shape}"
                )


def _rounded(value: Any) -> Any:
    """Round every float in a JSON-like value; ``+ 0.0`` turns ``-0.0`` into ``0.0``."""
    if isinstance(value, float):
        return round(value, DECIMALS) + 0.0
    if isinstance(value, Mapping):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(item) for item in value]
    return value


def _sorted_records(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Records in canonical order with floats as stored, so any input order gives one output."""
    ordered = sorted(records, key=lambda record: (record["submission"], record["track"]))
    # DER from the stored (rounded) metrics: rendering again from results.json gives the same
    return with_der([_rounded({**record, **_probe_values(record)}) for record in ordered])


# Files -------------------------------------------------------------------------------------------


def write_atomic(path: str | os.PathLike[str], content: str | bytes) -> None:
    """Write ``content`` to ``path`` so that readers see the old file or the new one, never a mix.

    The temporary file lives in the same folder (``os.replace`` is only atomic within one file
    system) and is created with ``open(..., "x")`` so that it gets the usual umask permissions.
    """
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    try:
        with open(temporary, "xb") as handle:
            handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_results(
    path: str | os.PathLike[str],
    benchmark: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
) -> None:
    """Write ``results.json``: identical benchmark and records give identical bytes."""
    _check_records(_tracks(benchmark), records)
    payload = {
        "benchmark": _rounded(benchmark),
        "harness_version": __version__,
        "results": _sorted_records(records),
    }
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_results(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read ``results.json`` back as ``(benchmark, records)``, checked like freshly made records."""
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HarnessError(f"cannot read results file {path}: {exc}") from exc
    if not isinstance(payload, dict) or not {"benchmark", "results"} <= payload.keys():
        raise HarnessError(f"{path} is not a results file: it lacks 'benchmark' or 'results'")
    benchmark, records = payload["benchmark"], payload["results"]
    try:
        _check_records(_tracks(benchmark), records)
    except (TypeError, ValueError) as exc:
        raise HarnessError(f"invalid results file {path}: {exc}") from exc
    return benchmark, [{**record, **_probe_values(record)} for record in records]


# Ranking -----------------------------------------------------------------------------------------


def _complete(
    benchmark: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Checked, canonically ordered records with an error record for every missing track.

    A missing (submission, track) pair counts -1 like a failure, so it is shown like one: the
    leaderboard then explains every -1 that went into a score.
    """
    tracks = _tracks(benchmark)
    _check_records(tracks, records)
    present = {(record["submission"], record["track"]) for record in records}
    meta = {record["submission"]: record for record in _sorted_records(records)}
    filler = [
        error_record(meta[submission], track, NO_RESULT)
        for submission in meta
        for track in tracks
        if (submission, track) not in present
    ]
    return _sorted_records([*records, *filler])


def _mean(values: Sequence[float]) -> float:
    return round(math.fsum(values) / len(values), DECIMALS) if values else math.nan


def _overall_row(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One submission's leaderboard row, from its records on all tracks."""
    ok = [record for record in records if record["status"] == "ok"]
    return {
        **{key: records[0][key] for key in META_KEYS},
        "score": round(submission_score([record["utility"] for record in records]), DECIMALS),
        "mean_clean_acc": _mean([record["clean_acc"] for record in ok]),
        "mean_asr": _mean([record["asr"] for record in ok]),
        "mean_der": _mean([record["der"] for record in ok if record["der"] is not None]),
        "mean_p_asr": _mean([record["p_asr"] for record in ok if record["p_asr"] is not None]),
        "tracks_ok": f"{len(ok)}/{len(records)}",
    }


def shared_ranks(outcomes: Sequence[Sequence[stats.Outcomes | None]]) -> list[tuple[int, bool]]:
    """``(rank, tied)`` of rows already in ranking order, from each row's outcomes per track.

    A row that :func:`harness.grading.stats.tied` cannot tell apart from the row above takes that
    row's rank, so a chain of close rows shares the rank of its first; ``tied`` marks every row that
    shares its rank. Other rows rank by position, as in sports ("1, =2, =2, 4").
    """
    ranks: list[int] = []
    tied = [False] * len(outcomes)
    for position, row in enumerate(outcomes):
        if position and stats.tied(outcomes[position - 1], row):
            ranks.append(ranks[-1])
            tied[position - 1] = tied[position] = True
        else:
            ranks.append(position + 1)
    return list(zip(ranks, tied, strict=True))


def rank(benchmark: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per submission, best first: by score, then mean clean accuracy, then name.

    The score is :func:`harness.grading.scoring.submission_score` over all benchmark tracks; a track
    with no record or an error record counts -1. Means are over OK tracks only (NaN if there are
    none; ``mean_p_asr`` over OK tracks with a P-ASR, which never enters the score).
    Scores are rounded to 6 decimals first, so that float noise never decides a rank. ``rank`` is
    shared with the row above when a paired bootstrap of the score difference cannot separate
    them (see :func:`shared_ranks`); ``tied`` says which rows share their rank.
    """
    by_submission: dict[str, list[dict[str, Any]]] = {}
    for record in _complete(benchmark, records):
        by_submission.setdefault(record["submission"], []).append(record)
    rows = [_overall_row(group) for group in by_submission.values()]
    table = pd.DataFrame(rows, columns=list(RANK_COLUMNS[2:]))
    table = table.sort_values(
        ["score", "mean_clean_acc", "submission"], ascending=[False, False, True]
    ).reset_index(drop=True)  # names are unique: a total order, NaN clean accuracies last
    outcomes = [
        [_outcomes(record) for record in by_submission[name]] for name in table["submission"]
    ]
    ranks = shared_ranks(outcomes)
    table.insert(0, "tied", [tied for _, tied in ranks])
    table.insert(0, "rank", [position for position, _ in ranks])
    return table


# Tables ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A table as text cells, ready for any layout: rows of ``{column: cell}``."""

    columns: list[str]
    rows: list[dict[str, str]]
    left: frozenset[str]
    """Text columns (left-aligned); the others hold numbers."""
    references: list[bool]
    """Which rows are reference entries."""


@dataclass(frozen=True)
class TrackBoard:
    """One track's part of the board."""

    name: str
    table: Table
    sample: int | None
    """The per-set sample size its OK rows were graded on (None: whole sets)."""
    pareto: str | None
    """The Pareto plot, relative to the board's folder (None: no OK row to plot)."""
    samples: str
    """The montage of test images, relative to the board's folder."""
    retuning: str | None
    """What the retuning probe did on this track and its yardstick, one paragraph under the
    table (None: the table shows no P-ASR)."""


@dataclass(frozen=True)
class Provenance:
    """What was graded with what, as the footer of every rendering states it."""

    benchmark: str
    data: list[tuple[str, str]]
    """(file name, sha256 shortened to :data:`HASH_CHARS`), sorted by name."""
    submissions: list[tuple[str, str]]
    """(submission, sha256 of its files, shortened), sorted by name."""
    versions: str
    harness: str


@dataclass(frozen=True)
class Board:
    """Everything a rendering shows, derived from the records alone."""

    benchmark: str
    overall: Table
    tracks: list[TrackBoard]
    errors: list[tuple[str, str, str]]
    """(displayed submission name, track, one-line error) of every failed track and every
    failed retuning probe."""
    provenance: Provenance
    intro: tuple[str, ...]
    """The paragraphs that say what the tables mean (:data:`INTRO`, and :data:`PROBE_LEGEND`
    where the board shows P-ASR)."""


def _text(value: str) -> str:
    """Free text made safe for a table cell: one line, ``|`` cannot end the cell, none is ``-``."""
    return " ".join(value.split()).replace("|", "\\|") or MISSING


def _name(record: Mapping[str, Any]) -> str:
    """A submission's displayed name; reference entries are marked wherever they appear."""
    name = _text(record["submission"])
    return f"{name} {REFERENCE_MARK}" if record["reference"] else name


def _number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return MISSING
    return f"{value:.3f}"


def _params(value: int | None) -> str:
    return MISSING if value is None else f"{value:,}"


def _macs(value: float | None) -> str:
    """Multiply-adds in millions: the contest's networks need a few million per image."""
    return MISSING if value is None else f"{value / 1e6:.2f}M"


def _passes(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def _rank_cell(position: int, tied: bool) -> str:
    return f"{TIE_MARK}{position}" if tied else str(position)


def _overall_table(ranking: pd.DataFrame, probe: bool = False) -> Table:
    """The overall ranking; ``probe``: with the mean P-ASR (some record has one)."""
    rows = [
        {
            "rank": _rank_cell(row["rank"], row["tied"]),
            "submission": _name(row),
            "team": _text(row["team"]),
            "method": _text(row["method"]),
            "score": _number(row["score"]),
            "mean clean acc": _number(row["mean_clean_acc"]),
            "mean ASR": _number(row["mean_asr"]),
            "mean DER": _number(row["mean_der"]),
            "mean P-ASR": _number(row["mean_p_asr"]),
            "tracks ok": row["tracks_ok"],
        }
        for row in ranking.to_dict("records")
    ]
    columns = ["rank", "submission", "team", "method", "score", "mean clean acc", "mean ASR",
               "mean DER", *(["mean P-ASR"] if probe else []), "tracks ok"]
    return Table(columns, rows, frozenset({"submission", "team", "method"}),
                 [bool(flag) for flag in ranking["reference"]])


def _trigger_column(trigger: str) -> str:
    return f"ASR[{_text(trigger)}]"


def _cell(record: Mapping[str, Any], key: str) -> str:
    """A metric with its 95% interval where it has one: ``0.951 [0.937, 0.962]``."""
    if key not in INTERVALS or record[INTERVALS[key]] is None:
        return _number(record[key])
    low, high = record[INTERVALS[key]]
    return f"{_number(record[key])} [{low:.3f}, {high:.3f}]"


COST_COLUMNS = (("params", "params", _params), ("MACs/image", "macs_per_image", _macs),
                ("passes/image", "passes_per_image", _passes))
"""Cost columns of a track table (header, record key, format)."""


def _track_row(
    position: str, record: Mapping[str, Any], triggers: list[str], counts: list[tuple[str, str]],
    metrics: Sequence[tuple[str, str]] = TRACK_METRICS,
) -> dict[str, str]:
    """A row of a track table; a failed record has no metrics, so all of them show as missing."""
    return {
        "rank": position,
        "submission": _name(record),
        **{header: _cell(record, key) for header, key in metrics},
        **{header: _count(record[key]) for header, key in counts},
        **{_trigger_column(name): _number(record["per_trigger"].get(name)) for name in triggers},
        **{header: show(record[key]) for header, key, show in COST_COLUMNS},
    }


def _count(value: int | None) -> str:
    return MISSING if value is None else str(value)


def _track_order(
    records: Sequence[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """A track's OK records, best utility first (then clean acc, then name), and its failures."""
    ok = sorted(
        (record for record in records if record["status"] == "ok"),
        key=lambda record: (-record["utility"], -record["clean_acc"], record["submission"]),
    )
    return ok, [record for record in records if record["status"] == "error"]


def _track_board(track: str, records: Sequence[Mapping[str, Any]],
                 retuning: Mapping[str, Any] | None = None) -> TrackBoard:
    """Submissions on one track, best utility first; failures at the bottom, by name.

    Per-trigger columns appear only when the track has several triggers (with one they would
    repeat the ASR column), the invalid-answer count only when some answer was invalid, and the
    image counts only on a sample, where they are not the whole sets the track file names. The
    P-ASR column and the paragraph on the retuning probe appear only where the probe left a
    trace: an OK record with a P-ASR or a probe error, or a yardstick of the track in
    ``retuning`` (the benchmark's ``"retuning"`` entry).
    """
    ok, failed = _track_order(records)
    all_triggers = sorted({trigger for record in ok for trigger in record["per_trigger"]})
    triggers = all_triggers if len(all_triggers) > 1 else []
    yardstick = None if retuning is None else retuning["tracks"].get(track)
    probed = yardstick is not None or any(
        record["p_asr"] is not None or record["p_error"] is not None for record in ok)
    metrics = [*TRACK_METRICS, PROBE_COLUMN] if probed else list(TRACK_METRICS)
    counts = [("invalid", "n_invalid")] if any(record["n_invalid"] for record in ok) else []
    sample = ok[0]["sample"] if ok else None  # the same for all: _check_same_images
    if sample is not None:
        counts += [("n clean", "n_clean"), ("n poisoned", "n_poisoned")]
    ranks = shared_ranks([[_outcomes(record)] for record in ok])
    rows = [
        _track_row(_rank_cell(position, tied), record, triggers, counts, metrics)
        for (position, tied), record in zip(ranks, ok, strict=True)
    ]
    rows += [_track_row("error", record, triggers, counts, metrics) for record in failed]
    columns = [
        "rank",
        "submission",
        *(header for header, _ in metrics),
        *(header for header, _ in counts),
        *(_trigger_column(name) for name in triggers),
        *(header for header, _, _ in COST_COLUMNS),
    ]
    table = Table(columns, rows, frozenset({"submission"}),
                  [bool(record["reference"]) for record in [*ok, *failed]])
    note = None
    if probed:
        budget = None if retuning is None else retuning["budget"]
        note = _retuning_note(budget, yardstick, several=len(all_triggers) > 1)
    return TrackBoard(track, table, sample, plots.pareto_file(track) if ok else None,
                      plots.samples_file(track), note)


def _retuning_note(budget: str | None, yardstick: Mapping[str, Any] | None,
                   several: bool = False) -> str:
    """The paragraph under a track table that shows P-ASR: what the probe did, and what it does
    to the track's clean model (the yardstick). Without a yardstick only what is known: the
    probe's budget where the benchmark states it. ``several``: the track has several triggers."""
    if yardstick is None:
        what = f" ({_text(budget)})" if budget else ""
        return (f"Retuning probe: each model entry fine-tuned on the attacker's retuning "
                f"set{what}, then answering a sample of the test images again.")
    trigger = "a trigger" if several else "the trigger"
    images = "image" if yardstick["images"] == 1 else "images"
    parts = [f"{yardstick['poisoned']} with {trigger}", *([_text(budget)] if budget else [])]
    first = (f"Retuning probe: each model entry fine-tuned on {yardstick['images']} attacker "
             f"{images} ({'; '.join(parts)}), then answering a sample of the test images "
             "again.")
    if yardstick["error"] is not None:
        return f"{first} Yardstick: not measured ({_text(yardstick['error'])})."
    if yardstick["p_asr"] is None:
        return f"{first} Yardstick: not measured."
    after = ("" if yardstick["p_clean_acc"] is None
             else f" (clean acc {_number(yardstick['p_clean_acc'])} after it)")
    seen = "any trigger" if several else "the trigger"
    return (f"{first} Yardstick: the clean model, which never saw {seen}, reaches P-ASR "
            f"{_cell(yardstick, 'p_asr')} under the same budget{after}.")


def _provenance(benchmark: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> Provenance:
    """What was graded with what; no timestamp, so identical inputs give identical bytes.

    Versions are sorted by name because ``results.json`` stores them sorted, and a board
    re-rendered from it must not differ from the first.
    """
    digests = {record["submission"]: record["sha256"] for record in records}
    return Provenance(
        benchmark=benchmark["name"],
        data=[(name, digest[:HASH_CHARS]) for name, digest in
              sorted(benchmark["data_hashes"].items())],
        submissions=[(_text(name), digest[:HASH_CHARS] or MISSING)
                     for name, digest in sorted(digests.items())],
        versions=", ".join(f"{key} {value}"
                           for key, value in sorted(benchmark["provenance"].items())) or MISSING,
        harness=__version__,
    )


def _error_line(record: Mapping[str, Any]) -> str | None:
    """What the Errors section says of a record: its error, or its retuning probe's failure
    (an OK record); None for neither."""
    if record["status"] == "error":
        return _text(record["error"])
    return None if record["p_error"] is None else _text(probe_error(record["p_error"]))


def board(benchmark: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> Board:
    """The board: overall ranking, one table per track, errors, provenance."""
    complete = _complete(benchmark, records)
    retuning = benchmark.get(RETUNING)
    tracks = [_track_board(track, [record for record in complete if record["track"] == track],
                           retuning)
              for track in _tracks(benchmark)]
    probe = any(track.retuning is not None for track in tracks)
    errors = [(_name(record), record["track"], line)
              for record in complete if (line := _error_line(record)) is not None]
    return Board(
        benchmark=benchmark["name"],
        overall=_overall_table(rank(benchmark, complete),
                               any(record["p_asr"] is not None for record in complete)),
        tracks=tracks,
        errors=errors,
        provenance=_provenance(benchmark, complete),
        intro=(*INTRO, PROBE_LEGEND) if probe else INTRO,
    )


# Leaderboard -------------------------------------------------------------------------------------


def _markdown_table(table: Table) -> str:
    """Lay out pre-formatted cells with tabulate; numbers are right-aligned, text left-aligned.

    ``disable_numparse`` stops tabulate from re-formatting the already formatted numbers.
    """
    frame = pd.DataFrame(table.rows, columns=table.columns)
    align = ["left" if column in table.left else "right" for column in table.columns]
    return frame.to_markdown(index=False, disable_numparse=True, colalign=align)


INTRO = (
    "Score is the mean over the benchmark's tracks of utility = clean accuracy - ASR "
    "(attack success rate); a failed or missing track counts -1.",
    "All rates are fractions of images: clean acc = clean images given their true label; "
    "ASR = poisoned images given the attacker's target; detect = poisoned images flagged "
    "as poisoned; false flag = clean images flagged; robust acc = poisoned images given "
    "their true label (where known); invalid = answers that were no label at all. "
    f'Reference entries are marked "{REFERENCE_MARK}"; "{MISSING}" means no value.',
    "DER (defense effectiveness rating) = [max(0, drop in ASR) - max(0, drop in clean acc) "
    "+ 1] / 2, against the row of the track's BadNet itself (an entry whose model file is the "
    "BadNet, such as the no-defense reference): 0.5 changes nothing, 1 removes the attack at "
    "no cost in accuracy; without such a row it is not known. Cost: params = parameters of the "
    "networks an entry ran, MACs/image = their multiply-adds per graded image (every network "
    "pass counted), passes/image = network passes per graded image.",
    "Brackets are 95% intervals: Wilson score intervals for clean acc and ASR, Newcombe's "
    f'hybrid score interval for utility. A rank written "{TIE_MARK}k" is shared with the '
    f"row above: a paired bootstrap ({stats.RESAMPLES} resamples of the test images, the "
    "same for both rows) gives a 95% interval for the difference in score (in track "
    "tables: utility) that contains 0, so the test images cannot order the two. A run of "
    "such rows shares the rank of its first row.",
)
"""What the tables mean, said once for every rendering."""
PROBE_LEGEND = (
    "P-ASR (post-retuning ASR; Min et al., NeurIPS 2024, \"Uncovering, Explaining, and "
    "Mitigating the Superficial Safety of Backdoor Defense\"): each model entry is fine-tuned a "
    "little on the attacker's small retuning set (a few images, some carrying the trigger and "
    "labelled with the target), then answers a sample of the track's poisoned test images "
    "again; P-ASR is the share answered with the target, with its 95% Wilson interval. A low "
    "ASR whose P-ASR jumps up is superficial: the backdoor was hidden, not removed; a P-ASR that "
    "stays near the yardstick holds. The yardstick, stated under each track table, is the same "
    "probe on the track's clean model, which never saw the trigger: the re-learning the budget "
    "alone causes. Per-image scripts are black boxes and are not probed; mean P-ASR is over the "
    "tracks with a P-ASR. P-ASR is reported, not scored: it enters no score, utility or rank."
)
"""The paragraph that joins :data:`INTRO` where the board shows P-ASR."""


def _track_section(track: TrackBoard) -> str:
    parts = [f"## Track: {track.name}", _markdown_table(track.table)]
    if track.sample is not None:
        parts.append(f"Graded on a stratified sample of {track.sample} images per set.")
    if track.retuning is not None:
        parts.append(track.retuning)
    if track.pareto is not None:
        parts.append(f"![Clean accuracy against ASR]({track.pareto})")
    parts.append(f"![Test images, clean and poisoned]({track.samples})")
    return "\n\n".join(parts)


def _errors_section(errors: Sequence[tuple[str, str, str]]) -> str:
    lines = [f"- {name} / {track}: {error}" for name, track, error in errors]
    return "## Errors\n\n" + ("\n".join(lines) if lines else "None.")


def _footer(provenance: Provenance) -> str:
    data = [f"  - {name}: {digest}" for name, digest in provenance.data] or ["  - none"]
    return "\n".join(
        [
            "---",
            "",
            f"- Benchmark: {provenance.benchmark}",
            f"- Data (sha256, first {HASH_CHARS} hex digits):",
            *data,
            f"- Submissions (sha256 of the folder's files, first {HASH_CHARS} hex digits):",
            *(f"  - {name}: {digest}" for name, digest in provenance.submissions),
            f"- Graded with: {provenance.versions}",
            f"- Rendered by harness {provenance.harness}",
        ]
    )


def render_leaderboard(benchmark: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> str:
    """The leaderboard as Markdown: overall ranking, one table per track, errors, provenance."""
    return _markdown(board(benchmark, records))


def _markdown(shown: Board) -> str:
    sections = [
        "\n\n".join([f"# Leaderboard: {shown.benchmark}", *shown.intro]),
        f"## Overall\n\n{_markdown_table(shown.overall)}",
        *(_track_section(track) for track in shown.tracks),
        _errors_section(shown.errors),
        _footer(shown.provenance),
    ]
    return "\n\n".join(sections) + "\n"


def _pareto_points(ok: Sequence[Mapping[str, Any]]) -> list[plots.Point]:
    return [
        plots.Point(
            label=f"{record['submission']} {REFERENCE_MARK}"
            if record["reference"]
            else record["submission"],
            reference=record["reference"],
            asr=record["asr"],
            asr_ci=tuple(record["asr_ci"]),
            clean_acc=record["clean_acc"],
            clean_acc_ci=tuple(record["clean_acc_ci"]),
        )
        for record in ok
    ]


def write_leaderboard(
    path: str | os.PathLike[str],
    benchmark: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
) -> None:
    """Write the rendered leaderboard atomically, like ``results.json``, and next to it the
    Pareto plot of every track with a result (``plots/<track>.png``), numbered like its table."""
    write_atomic(path, render_leaderboard(benchmark, records))
    _write_plots(Path(path).parent, benchmark, records)


def _write_plots(folder: Path, benchmark: Mapping[str, Any],
                 records: Sequence[Mapping[str, Any]]) -> None:
    complete = _complete(benchmark, records)
    for track in _tracks(benchmark):
        ok, _ = _track_order([record for record in complete if record["track"] == track])
        if ok:
            target = folder / plots.pareto_file(track)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, plots.pareto_png(track, _pareto_points(ok)))


# Export ------------------------------------------------------------------------------------------


def render_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """Every record as a CSV row, in ``results.json``'s order and with its values: the columns of
    a record less the packed outcomes, an interval as ``<key>_low``/``<key>_high`` and the
    per-trigger ASRs as ``asr[<trigger>]`` (empty where a track has no such trigger). The
    retuning probe's columns (:data:`PROBE_KEYS`) appear only when some record has a value in
    one, so results graded without the probe give the file they gave before it existed."""
    rows = _sorted_records(records)
    triggers = sorted({trigger for record in rows for trigger in record["per_trigger"]})
    probed = any(record[key] is not None for record in rows for key in PROBE_KEYS)
    keys = [key for key in RECORD_KEYS if probed or key not in PROBE_KEYS]
    intervals = [key for key in keys if key in RECORD_INTERVAL_KEYS]
    plain = [key for key in keys if key not in ("per_trigger", "outcomes", *intervals)]
    flat = []
    for record in rows:
        row = {key: record[key] for key in plain}
        for key in intervals:
            row[f"{key}_low"], row[f"{key}_high"] = record[key] or (None, None)
        row.update({f"asr[{name}]": record["per_trigger"].get(name) for name in triggers})
        flat.append(row)
    columns = [*plain, *(f"{key}_{end}" for key in intervals for end in ("low", "high"))]
    columns += [f"asr[{name}]" for name in triggers]
    # object dtype: integers stay integers in columns that also hold None
    return pd.DataFrame(flat, columns=columns, dtype=object).to_csv(index=False,
                                                                    lineterminator="\n")


CSV_FILE = "results.csv"
PAGE_FILE = "index.html"


def write_board(folder: str | os.PathLike[str], benchmark: Mapping[str, Any],
                records: Sequence[Mapping[str, Any]]) -> None:
    """Write every rendering of the records into ``folder``: ``leaderboard.md`` with its Pareto
    plots, ``results.csv`` and the web page. ``grade`` and ``harness render`` both call this, so
    a board re-rendered from ``results.json`` is the board the grading run wrote."""
    from harness.render import page  # Jinja2: only when a board is written

    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    shown = board(benchmark, records)  # ranks by paired bootstrap: made once for both layouts
    write_atomic(target / "leaderboard.md", _markdown(shown))
    _write_plots(target, benchmark, records)
    write_atomic(target / CSV_FILE, render_csv(records))
    write_atomic(target / PAGE_FILE, page.render_page(shown))
