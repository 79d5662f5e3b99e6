"""Records a run need not grade again: the result cache (it matches every input) and, with
``--changed-since``, the baseline for the submissions unchanged since a git ref.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.definitions.data import sha256_file
from harness.definitions.submissions import Submission
from harness.definitions.tracks import Track
from harness.errors import HarnessError, SubmissionError
from harness.grading.item import environment_spec, yardstick
from harness.options import KEYED
from harness.plugin.session import SESSION, Session
from harness.results.cache import Baseline, StaleBaseline, cache_key, track_fingerprint
from harness.results.changes import changed_files
from harness.results.record import Retuning, retuning_summary
from harness.sandbox.retuning import BUDGET, budget_text
from harness.sandbox.retuning import FORMAT as RETUNING_FORMAT

GRADED, CACHED, BASELINE = "graded", "cache", "baseline"
"""Where an item's record came from."""


@dataclass(eq=False)
class Reuse:
    """Where earlier records are found, and the keys that find them."""

    session: Session
    changed_since: str | None = None
    changed: set[Path] | None = None
    """Files changed since ``changed_since`` (None: every submission is graded)."""
    baseline: Baseline | None = None
    baseline_note: str = ""
    """One line on the baseline in use, or why there is none (shown in the session header)."""
    fingerprints: dict[str, dict[str, Any]] = field(default_factory=dict)

    def is_changed(self, submission: Submission) -> bool:
        """Whether ``--changed-since`` asks for this submission to be graded (True without it)."""
        root = submission.root.resolve()
        return self.changed is None or any(path.is_relative_to(root) for path in self.changed)

    def options(self) -> dict[str, Any]:
        """The grading options that can change a record (those the table marks
        :data:`~harness.options.KEYED`, and the retuning probe's budget): each one is part of the
        cache key."""
        grading = self.session.grading
        retune = None
        if grading.retune:
            retune = {**asdict(BUDGET), "format": RETUNING_FORMAT, "sample": grading.probe_sample}
        return {**{keyed.name: keyed.value(grading) for keyed in KEYED}, "retune": retune}

    def fingerprint(self, track: Track) -> dict[str, Any]:
        """The track's fingerprint (it hashes the BadNet: once per track and run)."""
        if track.name not in self.fingerprints:
            self.fingerprints[track.name] = track_fingerprint(track, self.session.store)
        return self.fingerprints[track.name]

    def key(self, submission: Submission, track: Track) -> str:
        """The cache key of an item; an entry's environment (by what it is built from: a named
        environment lives in the benchmark folder, outside the submission's digest) is part of
        it, and absent for the grader's own, so such keys are as they always were."""
        options = self.options()
        try:
            spec = environment_spec(submission.entry(track.name), submission.root, track)
        except SubmissionError:
            spec = None  # the item is an error row whatever the environment
        if spec is not None:
            options["environment"] = spec.key
        return cache_key(submission.name, submission.sha256, self.fingerprint(track), options)

    def earlier_record(self, submission: Submission, track: Track
                       ) -> tuple[dict[str, Any] | None, str]:
        """A record this run need not grade, and its source: the cache first (it matches every
        input), then the baseline for a submission unchanged since ``changed_since``."""
        cache = self.session.cache
        expect = {**submission.meta, "track": track.name, "sample": self.session.grading.sample}
        if cache is not None:
            record = cache.get(self.key(submission, track), expect)
            if record is not None:
                return record, CACHED
        if self.baseline is not None and not self.is_changed(submission):
            record = self.baseline.get(expect, track, self.session.store)
            if record is not None:
                return record, BASELINE
        return None, GRADED

    def yardsticks(self, tracks: list[Track]) -> Retuning | None:
        """The retuning probe's budget and each track's yardstick (the clean model probed), as
        ``results.json`` holds them; cached like records. None when no track has one."""
        session, cache = self.session, self.session.cache
        found = {}
        for track in tracks:
            key = None
            if cache is not None and track.clean_model is not None:
                key = cache_key(f"yardstick:{track.name}", sha256_file(track.clean_model),
                                self.fingerprint(track), self.options())
                cached = cache.get_yardstick(key)
                if cached is not None:
                    found[track.name] = cached
                    continue
            value = yardstick(track, session.probe_handover, session.grading,
                              session.probe_workers, len(tracks))
            if value is None:
                continue
            found[track.name] = value
            if cache is not None and key is not None and value["error"] is None:
                cache.put(key, value, kind="yardstick")
        session.probe_workers.close()
        return retuning_summary(budget_text(), found) if found else None


REUSE = pytest.StashKey[Reuse]()


def pytest_configure(config: pytest.Config) -> None:
    if SESSION not in config.stash:
        return
    reuse = Reuse(config.stash[SESSION], changed_since=config.getoption("harness_changed_since"))
    baseline = config.getoption("harness_baseline")
    if baseline is not None and reuse.changed_since is None:
        raise pytest.UsageError("--baseline is used only with --changed-since")
    if reuse.changed_since is not None:
        reuse.baseline, reuse.baseline_note = _baseline(
            Path(baseline) if baseline else reuse.session.out / "results.json",
            explicit=baseline is not None)
        # Here, not after collection: a bad ref is a usage error before any xdist worker starts.
        folders = [Path(arg.split("::")[0]) for arg in config.args]
        try:
            reuse.changed = changed_files(reuse.changed_since, [
                folder if folder.is_dir() else folder.parent for folder in folders])
        except HarnessError as exc:
            raise pytest.UsageError(str(exc)) from None
    config.stash[REUSE] = reuse


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The baseline's line, after the session's (pytest shows later plugins' lines last)."""
    note = config.stash[REUSE].baseline_note if REUSE in config.stash else ""
    return [note] if note else []


def _baseline(path: Path, *, explicit: bool) -> tuple[Baseline | None, str]:
    """Read the baseline now, before this run overwrites the results file it may be.

    A file the user named must exist (a typo would silently mean grading everything); one that
    was graded in another environment only means grading more, so it is ignored with a note,
    like an absent default. A file that is not a valid results file (damaged, or crafted: its
    numbers disagree with their outcomes) is a usage error, named or default, as for
    ``harness render``: its records must not reach a leaderboard.
    """
    if not path.is_file():
        if explicit:
            raise pytest.UsageError(f"--baseline: {path}: no such file")
        return None, f"baseline: none ({path} absent)"
    try:
        baseline = Baseline(path)
    except StaleBaseline as exc:
        return None, f"baseline: ignored: {exc}"
    except HarnessError as exc:
        raise pytest.UsageError(f"baseline: {exc}") from None
    return baseline, f"baseline: {path} ({len(baseline.records)} records)"
