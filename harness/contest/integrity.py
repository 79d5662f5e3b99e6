"""The organizers' integrity report: teams whose folders, files or per-image answers are the
same or nearly so. Written into the contest's state folder, never beside a board: a flag is a
lead for the organizers to look into (two teams may share a public starting point), not a
verdict to publish.

Three signals, over every graded version of every team:

- **identical folders**: two teams' versions with the same folder digest;
- **shared files**: a file (a model's weights, say) with the same sha256 in two teams' folders,
  leaving out manifests and files that a reference entry also holds (the organizers' own
  starting points);
- **near-identical answers**: two teams' versions whose failures, over every hidden image of
  both parts (a clean image misclassified, a poisoned one given the attacker's target), overlap
  with a Jaccard index of at least :data:`JACCARD`. Two models trained apart fail on different
  images even at the same accuracy; a copy, or a copy fine-tuned a little, fails on the same.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness.contest.boards import graded, version_results
from harness.contest.config import Contest
from harness.contest.ledger import Entry
from harness.definitions.submissions import MANIFEST
from harness.results.io import write_atomic
from harness.results.record import outcomes_of
from harness.text import markdown

JACCARD = 0.95
"""Failure sets this similar are flagged."""
REPORT_FILE = "integrity.md"


def failures(contest: Contest, line: Entry) -> np.ndarray | None:
    """Which hidden images the version failed on, both parts, every track (None: a track
    failed, so there are no per-image answers to compare)."""
    bits = []
    for part in ("public", "sealed"):
        _, records = version_results(contest, line, part)  # type: ignore[arg-type]
        for record in sorted(records, key=lambda record: record["track"]):
            outcomes = outcomes_of(record)
            if outcomes is None:
                return None
            bits += [~outcomes.clean.astype(bool), outcomes.attack.astype(bool)]
    return np.concatenate(bits)


def jaccard(first: np.ndarray, second: np.ndarray) -> float | None:
    """Overlap of two failure sets (None: neither failed anywhere, nothing to compare)."""
    union = int(np.count_nonzero(first | second))
    return None if union == 0 else int(np.count_nonzero(first & second)) / union


def findings(contest: Contest, entries: Sequence[Entry]) -> list[tuple[str, str, str, str]]:
    """``(signal, team, team, detail)``: one row per signal and pair of teams, naming the pairs
    of versions (and files) that look alike."""
    lines = [line for line in graded(entries) if line["team"] is not None]
    reference_files = {digest for line in graded(entries) if line["team"] is None
                       for digest in line["files"].values()}
    answers = {line["seq"]: failures(contest, line) for line in lines}
    found: dict[tuple[str, str, str], list[str]] = {}
    for first, second in itertools.combinations(lines, 2):
        if first["team"] == second["team"]:
            continue
        (first, second) = sorted((first, second), key=lambda line: str(line["team"]))
        pair = (str(first["team"]), str(second["team"]))
        versions = f"{first['version'][:12]} ~ {second['version'][:12]}"
        if first["version"] == second["version"]:
            found.setdefault(("identical folders", *pair), []).append(versions)
            continue
        shared = sorted(name if name == other else f"{name} = {other}"
                        for name, digest in first["files"].items()
                        for other, other_digest in second["files"].items()
                        if digest == other_digest and digest not in reference_files
                        and MANIFEST not in (name, other))
        if shared:
            found.setdefault(("shared files", *pair), []).append(
                f"{versions} ({', '.join(shared)})")
        a, b = answers[first["seq"]], answers[second["seq"]]
        if a is not None and b is not None and a.shape == b.shape:
            overlap = jaccard(a, b)
            if overlap is not None and overlap >= JACCARD:
                found.setdefault(("near-identical answers", *pair), []).append(
                    f"{versions} (Jaccard {overlap:.3f} over "
                    f"{int(np.count_nonzero(a | b))} failed images)")
    return [(*key, "; ".join(details)) for key, details in sorted(found.items())]


def write_report(contest: Contest, entries: Sequence[Entry]) -> tuple[Path, int]:
    """Write the report into the state folder; returns its path and the number of findings."""
    found = findings(contest, entries)
    rows = [f"| {signal} | {markdown(first)} | {markdown(second)} | {markdown(detail)} |"
            for signal, first, second, detail in found]
    text = "\n".join([
        f"# {markdown(contest.name)}: integrity report (organizers only; never publish)", "",
        f"{len(found)} finding(s) over {len(graded(entries))} graded version(s). Signals: "
        f"identical folder digests; files with the same sha256 in two teams' folders (files a "
        f"reference entry holds left out); failure sets on the hidden images overlapping with "
        f"a Jaccard index of at least {JACCARD}.", "",
        "| signal | team | team | versions and detail |", "|---|---|---|---|", *rows, ""])
    path = contest.state / REPORT_FILE
    write_atomic(path, text)
    return path, len(found)
