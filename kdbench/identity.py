"""Which code produced a run: the distribution, its version and a hash of the source.

A run's fingerprint covers its parameters *and* the code that turns them into
numbers, so that changing a method's loss (or upgrading the plugin that provides
it) retrains that method's runs instead of silently reusing stale results.

For a registered factory (a method, a model, a dataset, a teacher provider, a
metric) the code is the file of the module that defines it, plus, transitively,
every module of the same top-level package that module refers to by a global name
(a helper imported from ``_maps.py``, a base class next door): a change in any of
them can change the factory's output. Modules of other packages (torch, numpy,
kdbench itself) are not followed; kdbench's own code is identified separately by
:func:`kdbench_code`, the source of the modules a worker runs to turn a job into
numbers (:data:`KDBENCH_MODULES`).

Source files are hashed once per process: planning a sweep stays fast.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kdbench

if TYPE_CHECKING:
    from kdbench.plugins import Plugins

KDBENCH_MODULES = ("accel", "data", "method", "metrics", "stream", "taps", "teacher", "train")
"""The kdbench modules whose code decides a run's numbers: the training loop, the method base
class and its loss plumbing, data batching, feature taps, metrics and teacher loading. Left out
on purpose: the planner, tracking, statistics, executors (they route jobs and never change a
result; threads and device are part of the fingerprint instead), and ``runs.py`` (plain data
whose fields are fingerprinted). A change that alters results without touching these files
bumps ``sweep.RUN_FORMAT``."""


@dataclass(frozen=True)
class CodeId:
    """The code of one part of a run: who ships it, which version, the hash of its source."""

    distribution: str
    version: str
    sha256: str

    def __str__(self) -> str:
        """``"<distribution> <version> <hash12>"``: the form of MLflow's ``kdbench.code.*`` tags."""
        return f"{self.distribution} {self.version or '-'} {self.sha256[:12]}"


@functools.cache
def file_sha256(path: str) -> str:
    """The sha256 of a file's bytes, read once per process."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _source_file(module: types.ModuleType) -> str | None:
    try:
        return inspect.getsourcefile(module) or getattr(module, "__file__", None)
    except TypeError:  # a built-in or a module made in memory: no file to hash
        return None


@functools.cache
def module_files(module_name: str) -> tuple[str, ...]:
    """The source files of ``module_name`` and of the modules of its top-level package that it
    refers to by global name, transitively; sorted."""
    package = module_name.split(".")[0]
    seen: set[str] = set()
    todo = [module_name]
    files: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        module = sys.modules.get(name)
        if module is None:
            try:
                module = importlib.import_module(name)
            except Exception:  # defined somewhere that cannot be imported again: hash what we have
                continue
        path = _source_file(module)
        if path and Path(path).is_file():
            files.add(path)
        for value in list(vars(module).values()):
            other = value.__name__ if isinstance(value, types.ModuleType) else getattr(
                value, "__module__", None)
            if isinstance(other, str) and other.split(".")[0] == package and other not in seen:
                todo.append(other)
    return tuple(sorted(files))


def defining_modules(factory: Any, params: type | None = None) -> tuple[str, ...]:
    """The modules that define ``factory`` (and its ``params`` dataclass): for a class, every
    class of its MRO from the same top-level package; for a partial, the wrapped function;
    for a callable object, its class."""
    while isinstance(factory, functools.partial):
        factory = factory.func
    objects: list[Any] = [factory]
    if inspect.isclass(factory):
        # Base classes of the factory's own package; kdbench's (Method) are kdbench's code.
        package = factory.__module__.split(".")[0]
        objects = [c for c in factory.__mro__ if c.__module__.split(".")[0] == package]
    elif not (inspect.isfunction(factory) or inspect.ismethod(factory) or inspect.isbuiltin(factory)):
        objects = [type(factory)]
    if params is not None:
        objects.append(params)
    names = {getattr(o, "__module__", None) for o in objects}
    return tuple(sorted(n for n in names if isinstance(n, str) and n != "builtins"))


def source_sha256(modules: tuple[str, ...]) -> str:
    """One hash over the source files of ``modules`` (see :func:`module_files`)."""
    # File names without their directory, so that the same code installed elsewhere (another
    # virtual environment, a CI runner) has the same identity.
    lines = sorted({f"{Path(f).name}\0{file_sha256(f)}\n" for m in modules for f in module_files(m)})
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def own_source_sha256(modules: tuple[str, ...]) -> str:
    """One hash over the source files of ``modules`` themselves, not of the modules they use:
    for kdbench's own parts, whose shared code (the loop, the data, the taps) is already in
    :func:`kdbench_code`, so that editing the planner or the store does not retrain runs."""
    lines = []
    for name in modules:
        path = _source_file(importlib.import_module(name))
        lines.append(f"{name}\0{file_sha256(path) if path else ''}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


@functools.cache
def _factory_code(factory: Any, params: type | None, distribution: str, version: str) -> CodeId:
    return CodeId(distribution, version, source_sha256(defining_modules(factory, params)))


def factory_code(factory: Any, params: type | None, distribution: str, version: str) -> CodeId:
    """The :class:`CodeId` of a registered factory shipped by ``distribution``."""
    try:
        return _factory_code(factory, params, distribution, version)
    except TypeError:  # an unhashable factory: computed every time, still correct
        return CodeId(distribution, version, source_sha256(defining_modules(factory, params)))


@functools.cache
def kdbench_code() -> CodeId:
    """The :class:`CodeId` of kdbench's own training loop (:data:`KDBENCH_MODULES`)."""
    modules = tuple(f"kdbench.{m}" for m in KDBENCH_MODULES)
    digest = hashlib.sha256()
    for name in modules:
        path = _source_file(importlib.import_module(name))
        digest.update(f"{name}\0{file_sha256(path) if path else ''}\n".encode())
    return CodeId("kdbench", kdbench.__version__, digest.hexdigest())


def changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """What differs between two runs' code tags (:class:`CodeId` strings by part), one phrase
    per part: ``"method: kdbench-extra 1.2.3 -> 1.2.4"``, ``"kdbench training loop"``."""
    out = []
    for part in sorted(set(old) | set(new)):
        before, after = old.get(part), new.get(part)
        if before == after:
            continue
        if part == "kdbench":
            out.append("kdbench training loop")
            continue
        b = (before or "none - -").split(" ")
        a = (after or "none - -").split(" ")
        if b[:2] == a[:2]:
            out.append(f"{part}: {a[0]} {a[1]}, source changed")
        elif b[0] == a[0]:
            out.append(f"{part}: {a[0]} {b[1]} -> {a[1]}")
        else:
            out.append(f"{part}: {b[0]} {b[1]} -> {a[0]} {a[1]}")
    return out


def entry_code(plugins: Plugins, kind: str, name: str) -> str:
    """The code identity of the registered ``kind`` ``name``, as its MLflow tag shows it."""
    entry = plugins.entry(kind, name)
    info = plugins.info(entry.plugin)
    distribution, version = (info.distribution, info.version) if info else ("?", "?")
    return str(factory_code(entry.factory, entry.params, distribution, version))
