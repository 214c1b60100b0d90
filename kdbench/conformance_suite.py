"""The tests ``pytest --kdbench-conformance`` runs: one per registered name and check.

Collected only through that option (see :mod:`kdbench.testing`); parametrised over the
installed plugins when the session starts, so a new plugin is checked without a new test.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest

from kdbench import conformance
from kdbench.plugins import Plugins

PARAMETRISED = ("datasets", "students", "teachers", "methods", "metrics", "executors")


@functools.cache
def _plugins() -> Plugins:
    return Plugins.load(strict=True)


def _names(config: pytest.Config, kind: str) -> list[str]:
    plugins = _plugins()
    only = set(config.getoption("kdbench_plugin") or [])
    table = plugins.table(kind)
    return sorted(name for name, entry in table.items() if not only or entry.plugin in only)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for kind in ("students", "methods", "metrics", "datasets"):
        if kind[:-1] in metafunc.fixturenames:
            metafunc.parametrize(kind[:-1], _names(metafunc.config, kind))
    if "params_of" in metafunc.fixturenames:
        cases = [(kind, name) for kind in PARAMETRISED for name in _names(metafunc.config, kind)
                 if _plugins().entry(kind, name).params is not None]
        metafunc.parametrize("params_of", cases, ids=[f"{k}:{n}" for k, n in cases])


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> Iterator[None]:
    """Checks are tiny: one intra-op thread, since two on a busy machine spin for seconds."""
    with conformance.one_thread():
        yield


@pytest.fixture(scope="session")
def conformance_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store for every parameter check: creating a SQLite store takes seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('kdbench-conformance') / 'mlflow.db'}"


def test_params_round_trip(params_of: tuple[str, str], conformance_store: str) -> None:
    kind, name = params_of
    conformance.check_params(kind, name, _plugins(), tracking_uri=conformance_store)


def test_model(student: str) -> None:
    conformance.check_model(student, plugins=_plugins())


def test_method(method: str) -> None:
    report = conformance.check_method(method, plugins=_plugins())
    assert report.checked


def test_metric(metric: str) -> None:
    conformance.check_metric(metric, _plugins())


def test_dataset(dataset: str, request: pytest.FixtureRequest) -> None:
    if not request.config.getoption("kdbench_datasets"):
        pytest.skip("datasets are built only with --kdbench-datasets")
    conformance.check_dataset(dataset, plugins=_plugins())
