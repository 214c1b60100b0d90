"""Registers the built-in methods, one module per paper: the :class:`~kdbench.method.Method`
subclass of each, by reference (:class:`~kdbench.registry.Lazy`), so that loading the
plugins imports no method module and no torch; a benchmark imports the ones it uses."""

from __future__ import annotations

import kdbench
from kdbench.registry import Register

CLASSES = {"ab": "AB", "at": "AT", "cc": "CC", "crd": "CRD", "dist": "DIST", "dkd": "DKD",
           "dml": "DML", "fitnet": "FitNet", "fsp": "FSP", "ft": "FT", "kd": "KD",
           "kdsvd": "KDSVD", "nst": "NST", "pkt": "PKT", "rkd": "RKD", "sp": "SP", "vid": "VID",
           "zskd": "ZSKD"}
"""Each method's name (its module's) and its class. ``tests/test_plugins.py`` checks this
table against the Method subclasses the package's modules define."""


def methods() -> list[type]:
    """Every Method subclass defined in a module of this package (imports them all)."""
    import importlib
    import inspect
    import pkgutil

    from kdbench.method import Method

    found = []
    package = importlib.import_module(__package__)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name == "plugin" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"kdbench_methods.{info.name}")
        found += [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                  if issubclass(cls, Method) and cls.__module__ == module.__name__
                  and cls.name != Method.name]
    return found


@kdbench.hookimpl
def kdbench_methods(register: Register) -> None:
    for name, cls in CLASSES.items():
        register(name, f"kdbench_methods.{name}:{cls}")
