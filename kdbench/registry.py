"""What plugins registered: one table per kind, with who registered what."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from kdbench.errors import PluginError

KINDS = ("datasets", "students", "teachers", "methods", "metrics", "executors", "benchmarks")


class Register(Protocol):
    def __call__(self, name: str, factory: Any, params: type | str | Lazy | None = None,
                 description: str | None = None) -> None: ...


@dataclass(frozen=True)
class Lazy:
    """A factory (or params dataclass) named, not imported: it is imported the first time a
    benchmark uses it, so that registering costs no import of torch and ``kdbench plugins``
    or a one-line error answers at once.

    ``Lazy("pkg.module:attr")`` is ``attr`` of ``pkg.module`` (the entry-point syntax; a
    plain string registers the same). ``Lazy("pkg.module:table", "key")`` is one entry of a
    table of factories: ``table["key"]`` for a mapping, ``table("key")`` for a function that
    builds them."""

    target: str
    key: str | None = None

    def resolve(self) -> Any:
        module, _, attribute = self.target.partition(":")
        if not module or not attribute:
            raise PluginError(f"{self.target!r} is not a 'module:attribute' reference")
        value: Any = importlib.import_module(module)
        for part in attribute.split("."):
            value = getattr(value, part)
        if self.key is not None:
            value = value[self.key] if isinstance(value, Mapping) else value(self.key)
        return value

    def __str__(self) -> str:
        return self.target + (f"[{self.key}]" if self.key is not None else "")


def lazy(value: Any) -> Lazy | None:
    """``value`` as a :class:`Lazy` reference when it names one (a string or a Lazy)."""
    if isinstance(value, Lazy):
        return value
    return Lazy(value) if isinstance(value, str) else None


class _Loaded:
    """A field of :class:`Entry` that may hold a :class:`Lazy` reference and reads as what it
    names, imported on first read (a dataclass field with a descriptor: ``Entry(...)`` and
    ``dataclasses.replace`` see the loaded value). ``None`` reads as ``default(entry)``."""

    def __init__(self, default: Callable[[Entry], Any] | None = None,
                 check: Callable[[Entry, Any], None] | None = None, references: bool = True
                 ) -> None:
        self.default, self.check, self.references = default, check, references

    def __set_name__(self, owner: type, name: str) -> None:
        self.name, self.slot = name, f"_{name}"

    def __get__(self, entry: Entry | None, owner: type | None = None) -> Any:
        if entry is None:
            raise AttributeError(self.name)  # no default value for the dataclass field
        value = entry.__dict__[self.slot]
        reference = lazy(value) if self.references and entry.kind != "benchmarks" else None
        if reference is not None:
            value = entry.load(reference)
            if self.check is not None:
                self.check(entry, value)
            entry.__dict__[self.slot] = value
        if value is None and self.default is not None:
            value = self.default(entry)
        return value

    def __set__(self, entry: Entry, value: Any) -> None:
        entry.__dict__[self.slot] = value


def _dataclass(entry: Entry, params: Any) -> None:
    if params is not None and not dataclasses.is_dataclass(params):
        raise PluginError(f"{entry.plugin!r}: params of {entry.kind[:-1]} {entry.name!r} must "
                          "be a dataclass")


def _params_of(entry: Entry) -> type | None:
    """The factory's ``Params`` attribute, for an entry registered without params."""
    params = getattr(entry.factory, "Params", None)
    _dataclass(entry, params)
    return params


@dataclass(frozen=True)
class Entry:
    """One registered thing: a factory under a name, with its hyperparameters.

    A factory or params registered by reference (:class:`Lazy`) is imported when first read;
    one that cannot be raises :class:`PluginError` naming the plugin and the reference."""

    kind: str
    name: str
    factory: Any = _Loaded()
    params: type | None = _Loaded(_params_of, _dataclass)
    """``None`` at registration: the factory's ``Params`` attribute, if any."""
    plugin: str
    description: str = _Loaded(lambda entry: _first_line(entry.factory), references=False)
    """``None`` at registration: the first line of the factory's docstring."""

    def load(self, reference: Lazy) -> Any:
        """What ``reference`` names, or :class:`PluginError` naming this entry's plugin."""
        try:
            return reference.resolve()
        except PluginError:
            raise
        except Exception as error:
            raise PluginError(f"plugin {self.plugin!r} registered {self.kind[:-1]} "
                              f"{self.name!r} as {str(reference)!r}, which cannot be loaded: "
                              f"{type(error).__name__}: {error}") from None

    def make_params(self, values: dict[str, Any] | None = None, where: str = "") -> Any:
        """The params dataclass filled from ``values``; see :func:`kdbench.params.build`."""
        from kdbench.params import build

        if self.params is None:
            if values:
                raise PluginError(
                    f"{where}{self.name} takes no parameters, got {', '.join(sorted(values))}"
                )
            return None
        return build(self.params, values or {}, where=where or f"{self.name}: ")


@dataclass
class Registry:
    """Every registered entry, by kind and name."""

    tables: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})

    def callback(self, kind: str, plugin: str) -> Register:
        """The ``register`` function handed to ``plugin``'s hook for ``kind``."""

        def register(name: str, factory: Any, params: type | str | Lazy | None = None,
                     description: str | None = None) -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin {plugin!r} registered a {kind[:-1]} without a name")
            table = self.tables[kind]
            if name in table:
                # Within one registry (a plugin's staged registrations): the same plugin twice.
                # Conflicts between plugins are checked by kdbench.plugins, which names them.
                other = table[name].plugin
                raise PluginError(
                    f"{kind[:-1]} {name!r} is registered by both {other!r} and {plugin!r}; "
                    "register each name once"
                )
            entry = Entry(kind, name, factory, params, plugin, description)
            if lazy(factory) is None or kind == "benchmarks":
                # A factory given as an object is loaded already: its params are checked now.
                _dataclass(entry, entry.params)
            table[name] = entry

        return register

    def get(self, kind: str, name: str, where: str = "") -> Entry:
        table = self.tables[kind]
        if name not in table:
            from kdbench.params import suggestion

            installed = ", ".join(sorted(table)) or "none"
            raise PluginError(
                f"{where}unknown {kind[:-1]} {name!r}{suggestion(name, table)}; "
                f"installed: {installed}"
            )
        return table[name]


def _first_line(obj: Callable | Any) -> str:
    doc = inspect.getdoc(obj) if not isinstance(obj, str) else None
    return doc.strip().splitlines()[0] if doc else ""
