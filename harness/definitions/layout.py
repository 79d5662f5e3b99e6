"""The layout of a benchmark folder, and where the embedded one is.

Every command that reads or writes a benchmark (loading it, building the embedded one, exporting
the public bundle, resolving environments) names its files through these, so the layout is said
once, by the package that describes a benchmark.
"""

from __future__ import annotations

from pathlib import Path

META = "benchmark.toml"
"""The benchmark's name, whether it is a public bundle, and the recipe that regenerates its
data."""
TRACKS_DIR = "tracks"
"""One ``<track>.toml`` per track."""
ENVIRONMENTS_DIR = "environments"
"""The named environments a benchmark provides (``<name>.txt``)."""
CONSTRAINTS = "constraints.txt"
"""The organizers' constraints, in the environments folder, applied to every build."""

EMBEDDED = Path(__file__).resolve().parents[2] / "data"
"""The embedded benchmark in the checkout the package runs from."""


def default_benchmark() -> Path:
    """The benchmark a command uses when none is named: the embedded one, else ``data/`` of the
    working directory (an installed package has no checkout beside it)."""
    return EMBEDDED if (EMBEDDED / TRACKS_DIR).is_dir() else Path("data")
