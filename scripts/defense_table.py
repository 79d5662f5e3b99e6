"""Print the docs' defense x track table from a grading run and the reference builds.

Reads ``results.json`` (what ``python -m harness grade submissions/`` wrote) and each reference
folder's ``build.json`` (build time, notes), and grades the pruning defense's 2- and 10-point
variants, rebuilt from the BadNet and the channel order recorded at build time. Nothing here
chooses anything: it only reports.

Usage: python scripts/defense_table.py [--results results.json] [--submissions submissions]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from harness.defenses.reference import DEFENSES, load_badnet
from harness.definitions.data import DataStore
from harness.definitions.layout import default_benchmark
from harness.definitions.tracks import load_benchmark
from harness.grading.handover import Handover
from harness.grading.item import grade_trusted
from harness.nets.pruning import prune_channels
from harness.results.io import read_results
from harness.sandbox.models import KerasPredictor


def defense_rows(records: list[dict], submissions: Path) -> pd.DataFrame:
    order = {spec.name: i for i, spec in enumerate(DEFENSES)}
    rows = []
    for record in records:
        if record["submission"] not in order:
            continue
        build = submissions / record["submission"] / "build.json"
        notes = json.loads(build.read_text()).get(record["track"], {}) if build.exists() else {}
        rows.append({"defense": record["submission"], "track": record["track"],
                     "clean acc": record["clean_acc"], "ASR": record["asr"],
                     "detect": record["detect_rate"], "utility": record["utility"],
                     "build s": notes.get("build_seconds"), "_order": order[record["submission"]]})
    return pd.DataFrame(rows).sort_values(["track", "_order"]).drop(columns="_order")


def defense_markdown(records: list[dict], submissions: Path) -> str:
    """The docs' defense x track table (tests/render/test_docs_tables.py checks the docs hold
    it)."""
    return defense_rows(records, submissions).to_markdown(
        index=False, floatfmt=("", "", ".3f", ".3f", ".3f", ".3f", ".1f"))


YARDSTICK = "clean model (yardstick)"


def retuning_rows(benchmark: dict, records: list[dict]) -> pd.DataFrame:
    """Per track: the yardstick (the clean model probed), then each reference defense's ASR
    and P-ASR, and how far above the yardstick its P-ASR lands."""
    order = {spec.name: i for i, spec in enumerate(DEFENSES)}
    yardsticks = benchmark.get("retuning", {}).get("tracks", {})
    rows = []
    for track, yardstick in yardsticks.items():
        rows.append({"track": track, "entry": YARDSTICK, "clean acc": None, "ASR": None,
                     "P-clean acc": yardstick["p_clean_acc"], "P-ASR": yardstick["p_asr"],
                     "P-ASR - yardstick": None, "_order": -1})
    for record in records:
        track = record["track"]
        if record["submission"] not in order or track not in yardsticks:
            continue
        p_asr, base = record["p_asr"], yardsticks[track]["p_asr"]
        rows.append({"track": track, "entry": record["submission"],
                     "clean acc": record["clean_acc"], "ASR": record["asr"],
                     "P-clean acc": record["p_clean_acc"], "P-ASR": p_asr,
                     "P-ASR - yardstick": None if p_asr is None or base is None else p_asr - base,
                     "_order": order[record["submission"]]})
    return pd.DataFrame(rows).sort_values(["track", "_order"]).drop(columns="_order")


def retuning_markdown(benchmark: dict, records: list[dict]) -> str:
    """The docs' retuning-probe table (tests/render/test_docs_tables.py checks the docs hold it);
    "-" where a value does not exist (the yardstick's own ASR, an entry the probe could not
    tune)."""
    rows = retuning_rows(benchmark, records)
    return rows.astype(object).where(rows.notna(), None).to_markdown(
        index=False, floatfmt=("", "", ".3f", ".3f", ".3f", ".3f", "+.3f"), missingval="-")


def pruning_variants(benchmark_path: Path, submissions: Path) -> pd.DataFrame:
    benchmark = load_benchmark(benchmark_path)
    notes = json.loads((submissions / "pruning" / "build.json").read_text())
    handover, rows = Handover(DataStore()), []
    for track in benchmark.tracks:
        if track.name not in notes:
            continue
        order = np.array(notes[track.name]["prune_order"])
        for drop, depth in notes[track.name]["depths"].items():
            model = load_badnet(track)
            prune_channels(model, order[:depth])
            scores = grade_trusted(KerasPredictor(model, track.num_classes, track.input_scale),
                                   track, handover)
            rows.append({"track": track.name, "_points": int(drop.removesuffix("pt")),
                         "drop": drop, "pruned": depth,
                         "val acc": notes[track.name]["val_acc_at_depth"][drop],
                         "clean acc": scores["clean_acc"], "ASR": scores["asr"]})
    return pd.DataFrame(rows).sort_values(["track", "_points"]).drop(columns="_points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results.json"))
    parser.add_argument("--submissions", type=Path, default=Path("submissions"))
    parser.add_argument("--benchmark", type=Path, default=default_benchmark())
    args = parser.parse_args()
    benchmark, records = read_results(args.results)
    print(defense_markdown(records, args.submissions))
    print()
    print(retuning_markdown(benchmark, records))
    print()
    print(pruning_variants(args.benchmark, args.submissions).to_markdown(index=False,
                                                                         floatfmt=".3f"))


if __name__ == "__main__":
    main()
