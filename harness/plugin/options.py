"""The plugin's options: each of the grading options (:mod:`harness.options`) as
``--harness-NAME``, so that they never clash with pytest's or another plugin's."""

from __future__ import annotations

import pytest

from harness.options import OPTIONS, PREFIX


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "backdoor-grader")
    for option in OPTIONS:
        group.addoption(PREFIX + option.name, dest=option.plugin_dest, **option.kwargs())
