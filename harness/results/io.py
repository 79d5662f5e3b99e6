"""``results.json`` on disk, and the atomic write every output goes through.

Outputs are byte-for-byte reproducible (sorted records, sorted keys, floats rounded to 6
decimals, no timestamps) so that results can be committed, diffed and rendered again; each file
is written in one atomic step, so that a crash never leaves a half-written file where a reader
expects a complete one.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import __version__
from harness.errors import HarnessError, clipped
from harness.results.ranking import canonical
from harness.results.record import Record, check_benchmark, check_records, from_json, rounded


def write_atomic(path: str | os.PathLike[str], content: str | bytes) -> None:
    """Write ``content`` to ``path`` so that readers see the old file or the new one, never a mix.

    The temporary file lives in the same folder (``os.replace`` is only atomic within one file
    system) and is created with ``open(..., "x")`` so that it gets the usual umask permissions.
    """
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    try:
        with open(temporary, "xb") as handle:
            handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_results(
    path: str | os.PathLike[str],
    benchmark: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
) -> None:
    """Write ``results.json``: identical benchmark and records give identical bytes."""
    check_records(check_benchmark(benchmark), records)
    payload = {
        "benchmark": rounded(benchmark),
        "harness_version": __version__,
        "results": canonical(records),
    }
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n")


def _no_constant(name: str) -> Any:
    """JSON has no NaN or infinity; Python's reader takes them unless told not to."""
    raise ValueError(f"{name} is not a JSON number")


def read_results(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[Record]]:
    """Read ``results.json`` back as ``(benchmark, records)``, every field checked like freshly
    made records and every rate against the outcomes it came from
    (:func:`harness.results.record.check_records`): a crafted or damaged file is one
    HarnessError, on one line, whatever it holds."""
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"),
                             parse_constant=_no_constant)
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: also not UTF-8
        raise HarnessError(clipped(f"cannot read results file {path}: {exc}", 500)) from None
    if not isinstance(payload, dict) or not {"benchmark", "results"} <= payload.keys():
        raise HarnessError(f"{path} is not a results file: it lacks 'benchmark' or 'results'")
    benchmark, records = payload["benchmark"], payload["results"]
    try:
        return benchmark, from_json(benchmark, records)
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise HarnessError(clipped(f"invalid results file {path}: {exc}", 500)) from None
