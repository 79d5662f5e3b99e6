"""Benchmarks and tracks, described by data files rather than code.

A benchmark is a folder holding one TOML file per track under ``tracks/`` and, optionally, a
``benchmark.toml`` with its name and (for the embedded benchmark) the recipe that regenerates its
data files on first use. Organizers grade against their real contest files by writing track files
that point at them; no code changes. Paths in track files are relative to the benchmark folder.

Every data table says whether teams may see it: ``hidden = true`` or ``false``. The defaults are
the contest's split: ``[validation]`` is public (teams repair their BadNet with it, and it may not
be hidden), ``[test]`` and every ``[[poisoned]]`` set are hidden (they decide the ranking). The
BadNets are always public. ``python -m harness export-public`` copies only public files.

Two optional keys serve the retuning probe (:mod:`harness.sandbox.retuning`), which fine-tunes each
repaired model a little on the attacker's data and tests it again. ``[retuning]`` is that data: a
few images, some stamped with the track's trigger and labelled with its target; it is hidden by
default (it is the attacker's, like the test sets, and would hand teams the trigger).
``clean_model`` is a model of the same task that never saw a trigger: the probe's yardstick,
retuned the same way. It is the organizers' alone and never exported (a team given it would
simply submit it). Without them the probe shows "-" for the track.

A *public bundle* (``public = true`` in ``benchmark.toml``, written by ``export-public``) is what
teams receive: its tracks may omit ``[test]``, ``[[poisoned]]`` and ``[retuning]``, and it refuses
any table that is hidden, so a bundle cannot name a hidden file by mistake. It serves ``check``
and the reference build (which need validation data only), never grading. :func:`load_bundle`
reads either kind (its tracks are :class:`PublicTrack`); :func:`load_benchmark` reads only a
benchmark to grade on, whose tracks are :class:`Track` and always have their hidden test sets.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from harness.definitions.layout import META, TRACKS_DIR
from harness.errors import BenchmarkError, UsageError

LabelKind = Literal["true", "target"]


@dataclass(frozen=True)
class DataFile:
    """One contest-format HDF5 file, with the checks the track file asks for."""

    path: Path
    sha256: str | None = None
    size: int | None = None
    hidden: bool = False


@dataclass(frozen=True)
class PoisonedSet:
    """A poisoned test set: every image carries ``trigger``; the attacker wants ``target``.

    ``labels`` says what the file's ``label`` dataset holds: ``"true"`` (the identity shown, so
    robust accuracy can be scored) or ``"target"`` (the official contest files, which store the
    attacker's target label instead).
    """

    trigger: str
    target: int
    file: DataFile
    labels: LabelKind = "target"


@dataclass(frozen=True, kw_only=True)
class PublicTrack:
    """One BadNet with its data, as any track file describes it (a public bundle's included)."""

    name: str
    description: str
    """The organizers' own note (how the backdoor was built, say): never exported to teams."""
    badnet: Path
    input_scale: float
    num_classes: int
    validation: DataFile
    test: DataFile | None
    """None only in a public bundle (:class:`Track` always has it)."""
    poisoned: tuple[PoisonedSet, ...]
    """Empty only in a public bundle."""
    source: Path
    badnet_architecture: str | None = None  # set when ``badnet`` holds weights only
    public_description: str = ""
    """What teams are told about the track: the only description ``export-public`` writes."""
    retuning: DataFile | None = None
    """The attacker's retuning set (``[retuning]``, hidden by default): what the retuning probe
    fine-tunes each repaired model on. Hidden because it carries the trigger and target."""
    clean_model: Path | None = None
    """A model of the same task that never saw a trigger (``clean_model``): the retuning probe's
    yardstick. Never exported: it is a clean model, the very thing teams are asked to produce."""

    @property
    def benchmark_root(self) -> Path:
        """The benchmark folder (track files live in its ``tracks/``): where the environments
        that the benchmark provides are."""
        return self.source.parent.parent

    def data_files(self) -> list[DataFile]:
        """Every data file of the track, validation first (it is public), the retuning set
        last."""
        test = [self.test] if self.test else []
        retuning = [self.retuning] if self.retuning else []
        return [self.validation, *test, *(p.file for p in self.poisoned), *retuning]


@dataclass(frozen=True, kw_only=True)
class Track(PublicTrack):
    """A track of a benchmark to grade on: the unit a submission is graded on."""

    test: DataFile


TrackT = TypeVar("TrackT", bound=PublicTrack, covariant=True)


@dataclass(frozen=True)
class Benchmark(Generic[TrackT]):
    """A named set of tracks; ``generate`` is the recipe for regenerable data (or None);
    ``public`` marks a bundle for teams, without hidden sets (see the module docstring)."""

    name: str
    root: Path
    tracks: tuple[TrackT, ...]
    generate: dict[str, Any] | None = None
    public: bool = False

    def track(self, name: str) -> TrackT:
        for track in self.tracks:
            if track.name == name:
                return track
        raise UsageError(f"no track {name!r} in {self.root} "
                         f"(tracks: {', '.join(track.name for track in self.tracks)})")

    def data_files(self) -> list[DataFile]:
        """Each distinct data file once, in track order (tracks may share files)."""
        seen: dict[Path, DataFile] = {}
        for track in self.tracks:
            for data_file in track.data_files():
                seen.setdefault(data_file.path, data_file)
        return list(seen.values())


def parse_scale(value: Any, where: str) -> float:
    """Accept ``1``, ``0.5`` or the exact fraction string ``"1/255"`` used in the contest docs."""
    try:
        if isinstance(value, str):
            scale = float(Fraction(value.strip()))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            scale = float(value)
        else:
            raise ValueError
    except (ValueError, ZeroDivisionError):
        raise BenchmarkError(f"{where}: input_scale must be a number or a fraction like '1/255', "
                             f"got {value!r}") from None
    if not scale > 0:
        raise BenchmarkError(f"{where}: input_scale must be positive, got {value!r}")
    return scale


def _require(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise BenchmarkError(f"{where}: missing key '{key}'")
    value = table[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise BenchmarkError(f"{where}: '{key}' has the wrong type ({type(value).__name__})")
    return value


def _data_file(table: Any, root: Path, where: str, *, hidden: bool) -> DataFile:
    """Parse a data table; ``hidden`` is the default for its ``hidden`` key."""
    if not isinstance(table, dict):
        raise BenchmarkError(f"{where}: expected a table with 'file' (and optional sha256, size, "
                             "hidden)")
    hidden = table.get("hidden", hidden)
    if not isinstance(hidden, bool):
        raise BenchmarkError(f"{where}: 'hidden' must be true or false, got {hidden!r}")
    size = table.get("size")
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise BenchmarkError(f"{where}: 'size' must be a positive integer")
    sha = table.get("sha256")
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
        raise BenchmarkError(f"{where}: 'sha256' must be 64 hex characters")
    return DataFile(path=(root / _require(table, "file", str, where)).resolve(), sha256=sha,
                    size=size, hidden=hidden)


def load_track(path: Path, root: Path, *, public: bool = False) -> PublicTrack:
    """Parse and check one track file; every problem is one line naming the file.

    ``public`` is the bundle mode: test, poisoned and retuning sets become optional and hidden
    ones are refused (a bundle that names a hidden file would leak it)."""
    where = str(path)
    try:
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BenchmarkError(f"{where}: cannot read track file: {exc}") from None
    num_classes = _require(spec, "num_classes", int, where)
    if num_classes < 2:
        raise BenchmarkError(f"{where}: num_classes must be at least 2")
    poisoned_specs = spec.get("poisoned", [])
    if not isinstance(poisoned_specs, list) or not (poisoned_specs or public):
        raise BenchmarkError(f"{where}: needs at least one [[poisoned]] set")
    poisoned = []
    for i, table in enumerate(poisoned_specs):
        here = f"{where}: poisoned[{i}]"
        target = _require(table, "target", int, here)
        if not 0 <= target < num_classes:
            raise BenchmarkError(f"{here}: target {target} outside [0, {num_classes})")
        labels = table.get("labels", "target")
        if labels not in ("true", "target"):
            raise BenchmarkError(f"{here}: labels must be 'true' or 'target', got {labels!r}")
        poisoned.append(PoisonedSet(trigger=_require(table, "trigger", str, here), target=target,
                                    file=_data_file(table, root, here, hidden=True),
                                    labels=labels))
    validation = _data_file(spec.get("validation"), root, f"{where}: [validation]", hidden=False)
    if validation.hidden:
        raise BenchmarkError(f"{where}: [validation] cannot be hidden: teams repair their BadNet "
                             "with it; remove 'hidden = true'")
    test = None
    if "test" in spec or not public:
        test = _data_file(spec.get("test"), root, f"{where}: [test]", hidden=True)
    retuning = None
    if "retuning" in spec:
        retuning = _data_file(spec["retuning"], root, f"{where}: [retuning]", hidden=True)
    clean_model = spec.get("clean_model")
    if clean_model is not None and not isinstance(clean_model, str):
        raise BenchmarkError(f"{where}: 'clean_model' must be a path (a string), got "
                             f"{clean_model!r}")
    hidden = ([] if test is None or not test.hidden else ["[test]"]) + \
        [f"poisoned[{i}]" for i, p in enumerate(poisoned) if p.file.hidden] + \
        ([] if retuning is None or not retuning.hidden else ["[retuning]"])
    if public and hidden:
        raise BenchmarkError(f"{where}: {', '.join(hidden)} hidden (the default for test, "
                             "poisoned and retuning sets) in a public bundle; remove them or "
                             "mark them hidden = false")
    fields: dict[str, Any] = dict(
        name=_require(spec, "name", str, where),
        description=spec.get("description", ""),
        badnet=(root / _require(spec, "badnet", str, where)).resolve(),
        input_scale=parse_scale(_require(spec, "input_scale", (str, int, float), where), where),
        num_classes=num_classes,
        validation=validation,
        poisoned=tuple(poisoned),
        source=path,
        badnet_architecture=spec.get("badnet_architecture"),
        public_description=spec.get("public_description", ""),
        retuning=retuning,
        clean_model=None if clean_model is None else (root / clean_model).resolve(),
    )
    return PublicTrack(test=None, **fields) if test is None else Track(test=test, **fields)


def load_benchmark(root: Path) -> Benchmark[Track]:
    """Load a benchmark to grade on: every track has its hidden test set; a public bundle is
    refused."""
    benchmark = load_bundle(root)
    if benchmark.public:
        raise BenchmarkError(f"{benchmark.root}: a public bundle has no hidden test sets to "
                             "grade on; grade with the organizers' benchmark")
    tracks = tuple(track for track in benchmark.tracks if isinstance(track, Track))
    assert len(tracks) == len(benchmark.tracks), "outside a bundle every track has [test]"
    return Benchmark(name=benchmark.name, root=benchmark.root, tracks=tracks,
                     generate=benchmark.generate, public=False)


def load_bundle(root: Path) -> Benchmark[PublicTrack]:
    """Load every ``tracks/*.toml`` of a benchmark folder or a public bundle, in file-name
    order."""
    root = root.resolve()
    if not root.is_dir():
        raise BenchmarkError(f"{root}: benchmark folder not found")
    meta: dict[str, Any] = {}
    meta_path = root / META
    if meta_path.exists():
        try:
            meta = tomllib.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise BenchmarkError(f"{meta_path}: cannot read: {exc}") from None
    public = meta.get("public", False)
    if not isinstance(public, bool):
        raise BenchmarkError(f"{meta_path}: 'public' must be true or false, got {public!r}")
    track_files = sorted((root / TRACKS_DIR).glob("*.toml"))
    if not track_files:
        raise BenchmarkError(f"{root}: no track files under {TRACKS_DIR}/*.toml")
    tracks = tuple(load_track(path, root, public=public) for path in track_files)
    names = [t.name for t in tracks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BenchmarkError(f"{root}: duplicate track names {duplicates}")
    _check_visibility(tracks)
    return Benchmark(name=meta.get("name", root.name), root=root, tracks=tracks,
                     generate=meta.get("generate"), public=public)


def _check_visibility(tracks: tuple[PublicTrack, ...]) -> None:
    """Refuse a file that one table marks hidden and another public: exporting it as public
    would leak it, and keeping it back would break the track that calls it public."""
    seen: dict[Path, tuple[bool, Path]] = {}
    for track in tracks:
        for data_file in track.data_files():
            hidden, source = seen.setdefault(data_file.path, (data_file.hidden, track.source))
            if hidden != data_file.hidden:
                raise BenchmarkError(
                    f"{data_file.path}: hidden in {source if hidden else track.source} but "
                    f"public in {track.source if hidden else source}; mark it the same everywhere")
