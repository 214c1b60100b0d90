"""The conformance kit for plugin authors, as a pytest plugin (registered through ``pytest11``).

Check every installed plugin, or one, against the contract before a long sweep::

    pytest --kdbench-conformance                      # every registered name of every plugin
    pytest --kdbench-conformance --kdbench-plugin my_plugin   # one entry point's names only

or call the checks from a plugin's own tests::

    from kdbench.testing import check_method, check_model

    def test_my_method_keeps_the_contract():
        report = check_method("my-method")
        assert report.checked            # the built-in pairs it accepted

The checks themselves, and what each one proves, are in :mod:`kdbench.conformance`.
Importing this module is cheap (pytest loads it in every session of an environment where
kdbench is installed): torch is imported only when a check runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from kdbench.conformance import check_dataset, check_method, check_metric, check_model, check_params

SUITE = Path(__file__).with_name("conformance_suite.py")

__all__ = ["check_dataset", "check_method", "check_metric", "check_model", "check_params"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from kdbench import conformance

        return getattr(conformance, name)
    raise AttributeError(name)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kdbench", "kdbench plugin conformance")
    group.addoption("--kdbench-conformance", action="store_true", default=False,
                    help="check every installed kdbench plugin against the plugin contract")
    group.addoption("--kdbench-plugin", action="append", default=[], metavar="NAME",
                    help="with --kdbench-conformance: only the names this plugin registers "
                         "(its entry-point name, as `kdbench plugins` lists it; repeatable)")
    group.addoption("--kdbench-datasets", action="store_true", default=False,
                    help="with --kdbench-conformance: also build every dataset (slow for "
                         "large ones; a dataset whose files are missing fails)")


def pytest_configure(config: pytest.Config) -> None:
    # The suite is a module inside the package: naming its path among the session's
    # arguments collects it whatever the rootdir or the python_files patterns. Without
    # explicit paths the option runs the suite alone, not the current folder's tests too.
    if not config.getoption("kdbench_conformance") or str(SUITE) in config.args:
        return
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        config.args.append(str(SUITE))
    else:
        config.args[:] = [str(SUITE)]
