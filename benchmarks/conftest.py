"""Benchmarks run in one process, one after another, whatever the test suite's options.

The plain test command distributes the tests over the cores (``-n auto`` in pyproject's
``addopts``, pytest-xdist); a timed benchmark must not share the machine with another test,
and pytest-benchmark disables itself under xdist. This conftest is loaded first when a
benchmark path is named on the command line, so it turns the distribution off there.
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    if hasattr(config.option, "numprocesses"):
        config.option.numprocesses = 0
