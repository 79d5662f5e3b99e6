"""Benchmarks and tracks, described by data files rather than code.

A benchmark is a folder holding one TOML file per track under ``tracks/`` and, optionally, a
``benchmark.toml`` with its name and (for the embedded benchmark) the recipe that regenerates its
data files on first use. Organizers grade against their real contest files by writing track files
that point at them; no code changes. Paths in track files are relative to the benchmark folder.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from harness.errors import BenchmarkError

LabelKind = Literal["true", "target"]


@dataclass(frozen=True)
class DataFile:
    """One contest-format HDF5 file, with the checks the track file asks for."""

    path: Path
    sha256: str | None = None
    size: int | None = None


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


@dataclass(frozen=True)
class Track:
    """One BadNet with its clean and poisoned data: the unit a submission is graded on."""

    name: str
    description: str
    badnet: Path
    input_scale: float
    num_classes: int
    validation: DataFile
    test: DataFile
    poisoned: tuple[PoisonedSet, ...]
    source: Path
    badnet_architecture: str | None = None  # set when ``badnet`` holds weights only

    def data_files(self) -> list[DataFile]:
        """Every data file of the track, validation first (it is public)."""
        return [self.validation, self.test, *(p.file for p in self.poisoned)]


@dataclass(frozen=True)
class Benchmark:
    """A named set of tracks; ``generate`` is the recipe for regenerable data (or None)."""

    name: str
    root: Path
    tracks: tuple[Track, ...]
    generate: dict[str, Any] | None = None

    def track(self, name: str) -> Track:
        for track in self.tracks:
            if track.name == name:
                return track
        raise KeyError(name)

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


def _data_file(table: Any, root: Path, where: str) -> DataFile:
    if not isinstance(table, dict):
        raise BenchmarkError(f"{where}: expected a table with 'file' (and optional sha256, size)")
    size = table.get("size")
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise BenchmarkError(f"{where}: 'size' must be a positive integer")
    sha = table.get("sha256")
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
        raise BenchmarkError(f"{where}: 'sha256' must be 64 hex characters")
    return DataFile(path=(root / _require(table, "file", str, where)).resolve(), sha256=sha,
                    size=size)


def load_track(path: Path, root: Path) -> Track:
    """Parse and check one track file; every problem is one line naming the file."""
    where = str(path)
    try:
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BenchmarkError(f"{where}: cannot read track file: {exc}") from None
    num_classes = _require(spec, "num_classes", int, where)
    if num_classes < 2:
        raise BenchmarkError(f"{where}: num_classes must be at least 2")
    poisoned_specs = spec.get("poisoned", [])
    if not isinstance(poisoned_specs, list) or not poisoned_specs:
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
                                    file=_data_file(table, root, here), labels=labels))
    return Track(
        name=_require(spec, "name", str, where),
        description=spec.get("description", ""),
        badnet=(root / _require(spec, "badnet", str, where)).resolve(),
        input_scale=parse_scale(_require(spec, "input_scale", (str, int, float), where), where),
        num_classes=num_classes,
        validation=_data_file(spec.get("validation"), root, f"{where}: [validation]"),
        test=_data_file(spec.get("test"), root, f"{where}: [test]"),
        poisoned=tuple(poisoned),
        source=path,
        badnet_architecture=spec.get("badnet_architecture"),
    )


def load_benchmark(root: Path) -> Benchmark:
    """Load every ``tracks/*.toml`` of a benchmark folder, in file-name order."""
    root = root.resolve()
    if not root.is_dir():
        raise BenchmarkError(f"{root}: benchmark folder not found")
    meta: dict[str, Any] = {}
    meta_path = root / "benchmark.toml"
    if meta_path.exists():
        try:
            meta = tomllib.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise BenchmarkError(f"{meta_path}: cannot read: {exc}") from None
    track_files = sorted((root / "tracks").glob("*.toml"))
    if not track_files:
        raise BenchmarkError(f"{root}: no track files under tracks/*.toml")
    tracks = tuple(load_track(path, root) for path in track_files)
    names = [t.name for t in tracks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BenchmarkError(f"{root}: duplicate track names {duplicates}")
    return Benchmark(name=meta.get("name", root.name), root=root, tracks=tracks,
                     generate=meta.get("generate"))
