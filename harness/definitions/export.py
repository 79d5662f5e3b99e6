"""``python -m harness export-public DIR``: write the bundle that teams receive.

The bundle holds each track's BadNet, the public data files (validation data, and any set a track
file marks ``hidden = false``, a retuning set included) and track files rewritten to name only
those, with ``public = true`` in its ``benchmark.toml``, so it loads as a benchmark for
``check``, ``new`` and ``reference build``. Hidden files are never opened for copying and their
paths and hashes never reach the bundle: the track files are rebuilt from an allow-list of keys
rather than copied, which also drops the organizers' comments. The clean model a track names
(``clean_model``, the retuning probe's yardstick) is never copied nor named. Descriptions are
copied verbatim, so they must not give away a hidden trigger or target.
"""

from __future__ import annotations

import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from harness.definitions.data import DataStore, sha256_file
from harness.definitions.layout import ENVIRONMENTS_DIR, META, TRACKS_DIR
from harness.definitions.tracks import Benchmark, DataFile, PublicTrack
from harness.errors import BenchmarkError, HarnessError

TRACK_KEYS = ("name", "public_description", "badnet", "badnet_architecture", "input_scale",
              "num_classes")
"""Top-level track keys that go into the bundle as written (badnet with its new path). Never
``description``: it is the organizers' own note on the track; never ``clean_model``: the retuning
probe's yardstick, a model that never saw the trigger, is neither copied nor named (it is what
teams are asked to produce)."""


@dataclass
class _Bundle:
    """The planned bundle: what to copy where, and the track files naming the copies."""

    benchmark: Benchmark[PublicTrack]
    copies: dict[Path, str]  # source file -> path inside the bundle
    digests: dict[str, str]  # path inside the bundle -> sha256
    tracks: dict[str, dict[str, Any]]  # track file name -> its content

    def place(self, source: Path, folder: str, digest: str) -> str:
        """The bundle path of ``source``: ``folder/<file name>``, refusing two different files
        that would land on the same name."""
        name = self.copies.setdefault(source, f"{folder}/{source.name}")
        clash = [other for other, placed in self.copies.items()
                 if placed == name and other != source]
        if clash:
            raise BenchmarkError(f"{source} and {clash[0]} would both be {name} in the bundle; "
                                 "rename one of them")
        self.digests[name] = digest
        return name


def export_public(benchmark: Benchmark[PublicTrack], out: Path) -> list[str]:
    """Write the public bundle of ``benchmark`` into the new or empty folder ``out``.

    Everything is checked (each public data file read and verified against its track file)
    before anything is written, so a failed export leaves ``out`` as it was. Returns the bundle's
    files, relative to ``out``.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HarnessError(f"{out} is not an empty folder; export into a new or empty one")
    # A clean track's own BadNet may be its yardstick (it is public anyway); any other track's
    # yardstick would go out as a BadNet here.
    clean = {t.clean_model for t in benchmark.tracks} - {None} \
        - {t.badnet for t in benchmark.tracks if t.clean_model == t.badnet}
    shared = [t.badnet for t in benchmark.tracks if t.badnet in clean]
    if shared:  # it would go out as that track's BadNet
        raise BenchmarkError(f"{shared[0]} is both a BadNet and a clean model; the clean model "
                             "is never exported, so it must be a file of its own")
    bundle = _Bundle(benchmark, copies={}, digests={}, tracks={})
    store = DataStore()
    for track in benchmark.tracks:
        bundle.tracks[track.source.name] = _public_track(track, bundle, store)
    # Environments are public: teams check their entries in the ones they will be graded in.
    environments = sorted((benchmark.root / ENVIRONMENTS_DIR).glob("*.txt"))
    for source, name in [*bundle.copies.items(),
                         *((path, f"{ENVIRONMENTS_DIR}/{path.name}") for path in environments)]:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, out / name)
    (out / TRACKS_DIR).mkdir(parents=True, exist_ok=True)
    for file_name, spec in bundle.tracks.items():
        (out / TRACKS_DIR / file_name).write_text(tomli_w.dumps(spec), encoding="utf-8")
    (out / META).write_text(tomli_w.dumps({
        "name": benchmark.name,
        "description": "Public bundle: the BadNets and the public data; the hidden test sets "
                       "stay with the organizers.",
        "public": True}), encoding="utf-8")
    (out / "README.md").write_text(_readme(bundle), encoding="utf-8")
    return sorted(["README.md", META, *(f"{TRACKS_DIR}/{n}" for n in bundle.tracks),
                   *bundle.copies.values(),
                   *(f"{ENVIRONMENTS_DIR}/{path.name}" for path in environments)])


def _public_track(track: PublicTrack, bundle: _Bundle, store: DataStore) -> dict[str, Any]:
    """The bundle's track file: allow-listed keys, the BadNet, and the public sets only."""
    raw = tomllib.loads(track.source.read_text(encoding="utf-8"))  # loaded and checked already
    spec = {key: raw[key] for key in TRACK_KEYS if key in raw}
    spec["badnet"] = bundle.place(track.badnet, "models", sha256_file(track.badnet))

    def table(data_file: DataFile) -> dict[str, Any]:
        data = store.get(data_file, track.num_classes)  # verifies sha256, format and size
        return {"file": bundle.place(data_file.path, "data", data.sha256),
                "sha256": data.sha256, "size": len(data), "hidden": False}

    spec["validation"] = table(track.validation)
    if track.test is not None and not track.test.hidden:
        spec["test"] = table(track.test)
    poisoned = [{"trigger": p.trigger, "target": p.target, "labels": p.labels, **table(p.file)}
                for p in track.poisoned if not p.file.hidden]
    if poisoned:
        spec["poisoned"] = poisoned
    if track.retuning is not None and not track.retuning.hidden:
        spec["retuning"] = table(track.retuning)
    return spec


def _readme(bundle: _Bundle) -> str:
    rows = []
    for spec in bundle.tracks.values():
        public_sets = [spec["validation"]["file"]]
        public_sets += [spec["test"]["file"]] if "test" in spec else []
        public_sets += [p["file"] for p in spec.get("poisoned", [])]
        public_sets += [spec["retuning"]["file"]] if "retuning" in spec else []
        rows.append(f"| `{spec['name']}` | {spec.get('public_description', '')} | "
                    f"`{spec['badnet']}` | "
                    f"{spec['num_classes']} | {spec['input_scale']} | "
                    f"{', '.join(f'`{f}`' for f in public_sets)} |")
    files = [f"| `{name}` | {digest} |" for name, digest in sorted(bundle.digests.items())]
    return "\n".join([
        f"# {bundle.benchmark.name}: public bundle",
        "",
        "What teams receive: each track's backdoored model (BadNet) and the clean validation data",
        "to repair it with. The test sets that rank the submissions stay with the organizers.",
        "Data files use the contest's HDF5 format: `data` (N, 3, 55, 47) pixels 0..255, `label`.",
        "",
        "| track | description | BadNet | classes | input scale | public data |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "## Checking a submission",
        "",
        "With backdoor-grader installed, and this folder as `BUNDLE`:",
        "",
        "```bash",
        "python -m harness new my-team --benchmark BUNDLE        # a commented template",
        "python -m harness check submissions/my-team --benchmark BUNDLE",
        "```",
        "",
        "`check` loads every entry as the grader does and runs it on a few validation images.",
        "An entry may declare one of the environments under `environments/` (for example",
        "`environment = \"keras2\"`); `check` builds it and runs the entry in it.",
        "",
        "## Files",
        "",
        "| file | sha256 |",
        "|---|---|",
        *files,
        "",
    ])
