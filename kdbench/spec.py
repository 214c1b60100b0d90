"""Benchmark files: TOML in, a typed and validated :class:`Spec` out.

A benchmark file names the dataset, teacher, student, training recipe, the
methods with their hyperparameters, the seeds and the metric to rank by::

    name = "mnist1d"
    seeds = 5
    metric = "top1"
    metrics = ["top1", "agreement"]

    [dataset]
    name = "mnist1d"

    [teacher]
    model = "cnn1d"            # trained by kdbench (provider = "train", the default)
    seed = 0
    [teacher.recipe]
    epochs = 150

    [student]
    name = "cnn1d_small"       # other keys are the model's parameters

    [recipe]
    epochs = 30
    lr = 0.01

    [methods.kd]               # a row of the leaderboard; keys are the method's params
    T = 4.0
    [methods.kd-T1]
    method = "kd"              # another row with the same method
    T = 1.0

Every error names the file, the key and what is allowed.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from kdbench.errors import KdbenchError, SpecError
from kdbench.params import as_dict, build, check, suggestion
from kdbench.plugins import Plugins


@dataclass(frozen=True)
class Recipe:
    """How a network is trained."""

    epochs: int = 30
    batch_size: int = 100
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    milestones: tuple[int, ...] = ()
    """Epochs at which the ``step`` schedule multiplies the learning rate by ``gamma``."""
    gamma: float = 0.1
    stage_budget: Literal["shared", "extra"] = "shared"
    """Where the epochs of a method's warm-up stages that train the student (FitNet's hints,
    FSP, AB's initialisation) come from: ``shared`` takes them out of ``epochs``, so every
    student of the leaderboard trains for as many epochs as the baseline and a method
    cannot win by training longer; ``extra`` runs them on top, as the papers did."""


@dataclass(frozen=True)
class Component:
    """A registered thing by name, with its parameters (validated, defaults filled in)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TeacherSpec:
    provider: str
    model: Component | None
    seed: int
    recipe: Recipe
    params: dict[str, Any]
    """The provider's own parameters (a checkpoint's ``path``)."""


@dataclass(frozen=True)
class MethodSpec:
    label: str
    """The leaderboard row's name: the table's key in ``[methods]``."""
    method: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Spec:
    name: str
    path: Path
    description: str
    dataset: Component
    teacher: TeacherSpec
    student: Component
    recipe: Recipe
    methods: tuple[MethodSpec, ...]
    seeds: tuple[int, ...]
    metric: str
    metrics: tuple[str, ...]
    executor: Component

    def with_options(self, seeds: int | None = None, methods: list[str] | None = None) -> Spec:
        """This spec with ``--seeds N`` (seeds 0..N-1) and ``--methods a,b`` applied."""
        spec = self
        if seeds is not None:
            if seeds < 1:
                raise SpecError(f"--seeds must be at least 1, got {seeds}")
            spec = replace(spec, seeds=tuple(range(seeds)))
        if methods is not None:
            rows = {m.label: m for m in spec.methods}
            unknown = [name for name in methods if name not in rows]
            if unknown:
                raise SpecError(
                    f"--methods: {unknown[0]!r} is not a method of benchmark {spec.name!r}"
                    f"{suggestion(unknown[0], rows)}; its methods: {', '.join(rows) or 'none'}"
                )
            spec = replace(spec, methods=tuple(rows[name] for name in methods))
        return spec


TOP_KEYS = {"name", "description", "seeds", "metric", "metrics", "dataset", "teacher",
            "student", "recipe", "methods", "executor"}
TEACHER_KEYS = {"provider", "model", "seed", "recipe"}


def resolve(name_or_path: str, plugins: Plugins) -> Path:
    """The benchmark file for a path, or for a name registered by a plugin."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SpecError(f"benchmark file {name_or_path} does not exist")
        return path
    known = plugins.benchmarks()
    if name_or_path in known:
        return Path(known[name_or_path].factory)
    raise SpecError(
        f"no benchmark named {name_or_path!r}{suggestion(name_or_path, known)}; "
        f"built-in: {', '.join(sorted(known)) or 'none'}; or give a path to a .toml file"
    )


def load(name_or_path: str, plugins: Plugins) -> Spec:
    """Read, check and complete a benchmark file; :class:`SpecError` on any problem."""
    path = resolve(name_or_path, plugins)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{path}: not valid TOML: {error}") from None
    try:
        return _parse(raw, path, plugins)
    except KdbenchError as error:
        raise SpecError(f"{path}: {error}") from None


def _parse(raw: dict[str, Any], path: Path, plugins: Plugins) -> Spec:
    _only(raw, TOP_KEYS, "")
    dataset = _component(raw, "dataset", "datasets", plugins)
    student = _component(raw, "student", "students", plugins)
    recipe = build(Recipe, _table(raw, "recipe"), where="[recipe] ")
    teacher = _teacher(_table(raw, "teacher"), plugins)

    methods = []
    for label, table in _table(raw, "methods").items():
        if not isinstance(table, dict):
            raise SpecError(f"[methods.{label}] must be a table of the method's parameters")
        values = dict(table)
        method = check(str, values.pop("method", label), f"[methods.{label}] method")
        entry = plugins.entry("methods", method, where=f"[methods.{label}] ")
        params = entry.make_params(values, where=f"[methods.{label}] ")
        methods.append(MethodSpec(label, method, as_dict(params)))

    seeds_value = raw.get("seeds", 5)
    if isinstance(seeds_value, list):
        seeds = tuple(check(list[int], seeds_value, "seeds"))
    else:
        count = check(int, seeds_value, "seeds")
        seeds = tuple(range(count))
    if not seeds:
        raise SpecError("seeds must name at least one seed")

    metrics = tuple(check(list[str], raw.get("metrics", ["top1", "agreement"]), "metrics"))
    metric = check(str, raw.get("metric", metrics[0] if metrics else "top1"), "metric")
    if metric not in metrics:
        metrics = (metric, *metrics)
    for name in metrics:
        plugins.entry("metrics", name, where="metrics: ")

    executor = _component(raw, "executor", "executors", plugins, default="process")
    return Spec(
        name=check(str, raw.get("name", path.stem), "name"),
        path=path,
        description=check(str, raw.get("description", ""), "description"),
        dataset=dataset, teacher=teacher, student=student, recipe=recipe,
        methods=tuple(methods), seeds=seeds, metric=metric, metrics=metrics,
        executor=executor,
    )


def _teacher(table: dict[str, Any], plugins: Plugins) -> TeacherSpec:
    provider = check(str, table.get("provider", "train"), "[teacher] provider")
    entry = plugins.entry("teachers", provider, where="[teacher] provider: ")
    model = _component(table, "model", "students", plugins, where="[teacher] ") \
        if "model" in table else None
    own = {k: v for k, v in table.items() if k not in TEACHER_KEYS}
    params = as_dict(entry.make_params(own, where=f"[teacher] ({provider}) "))
    if getattr(entry.factory, "needs_model", False) and model is None:
        raise SpecError(f"[teacher] provider {provider!r} needs `model`, an architecture name; "
                        f"installed: {', '.join(sorted(plugins.students()))}")
    recipe = build(Recipe, _table(table, "recipe", "[teacher] "), where="[teacher.recipe] ")
    seed = check(int, table.get("seed", 0), "[teacher] seed")
    return TeacherSpec(provider, model, seed, recipe, params)


def _component(raw: dict[str, Any], key: str, kind: str, plugins: Plugins,
               default: str | None = None, where: str = "") -> Component:
    value = raw.get(key, default)
    if value is None:
        raise SpecError(f"{where}missing [{key}]: name one of {', '.join(sorted(plugins.table(kind)))}")
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise SpecError(f"{where}{key} must be a name or a table with `name`")
    values = dict(value)
    name = check(str, values.pop("name"), f"{where}[{key}] name")
    entry = plugins.entry(kind, name, where=f"{where}[{key}] ")
    params = entry.make_params(values, where=f"{where}[{key}] ")
    return Component(name, as_dict(params))


def _table(raw: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise SpecError(f"{where}{key} must be a table ([{key}])")
    return value


def _only(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise SpecError(f"{where}unknown key {key!r}{suggestion(key, allowed)}; "
                            f"allowed: {', '.join(sorted(allowed))}")
