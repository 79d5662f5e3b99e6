"""Pareto plots and sample montages: the front, file names, and byte-identical PNGs."""

from pathlib import Path

import numpy as np
import pytest

from harness.definitions.data import ContestSet
from harness.definitions.tracks import DataFile, PoisonedSet, Track
from harness.render import plots
from harness.render.plots import Point, pareto_front, pareto_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def point(label: str, asr: float, clean_acc: float, reference: bool = False) -> Point:
    return Point(label, reference, asr, (max(0.0, asr - 0.01), min(1.0, asr + 0.02)),
                 clean_acc, (clean_acc - 0.01, min(1.0, clean_acc + 0.01)))


POINTS = [
    point("fine-pruning", 0.03, 0.95),
    point("pruning", 0.02, 0.93),   # on the front: lower ASR than fine-pruning
    point("fine-tuning", 0.05, 0.94),  # dominated by fine-pruning
    point("twin", 0.05, 0.94),  # equal to fine-tuning: dominated alike
    point("strip", 0.0, 0.90),
    point("no-defense", 1.0, 0.98, reference=True),
]


def test_pareto_front_keeps_the_undominated_points() -> None:
    assert pareto_front(POINTS) == [True, True, False, False, True, True]


def test_equal_points_share_the_front() -> None:
    assert pareto_front([point("a", 0.1, 0.9), point("b", 0.1, 0.9)]) == [True, True]
    assert pareto_front([point("only", 0.5, 0.5)]) == [True]


def test_pareto_png_is_byte_identical_across_renders() -> None:
    first = pareto_png("sunglasses", POINTS)
    assert first.startswith(PNG_SIGNATURE)
    assert pareto_png("sunglasses", POINTS) == first
    assert b"matplotlib" not in first  # no Software chunk naming the version
    assert pareto_png("sunglasses", POINTS[:-1]) != first


def test_pareto_png_needs_a_point() -> None:
    with pytest.raises(ValueError, match="at least one point"):
        pareto_png("sunglasses", [])


def test_file_names_are_the_track_names_where_safe() -> None:
    assert plots.pareto_file("sunglasses") == "plots/sunglasses.png"
    assert plots.samples_file("multi_trigger-2.b") == "plots/multi_trigger-2.b-samples.png"


def test_unsafe_track_names_get_distinct_safe_file_names() -> None:
    names = [plots.pareto_file(track) for track in ("a b", "a_b", "a/b", "../a b", ".hidden")]
    assert len(set(names)) == len(names)
    for name in names:
        stem = name.removeprefix("plots/")
        assert "/" not in stem and " " not in stem and not stem.startswith(".")


class FakeStore:
    """Hands out synthetic sets by file name, like the DataStore the plugin holds."""

    def __init__(self, sets: dict[str, np.ndarray]) -> None:
        self.sets = sets

    def get(self, spec: DataFile, num_classes: int) -> ContestSet:
        images = self.sets[spec.path.name]
        return ContestSet(spec.path, images, np.zeros(len(images), np.int64), "0" * 64)


def track(name: str) -> Track:
    return Track(
        name=name, description="", badnet=Path("badnet.h5"), input_scale=1.0, num_classes=3,
        validation=DataFile(Path("validation.h5")), test=DataFile(Path("clean.h5")),
        poisoned=(PoisonedSet("sunglasses", 0, DataFile(Path("sunglasses.h5"))),
                  PoisonedSet("lipstick", 2, DataFile(Path("lipstick.h5")))),
        source=Path(f"{name}.toml"),
    )


def test_write_samples_writes_one_identical_montage_per_track(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    store = FakeStore({name: rng.integers(0, 256, (n, 55, 47, 3), dtype=np.uint8)
                       for name, n in [("clean.h5", 30), ("sunglasses.h5", 20),
                                       ("lipstick.h5", 5)]})
    plots.write_samples(tmp_path / "a", [track("one"), track("two")], store)
    plots.write_samples(tmp_path / "b", [track("one")], store)
    written = sorted(p.name for p in (tmp_path / "a" / "plots").iterdir())
    assert written == ["one-samples.png", "two-samples.png"]
    first = (tmp_path / "a" / "plots" / "one-samples.png").read_bytes()
    assert first.startswith(PNG_SIGNATURE)
    assert (tmp_path / "b" / "plots" / "one-samples.png").read_bytes() == first


def test_samples_are_spread_over_the_file() -> None:
    assert plots._spread(30, 8).tolist() == [0, 4, 8, 12, 17, 21, 25, 29]
    assert plots._spread(5, 8).tolist() == [0, 1, 2, 3, 4]
