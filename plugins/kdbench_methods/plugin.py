"""Registers the built-in methods: every :class:`~kdbench.method.Method` subclass defined
in a module of this package (one module per paper)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import kdbench
from kdbench.method import Method
from kdbench.registry import Register


def methods() -> list[type[Method]]:
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
    for method in methods():
        register(method.name, method)
