"""Plugins registered by reference (``kdbench.registry.Lazy``): loading them imports no torch,
and every reference names what the modules define."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kdbench.errors import PluginError
from kdbench.plugins import Plugins
from kdbench.registry import Lazy, Registry


def test_loading_the_plugins_imports_no_torch() -> None:
    code = ("import sys; from kdbench.plugins import Plugins; p = Plugins.load(strict=True); "
            "assert 'kd' in p.methods() and 'resnet8' in p.students(); "
            "print(sorted(m for m in ('torch', 'torchvision', 'scipy', 'mlflow', 'sklearn') "
            "if m in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "[]"


def test_the_name_tables_match_the_modules(plugins: Plugins) -> None:
    from kdbench_methods import plugin as methods
    from kdbench_zoo import plugin as zoo
    from kdbench_zoo import resnet_cifar, torchvision_models, vgg, vision, wrn

    assert {cls.name: cls.__name__ for cls in methods.methods()} == methods.CLASSES
    assert tuple(vision.STANDARD) == zoo.VISION
    assert tuple(resnet_cifar.MODELS) == zoo.RESNETS
    assert (tuple(wrn.MODELS), tuple(vgg.MODELS)) == (zoo.WRNS, zoo.VGGS)
    # The installed torchvision's list: a newer torchvision with more models fails here.
    assert tuple(torchvision_models.names()) == zoo.TORCHVISION


def test_every_reference_resolves(plugins: Plugins) -> None:
    for kind, table in plugins.registry.tables.items():
        for entry in table.values():
            assert entry.factory is not None, (kind, entry.name)
            entry.params  # noqa: B018 (a dataclass or None, else PluginError)
    assert plugins.entry("methods", "kd").factory.__name__ == "KD"
    assert plugins.entry("students", "wrn_16_2").factory(
        None, _info()).taps.stages  # a closure of the table, built
    assert plugins.entry("metrics", "prec10").factory(None).name == "prec10"


def _info():
    from kdbench.data import DataInfo

    return DataInfo(input_shape=(3, 32, 32), num_classes=10, num_train=100)


def test_a_broken_reference_is_one_line_naming_the_plugin() -> None:
    registry = Registry()
    registry.callback("methods", "mine")("nope", "my_pkg.missing:Nope")
    entry = registry.get("methods", "nope")  # registering imported nothing
    with pytest.raises(PluginError, match=r"plugin 'mine' registered method 'nope' as "
                       r"'my_pkg.missing:Nope', which cannot be loaded: ModuleNotFoundError"):
        entry.factory  # noqa: B018
    assert Lazy("kdbench.retrieval:BUILTIN", "map").resolve()(None).name == "map"
    with pytest.raises(PluginError, match="not a 'module:attribute' reference"):
        Lazy("kdbench.retrieval").resolve()


def test_a_description_is_text_never_a_reference() -> None:
    """A description given at registration reads back as given (a colon in it does not make
    it a 'module:attribute' reference); without one, the factory's first docstring line."""
    registry = Registry()
    register = registry.callback("methods", "mine")

    def factory() -> None:
        """Mine: a method of my own.

        More words."""

    register("said", factory, None, "A description: with a colon")
    register("unsaid", factory)
    table = registry.tables["methods"]
    assert table["said"].description == "A description: with a colon"
    assert table["unsaid"].description == "Mine: a method of my own."
