"""The plugin system: built-ins through entry points, isolation of broken plugins, and a
third-party distribution installed for real."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import kdbench
from kdbench.errors import PluginError
from kdbench.plugins import Plugins

BUILTIN_METHODS = {"kd"}


def test_builtins_are_loaded_from_entry_points(plugins: Plugins) -> None:
    by_name = {i.name: i for i in plugins.infos}
    assert {"core", "zoo", "methods", "leaderboard"} <= set(by_name)
    assert all(i.distribution == "kdbench" and i.error is None for i in by_name.values()
               if i.name in {"core", "zoo", "methods", "leaderboard"})
    assert set(plugins.methods()) >= BUILTIN_METHODS
    assert {"mnist1d"} <= set(plugins.datasets())
    assert {"cnn1d", "cnn1d_small", "mlp"} <= set(plugins.students())
    assert {"top1", "agreement"} <= set(plugins.metrics())
    assert {"serial", "process"} <= set(plugins.executors())
    assert {"train", "checkpoint"} <= set(plugins.teachers())
    assert "mnist1d" in plugins.benchmarks()
    assert plugins.methods()["kd"].plugin == "methods"


def _module(name: str, **hooks: object) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, function in hooks.items():
        setattr(module, hook, kdbench.hookimpl(function))
    return module


def test_a_plugin_that_fails_to_register_is_named_and_skipped() -> None:
    def broken(register):
        raise RuntimeError("boom")

    bad = _module("bad_plugin", kdbench_methods=broken)
    with pytest.warns(UserWarning, match=r"plugin 'bad'.*failed to register: RuntimeError: boom"):
        plugins = Plugins.load(extra=[("bad", bad)])
    assert "kd" in plugins.methods()
    assert next(i for i in plugins.infos if i.name == "bad").error
    with pytest.raises(PluginError, match=r"plugin 'bad'.*boom"):
        Plugins.load(strict=True, extra=[("bad", bad)])


def test_two_plugins_cannot_register_the_same_name() -> None:
    from kdbench_methods.kd import KD

    clash = _module("clash", kdbench_methods=lambda register: register("kd", KD))
    for strict in (True, False):  # a conflict is never just a warning
        with pytest.raises(PluginError, match=r"method 'kd' is registered by both plugin 'methods' "
                           r"\(kdbench [\d.]+\) and plugin 'x' \(local\); keep one by disabling "
                           r"the other: --disable-plugin x \(or methods\)"):
            Plugins.load(strict=strict, extra=[("x", clash)])


def test_a_plugin_that_fails_halfway_contributes_nothing() -> None:
    from kdbench_methods.kd import KD

    def register_then_fail(register):
        register("kd-copy", KD)
        register("", KD)  # invalid: no name

    def conflict_second(register):
        register("kd-other", KD)
        register("kd", KD)

    half = _module("half", kdbench_methods=register_then_fail,
                   kdbench_metrics=lambda register: register("half-metric", len))
    with pytest.warns(UserWarning, match=r"plugin 'half'.*failed to register"):
        plugins = Plugins.load(extra=[("half", half)])
    assert "kd-copy" not in plugins.methods() and "half-metric" not in plugins.metrics()
    assert plugins.registered_by("half") == {}

    with pytest.raises(PluginError, match="'kd' is registered by both"):
        Plugins.load(extra=[("second", _module("second", kdbench_methods=conflict_second))])


def test_event_hook_failures_do_not_stop_the_others() -> None:
    seen = []

    class Good:
        @kdbench.hookimpl
        def kdbench_run_start(self, run):
            seen.append(run)

    class Bad:
        @kdbench.hookimpl
        def kdbench_run_start(self, run):
            raise ValueError("nope")

    plugins = Plugins.load()
    plugins.register_observer(Bad(), "bad")
    plugins.register_observer(Good(), "good")
    with pytest.warns(UserWarning, match="'bad' failed in kdbench_run_start"):
        plugins.run_start("r")
    assert seen == ["r"]


THIRD_PARTY = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "kdbench-extra-method"
        version = "1.2.3"
        [project.entry-points.kdbench]
        extra = "kdbench_extra"
        [tool.setuptools]
        py-modules = ["kdbench_extra"]
    """,
    "kdbench_extra.py": '''
        """A third party's method: KD on logits with a squared-error loss."""
        from dataclasses import dataclass

        import torch.nn.functional as F

        import kdbench
        from kdbench.method import Method


        @dataclass(frozen=True)
        class Params:
            beta: float = 1.0


        class LogitMSE(Method):
            """Ba and Caruana 2014: regress the teacher's logits."""

            name = "logit-mse"
            Params = Params
            teacher_needs = None

            def loss(self, s, t, y, idx):
                return {"ce": F.cross_entropy(s.logits, y),
                        "mse": self.params.beta * F.mse_loss(s.logits, t.logits)}


        @kdbench.hookimpl
        def kdbench_methods(register):
            register("logit-mse", LogitMSE)
    ''',
}


@pytest.fixture(scope="module")
def third_party(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A separate distribution, built and pip-installed into its own target directory."""
    root = tmp_path_factory.mktemp("third-party")
    source = root / "src"
    source.mkdir()
    for name, text in THIRD_PARTY.items():
        (source / name).write_text(textwrap.dedent(text))
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(target), str(source)],
                   check=True, capture_output=True)
    return target


def _kdbench(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "kdbench.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_an_installed_distribution_adds_a_method(third_party: Path, tiny: Path,
                                                 tmp_path: Path) -> None:
    listed = _kdbench(["plugins"], third_party, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "extra  (kdbench-extra-method 1.2.3; kdbench_extra)" in listed.stdout
    assert "methods: logit-mse" in listed.stdout

    bench = tiny.read_text().replace("[methods.kd]", "[methods.logit-mse]\nbeta = 0.5\n\n[methods.kd]")
    tiny.write_text(bench)
    ran = _kdbench(["run", str(tiny), "--seeds", "1", "--methods", "logit-mse"], third_party,
                   tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "logit-mse" in ran.stdout
    assert "kd " not in ran.stdout.split("baseline")[-1]


def test_without_the_distribution_the_method_is_unknown(tiny: Path, tmp_path: Path) -> None:
    tiny.write_text(tiny.read_text().replace("[methods.kd]", "[methods.logit-mse]"))
    ran = _kdbench(["run", str(tiny), "--seeds", "1"], tmp_path / "empty", tmp_path)
    assert ran.returncode == 2
    assert ran.stderr.strip().count("\n") == 0
    assert "unknown method 'logit-mse'" in ran.stderr and "installed: " in ran.stderr and "kd" in ran.stderr


CLASH = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "kdbench-clash"
        version = "0.3.0"
        [project.entry-points.kdbench]
        clash = "kdbench_clash"
        [tool.setuptools]
        py-modules = ["kdbench_clash"]
    """,
    "kdbench_clash.py": '''
        """A third party that also calls its method "kd"."""
        import kdbench
        from kdbench_methods.kd import KD


        class KDPlus(KD):
            name = "kd-plus"


        @kdbench.hookimpl
        def kdbench_methods(register):
            register("kd-plus", KDPlus)
            register("kd", KD)
    ''',
}


def install(root: Path, files: dict[str, str]) -> Path:
    """Build the distribution made of ``files`` and pip-install it into ``root/site``."""
    source = root / "src"
    source.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (source / name).write_text(textwrap.dedent(text))
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade",
                    "--no-build-isolation", "--no-index", "--target", str(target), str(source)],
                   check=True, capture_output=True)
    return target


def test_two_distributions_registering_one_name_stop_kdbench_until_one_is_disabled(
        tmp_path_factory: pytest.TempPathFactory, tiny: Path, tmp_path: Path) -> None:
    site = install(tmp_path_factory.mktemp("clash"), CLASH)
    for command in (["run", str(tiny), "--seeds", "1", "--methods", "kd"], ["plugins"]):
        ran = _kdbench(command, site, tmp_path)
        assert ran.returncode == 2, ran.stdout + ran.stderr
        assert ran.stderr.strip().count("\n") == 0, ran.stderr
        assert ran.stderr.startswith("kdbench: error: method 'kd' is registered by both "
                                     "plugin 'clash' (kdbench-clash 0.3.0) and plugin 'methods' "
                                     "(kdbench 0.1.0)"), ran.stderr
        assert "--disable-plugin methods (or clash)" in ran.stderr
        assert "KDBENCH_DISABLE_PLUGINS" in ran.stderr
    assert not (tmp_path / "leaderboard").exists()

    # Disabling the built-in methods picks the third party's "kd": its other name comes along.
    listed = _kdbench(["plugins", "--disable-plugin", "methods"], site, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "methods: kd, kd-plus" in listed.stdout
    assert "DISABLED" in listed.stdout.split("methods  (kdbench")[1]

    ran = _kdbench(["run", str(tiny), "--seeds", "1", "--methods", "kd", "--disable-plugin",
                    "clash"], site, tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert re.search(r"^1\s+kd\s", ran.stdout, re.MULTILINE), ran.stdout

    env = {**os.environ, "KDBENCH_DISABLE_PLUGINS": "clash", "PYTHONPATH": str(site)}
    typo = subprocess.run([sys.executable, "-m", "kdbench.cli", "plugins", "--disable-plugin",
                           "clsh"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert typo.returncode == 2 and "no plugin named clsh; installed: clash, " in typo.stderr, \
        typo.stderr


HALF = {
    "pyproject.toml": CLASH["pyproject.toml"].replace("kdbench-clash", "kdbench-half").replace(
        "0.3.0", "0.1.0").replace("clash", "half"),
    "kdbench_half.py": '''
        """A plugin whose second registration is invalid."""
        import kdbench
        from kdbench_methods.kd import KD


        @kdbench.hookimpl
        def kdbench_methods(register):
            register("half-kd", KD)
            register("half-broken", KD, params=dict)  # not a dataclass


        @kdbench.hookimpl
        def kdbench_metrics(register):
            register("half-metric", len)
    ''',
}


def test_an_installed_plugin_failing_halfway_registers_nothing(
        tmp_path_factory: pytest.TempPathFactory, tiny: Path, tmp_path: Path) -> None:
    site = install(tmp_path_factory.mktemp("half"), HALF)
    listed = _kdbench(["plugins"], site, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "half  (kdbench-half 0.1.0; kdbench_half)\n  FAILED: failed to register" in listed.stdout
    assert "params of method 'half-broken' must be a dataclass" in listed.stdout
    assert "half-kd" not in listed.stdout and "half-metric" not in listed.stdout
    assert "plugin 'half' (kdbench-half 0.1.0) failed to register" in listed.stderr

    tiny.write_text(tiny.read_text().replace("[methods.kd]", "[methods.half-kd]"))
    ran = _kdbench(["run", str(tiny), "--seeds", "1"], site, tmp_path)
    assert ran.returncode == 2 and "unknown method 'half-kd'" in ran.stderr, ran.stderr
    strict = _kdbench(["plugins", "--strict-plugins"], site, tmp_path)
    assert strict.returncode == 2 and "kdbench-half" in strict.stderr
