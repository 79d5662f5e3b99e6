"""The contest's boards, rendered from the ledger and the results files it names, through the
grader's own renderer (:func:`harness.render.outputs.write_outputs`).

- The **public board**, during the contest: each team's counted version (the contest's rule,
  decided on public numbers only) ranked on the public part, the reference entries beside them,
  then each team's history (a table and a plot of public score over time) and every graded
  version ("all results"). Versions of a blind phase appear without numbers.
- The **final board**, once the contest has closed: each team's counted version (now, for rule
  ``chosen``, the best on the private part among those the team chose) ranked on the private
  part, with how each team's rank moved from the public ranking of the same versions.

Each version's results are read from the file its ledger line names, checked against the
digest recorded there. The board's rows are named by the team's folder; their team is the
contest's spelling of the team's name, never what a manifest claims.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from harness.contest.config import Contest, Team, iso
from harness.contest.ledger import Entry, head
from harness.contest.submit import check_version_files
from harness.errors import ContestError
from harness.render.agg import pyplot
from harness.render.board import Section, Table
from harness.render.outputs import RESULTS_FILE, write_outputs
from harness.results.io import read_results, write_atomic, write_results
from harness.results.ranking import rank

Part = Literal["public", "sealed"]
HISTORY_PLOT = "history.png"
MISSING = "-"


def graded(entries: Sequence[Entry]) -> list[Entry]:
    return [entry for entry in entries if entry["kind"] == "graded"]


def shown(contest: Contest, line: Entry) -> bool:
    """Whether the public board may show the line's numbers during the contest: not in a blind
    phase (a reference entry's always)."""
    return line["phase"] is None or contest.phase(line["phase"]).show == "public"


def choices(contest: Contest, entries: Sequence[Entry], team: Team) -> list[str]:
    """The versions ``team`` chose for the final board (its latest choices, at most
    ``contest.choices``), oldest first."""
    chosen: list[str] = []
    for line in entries:
        if line["kind"] == "chosen" and line["team"] == team.name:
            if line["version"] in chosen:
                chosen.remove(line["version"])
            chosen.append(line["version"])
    return chosen[-contest.choices:]


def _best(lines: Sequence[Entry], score: Mapping[str, float]) -> Entry:
    """The line with the highest score, the earliest on a tie (the team got there first)."""
    return max(lines, key=lambda line: score[line["version"]])


def counted(contest: Contest, entries: Sequence[Entry], *, final: bool) -> dict[str, Entry]:
    """Each team's counted version and each reference's latest, by folder. During the contest
    (``final`` False) only versions whose numbers are shown take part, and no rule looks at the
    private part."""
    lines = graded(entries)
    picked: dict[str, Entry] = {}
    for folder in contest.references:
        mine = [line for line in lines if line["folder"] == folder]
        if mine:
            picked[folder] = mine[-1]
    for team in contest.teams:
        mine = [line for line in lines if line["team"] == team.name
                and (final or shown(contest, line))]
        if not mine:
            continue
        # A graded line's score is never None: a failed version scores -1 on every track.
        public = {line["version"]: float(line["score"] or 0) for line in mine}
        if contest.rule == "last":
            picked[team.folder] = mine[-1]
            continue
        picks = set(choices(contest, entries, team))  # once per team, not once per line
        chosen = [line for line in mine if line["version"] in picks]
        if contest.rule == "chosen" and chosen:
            score = public if not final else {
                line["version"]: private_score(contest, line) for line in chosen}
            picked[team.folder] = _best(chosen, score)
        else:
            picked[team.folder] = _best(mine, public)
    return picked


def version_results(contest: Contest, line: Entry, part: Part
                    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A graded version's benchmark header and records (one part), named by its folder and its
    contest team."""
    check_version_files(contest, line)
    relative = line["public"] if part == "public" else line["sealed"]
    assert relative is not None, "a graded ledger line without its results files"
    benchmark, records = read_results(contest.state / relative)
    team = contest.team_of_folder(line["folder"])
    return benchmark, [{**record, "submission": line["folder"],
                        **({} if team is None else {"team": team.name})}
                       for record in records]


def private_score(contest: Contest, line: Entry) -> float:
    benchmark, records = version_results(contest, line, "sealed")
    return rank(benchmark, records)[0]["score"]


def board_results(contest: Contest, lines: Sequence[Entry], part: Part
                  ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One results set from several versions' files: they must have been graded on the same
    tracks and data; the header (provenance, yardsticks) is the latest version's."""
    header: dict[str, Any] | None = None
    records: list[dict[str, Any]] = []
    for line in sorted(lines, key=lambda line: line["seq"]):
        benchmark, mine = version_results(contest, line, part)
        if header is not None and (benchmark["tracks"], benchmark["data_hashes"]) != \
                (header["tracks"], header["data_hashes"]):
            raise ContestError(f"version {line['version'][:12]} of {line['folder']} was graded "
                               "on other tracks or data than the versions before it")
        header = benchmark
        records += mine
    if header is None:
        raise ContestError("no version has been graded yet: nothing to rank")
    return header, records


def _score_cell(contest: Contest, line: Entry, final: bool) -> str:
    if not final and not shown(contest, line):
        return "sealed"
    return "failed" if line["status"] == "failed" else f"{line['score']:.4f}"


def history_png(contest: Contest, entries: Sequence[Entry], final: bool) -> bytes:
    """Each team's public score over time, one step line per team (versions it could not show
    yet left out). Deterministic bytes, as every plot of the grader."""
    plt = pyplot()
    figure = plt.figure(figsize=(8.5, 4.5), dpi=100)
    axes = figure.add_axes((0.09, 0.14, 0.6, 0.76))
    start = contest.opens.timestamp()
    for team in contest.teams:
        points = [((datetime.fromisoformat(line["time"].replace("Z", "+00:00")).timestamp()
                    - start) / 86400, line["score"])
                  for line in graded(entries) if line["team"] == team.name
                  and (final or shown(contest, line)) and line["score"] is not None]
        if points:
            days, scores = zip(*points, strict=True)
            axes.step(days, scores, where="post", marker="o", label=team.name)
    axes.set_xlabel(f"days since the contest opened ({iso(contest.opens)})")
    axes.set_ylabel("public score (mean utility)")
    axes.set_title(f"{contest.name}: each team's versions, public part", fontsize=10)
    axes.grid(True, color="0.9", linewidth=0.6)
    figure.legend(loc="upper left", bbox_to_anchor=(0.71, 0.9), fontsize=8, frameon=False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]], numbers: int) -> Table:
    """A board table of plain cells (each layout escapes the text): the last ``numbers``
    columns hold numbers."""
    return Table(columns=list(columns), rows=[dict(zip(columns, row, strict=True)) for row in rows],
                 left=frozenset(columns[:len(columns) - numbers]),
                 references=[False] * len(rows))


def history_sections(contest: Contest, entries: Sequence[Entry], tracks: Sequence[str],
                     final: bool) -> list[Section]:
    """The board's "History" (a plot, a table per team, the ledger's head) and "All results"."""
    lines = graded(entries)
    teams = []
    for team in contest.teams:
        mine = [line for line in lines if line["team"] == team.name]
        if mine:
            teams.append((team.name, _table(
                ["time (UTC)", "phase", "version", "public score"],
                [[line["time"], line["phase"] or MISSING, line["version"][:12],
                  _score_cell(contest, line, final)] for line in mine], numbers=1)))
    rows = []
    for line in lines:
        open_numbers = final or shown(contest, line)
        rows.append([line["time"], line["team"] or "reference", line["folder"],
                     line["version"][:12], line["phase"] or MISSING,
                     _score_cell(contest, line, final),
                     *[(MISSING if not open_numbers else "failed"
                        if line["tracks"].get(track, None) is None
                        else f"{line['tracks'][track]:.4f}") for track in tracks]])
    return [
        Section(title="History", anchor="history", paragraphs=(
            "Public score of every graded version of each team, in the order they were graded"
            + ("" if final else "; a blind phase's versions stay sealed until the final board")
            + ".",
            f"Rendered from the contest's ledger of {len(entries)} lines, whose last line has "
            f"sha256 {head(list(entries))}."),
            picture=(HISTORY_PLOT, "Public score of each team's versions over time"),
            tables=tuple(teams)),
        Section(title="All results", anchor="all-results", paragraphs=(
            "Every graded version (public part: score, then utility per track).",),
            tables=(("", _table(["time (UTC)", "team", "folder", "version", "phase", "score",
                                 *tracks], rows, numbers=1 + len(tracks))),)),
    ]


def _write(out: Path, benchmark: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
           lead: str, sections: Sequence[Section], history: bytes) -> None:
    """The board's results.json, its renderings (as ``harness render`` writes them, with the
    contest's lead and sections) and the history plot."""
    out.mkdir(parents=True, exist_ok=True)
    write_results(out / RESULTS_FILE, benchmark, records)
    write_outputs(out, benchmark, records, lead=lead, sections=sections)
    write_atomic(out / HISTORY_PLOT, history)


def write_public_board(contest: Contest, entries: Sequence[Entry], out: Path,
                       moment: datetime) -> None:
    """The board of the contest as it stands at ``moment``: public part only."""
    picked = counted(contest, entries, final=False)
    benchmark, records = board_results(contest, list(picked.values()), "public")
    phase = contest.phase_at(moment)
    state = (f"phase {phase.name}, until {iso(phase.end)}" if phase is not None else
             f"closed at {iso(contest.closes)}" if moment >= contest.closes else
             f"opens at {iso(contest.opens)}" if moment < contest.opens else "between phases")
    lead = (f"{contest.name}: public board. As of {iso(moment)} ({state}). Ranked on the public "
            f"part of the hidden test sets ({contest.public_share:.0%} of each); the final board "
            f"ranks the private part. Each team's counted version: rule {contest.rule}.")
    _write(out, benchmark, records, lead,
           history_sections(contest, entries, benchmark["tracks"], final=False),
           history_png(contest, entries, final=False))


def movement(public: Sequence[Mapping[str, Any]], private: Sequence[Mapping[str, Any]]
             ) -> Table:
    """The rank-movement table: each row's private rank and its public one."""
    before = {row["submission"]: row["rank"] for row in public}
    rows = []
    for row in private:
        was = before[row["submission"]]
        moved = was - row["rank"]
        rows.append([row["team"], row["submission"], str(row["rank"]), str(was),
                     "=" if moved == 0 else f"{moved:+d}",
                     f"{row['score']:.4f}" if not math.isnan(row["score"]) else MISSING])
    return _table(["team", "submission", "final rank", "public rank", "moved", "private score"],
                  rows, numbers=4)


def write_final_board(contest: Contest, entries: Sequence[Entry], out: Path,
                      moment: datetime) -> None:
    """The final board: counted versions ranked on the private part, with rank movement."""
    if moment < contest.closes:
        raise ContestError(f"the contest closes at {iso(contest.closes)}; the final board comes "
                           "after")
    picked = list(counted(contest, entries, final=True).values())
    benchmark, records = board_results(contest, picked, "sealed")
    public_benchmark, public_records = board_results(contest, picked, "public")
    lead = (f"{contest.name}: final board. Closed at {iso(contest.closes)}. Ranked on the "
            f"private part of the hidden test sets ({1 - contest.public_share:.0%} of each), "
            f"which no board showed before; each team's counted version: rule {contest.rule}.")
    moved = Section(title="Rank movement", anchor="rank-movement", paragraphs=(
        "Each row's rank on the private part against its rank on the public part (the same "
        "versions): + moved up.",), tables=(("", movement(
            rank(public_benchmark, public_records), rank(benchmark, records))),))
    _write(out, benchmark, records, lead,
           [moved, *history_sections(contest, entries, benchmark["tracks"], final=True)],
           history_png(contest, entries, final=True))
