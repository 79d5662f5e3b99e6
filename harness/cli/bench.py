"""``python -m harness bench``: the grader's speed against a raw TensorFlow loop, or a whole
grading run against its floor (``--end-to-end``); the measuring is :mod:`harness.bench`'s."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.bench.end_to_end import end_to_end, end_to_end_header, end_to_end_table
from harness.bench.inference import DEFAULT_TRACK, header, measure, table
from harness.cli import benchmark_folder, submissions_folder
from harness.definitions.tracks import load_benchmark
from harness.errors import UsageError, positive_int
from harness.nets.quiet import import_tensorflow
from harness.options import BENCHMARK, add_arguments
from harness.synthetic.materialize import generate_missing


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser(
        "bench", help="measure grading speed against a raw TensorFlow loop",
        description="Time the grader's inference path (sandboxed worker) and a raw tf.function "
                    "loop on the same model and images, alternating, and print a table. With "
                    "--end-to-end: grade SUBMISSIONS with the real command (fresh --out, "
                    "--no-cache), then time the raw loop on a track's BadNet, and print the "
                    "run's wall time against its floor (its multiply-adds at the raw loop's "
                    "pace) and where the wall time went.")
    bench.add_argument("submissions", nargs="?", metavar="SUBMISSIONS",
                       help="with --end-to-end: the folder to grade (default: submissions)")
    bench.add_argument("--end-to-end", action="store_true",
                       help="time a whole grading run of SUBMISSIONS against its floor")
    add_arguments(bench, (BENCHMARK,))
    bench.add_argument("--track", help="track whose test images to answer (default: "
                                       "sunglasses; with --end-to-end: whose BadNet the raw "
                                       "loop runs, sunglasses or the first with a BadNet row)")
    bench.add_argument("--model", help="Keras model file (default: the track's BadNet)")
    bench.add_argument("--rounds", type=int, default=3,
                       help="rounds of each (default 3); with --end-to-end: raw loop passes, the "
                            "best counts")
    bench.add_argument("-n", "--numprocesses", metavar="K", type=int, default=0,
                       help="with --end-to-end: grade in K processes (grade -n K)")
    bench.add_argument("--sample", metavar="K", type=positive_int,
                       help="with --end-to-end: grade K images per test set (grade --sample K)")
    bench.set_defaults(run=run)


def run(args: argparse.Namespace, passthrough: list[str]) -> int:
    if not args.end_to_end:
        used = [flag for flag, value in (("SUBMISSIONS", args.submissions),
                                         ("-n", args.numprocesses), ("--sample", args.sample))
                if value]
        if used:
            raise UsageError(f"{', '.join(used)}: only with --end-to-end")
    elif args.model:
        raise UsageError("--model: not with --end-to-end (it grades a folder)")
    track = args.track or (None if args.end_to_end else DEFAULT_TRACK)
    benchmark = load_benchmark(benchmark_folder(args))
    if track is not None:
        benchmark.track(track)
    if args.end_to_end:
        submissions = submissions_folder(args.submissions or "submissions")
        import_tensorflow()
        whole = end_to_end(benchmark_folder(args), submissions, track, args.numprocesses,
                           args.sample, args.rounds)
        print()
        print(end_to_end_header(whole))
        print()
        print(end_to_end_table(whole))
        return 0
    generate_missing(benchmark)
    import_tensorflow()
    model = Path(args.model) if args.model else None
    result = measure(benchmark, track or DEFAULT_TRACK, model, rounds=args.rounds)
    print()
    print(header(result, args.rounds))
    print()
    print(table(result))
    return 0
