"""The result record: what ``results.json`` holds, defined once, with its constructors and checks.

A record is one submission on one track, OK or failed; every record has the same keys so that
tables and JSON never need special cases. :class:`Record` names and documents every key, in the
order records are built (which is the order of the CSV columns); the key groups below name parts
of it that code handles together. Records are checked where they are made (:func:`ok_record`,
:func:`error_record`) and where they are read or rendered (:func:`check_records`), so a bad
value is refused with the record it belongs to named, not found later by a table that breaks.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NotRequired, TypedDict, cast

from harness.grading import stats
from harness.sandbox.retuning import PROBE_KEYS


class Record(TypedDict):
    """One submission on one track: a row of ``results.json`` (and of ``results.csv``).

    A failed track (``status`` ``"error"``) holds None, or an empty mapping, wherever an OK one
    holds a measurement. Floats are stored rounded to :data:`DECIMALS` decimals.
    """

    submission: str
    """The submission's folder name: unique, the key of its rows everywhere."""
    team: str
    method: str
    reference: bool
    """An organizers' reference entry, marked as such wherever it is shown."""
    sha256: str
    """Digest of the submission's files, so that a result names exactly what was graded."""
    track: str
    status: Literal["ok", "error"]
    error: str | None
    """Why the track failed, on one line (tables show it as is); None for an OK record."""
    sample: int | None
    """The per-set sample size graded (``--sample K``); None for whole sets."""
    badnet: bool
    """The entry is the track's BadNet file itself, unchanged: the row DER is measured against."""
    clean_acc: float | None
    """Share of clean test images given their true label."""
    asr: float | None
    """Attack success rate: share of poisoned images given the attacker's target."""
    detect_rate: float | None
    """Share of poisoned images flagged as poisoned."""
    false_flag_rate: float | None
    """Share of clean images flagged as poisoned."""
    robust_acc: float | None
    """Share of poisoned images given their true label (None where no true label is known)."""
    utility: float | None
    """``clean_acc - asr``: what a track adds to the score."""
    n_clean: int | None
    n_poisoned: int | None
    n_invalid: int | None
    """Answers that were no label at all, clean and poisoned."""
    per_trigger: dict[str, float]
    """ASR per trigger name (sets sharing a trigger pooled)."""
    clean_acc_ci: list[float] | None
    """95% Wilson interval ``[low, high]`` of ``clean_acc``."""
    asr_ci: list[float] | None
    """95% Wilson interval of ``asr``."""
    utility_ci: list[float] | None
    """Newcombe's 95% interval of ``utility``."""
    outcomes: dict[str, str]
    """Per-image results packed by :func:`harness.grading.stats.pack_outcomes`: ``clean``
    (answered the true label) and ``attack`` (answered the target), for paired tests."""
    auroc: float | None
    """Threshold-free detection: the AUROC of the entry's detection scores, poisoned images
    against clean ones (the chance that a poisoned image scores higher than a clean one, ties
    half); None for an entry that gives labels only. Reported, not scored."""
    auroc_ci: list[float] | None
    """DeLong's 95% interval of ``auroc`` (:func:`harness.grading.stats.auroc`)."""
    der: float | None
    """Defense effectiveness rating against the track's BadNet row
    (:func:`harness.results.ranking.der`); None without such a row or for a failed track."""
    params: int | None
    """Parameters of the networks the entry ran (None where unknown)."""
    macs_per_image: float | None
    """Their multiply-adds per graded image, all networks and passes."""
    passes_per_image: float | None
    """Network passes per graded image."""
    p_asr: float | None
    """The retuning probe's ASR after fine-tuning (see :data:`PROBE_KEYS`)."""
    p_asr_ci: list[float] | None
    """Its 95% Wilson interval."""
    p_clean_acc: float | None
    """Clean accuracy after the probe's fine-tuning."""
    p_error: str | None
    """Why the probe failed for an OK record, on one line."""


RECORD_KEYS = tuple(Record.__annotations__)
"""Every key of a record, in the order records are built."""
META_KEYS = ("submission", "team", "method", "reference", "sha256")
"""The submission's identity, the same in all its records."""
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
DETECTION_KEYS = ("auroc", "auroc_ci")
"""The threshold-free detection figure and its interval, where the entry gives detection
scores (:func:`harness.grading.item.detection`); records written before it lack them, and read
as an entry that gives labels only."""
COST_KEYS = ("params", "macs_per_image", "passes_per_image")
"""What an entry costs to run, as the worker observed it (None where unknown). Deterministic,
unlike wall time and memory (those go to ``timings.json``)."""
RECORD_INTERVAL_KEYS = (*INTERVAL_KEYS, "auroc_ci", "p_asr_ci")
"""Every record key that holds a 95% interval ``[low, high]`` (or None)."""


class Yardstick(TypedDict):
    """A track's entry under ``benchmark["retuning"]["tracks"]``: the retuning probe on the
    track's clean model, which says how much the probe's budget re-teaches on its own."""

    p_asr: float | None
    p_asr_ci: list[float] | None
    p_clean_acc: float | None
    error: str | None
    """Why it could not be measured, on one line; else None."""
    images: int
    """The retuning set's size."""
    poisoned: int
    """How many of its images carry a trigger."""


YARDSTICK_KEYS = tuple(Yardstick.__annotations__)


class Retuning(TypedDict):
    """The benchmark's optional ``"retuning"`` entry (:func:`retuning_summary`); absent when the
    probe was off or no track has a retuning set."""

    budget: str
    """The optimizer's part of the probe's budget, on one line."""
    tracks: dict[str, Yardstick]
    """Each probed track's yardstick, by track name."""


RETUNING_KEYS = tuple(Retuning.__annotations__)


class Benchmark(TypedDict):
    """What was graded: the ``"benchmark"`` of ``results.json``."""

    name: str
    data_hashes: dict[str, str]
    """sha256 of each data file, by file name."""
    tracks: list[str]
    """The track names, in the benchmark's order; distinct."""
    provenance: dict[str, Any]
    """The versions and seed grading ran with."""
    retuning: NotRequired[Retuning]


RETUNING = "retuning"
"""The optional key of :class:`Benchmark`."""
BENCHMARK_KEYS = tuple(key for key in Benchmark.__annotations__ if key != RETUNING)
"""The keys every benchmark has."""
PROBE_ERROR_PREFIX = "retuning probe: "
"""How the Errors section introduces a probe failure (``p_error``) of an OK record."""
DECIMALS = 6
"""Precision of stored floats: far below any meaningful difference, well above float noise."""


def _is_real(value: Any) -> bool:
    """A finite real number a float can hold; ``True`` is an int to Python but no measurement,
    and NaN, infinities and integers past a float's range measure nothing either."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _is_integral(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Integral)


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
    if not _is_integral(sample) or sample < 1:
        raise ValueError(f"sample must be a positive integer or None, got {sample!r}")
    return int(sample)


def error_record(
    meta: Mapping[str, Any], track: str, message: str, *, sample: int | None = None
) -> Record:
    """Record a failed track; the message is collapsed to one line because tables show it as is."""
    line = " ".join(str(message).split())
    if not line:
        raise ValueError("an error record needs a non-empty message")
    return cast(Record, {
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
        **dict.fromkeys(DETECTION_KEYS),
        "der": None,
        **dict.fromkeys(COST_KEYS),
        **dict.fromkeys(PROBE_KEYS),
    })


def _interval(value: Any, what: str) -> list[float]:
    """``[low, high]`` as a list of Python floats (JSON has no tuples, so stored ones are lists)."""
    if not isinstance(value, list | tuple) or len(value) != 2 or not all(map(_is_real, value)):
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
) -> Record:
    """Record a scored track; ``scores`` is what :func:`harness.grading.scoring.score_track`
    returned, with the detection figure (:data:`DETECTION_KEYS`) where the entry gives scores, the
    entry's cost (:data:`COST_KEYS`) where it was measured and the retuning probe's results
    (:data:`PROBE_KEYS`) where it ran; absent ones are None. ``der`` is filled in when the
    records of the whole track are known (:func:`harness.results.ranking.with_der`)."""
    if not set(SCORE_KEYS) <= set(scores) <= {*SCORE_KEYS, *DETECTION_KEYS, *COST_KEYS,
                                              *PROBE_KEYS}:
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
        **_detection(detection_values(scores), ""),
        "der": None,
        **{key: _cost(scores.get(key), key) for key in COST_KEYS},
        **_probe({key: scores.get(key) for key in PROBE_KEYS}, "", collapse=True),
    }
    outcomes_of(record)  # refuse outcomes that do not match the counts now, not when ranking
    return cast(Record, record)


def _cost(value: Any, key: str) -> int | float | None:
    """A cost figure: a non-negative number, or None where it was not measured."""
    if value is None:
        return None
    if not _is_real(value) or not value >= 0:
        raise ValueError(f"{key} must be a non-negative number or None, got {value!r}")
    return _plain_number(value)


def _share(value: Any, what: str) -> float | None:
    """A rate: a number in [0, 1], or None where it was not measured."""
    if value is None:
        return None
    if not _is_real(value) or not 0 <= value <= 1:
        raise ValueError(f"{what} must be a number in [0, 1] or None, got {value!r}")
    return float(value)


def _rate(value: Any, what: str) -> float:
    """A rate that was measured: a number in [0, 1]."""
    share = _share(value, what)
    if share is None:
        raise ValueError(f"{what} must be a number in [0, 1], got None")
    return share


def _one_line(value: Any, what: str, *, collapse: bool = False) -> str | None:
    """A message that tables show as is: one non-empty line, or None. ``collapse`` makes it one
    line (a fresh message); without, one that is not is refused (a stored one)."""
    if value is None:
        return None
    line = " ".join(value.split()) if isinstance(value, str) else None
    if not line or (not collapse and line != value):
        raise ValueError(f"{what} must be a non-empty one-line string or None, got {value!r}")
    return line


def detection_values(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record's (or scores') :data:`DETECTION_KEYS`, None where they are absent (a record
    written before them, an entry that gives labels only)."""
    return {key: record.get(key) for key in DETECTION_KEYS}


def _detection(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The detection figure, checked: an AUROC in [0, 1] with its interval, or neither."""
    area, interval = _share(values["auroc"], f"auroc{where}"), values["auroc_ci"]
    if (area is None) != (interval is None):
        raise ValueError(f"auroc{where} and auroc_ci must both be given or both be None, got "
                         f"{values['auroc']!r} and {interval!r}")
    if interval is not None:
        interval = _interval(interval, f"auroc_ci{where}")
        slack, (low, high) = 10 ** -DECIMALS, interval
        assert area is not None
        if not (-slack <= low <= area + slack and area - slack <= high <= 1 + slack):
            raise ValueError(f"auroc_ci{where} must lie in [0, 1] around auroc {area!r}, got "
                             f"{interval!r}")
    return {"auroc": area, "auroc_ci": interval}


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


def outcomes_of(record: Mapping[str, Any]) -> stats.Outcomes | None:
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


def check_benchmark(benchmark: Mapping[str, Any]) -> list[str]:
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
    if not isinstance(benchmark["name"], str) or not benchmark["name"]:
        raise ValueError(f"benchmark name must be a non-empty string: {benchmark['name']!r}")
    for key, allowed in (("data_hashes", str), ("provenance", str | int | float | None)):
        table = benchmark[key]
        if not isinstance(table, Mapping) or not all(
                isinstance(name, str) and isinstance(value, allowed)
                for name, value in table.items()):
            raise ValueError(f"benchmark {key} must map names to values: {table!r}"[:500])
    if RETUNING in benchmark:
        _check_retuning(benchmark[RETUNING], tracks)
    return list(tracks)


def _count_of(value: Any, what: str) -> int:
    if not _is_integral(value) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)


def check_yardstick(entry: Any) -> Yardstick:
    """A track's yardstick as stored (a cache entry), checked; ValueError if not valid."""
    return _yardstick(entry, "a stored retuning yardstick")


def _yardstick(entry: Any, where: str, *, collapse: bool = False) -> Yardstick:
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


def _check_retuning(retuning: Any, tracks: Sequence[str], *, collapse: bool = False) -> Retuning:
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


def retuning_summary(budget: str, yardsticks: Mapping[str, Mapping[str, Any]]) -> Retuning:
    """The benchmark's optional ``"retuning"`` entry, checked, with plain Python numbers and
    one-line messages: ``budget`` describes the optimizer's part of the probe's budget ("Adam,
    learning rate 0.0001, 5 epochs, batch 16"); ``yardsticks`` maps each probed track to its
    :data:`YARDSTICK_KEYS` (the probe on the track's clean model). Track names are checked
    against the benchmark when results are written."""
    tracks = list(yardsticks)
    return _check_retuning({"budget": budget, "tracks": yardsticks}, tracks, collapse=True)


def _check_ranked_metrics(record: Mapping[str, Any], pair: tuple[str, str]) -> None:
    """An OK record's measurements, checked against its packed per-image outcomes: clean
    accuracy, ASR, utility and their intervals are recomputed from the outcomes as
    :func:`harness.grading.scoring.score_track` computes them, and must agree to the stored
    precision, so a number cannot be edited without the outcomes (which paired tests and ranks
    read) being edited to match. What the outcomes do not hold is checked for type and range,
    and against what they do (a single trigger's ASR is the ASR; pooled, it lies between the
    triggers'; flagged images are not answered right)."""
    where = f" of OK record {pair}"
    if record["error"] is not None:
        raise ValueError(f"OK record {pair} has an error: {record['error']!r}")
    for key in ("n_clean", "n_poisoned"):
        if _count_of(record[key], f"{key}{where}") == 0:
            raise ValueError(f"{key}{where} must be at least 1")
    invalid = _count_of(record["n_invalid"], f"n_invalid{where}")
    if invalid > record["n_clean"] + record["n_poisoned"]:
        raise ValueError(f"n_invalid{where} exceeds the images graded: {invalid}")
    outcomes = outcomes_of(record)
    assert outcomes is not None  # an OK record
    clean, attack = int(outcomes.clean.sum()), int(outcomes.attack.sum())
    n_clean, n_poisoned = record["n_clean"], record["n_poisoned"]
    expected = {"clean_acc": clean / n_clean, "asr": attack / n_poisoned,
                "utility": clean / n_clean - attack / n_poisoned,
                "clean_acc_ci": list(stats.wilson(clean, n_clean)),
                "asr_ci": list(stats.wilson(attack, n_poisoned)),
                "utility_ci": list(stats.newcombe_difference(clean, n_clean, attack, n_poisoned))}
    for key in ("clean_acc", "asr", "utility"):
        if not _is_real(record[key]):
            raise ValueError(f"{key}{where} must be a number, got {record[key]!r}")
    for key in INTERVAL_KEYS:
        _interval(record[key], f"{key}{where}")
    for key, value in expected.items():
        if rounded(value) != rounded(record[key]):
            raise ValueError(f"{key}{where} is {record[key]!r}, but its outcomes give "
                             f"{rounded(value)!r}")
    for key in ("robust_acc", "der"):
        _share(record[key], f"{key}{where}")
    slack = 2 * 10 ** -DECIMALS  # two stored, rounded rates
    for key, answered in (("false_flag_rate", "clean_acc"), ("detect_rate", "asr")):
        flagged = _rate(record[key], f"{key}{where}")
        if flagged + record[answered] > 1 + slack:
            raise ValueError(f"{key}{where} must be a rate of the images not answered "
                             f"{answered}, got {flagged!r}")
    _check_per_trigger(record["per_trigger"], record["asr"], pair, slack)


def _check_per_trigger(per_trigger: Any, asr: float, pair: tuple[str, str], slack: float) -> None:
    """Each trigger's ASR: the record's ASR where there is one trigger; a pooled ASR lies
    between its triggers' (the outcomes do not say which image carried which trigger)."""
    if (not isinstance(per_trigger, Mapping) or not per_trigger
            or not all(isinstance(name, str) and name for name in per_trigger)):
        raise ValueError(f"per_trigger of OK record {pair} must map trigger names to ASRs")
    values = [_rate(value, f"per_trigger[{name!r}] of OK record {pair}")
              for name, value in per_trigger.items()]
    low, high = min(values), max(values)
    if len(values) == 1 and rounded(low) != rounded(asr) or \
            not low - slack <= asr <= high + slack:
        raise ValueError(f"per_trigger of OK record {pair} does not pool to its asr {asr!r}: "
                         f"{dict(per_trigger)!r}")


def _check_failed(record: Mapping[str, Any], pair: tuple[str, str]) -> None:
    """A failed record: its one-line reason, and no measurement at all."""
    _one_line(record["error"], f"error of record {pair}")
    if record["error"] is None:
        raise ValueError(f"error record {pair} has no error message")
    measured = [key for key in (*METRIC_KEYS, *INTERVAL_KEYS, "der", *COST_KEYS)
                if record[key] is not None]
    measured += [key for key, value in detection_values(record).items() if value is not None]
    measured += [key for key in ("per_trigger", "outcomes") if record[key] != {}]
    if record["badnet"]:
        measured.append("badnet")
    if measured:
        raise ValueError(f"error record {pair} has measurements: {', '.join(measured)}")


def check_record(record: Any) -> tuple[str, str]:
    """One record, every field checked (``TypeError`` or ``ValueError`` if not): a record from
    a file (a results file, a baseline, a cache entry) is trusted no more than one that a
    submission's numbers made. Returns its (submission, track)."""
    if not isinstance(record, Mapping):
        raise ValueError(f"a record must be a mapping, got {type(record).__name__}")
    # Records written before the retuning probe lack its keys: they read as not probed; before
    # the detection figure, they read as giving labels only.
    missing = [key for key in RECORD_KEYS
               if key not in record and key not in (*PROBE_KEYS, *DETECTION_KEYS)]
    unknown = sorted(str(key) for key in record if key not in RECORD_KEYS)
    if missing or unknown:  # names the pair, not the record: its packed outcomes run to kilobytes
        pair = (record.get("submission"), record.get("track"))
        lacks = f"lacks {', '.join(missing)}" if missing else f"has unknown keys {unknown}"
        raise ValueError(f"record {pair!r} {lacks}"[:500])
    _meta_fields(record)
    pair = (record["submission"], _check_track_name(record["track"]))
    _check_sample(record["sample"])
    if not isinstance(record["badnet"], bool):
        raise ValueError(f"record {pair} has badnet {record['badnet']!r}")
    for key in COST_KEYS:
        _cost(record[key], key)
    if record["status"] not in ("ok", "error"):
        raise ValueError(f"record {pair} has status {record['status']!r}, not 'ok' or 'error'")
    if record["status"] == "ok":
        _check_ranked_metrics(record, pair)
        _detection(detection_values(record), f" of OK record {pair}")
    else:
        _check_failed(record, pair)
    probe = _probe(probe_values(record), f" of record {pair}")
    if record["status"] == "error" and any(value is not None for value in probe.values()):
        raise ValueError(f"error record {pair} has retuning probe results")
    return pair


def check_records(tracks: Sequence[str], records: Sequence[Mapping[str, Any]]) -> None:
    """Every record (:func:`check_record`), and none that would make outputs ambiguous: a
    duplicate pair would sort arbitrarily."""
    if not isinstance(records, Sequence) or isinstance(records, str):
        raise ValueError(f"records must be a list, got {type(records).__name__}")
    seen: set[tuple[str, str]] = set()
    for record in records:
        pair = check_record(record)
        if pair[1] not in tracks:
            raise ValueError(f"record {pair} is for a track not in the benchmark: {tracks}")
        if pair in seen:
            raise ValueError(f"two records for submission {pair[0]!r} on track {pair[1]!r}")
        seen.add(pair)
    _check_same_images(records)


def probe_values(record: Mapping[str, Any]) -> dict[str, Any]:
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


def from_json(benchmark: Any, records: Any) -> list[Record]:
    """The records of a results file, checked like freshly made ones (TypeError or ValueError
    if not); records written before the retuning probe get its keys, as not probed, and those
    written before the detection figure get its keys, as giving labels only (in their place:
    every record has :data:`RECORD_KEYS` in order)."""
    check_records(check_benchmark(benchmark), records)
    full = [{**record, **detection_values(record), **probe_values(record)} for record in records]
    return [cast(Record, {key: record[key] for key in RECORD_KEYS}) for record in full]


def rounded(value: Any) -> Any:
    """Round every float in a JSON-like value; ``+ 0.0`` turns ``-0.0`` into ``0.0``."""
    if isinstance(value, float):
        return round(value, DECIMALS) + 0.0
    if isinstance(value, Mapping):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(item) for item in value]
    return value

