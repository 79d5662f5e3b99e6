"""Ranking: DER against a track's BadNet row, the overall row of each submission, shared ranks.

Plain Python on records, so that the leaderboard, the web page and the CI summary rank alike and
nothing but rendering needs a table library. A missing (submission, track) pair counts like a
failure (:func:`complete`), and scores are rounded before they are compared, so that float noise
never decides a rank.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict

from harness.grading import stats
from harness.grading.scoring import submission_score
from harness.results.record import (
    DECIMALS,
    check_benchmark,
    check_records,
    detection_values,
    error_record,
    outcomes_of,
    probe_values,
    rounded,
)

NO_RESULT = "no result recorded"
"""Error message of a (submission, track) pair the grader produced no record for."""


class Ranked(TypedDict):
    """One submission's row of the overall ranking."""

    rank: int
    """Its place; shared with the row above where the test images cannot order them."""
    tied: bool
    """It shares its rank with a neighbour (:func:`shared_ranks`)."""
    submission: str
    team: str
    method: str
    reference: bool
    score: float
    """:func:`harness.grading.scoring.submission_score` over all benchmark tracks."""
    mean_clean_acc: float
    """Over OK tracks; NaN without one."""
    mean_asr: float
    mean_der: float
    """Over OK tracks with a DER."""
    mean_p_asr: float
    """Over OK tracks with a P-ASR, which never enters the score."""
    tracks_ok: str
    """``"<OK tracks>/<tracks>"``."""


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


def canonical(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Records in canonical order with every key and floats as stored, so any input order gives
    one output."""
    ordered = sorted(records, key=lambda record: (record["submission"], record["track"]))
    # DER from the stored (rounded) metrics: rendering again from results.json gives the same
    return with_der([rounded({**record, **detection_values(record), **probe_values(record)})
                     for record in ordered])


def complete(
    benchmark: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Checked, canonically ordered records with an error record for every missing track.

    A missing (submission, track) pair counts -1 like a failure, so it is shown like one: the
    leaderboard then explains every -1 that went into a score.
    """
    tracks = check_benchmark(benchmark)
    check_records(tracks, records)
    present = {(record["submission"], record["track"]) for record in records}
    meta = {record["submission"]: record for record in canonical(records)}
    filler = [
        error_record(meta[submission], track, NO_RESULT)
        for submission in meta
        for track in tracks
        if (submission, track) not in present
    ]
    return canonical([*records, *filler])


def _mean(values: Sequence[float]) -> float:
    return round(math.fsum(values) / len(values), DECIMALS) if values else math.nan


def _ok_mean(records: Sequence[Mapping[str, Any]], key: str) -> float:
    """The mean of ``key`` over the OK records that have a value (NaN where none has)."""
    return _mean([record[key] for record in records
                  if record["status"] == "ok" and record[key] is not None])


def _score(records: Sequence[Mapping[str, Any]]) -> float:
    """A submission's score, rounded so that float noise never decides a rank."""
    return round(submission_score([record["utility"] for record in records]), DECIMALS)


def _order(records: Sequence[Mapping[str, Any]]) -> tuple[float, bool, float, str]:
    """Best first: higher score, then higher mean clean accuracy (NaN, no OK track, last), then
    name; names are unique, so this is a total order."""
    clean = _ok_mean(records, "clean_acc")
    return (-_score(records), math.isnan(clean), 0.0 if math.isnan(clean) else -clean,
            records[0]["submission"])


def _overall_row(records: Sequence[Mapping[str, Any]], position: int, tied: bool) -> Ranked:
    """One submission's leaderboard row, from its records on all tracks."""
    first = records[0]
    return Ranked(
        rank=position,
        tied=tied,
        submission=first["submission"],
        team=first["team"],
        method=first["method"],
        reference=first["reference"],
        score=_score(records),
        mean_clean_acc=_ok_mean(records, "clean_acc"),
        mean_asr=_ok_mean(records, "asr"),
        mean_der=_ok_mean(records, "der"),
        mean_p_asr=_ok_mean(records, "p_asr"),
        tracks_ok=f"{sum(record['status'] == 'ok' for record in records)}/{len(records)}",
    )


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


def rank(benchmark: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> list[Ranked]:
    """One row per submission, best first: by score, then mean clean accuracy, then name.

    The score is :func:`harness.grading.scoring.submission_score` over all benchmark tracks; a track
    with no record or an error record counts -1. Means are over OK tracks only (NaN if there are
    none; ``mean_p_asr`` over OK tracks with a P-ASR, which never enters the score).
    Scores are rounded to 6 decimals first, so that float noise never decides a rank. ``rank`` is
    shared with the row above when a paired bootstrap of the score difference cannot separate
    them (see :func:`shared_ranks`); ``tied`` says which rows share their rank.
    """
    by_submission: dict[str, list[dict[str, Any]]] = {}
    for record in complete(benchmark, records):
        by_submission.setdefault(record["submission"], []).append(record)
    groups = sorted(by_submission.values(), key=_order)
    ranks = shared_ranks([[outcomes_of(record) for record in group] for group in groups])
    return [_overall_row(group, position, tied)
            for (position, tied), group in zip(ranks, groups, strict=True)]
