"""Grading as a pytest plugin (``-p harness.plugin``): one test item per submission x track.

pytest already solves collection, selection (``-k``), stopping early (``-x``), reporting and
JUnit XML; the grader only teaches it that a ``submission.toml`` is a file of tests, one per track
of the benchmark. Records of every item (passed or failed) are kept, and the leaderboard is
rendered from them when the session ends.

As pytest's own features are, the grader is a few small plugins, each with its state under a
``StashKey`` on ``config.stash``; this module only loads them.
"""

pytest_plugins = [  # in import order: pytest rewrites their asserts only if it imports them
    "harness.plugin.options",
    "harness.plugin.session",
    "harness.plugin.reuse",
    "harness.plugin.results",
    "harness.plugin.progress",
    "harness.plugin.collection",
]
