"""The plugin manager: built-ins and third parties, loaded alike from entry points.

Every plugin, the built-in ones included, is an entry point of the ``kdbench``
group. :class:`Plugins` loads them one by one so that a plugin that fails to
import or to register is named and skipped (or, with ``strict``, stops
kdbench), and wraps every hook call in a typed method: no other core module
touches ``pm.hook``.

Registration is all or nothing: a plugin's registrations are staged and checked
against everything already registered before any of them is merged, so a plugin
that fails halfway contributes no name at all. A name registered by two plugins
is always an error (never "the first one wins"): which of the two would train
under a row's name would depend on the order entry points are found in. The user
picks one by disabling the other: ``KDBENCH_DISABLE_PLUGINS=name[,name]`` or
``--disable-plugin NAME`` (entry-point names, as ``kdbench plugins`` lists them).
"""

from __future__ import annotations

import importlib.metadata
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import pluggy

from kdbench import hookspecs
from kdbench.errors import PluginError
from kdbench.registry import KINDS, Entry, Registry

DISABLE_ENV = "KDBENCH_DISABLE_PLUGINS"
"""Comma-separated entry-point names of plugins not to load (``--disable-plugin`` sets it, so
that worker processes skip them too)."""


def disabled_plugins() -> set[str]:
    """The plugin names ``KDBENCH_DISABLE_PLUGINS`` lists."""
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


@dataclass(frozen=True)
class PluginInfo:
    """A loaded (or failed) plugin and where it comes from."""

    name: str
    module: str
    distribution: str
    version: str
    error: str | None = None
    disabled: bool = False

    @property
    def origin(self) -> str:
        """``plugin 'name' (distribution version)``: how messages name a plugin."""
        where = f"{self.distribution} {self.version}" if self.version else self.distribution.strip("()")
        return f"plugin {self.name!r} ({where})"


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
        Plugins named in ``KDBENCH_DISABLE_PLUGINS`` are not imported. A name
        registered by two plugins raises :class:`PluginError`, strict or not.
        """
        pm = pluggy.PluginManager("kdbench")
        pm.add_hookspecs(hookspecs)
        plugins = cls(pm)
        disabled = disabled_plugins()
        found = sorted(importlib.metadata.entry_points(group="kdbench"), key=lambda e: e.name)
        unknown = disabled - {ep.name for ep in found} - {name for name, _ in extra or []}
        if unknown:
            raise PluginError(
                f"{DISABLE_ENV} / --disable-plugin: no plugin named {', '.join(sorted(unknown))}; "
                f"installed: {', '.join(ep.name for ep in found)} (see `kdbench plugins`)")
        for ep in found:
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            if ep.name in disabled:
                plugins.infos.append(PluginInfo(ep.name, ep.value, dist, version, disabled=True))
                continue
            try:
                module = ep.load()
            except Exception as error:  # a broken plugin must not break kdbench
                plugins._failed(ep.name, ep.value, dist, version,
                                f"failed to import: {type(error).__name__}: {error}", strict)
                continue
            plugins._add(ep.name, module, ep.value, dist, version, strict)
        for name, module in extra or []:
            if name in disabled:
                continue
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
        except Exception as error:
            self.pm.unregister(module)
            self._failed(name, path, dist, version,
                         f"failed to register: {type(error).__name__}: {error}", strict)
            return
        info = PluginInfo(name, path, dist, version)
        # Every name is checked before any is merged: a conflict leaves the registry as it was.
        for kind in KINDS:
            for entry in staged.tables[kind].values():
                if entry.name in self.table(kind):
                    self.pm.unregister(module)
                    raise PluginError(self._conflict(kind, entry.name, info))
        for kind in KINDS:
            self.registry.tables[kind].update(staged.tables[kind])
        self.infos.append(info)

    def _conflict(self, kind: str, name: str, newcomer: PluginInfo) -> str:
        holder = self.info(self.table(kind)[name].plugin) or PluginInfo(
            self.table(kind)[name].plugin, "?", "?", "?")
        return (f"{kind[:-1]} {name!r} is registered by both {holder.origin} and "
                f"{newcomer.origin}; keep one by disabling the other: --disable-plugin "
                f"{newcomer.name} (or {holder.name}), or {DISABLE_ENV}={newcomer.name}; "
                "or uninstall one of the distributions")

    def info(self, name: str) -> PluginInfo | None:
        """The loaded (or failed, or disabled) plugin named ``name``."""
        return next((i for i in self.infos if i.name == name), None)

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

    def higher_is_better(self, metric: str) -> bool:
        """The direction of the registered metric ``metric``."""
        entry = self.entry("metrics", metric)
        return bool(entry.factory(entry.make_params({})).higher_is_better)

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
