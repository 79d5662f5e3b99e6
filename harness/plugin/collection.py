"""Submissions as tests: a ``submission.toml`` is a file of tests, one item per track of the
benchmark, and an item grades its submission on its track through the session's backend.

pytest then does the selecting (``-k``, ``--changed-since`` by the items' records), stopping
early (``-x``), reporting and JUnit XML.

A grading session collects no Python: pytest would import a folder's ``__init__.py`` (a
``Package``), its ``conftest.py`` and its test modules, and run text files as doctests, in the
grading process, where that code could read the hidden test sets. Every folder is a plain
:class:`SubmissionsDir` that yields manifests and real subfolders only, and conftest files are
off (:func:`pytest_load_initial_conftests`); a submission's code runs in its sandboxed worker
only.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pluggy
import pytest
from _pytest._code.code import TerminalRepr
from _pytest.pathlib import scandir

from harness.definitions.submissions import MANIFEST, Submission, load_submission
from harness.definitions.tracks import Track
from harness.errors import (
    BenchmarkError,
    HarnessError,
    SandboxError,
    SubmissionError,
    TransientSubmissionError,
    in_folder,
    one_line,
)
from harness.grading.backends import Backend, Request, backend
from harness.grading.item import (
    MEASURED_KEYS,
    SEALED,
    environment_spec,
    is_badnet,
    probe_track,
)
from harness.plugin import progress
from harness.plugin.results import CHANGED, RECORD, SEALED_RECORD, SOURCE, TIMING
from harness.plugin.reuse import REUSE, Reuse
from harness.plugin.session import SESSION, Session, xdist_controller, xdist_worker
from harness.results.record import Record, error_record, ok_record
from harness.sandbox.isolation import require, unsandboxed_warning
from harness.sandbox.retuning import PROBE_KEYS
from harness.synthetic.materialize import generate_missing
from harness.text import file_name

BACKEND = pytest.StashKey[Backend]()
"""Where this session's items are answered (``--harness-backend``)."""


@pytest.hookimpl(trylast=True)  # once the options are known to be usable
def pytest_configure(config: pytest.Config) -> None:
    if SESSION not in config.stash:
        return
    session = config.stash[SESSION]
    name = config.getoption("harness_backend")
    if name == "ray" and xdist_controller(config):
        raise pytest.UsageError("--backend ray spreads items over the cluster; drop -n")
    try:
        config.stash[BACKEND] = backend(
            name, session.handover, session.grading, len(session.benchmark.tracks),
            ray_address=config.getoption("harness_ray_address"),
            ray_cpus=config.getoption("harness_ray_cpus"))
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from None
    if xdist_controller(config):  # once, before the workers start
        try:
            generate_missing(session.benchmark)
        except BenchmarkError as exc:
            raise pytest.UsageError(str(exc)) from None
    try:  # before any submission runs: no sandbox, no grading (unless allowed)
        mode = require(session.grading.limits)
    except SandboxError as exc:
        raise pytest.UsageError(str(exc)) from None
    if mode.bwrap is None and not xdist_worker(config):  # loud even under -q, said once
        print(f"harness: {unsandboxed_warning(mode)}", file=sys.stderr)


def pytest_unconfigure(config: pytest.Config) -> None:
    if BACKEND in config.stash:
        config.stash[BACKEND].close()


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """A grading session loads no ``conftest.py`` (pytest would import those of the folders it
    is given, and of each folder it collects), whoever starts it: ``harness grade`` passes
    ``--noconftest`` too, a plain ``pytest -p harness.plugin`` need not."""
    if early_config.known_args_namespace.harness_benchmark is not None:
        early_config.known_args_namespace.noconftest = True


@pytest.hookimpl(tryfirst=True)
def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Every folder of a grading session is a :class:`SubmissionsDir`, never a ``Package``."""
    if SESSION in parent.config.stash:
        return SubmissionsDir.from_parent(parent, path=path)
    return None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name == MANIFEST and SESSION in parent.config.stash:
        return SubmissionFile.from_parent(parent, path=file_path)
    return None


class SubmissionsDir(pytest.Directory):
    """A folder of a grading session. A submission folder (one with a manifest) yields its
    manifest and nothing else, so nothing inside it is even listed; any other folder yields
    its manifests' folders. A link to a folder is not entered: where a manifest lies behind
    it, that manifest is yielded, for its submission to be refused as a link (one error row
    per track), not followed out of the submissions."""

    @property
    def ihook(self) -> pluggy.HookRelay:
        """The session's hooks, without the conftest files of this folder (pytest imports
        those for a folder's collector when conftest files are on)."""
        return self.config.hook

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        if os.path.lexists(self.path / MANIFEST):
            yield from self.ihook.pytest_collect_file(file_path=self.path / MANIFEST,
                                                      parent=self)
            return
        for entry in scandir(self.path):
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                if self.ihook.pytest_ignore_collect(collection_path=path, config=self.config):
                    continue
                if file_name(path.name) != path.name:  # node ids are printed raw: as shown
                    yield SubmissionsDir.from_parent(self, path=path, name=file_name(path.name),
                                                     nodeid=_nodeid(self, path))
                    continue
                folder = self.ihook.pytest_collect_directory(path=path, parent=self)
                if folder is not None:
                    yield folder
            elif entry.is_symlink() and os.path.lexists(path / MANIFEST):
                yield from self.ihook.pytest_collect_file(file_path=path / MANIFEST,
                                                          parent=self)


def _nodeid(parent: pytest.Collector, folder: Path) -> str:
    """The node id of ``folder`` in ``parent``, with its name as shown."""
    if folder == parent.path:
        return parent.nodeid
    return f"{parent.nodeid}/{file_name(folder.name)}" if parent.nodeid else \
        file_name(folder.name)


class SubmissionFile(pytest.File):
    """A submission folder's manifest: yields one item per track of the benchmark."""

    @property
    def ihook(self) -> pluggy.HookRelay:
        return self.config.hook  # see SubmissionsDir.ihook

    @classmethod
    def from_parent(cls, parent: pytest.Collector, **kwargs: Any) -> SubmissionFile:  # type: ignore[override]
        """A manifest in a folder named with bytes or characters no output may show raw gets
        a node id made of the shown name (see :func:`harness.text.file_name`)."""
        path = kwargs["path"]
        if file_name(path.parent.name) != path.parent.name:
            kwargs.setdefault("nodeid", f"{_nodeid(parent, path.parent)}/{MANIFEST}")
        return super().from_parent(parent, **kwargs)

    def collect(self) -> Iterator[TrackItem]:
        submission = _load(self.path)
        name = file_name(submission.root.name)
        if name != submission.root.name:
            submission = Submission(
                name=name, root=submission.root,
                problem=f"the folder's name '{name}' is not plain text (it has control "
                        "characters or is not UTF-8); rename it, e.g. as `python -m harness "
                        "new NAME` would accept it")
        for track in self.config.stash[SESSION].benchmark.tracks:
            yield TrackItem.from_parent(self, name=track.name, submission=submission,
                                        track=track)


def _load(manifest: Path) -> Submission:
    """The submission, or one whose problem says in one line why it cannot be read: one team's
    folder must never stop the collection of everyone's (pytest would exit 2, grading none)."""
    try:
        return load_submission(manifest)
    except Exception as exc:  # untrusted folder contents fail in ways no check foresaw
        root = manifest.parent
        return Submission(name=root.name, root=root,
                          problem=in_folder(one_line(exc), root.resolve()))


class TrackItem(pytest.Item):
    """Grade one submission on one track; fails when the submission cannot answer."""

    def __init__(self, *, submission: Submission, track: Track, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.submission = submission
        self.track = track

    @property
    def ihook(self) -> pluggy.HookRelay:
        return self.config.hook  # see SubmissionsDir.ihook

    def runtest(self) -> None:
        """Reuse an earlier record (no model is loaded) or grade; either way, a failed record
        fails the item with its one-line message."""
        reuse = self.config.stash[REUSE]
        earlier, source = reuse.earlier_record(self.submission, self.track)
        if earlier is not None:
            self.user_properties.append((SOURCE, source))
        record: Mapping[str, Any] = self._grade(reuse) if earlier is None else earlier
        if reuse.changed_since is not None:
            self.user_properties.append((CHANGED, reuse.is_changed(self.submission)))
        self.user_properties.append((RECORD, record))
        if record["status"] == "error":
            raise SubmissionError(record["error"])
        for key in ("clean_acc", "asr", "detect_rate", "utility"):  # JUnit XML shows these
            self.user_properties.append((key, record[key]))

    def request(self) -> Request:
        """What the backend answers; SubmissionError when the submission has no usable entry."""
        return Request(self.nodeid, self.submission.entry(self.track.name),
                       self.submission.root, self.track)

    def _scores(self, session: Session, request: Request
                ) -> tuple[dict[str, Any], dict[str, Any] | None, bool]:
        """Scores of the entry on the track, the retuning probe's included (it runs here
        whatever the backend); in a contest, the private part's beside them (else None); and
        whether they hold a failure that may not recur (the probe timed out)."""
        what = f"{request.root.name} on {request.track.name}"
        scores = self.config.stash[BACKEND].scores(
            request, lambda total: progress.bar(self.config, what, total))
        probe, transient = probe_track(request.entry, request.root, request.track,
                                       session.probe_handover, session.grading,
                                       session.probe_workers, len(session.benchmark.tracks))
        sealed = scores.pop(SEALED, None)
        sealed_probe = probe.pop(SEALED, {})
        if sealed is not None:
            sealed = {**sealed, **{key: probe[key] for key in PROBE_KEYS}, **sealed_probe}
        return {**scores, **probe}, sealed, transient

    def _grade(self, reuse: Reuse) -> Record:
        """Grade now; store the record in the cache at once, so that a run killed later still
        keeps it, unless it is a failure that may not recur (a timeout). In a contest the
        private part's record travels apart (:data:`SEALED_RECORD`)."""
        session = reuse.session
        started = time.monotonic()
        took: dict[str, Any] = dict.fromkeys(MEASURED_KEYS)
        sealed: Record | None = None
        try:
            request = self.request()
            scores, private, transient = self._scores(session, request)
            took = {key: scores.pop(key) for key in MEASURED_KEYS}
        except BenchmarkError:
            raise
        except Exception as exc:  # untrusted models fail in arbitrary ways inside TensorFlow
            message = in_folder(one_line(exc), self.submission.root.resolve())
            record = error_record(self.submission.meta, self.track.name, message)
            sealed = record
            cacheable = not isinstance(exc, TransientSubmissionError)
        else:
            sha256 = reuse.fingerprint(self.track)["badnet_sha256"]
            badnet = is_badnet(request.entry, self.track, sha256)
            record = ok_record(self.submission.meta, self.track.name, scores,
                               sample=session.grading.sample, badnet=badnet)
            if private is not None:
                private = {key: value for key, value in private.items()
                           if key not in MEASURED_KEYS}
                sealed = ok_record(self.submission.meta, self.track.name, private,
                                   sample=session.grading.sample, badnet=badnet)
            cacheable = not transient
        if session.sealed is not None:
            assert sealed is not None, "a contest's item without its private record"
            self.user_properties.append((SEALED_RECORD, sealed))
        self.user_properties.append((TIMING, {"seconds": round(time.monotonic() - started, 3),
                                              **took}))
        if session.cache is not None and cacheable:
            try:
                session.cache.put(reuse.key(self.submission, self.track), record)
            except (OSError, TypeError, ValueError) as exc:  # a cache only saves time
                self.warn(pytest.PytestWarning(f"result cache: not stored: {exc}"))
        return record

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | TerminalRepr:
        if isinstance(excinfo.value, HarnessError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path | str, int, str]:
        """Where the item is, as reports show it: its manifest, or for a folder whose name
        cannot be shown raw, its node id's file part (see :func:`harness.text.file_name`)."""
        path: Path | str = self.path
        if file_name(self.path.parent.name) != self.path.parent.name:
            path = self.nodeid.split("::")[0]
        return path, 0, f"{self.submission.name} on {self.track.name}"


def _track_items(session: pytest.Session) -> list[TrackItem]:
    return [item for item in session.items if isinstance(item, TrackItem)]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Read (and check) the data of every selected track once, before any item runs; then build
    the environments the items need."""
    if SESSION not in session.config.stash:
        return
    grading = session.config.stash[SESSION]
    tracks = {item.track.name: item.track for item in _track_items(session)}
    try:
        if tracks:
            generate_missing(grading.benchmark)
        for track in tracks.values():
            for data_file in track.data_files():
                grading.store.get(data_file, track.num_classes)
    except BenchmarkError as exc:
        pytest.exit(f"benchmark error: {exc}", returncode=2)
    _build_environments(session)


def _build_environments(session: pytest.Session) -> None:
    """Build the environments the selected items need before the first item runs, one line
    each, so that minutes of installing show as such rather than as a slow item. A failure is
    kept and becomes the error row of each item that needs it."""
    config = session.config
    grading, reuse = config.stash[SESSION].grading, config.stash[REUSE]
    if not grading.build or not config.stash[BACKEND].builds_environments:
        return
    specs = {}
    for item in _track_items(session):
        try:
            entry = item.submission.entry(item.track.name)
            spec = environment_spec(entry, item.submission.root, item.track)
        except SubmissionError:
            continue
        if spec is not None and reuse.earlier_record(item.submission, item.track)[0] is None:
            specs[spec.key] = spec
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for spec in specs.values():
        store = grading.environments
        if store.get(spec) is not None:
            continue
        try:
            built = store.ensure(spec)
            line = f"harness: environment {spec.name}: {built.how}"
        except SubmissionError as exc:
            line = f"harness: {exc}"
        if reporter is not None:
            reporter.write_line(line)


def _requests(items: list[TrackItem]) -> Iterator[Request]:
    """The items that will be graded (no earlier record, a usable entry), in order."""
    for item in items:
        if item.config.stash[REUSE].earlier_record(item.submission, item.track)[0] is not None:
            continue
        try:
            yield item.request()
        except SubmissionError:
            continue  # an error row, made without the backend


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Tell the backend which items will run before the first one does (Ray submits them all)."""
    if BACKEND in session.config.stash and not session.config.option.collectonly:
        session.config.stash[BACKEND].start(_requests(_track_items(session)))
