"""``python -m harness reference build``: build the reference submissions with the project's own
defenses, one folder per defense under ``submissions/``.

Each defense sees only the track's BadNet and clean validation data. The builder writes the
repaired model per track, the folder's ``submission.toml`` and a ``build.json`` with each build's
time and the defense's notes (pruning depths, flagged labels, chosen epochs), which the docs cite.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from harness.defenses.base import Context, Repaired
from harness.definitions.data import DataStore
from harness.definitions.submissions import MANIFEST, load_submission
from harness.definitions.tracks import PublicTrack
from harness.errors import UsageError

SEED = 2018  # the Fine-Pruning paper's year; any fixed value makes builds repeatable


@dataclass(frozen=True)
class DefenseSpec:
    """A reference defense: ``run`` is "module:function" taking a Context (and, when ``wraps``
    names another defense, that defense's model for the same track)."""

    name: str
    method: str
    description: str
    run: str
    wraps: str | None = None

    def function(self) -> Callable[..., Repaired]:
        module, name = self.run.split(":")
        return getattr(importlib.import_module(module), name)


DEFENSES = (
    DefenseSpec("no-defense", "none", "The BadNet itself: the baseline row.",
                "harness.defenses.reference:no_defense"),
    DefenseSpec("pruning", "pruning (Liu et al. 2018)",
                "Prune dormant conv_3 channels until validation accuracy drops 4 points.",
                "harness.defenses.prune:pruning"),
    DefenseSpec("fine-tuning", "fine-tuning (Chen et al. 2017)",
                "Fine-tune the BadNet on clean validation data only.",
                "harness.defenses.finetune:fine_tuning"),
    DefenseSpec("fine-pruning", "fine-pruning (Liu et al. 2018)",
                "Prune to a 4-point validation drop, then fine-tune with pruned channels held "
                "dead; epoch chosen on held-out validation data.",
                "harness.defenses.fineprune:fine_pruning"),
    DefenseSpec("fine-pruning-g", "fine-pruning G-net (N+1 outputs)",
                "Answers N (poisoned) when the fine-pruned net and the BadNet disagree.",
                "harness.defenses.fineprune:fine_pruning_g", wraps="fine-pruning"),
    DefenseSpec("neural-cleanse", "Neural Cleanse (Wang et al. 2019)",
                "Reverse-engineer minimal triggers per label, flag MAD outliers, unlearn them.",
                "harness.defenses.neural_cleanse:neural_cleanse"),
    DefenseSpec("strip", "STRIP (Gao et al. 2019)",
                "Run-time detector: answers N when blends with clean images keep a low "
                "prediction entropy (1% false rejections on validation).",
                "harness.defenses.strip:strip"),
)


def no_defense(ctx: Context) -> Repaired:
    return Repaired(ctx.badnet)


def defense(name: str) -> DefenseSpec:
    for spec in DEFENSES:
        if spec.name == name:
            return spec
    raise UsageError(f"no defense {name!r} (defenses: {', '.join(d.name for d in DEFENSES)})")


def load_badnet(track: PublicTrack):
    from harness.sandbox.models import load_entry_model

    return load_entry_model("weights" if track.badnet_architecture else "model", track.badnet,
                            architecture=track.badnet_architecture,
                            num_classes=track.num_classes)


def defender_context(track: PublicTrack, store: DataStore) -> Context:
    """What a defense is given on ``track``: its BadNet and the clean validation set, with the
    reference builds' seed (the reports in scripts/ start from the very same context)."""
    validation = store.get(track.validation, track.num_classes)
    return Context(badnet=load_badnet(track), images=validation.images, labels=validation.labels,
                   scale=track.input_scale, num_classes=track.num_classes, seed=SEED)


def save(repaired: Repaired, path: Path) -> None:
    from harness.nets.deepid import save_legacy_h5

    path.parent.mkdir(parents=True, exist_ok=True)
    if repaired.suffix == ".h5":
        save_legacy_h5(repaired.model, path)
    else:
        repaired.model.save(path)


def _write_folder(spec: DefenseSpec, folder: Path, models: dict[str, str],
                  notes: dict[str, Any]) -> None:
    """Merge this run's tracks into the folder's manifest and build.json."""
    manifest = folder / MANIFEST
    tracks: dict[str, dict[str, str]] = {}
    if manifest.exists():
        old = load_submission(manifest)
        tracks = {name: {"model": entry.path.name} for name, entry in old.tracks.items()
                  if not isinstance(entry, Exception)}
    tracks.update({name: {"model": file} for name, file in models.items()})
    manifest.write_text(tomli_w.dumps({
        "team": "backdoor-grader reference", "method": spec.method,
        "description": spec.description, "reference": True,
        "tracks": dict(sorted(tracks.items()))}))
    report_path = folder / "build.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    report.update(notes)
    report_path.write_text(json.dumps(dict(sorted(report.items())), indent=2, sort_keys=True)
                           + "\n")


def build(tracks: Sequence[PublicTrack], defenses: Sequence[DefenseSpec], out: Path) -> None:
    """Build each of ``defenses`` on each of ``tracks``, into a folder per defense in ``out``."""
    import keras

    store = DataStore()
    for spec in defenses:
        folder = out / spec.name
        models, notes = {}, {}
        for track in tracks:
            ctx = defender_context(track, store)
            args: list[Any] = [ctx]
            if spec.wraps:
                wrapped = load_submission(out / spec.wraps / MANIFEST).entry(track.name)
                args.append(keras.models.load_model(wrapped.path, compile=False))
            start = time.perf_counter()
            repaired = spec.function()(*args)
            seconds = time.perf_counter() - start
            file = f"{track.name}{repaired.suffix}"
            save(repaired, folder / file)
            models[track.name] = file
            notes[track.name] = {"build_seconds": round(seconds, 1), **repaired.notes}
            print(f"{spec.name} / {track.name}: built in {seconds:.1f} s", file=sys.stderr,
                  flush=True)
            keras.backend.clear_session()
        _write_folder(spec, folder, models, notes)
