"""Open a contest, and take one version of a submission folder: copy it, decide (rules), grade it
once on both parts of the hidden sets, file the two results apart, append to the ledger.

The folder is copied first, into the contest's state folder, and everything after reads the
copy: the digest, the manifest, the grading. A folder that changes while it is handled (a pull
request pushed to again) cannot have one version counted and another graded.

Grading is ``harness grade`` in a fresh process on the copy alone, with the contest's split
record: its published outputs hold the public part, and the private part's results.json goes to
the sealed folder (``--harness-sealed``). What that process prints is never shown: the answer
the submitter gets is built here from the public records, and, in a blind phase, holds no
number at all.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.contest.config import Contest, iso
from harness.contest.ledger import Entry, Ledger, entry, locked
from harness.contest.rules import Admitted, Refused, Unchanged, admit
from harness.contest.split import make_record, read_record, write_record
from harness.definitions.data import DataStore
from harness.definitions.submissions import MANIFEST, folder_entries, load_submission
from harness.definitions.tracks import load_benchmark
from harness.errors import ContestError
from harness.results.io import read_results
from harness.results.ranking import rank
from harness.synthetic.materialize import generate_missing
from harness.text import safe_line

SPLIT_FILE = "split.json"
VERSIONS = "versions"
"""Under the state folder: each graded version's public results (publishable)."""
SEALED = "sealed"
"""Under the state folder: each graded version's private results (never published before the
final board)."""
STAGING = "staging"


@dataclass(frozen=True)
class Answer:
    """What the submitter is told (one line, escaped where shown), and the ledger line."""

    status: str
    """``graded``, ``unchanged`` or ``refused``."""
    message: str
    entry: Entry | None

    @property
    def exit_code(self) -> int:
        return 1 if self.status == "refused" else 0


def open_contest(contest: Contest) -> Path:
    """Make the split record once (the hidden sets of the contest's benchmark, split by its
    seed); opening again checks the data still matches it. Returns the record's path."""
    benchmark = load_benchmark(contest.benchmark)
    generate_missing(benchmark)
    store = DataStore()
    record = make_record(benchmark, store, contest.seed, contest.public_share)
    path = contest.state / SPLIT_FILE
    if path.exists():
        if read_record(path) != record:
            raise ContestError(f"{path} exists and differs from the split made again from the "
                               "contest file: the seed, the share or the hidden data changed")
        return path
    write_record(path, record)
    return path


def _stage(folder: Path, into: Path) -> Path:
    """A private copy of the submission folder (links copied as links, never followed; special
    files left out: the folder check refuses them anyway)."""
    target = into / folder.name
    shutil.copytree(folder, target, symlinks=True,
                    ignore=lambda parent, names: [
                        name for name in names
                        if not (stat.S_ISDIR(mode := os.lstat(os.path.join(parent, name)).st_mode)
                                or stat.S_ISREG(mode) or stat.S_ISLNK(mode))])
    return target


def _files(root: Path) -> dict[str, str]:
    """sha256 of each regular file of the copy, by its path (for the integrity report)."""
    found = {}
    for item in folder_entries(root):
        if stat.S_ISREG(item.mode):
            with item.path.open("rb") as handle:  # weights can be large: read in blocks
                found[item.relative] = hashlib.file_digest(handle, "sha256").hexdigest()
    return found


def _grade(contest: Contest, staged: Path, out: Path, sealed: Path) -> None:
    """``harness grade`` on the staged folder alone; ContestError when the grader itself
    failed (a submission's failure is a record, not an error)."""
    command = [sys.executable, "-m", "harness", "grade", str(staged.parent.resolve()),
               "--benchmark", str(contest.benchmark.resolve()), "--out", str(out.resolve()),
               "--no-cache", "-q"]
    if contest.sample is not None:
        command += ["--sample", str(contest.sample)]
    if not contest.retune:
        command.append("--no-retune")
    command += ["--", "--harness-split", str((contest.state / SPLIT_FILE).resolve()),
                "--harness-sealed", str(sealed.resolve())]
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          cwd=staged.parent.parent)
    if done.returncode not in (0, 1) or not (out / "results.json").is_file() or \
            not (sealed / "results.json").is_file():
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise ContestError("grading failed: " + (lines[-1] if lines else
                                                 f"exit status {done.returncode}"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def public_summary(benchmark: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
                   ) -> dict[str, Any]:
    """A graded version's ledger fields from its public records."""
    row = rank(benchmark, records)[0]
    ok = [record for record in records if record["status"] == "ok"]
    errors = [record["error"] for record in records if record["status"] != "ok"]
    return {"status": "ok" if ok else "failed", "score": row["score"],
            "tracks": {record["track"]: record["utility"] if record["status"] == "ok" else None
                       for record in records},
            "error": None if ok or not errors else errors[0]}


def submit(contest: Contest, folder: Path, *, login: str | None, moment: datetime,
           commit: str | None = None) -> Answer:
    """Take one version of ``folder``, submitted by ``login`` (None: an organizer) at
    ``moment``: refuse it, answer it from the ledger, or grade it and append it."""
    if not (contest.state / SPLIT_FILE).is_file():
        raise ContestError(f"the contest is not open: run `harness contest open "
                           f"{contest.path}` first")
    if not (folder / MANIFEST).is_file():
        raise ContestError(f"{folder}: no {MANIFEST}")
    name = folder.resolve().name
    staging_root = contest.state / STAGING
    staging_root.mkdir(parents=True, exist_ok=True)
    with locked(contest.state) as ledger, \
            tempfile.TemporaryDirectory(dir=staging_root) as work:
        staged = _stage(folder, Path(work) / "submissions")
        submission = load_submission(staged / MANIFEST)
        common = {"time": iso(moment), "folder": name, "version": submission.sha256,
                  "login": login, "commit": commit}
        decision = admit(contest, ledger.entries, folder=name, login=login,
                         version=submission.sha256, moment=moment,
                         reference=submission.reference)
        if isinstance(decision, Refused):
            team = contest.team_of_folder(name)
            phase = contest.phase_at(moment)
            line = ledger.append(entry("refused", **common, reason=decision.reason,
                                       team=None if team is None else team.name,
                                       phase=None if phase is None else phase.name))
            return Answer("refused", f"refused: {decision.reason}", line)
        if isinstance(decision, Unchanged):
            earlier = decision.earlier
            line = ledger.append(entry("unchanged", **common, team=earlier["team"],
                                       phase=None if (phase := contest.phase_at(moment)) is None
                                       else phase.name))
            return Answer("unchanged", f"unchanged: this folder (version "
                          f"{earlier['version'][:12]}) was graded at {earlier['time']}; it is "
                          "not graded or counted again", line)
        assert isinstance(decision, Admitted)
        return _graded(contest, ledger, staged, common, decision)


def _graded(contest: Contest, ledger: Ledger, staged: Path, common: dict[str, Any],
            decision: Admitted) -> Answer:
    out, private = staged.parent.parent / "out", staged.parent.parent / "sealed"
    _grade(contest, staged, out, private)
    tag = f"{common['folder']}/{common['version'][:16]}"
    public_file = contest.state / VERSIONS / tag / "results.json"
    sealed_file = contest.state / SEALED / tag / "results.json"
    for source, target in ((out, public_file), (private, sealed_file)):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / "results.json", target)
    benchmark, records = read_results(public_file)
    summary = public_summary(benchmark, records)
    line = ledger.append(entry(
        "graded", **common, **summary, files=_files(staged),
        team=None if decision.team is None else decision.team.name,
        phase=None if decision.phase is None else decision.phase.name,
        public=str(public_file.relative_to(contest.state)), public_sha256=_sha256(public_file),
        sealed=str(sealed_file.relative_to(contest.state)), sealed_sha256=_sha256(sealed_file)))
    return Answer("graded", answer_line(contest, line), line)


def answer_line(contest: Contest, line: Entry) -> str:
    """What a graded version's submitter reads: the public score and tracks, or, in a blind
    phase, only that it was graded."""
    head = f"graded version {line['version'][:12]} of {line['folder']} at {line['time']}"
    if line["phase"] is not None and contest.phase(line["phase"]).show == "nothing":
        return f"{head} (phase {line['phase']}: scores stay sealed until the final board)"
    if line["status"] == "failed":
        return f"{head}: failed on every track: {safe_line(line['error'] or '')}"
    tracks = ", ".join(f"{track} {'failed' if value is None else f'{value:.4f}'}"
                       for track, value in line["tracks"].items())
    return f"{head}: public score {line['score']:.4f} ({tracks})"


def check_version_files(contest: Contest, line: Entry) -> None:
    """The results files a ledger line names, unchanged since it was appended."""
    for relative, digest in ((line["public"], line["public_sha256"]),
                             (line["sealed"], line["sealed_sha256"])):
        if relative is None:
            continue
        path = contest.state / relative
        try:
            if _sha256(path) != digest:
                raise ContestError(f"{path} changed after it was recorded in the ledger")
        except OSError as exc:
            raise ContestError(f"cannot read {path}: {exc}") from None

