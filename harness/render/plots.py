"""Pictures for the leaderboard: per track, the clean-accuracy/ASR trade-off and sample images.

A table ranks on one number; the Pareto plot shows the trade-off behind it (a defense that buys
a low ASR with clean accuracy against one that keeps both), and the montage shows what the track's
triggers look like. PNG bytes depend only on the inputs (fixed size and resolution, no software
or date metadata), so plots can be committed next to the leaderboard and diffed.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.definitions.data import DataStore
from harness.definitions.tracks import Track
from harness.render.agg import pyplot
from harness.render.montage import save_montage

FOLDER = "plots"
"""Where the pictures go, relative to the leaderboard (its Markdown links are relative too)."""
SAMPLES_PER_SET = 8
DPI = 100
ASR_TICKS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Point:
    """One OK submission on one track, as the Pareto plot draws it."""

    label: str
    reference: bool
    asr: float
    asr_ci: tuple[float, float]
    clean_acc: float
    clean_acc_ci: tuple[float, float]


def _stem(track: str) -> str:
    """A file name for the track: the name itself when it is safe in paths and Markdown links,
    else a slug made unique by a digest of the name (two names must never share a picture)."""
    if _SAFE_NAME.fullmatch(track):
        return track
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", track).strip("_")[:40] or "track"
    return f"{slug}-{hashlib.sha256(track.encode('utf-8')).hexdigest()[:8]}"


def pareto_file(track: str) -> str:
    """The track's Pareto plot, relative to the leaderboard's folder (POSIX, for links)."""
    return f"{FOLDER}/{_stem(track)}.png"


def samples_file(track: str) -> str:
    """The track's sample montage, relative to the leaderboard's folder (POSIX, for links)."""
    return f"{FOLDER}/{_stem(track)}-samples.png"


def pareto_front(points: Sequence[Point]) -> list[bool]:
    """Which points no other point beats: lower-or-equal ASR and higher-or-equal clean accuracy,
    better in at least one. Equal points are both on the front."""
    return [
        not any(
            other.asr <= point.asr
            and other.clean_acc >= point.clean_acc
            and (other.asr < point.asr or other.clean_acc > point.clean_acc)
            for other in points
        )
        for point in points
    ]


def _signed_sqrt(values: np.ndarray) -> np.ndarray:
    """The ASR axis' scale; signed, because the axis' margin reaches just below 0."""
    return np.sign(values) * np.sqrt(np.abs(values))


def _signed_square(values: np.ndarray) -> np.ndarray:
    return np.sign(values) * np.square(values)


def pareto_png(track: str, points: Sequence[Point]) -> bytes:
    """PNG of clean accuracy against ASR, points numbered in the given (table) order.

    Error bars are the 95% Wilson intervals; the Pareto front is a step line (the best clean
    accuracy reachable at each ASR) through its highlighted members; reference entries are
    squares. The legend, not the points, carries the names, so that close points stay legible,
    and ASR is on a square-root scale: working defenses crowd near 0 and the undefended BadNet
    sits near 1, so a linear axis would pile the interesting points on top of each other.
    """
    if not points:
        raise ValueError(f"track {track!r}: a Pareto plot needs at least one point")
    plt = pyplot()
    from matplotlib.lines import Line2D

    front = pareto_front(points)
    height = max(4.5, 1.2 + 0.2 * (len(points) + 1))  # room for one legend line per point
    figure = plt.figure(figsize=(8.5, height), dpi=DPI)
    axes = figure.add_axes((0.09, 0.12, 0.56, 0.8))
    asr = np.array([point.asr for point in points])
    clean = np.array([point.clean_acc for point in points])
    asr_ci = np.array([point.asr_ci for point in points]).T
    clean_ci = np.array([point.clean_acc_ci for point in points]).T
    axes.errorbar(
        asr,
        clean,
        xerr=[asr - asr_ci[0], asr_ci[1] - asr],
        yerr=[clean - clean_ci[0], clean_ci[1] - clean],
        fmt="none",
        ecolor="0.55",
        elinewidth=0.8,
        capsize=2,
        zorder=1,
    )
    members = sorted((p.asr, p.clean_acc) for p, on in zip(points, front, strict=True) if on)
    xs = [x for x, _ in members] + [1.0]  # the last member's accuracy holds up to ASR 1
    ys = [y for _, y in members] + [members[-1][1]]
    axes.step(xs, ys, where="post", color="tab:red", linewidth=1.2, alpha=0.6, zorder=2)
    handles = [Line2D([], [], color="tab:red", linewidth=1.2, alpha=0.6, label="Pareto front")]
    for number, (point, on) in enumerate(zip(points, front, strict=True), 1):
        style: dict[str, Any] = {
            "marker": "s" if point.reference else "o",
            "markersize": 7,
            "markerfacecolor": "tab:red" if on else "tab:blue",
            "markeredgecolor": "black" if on else "tab:blue",
            "linestyle": "none",
        }
        axes.plot(point.asr, point.clean_acc, zorder=3, **style)
        handles.append(Line2D([], [], label=f"{number}. {point.label}", **style))
    numbers: dict[tuple[float, float], list[str]] = {}
    for number, point in enumerate(points, 1):  # one label per spot: "1,2" for equal points
        numbers.setdefault((point.asr, point.clean_acc), []).append(str(number))
    for spot, labels in numbers.items():
        axes.annotate(
            ",".join(labels), spot, xytext=(5, 4), textcoords="offset points", fontsize=8
        )
    axes.set_xscale("function", functions=(_signed_sqrt, _signed_square))
    axes.set_xlim(-0.003, 1.08)
    axes.set_xticks(ASR_TICKS, [f"{tick:g}" for tick in ASR_TICKS])
    axes.set_xlabel("attack success rate, square-root scale (lower is better)")
    axes.set_ylabel("clean accuracy (higher is better)")
    axes.set_title(f"{track}: clean accuracy against ASR, 95% intervals", fontsize=10)
    axes.grid(True, color="0.9", linewidth=0.6)
    figure.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(0.67, 0.92),
        fontsize=8,
        frameon=False,
        title="red: on the Pareto front; squares: reference",
        title_fontsize=8,
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def _spread(count: int, wanted: int) -> np.ndarray:
    """``wanted`` indices spread evenly over ``count`` images (all of them if there are fewer)."""
    return np.unique(np.linspace(0, count - 1, min(count, wanted)).round().astype(int))


def write_samples(
    folder: Path, tracks: Sequence[Track], store: DataStore, per_set: int = SAMPLES_PER_SET
) -> None:
    """Write each track's montage (``plots/<track>-samples.png`` under ``folder``): a row of
    clean test images, then one row of each poisoned set, evenly spread over each file. A track
    of a public bundle has no test set, hence nothing to show."""
    for track in tracks:
        if track.test is None:
            continue
        sets = [("clean", store.get(track.test, track.num_classes))]
        sets += [
            (f"{spec.trigger} (target {spec.target})", store.get(spec.file, track.num_classes))
            for spec in track.poisoned
        ]
        rows = [data.images[_spread(len(data), per_set)] for _, data in sets]
        save_montage(rows, [name for name, _ in sets], folder / samples_file(track.name))
