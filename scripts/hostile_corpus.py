"""Time the hostile corpus graded with the grader's limits: what a broken entry costs.

Lays out the corpus exactly as tests/sandbox/test_sandbox.py grades it (tests/hostile/, a Lambda
model, two good scripts and the BadNet, on the tiny benchmark's sunglasses track), grades it with
``python -m harness grade`` serially and without a cache, and prints the run's wall time and
each entry's row and seconds (from ``timings.json``). The tests grade it with short limits; this
uses the defaults unless told otherwise.

Usage: python scripts/hostile_corpus.py [--image-timeout S] [--track-timeout S] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.definitions.tracks import load_benchmark  # noqa: E402
from harness.sandbox.isolation import Limits  # noqa: E402
from harness.synthetic.build import build  # noqa: E402
from tests.conftest import benchmark_subset  # noqa: E402 - the tests' own helpers
from tests.sandbox.test_sandbox import lay_out_corpus  # noqa: E402


def closed_port() -> int:
    """A loopback port nobody listens on: the socket entry's connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-timeout", type=float, default=Limits.image_timeout)
    parser.add_argument("--track-timeout", type=float, default=Limits.track_timeout)
    parser.add_argument("--keep", type=Path, help="lay out and grade here, and keep it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="harness-hostile-"))
    try:
        tiny = root / "tiny"
        build(scale="tiny", out=tiny, verbose=0)
        bench = benchmark_subset(tiny, root / "benchmark", ["sunglasses"])
        subs = root / "submissions"
        lay_out_corpus(subs, load_benchmark(bench).track("sunglasses").badnet,
                       [root / "escape.txt"], closed_port(), root / "secret.txt")
        command = [sys.executable, "-m", "harness", "grade", "submissions", "--benchmark",
                   str(bench), "--out", "out", "--no-cache", "-q",
                   "--image-timeout", str(args.image_timeout),
                   "--track-timeout", str(args.track_timeout)]
        print("$ " + " ".join(command), flush=True)
        start = time.perf_counter()
        subprocess.run(command, cwd=root, check=False, capture_output=True)
        wall = time.perf_counter() - start
        records = json.loads((root / "out" / "results.json").read_text())["results"]
        seconds = {item["submission"]: item["seconds"] for item in
                   json.loads((root / "out" / "timings.json").read_text())["items"]}
        print(f"{len(records)} entries graded in {wall:.1f} s (limits: {args.image_timeout:g} s "
              f"per image, {args.track_timeout:g} s per track)\n")
        print("| entry | seconds | row |\n|---|---:|---|")
        for record in sorted(records, key=lambda record: -seconds[record["submission"]]):
            row = (record["error"] or "")[:90] if record["status"] == "error" else (
                f"clean {record['clean_acc']:.3f}, ASR {record['asr']:.3f}")
            print(f"| {record['submission']} | {seconds[record['submission']]:.1f} | {row} |")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
