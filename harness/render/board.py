"""The board: the leaderboard's tables as text cells, made once for every layout.

The tables (:class:`Table`, :func:`board`) are laid out by the Markdown leaderboard
(:mod:`harness.render.leaderboard`) and by the web page (:mod:`harness.render.page`), so both
show the same numbers, intervals and shared ranks. The text is byte-for-byte reproducible from
``results.json`` (no timestamps), so that a leaderboard can be committed, diffed and re-derived.

Team text (names, team, method, errors) enters the board as one safe line
(:func:`harness.text.safe_line`); each layout escapes its own syntax on top: Markdown
(:func:`harness.text.markdown`), HTML by the page's autoescaping, CSV cells against formulas
(:mod:`harness.render.results_csv`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness import __version__
from harness.grading import stats
from harness.render import plots
from harness.results.ranking import Ranked, complete, rank, shared_ranks
from harness.results.record import (
    RETUNING,
    check_benchmark,
    outcomes_of,
    probe_error,
)
from harness.text import safe_line

MISSING = "-"
"""How the leaderboard shows a value that does not exist (failed track, unknown true labels)."""
REFERENCE_MARK = "(ref)"
TIE_MARK = "="
"""Prefix of a rank shared by rows that the paired bootstrap cannot tell apart."""
INTERVALS = {"clean_acc": "clean_acc_ci", "asr": "asr_ci", "utility": "utility_ci",
             "auroc": "auroc_ci", "p_asr": "p_asr_ci"}
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
AUROC_COLUMN = ("AUROC", "auroc")
"""The threshold-free detection column (header, record key): right after false flag, on tracks
where some entry gives detection scores."""
PROBE_COLUMN = ("P-ASR", "p_asr")
"""The retuning probe's column (header, record key): right after DER, on tracks that show it."""
HASH_CHARS = 12


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
    points: tuple[plots.Point, ...]
    """What the Pareto plot shows: the OK rows, numbered like the table."""


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
class Section:
    """A part of the board that a caller adds after the track tables (a contest's rank movement
    and history), laid out alike in every layout. Its text is plain: each layout escapes it."""

    title: str
    anchor: str
    """The web page's id for it (letters, digits and hyphens)."""
    paragraphs: tuple[str, ...] = ()
    picture: tuple[str, str] | None = None
    """(path relative to the board, alternative text)."""
    tables: tuple[tuple[str, Table], ...] = ()
    """(subheading, or "" for none; the table)."""


@dataclass(frozen=True)
class Board:
    """Everything a rendering shows, derived from the records alone (and, for a contest's
    boards, the lead and sections its caller adds: :func:`harness.render.outputs.write_outputs`).
    """

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
    lead: str | None = None
    """A paragraph before the intro, saying what this board is (a contest's phase)."""
    sections: tuple[Section, ...] = ()


def _text(value: str) -> str:
    """Free text as a cell: one safe line, and never empty (empty text shows as missing)."""
    return safe_line(value) or MISSING


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


def _overall_table(ranking: Sequence[Ranked], probe: bool = False) -> Table:
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
        for row in ranking
    ]
    columns = ["rank", "submission", "team", "method", "score", "mean clean acc", "mean ASR",
               "mean DER", *(["mean P-ASR"] if probe else []), "tracks ok"]
    return Table(columns, rows, frozenset({"submission", "team", "method"}),
                 [row["reference"] for row in ranking])


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
    ``retuning`` (the benchmark's ``"retuning"`` entry); the AUROC column only where an OK
    record has one (some entry gives detection scores).
    """
    ok, failed = _track_order(records)
    all_triggers = sorted({trigger for record in ok for trigger in record["per_trigger"]})
    triggers = all_triggers if len(all_triggers) > 1 else []
    yardstick = None if retuning is None else retuning["tracks"].get(track)
    probed = yardstick is not None or any(
        record["p_asr"] is not None or record["p_error"] is not None for record in ok)
    metrics = list(TRACK_METRICS)
    if any(record["auroc"] is not None for record in ok):
        after = [key for _, key in metrics].index("false_flag_rate") + 1
        metrics.insert(after, AUROC_COLUMN)
    if probed:
        metrics.append(PROBE_COLUMN)
    counts = [("invalid", "n_invalid")] if any(record["n_invalid"] for record in ok) else []
    sample = ok[0]["sample"] if ok else None  # the same for all: _check_same_images
    if sample is not None:
        counts += [("n clean", "n_clean"), ("n poisoned", "n_poisoned")]
    ranks = shared_ranks([[outcomes_of(record)] for record in ok])
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
                      plots.samples_file(track), note, tuple(_pareto_points(ok)))


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


def _pareto_points(ok: Sequence[Mapping[str, Any]]) -> list[plots.Point]:
    return [
        plots.Point(
            label=_name(record),
            reference=record["reference"],
            asr=record["asr"],
            asr_ci=tuple(record["asr_ci"]),
            clean_acc=record["clean_acc"],
            clean_acc_ci=tuple(record["clean_acc_ci"]),
        )
        for record in ok
    ]


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
AUROC_LEGEND = (
    "AUROC (threshold-free detection, as TrojAI and the Trojan Detection Challenge rank "
    "detectors) = the chance that a poisoned image gets a higher detection score than a clean "
    "one (ties count half), with DeLong's 95% interval; the score is a model's probability of "
    f'the extra "poisoned" class N, or the one a batch predict returns. "{MISSING}" for entries '
    "that give labels only. AUROC is reported, not scored: it enters no score, utility or rank."
)
"""The paragraph that joins :data:`INTRO` where the board shows AUROC."""


def board(benchmark: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> Board:
    """The board: overall ranking, one table per track, errors, provenance."""
    rows = complete(benchmark, records)
    retuning = benchmark.get(RETUNING)
    tracks = [_track_board(track, [record for record in rows if record["track"] == track],
                           retuning)
              for track in check_benchmark(benchmark)]
    probe = any(track.retuning is not None for track in tracks)
    detection = any(AUROC_COLUMN[0] in track.table.columns for track in tracks)
    errors = [(_name(record), record["track"], line)
              for record in rows if (line := _error_line(record)) is not None]
    return Board(
        benchmark=benchmark["name"],
        overall=_overall_table(rank(benchmark, rows),
                               any(record["p_asr"] is not None for record in rows)),
        tracks=tracks,
        errors=errors,
        provenance=_provenance(benchmark, rows),
        intro=(*INTRO, *([AUROC_LEGEND] if detection else []),
               *([PROBE_LEGEND] if probe else [])),
    )
