"""Measuring the grader: its inference path against a raw TensorFlow loop
(:mod:`~harness.bench.inference`), a whole grading run against its arithmetic floor
(:mod:`~harness.bench.end_to_end`), and what the processes under it use
(:mod:`~harness.bench.processes`). ``python -m harness bench`` prints them."""
