"""The conformance kit: every built-in passes it, and it catches the breaches it names."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import kdbench
from kdbench import conformance
from kdbench.method import Method
from kdbench.plugins import Plugins


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('conformance') / 'mlflow.db'}"


pytestmark = pytest.mark.usefixtures("one_thread")


BUILTIN = Plugins.load(strict=True)


@pytest.mark.parametrize("name", sorted(BUILTIN.methods()))
def test_every_builtin_method_conforms(name: str, plugins: Plugins) -> None:
    report = conformance.check_method(name, plugins=plugins)
    assert report.checked and report.terms


# torchvision's classifiers share their code within a family: the suite checks the smallest
# of each (building the 100M-parameter ones costs minutes here); `pytest
# --kdbench-conformance` checks them all.
TORCHVISION_CHECKED = {"tv:resnet18", "tv:resnext50_32x4d", "tv:wide_resnet50_2", "tv:vgg11",
                       "tv:vgg11_bn", "tv:mobilenet_v2", "tv:mobilenet_v3_small",
                       "tv:efficientnet_b0", "tv:efficientnet_v2_s"}
MODELS = sorted(n for n in BUILTIN.students() if not n.startswith("tv:") or n in TORCHVISION_CHECKED)


@pytest.mark.parametrize("name", MODELS)
def test_every_builtin_model_conforms(name: str, plugins: Plugins) -> None:
    conformance.check_model(name, plugins=plugins)


@pytest.mark.parametrize("name", sorted(BUILTIN.metrics()))
def test_every_builtin_metric_conforms(name: str, plugins: Plugins) -> None:
    conformance.check_metric(name, plugins)


def test_a_torchvision_family_is_checked_for_each_registered_one() -> None:
    families = {n.rstrip("0123456789_bnxd").split("_")[0] for n in BUILTIN.students()
                if n.startswith("tv:")}
    checked = {n.rstrip("0123456789_bnxd").split("_")[0] for n in TORCHVISION_CHECKED}
    assert families <= checked, families - checked


def test_every_builtin_parameter_set_round_trips(plugins: Plugins, store: str) -> None:
    checked = 0
    for kind in ("datasets", "students", "teachers", "methods", "metrics", "executors"):
        for name, entry in plugins.table(kind).items():
            if entry.params is not None:
                conformance.check_params(kind, name, plugins, tracking_uri=store)
                checked += 1
    assert checked > 20


def test_the_built_in_digits_dataset_conforms(plugins: Plugins, cache_dir: Path) -> None:
    info = conformance.check_dataset("digits", cache_dir=cache_dir / "data", plugins=plugins)
    assert info.num_classes == 10


# The kit catches what it promises to catch -----------------------------------------------


@dataclass(frozen=True)
class _P:
    T: float = 4.0


class _Detached(Method):
    """Detaches the student's logits: a loss that can never train the student."""

    name = "detached"
    Params = _P

    def loss(self, s, t, y, idx):
        return {"ce": F.cross_entropy(s.logits.detach(), y) + 0 * s.logits.sum()}


class _NotADict(Method):
    name = "tensor"

    def loss(self, s, t, y, idx):
        return F.cross_entropy(s.logits, y)


class _Unused(Method):
    """Builds a connector its loss never uses."""

    name = "unused"

    def build(self, student, teacher, info):
        self.head = torch.nn.Linear(3, 3)
        return self.head


class _Plugin:
    @staticmethod
    @kdbench.hookimpl
    def kdbench_methods(register) -> None:
        for method in (_Detached, _NotADict, _Unused):
            register(method.name, method)


@pytest.fixture(scope="module")
def broken() -> Plugins:
    return Plugins.load(strict=True, extra=[("broken", _Plugin)])


@pytest.mark.parametrize(("name", "says"), [
    ("detached", "no gradient to the student"),
    ("tensor", "returned a scalar tensor"),
    ("unused", "never train"),
])
def test_the_kit_names_each_breach(broken: Plugins, name: str, says: str) -> None:
    with pytest.raises(conformance.Nonconformance, match=says):
        conformance.check_method(name, plugins=broken)


def test_a_model_without_taps_is_refused() -> None:
    from kdbench.data import DataInfo

    info = DataInfo((40,), 10, 8)
    bare = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, info.num_classes))
    with pytest.raises(conformance.Nonconformance, match="no `taps` attribute"):
        conformance._check_built("model 'bare'", bare, info)


def test_pytest_option_runs_the_kit_for_one_plugin(tmp_path: Path) -> None:
    """`pytest --kdbench-conformance` collects the suite from the installed package."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--kdbench-conformance", "--kdbench-plugin", "core",
         "-q", "-p", "no:cacheprovider", "-k", "metric"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary, summary
    assert int(summary.split(" passed")[0].split()[-1]) >= 3, summary
