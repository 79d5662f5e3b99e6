"""The table of ``python -m harness bench`` (:mod:`harness.bench.inference`)."""

from __future__ import annotations

from harness.bench import inference as bench


def test_item_table_rates_the_cold_and_the_warm_item_against_the_raw_loop() -> None:
    """A submission's first item pays its worker's start-up; its later items, answered by the
    same worker, are rated on their own row."""
    result = bench.Result(track="t", model="m.h5", images=1000, grader_rss=1 << 29,
                          worker_rss=1 << 30)
    result.raw.add(1000.0, 1.0)
    result.steady.add(900.0, 1000 / 900)
    result.item.add(500.0, 2.0)
    result.warm.add(880.0, 1000 / 880)
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in bench.table(result).splitlines() if line.startswith("| ")}
    assert rows["grader item: worker start-up + inference + scoring"][3] == "0.50"
    assert rows["grader item, warm worker (a submission's later tracks)"][3:] == ["0.88", "0.88"]
    assert rows["warm item wall time (median)"] == ["1.14 s"]
