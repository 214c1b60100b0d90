"""The plugin manager: built-ins and third parties, loaded alike from entry points.

Every plugin, the built-in ones included, is an entry point of the ``kdbench``
group. :class:`Plugins` loads them one by one so that a plugin that fails to
import or to register is named and skipped (or, with ``strict``, stops
kdbench), and wraps every hook call in a typed method: no other core module
touches ``pm.hook``.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from dataclasses import dataclass, field
from typing import Any

import pluggy

from kdbench import hookspecs
from kdbench.errors import PluginError
from kdbench.registry import KINDS, Entry, Registry


@dataclass(frozen=True)
class PluginInfo:
    """A loaded (or failed) plugin and where it comes from."""

    name: str
    module: str
    distribution: str
    version: str
    error: str | None = None


@dataclass
class Plugins:
    """The loaded plugins and everything they registered."""

    pm: pluggy.PluginManager
    infos: list[PluginInfo] = field(default_factory=list)
    registry: Registry = field(default_factory=Registry)

    # Loading -----------------------------------------------------------------

    @classmethod
    def load(cls, strict: bool = False, extra: list[tuple[str, Any]] | None = None) -> Plugins:
        """Load every ``kdbench`` entry point, plus ``extra`` ``(name, plugin)`` pairs.

        A plugin that raises on import or registration is reported in a
        warning and skipped; with ``strict`` it raises :class:`PluginError`.
        """
        pm = pluggy.PluginManager("kdbench")
        pm.add_hookspecs(hookspecs)
        plugins = cls(pm)
        for ep in sorted(importlib.metadata.entry_points(group="kdbench"), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            try:
                module = ep.load()
            except Exception as error:  # a broken plugin must not break kdbench
                plugins._failed(ep.name, ep.value, dist, version,
                                f"failed to import: {type(error).__name__}: {error}", strict)
                continue
            plugins._add(ep.name, module, ep.value, dist, version, strict)
        for name, module in extra or []:
            plugins._add(name, module, getattr(module, "__name__", name), "(local)", "", strict)
        return plugins

    def _add(self, name: str, module: Any, path: str, dist: str, version: str,
             strict: bool) -> None:
        if self.pm.is_registered(module) or self.pm.has_plugin(name):
            return
        try:
            self.pm.register(module, name=name)
        except Exception as error:
            self._failed(name, path, dist, version, f"invalid plugin: {error}", strict)
            return
        staged = Registry()
        try:
            for kind in KINDS:
                hook = getattr(self.pm.hook, f"kdbench_{kind}")
                for impl in hook.get_hookimpls():
                    if impl.plugin is module:
                        impl.function(register=staged.callback(kind, name))
            for kind in KINDS:
                for entry in staged.tables[kind].values():
                    self.registry.callback(kind, name)(entry.name, entry.factory, entry.params,
                                                       entry.description)
        except Exception as error:
            self.pm.unregister(module)
            self._failed(name, path, dist, version,
                         f"failed to register: {type(error).__name__}: {error}", strict)
            return
        self.infos.append(PluginInfo(name, path, dist, version))

    def _failed(self, name: str, path: str, dist: str, version: str, why: str,
                strict: bool) -> None:
        message = (f"plugin {name!r} ({dist} {version}) {why}; it is skipped: "
                   f"fix or uninstall {dist}")
        if strict:
            raise PluginError(message)
        warnings.warn(message, stacklevel=3)
        self.infos.append(PluginInfo(name, path, dist, version, error=why))

    # The registry ------------------------------------------------------------

    def table(self, kind: str) -> dict[str, Entry]:
        return self.registry.tables[kind]

    def entry(self, kind: str, name: str, where: str = "") -> Entry:
        """The entry ``name`` of ``kind``; an unknown name lists the installed ones."""
        return self.registry.get(kind, name, where)

    def datasets(self) -> dict[str, Entry]:
        return self.table("datasets")

    def students(self) -> dict[str, Entry]:
        return self.table("students")

    def teachers(self) -> dict[str, Entry]:
        return self.table("teachers")

    def methods(self) -> dict[str, Entry]:
        return self.table("methods")

    def metrics(self) -> dict[str, Entry]:
        return self.table("metrics")

    def executors(self) -> dict[str, Entry]:
        return self.table("executors")

    def benchmarks(self) -> dict[str, Entry]:
        return self.table("benchmarks")

    def registered_by(self, plugin: str) -> dict[str, list[str]]:
        """What ``plugin`` registered, by kind."""
        out: dict[str, list[str]] = {}
        for kind in KINDS:
            names = [e.name for e in self.table(kind).values() if e.plugin == plugin]
            if names:
                out[kind] = sorted(names)
        return out

    # Events ------------------------------------------------------------------

    def sweep_start(self, sweep: Any) -> None:
        self._event("kdbench_sweep_start", sweep=sweep)

    def run_start(self, run: Any) -> None:
        self._event("kdbench_run_start", run=run)

    def epoch_end(self, run: Any, phase: str, epoch: int, epochs: int,
                  metrics: dict[str, float]) -> None:
        self._event("kdbench_epoch_end", run=run, phase=phase, epoch=epoch, epochs=epochs,
                    metrics=metrics)

    def run_end(self, run: Any, result: Any) -> None:
        self._event("kdbench_run_end", run=run, result=result)

    def sweep_end(self, sweep: Any, results: dict[str, Any]) -> None:
        self._event("kdbench_sweep_end", sweep=sweep, results=results)

    def register_observer(self, observer: Any, name: str) -> None:
        """Add an object implementing event hooks for this process only (progress display)."""
        self.pm.register(observer, name=name)

    def unregister_observer(self, observer: Any) -> None:
        if self.pm.is_registered(observer):
            self.pm.unregister(observer)

    def _event(self, hook_name: str, **kwargs: Any) -> None:
        # Each implementation on its own: one observer's failure must not stop the others,
        # nor the sweep.
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            try:
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception as error:
                warnings.warn(f"plugin {impl.plugin_name!r} failed in {hook_name}: "
                              f"{type(error).__name__}: {error}", stacklevel=2)
