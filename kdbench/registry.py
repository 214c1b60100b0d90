"""What plugins registered: one table per kind, with who registered what."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kdbench.errors import PluginError

KINDS = ("datasets", "students", "teachers", "methods", "metrics", "executors", "benchmarks")


class Register(Protocol):
    def __call__(self, name: str, factory: Any, params: type | None = None,
                 description: str | None = None) -> None: ...


@dataclass(frozen=True)
class Entry:
    """One registered thing: a factory under a name, with its hyperparameters."""

    kind: str
    name: str
    factory: Any
    params: type | None
    plugin: str
    description: str

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

        def register(name: str, factory: Any, params: type | None = None,
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
            if params is None:
                params = getattr(factory, "Params", None)
            if params is not None and not dataclasses.is_dataclass(params):
                raise PluginError(f"{plugin!r}: params of {kind[:-1]} {name!r} must be a dataclass")
            table[name] = Entry(kind, name, factory, params, plugin,
                                description or _first_line(factory))

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
