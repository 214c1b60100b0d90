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

    [protocol]                 # optional; the defaults (see Protocol)
    validation = 0.1           # held out of the training split, per class, for every run
    validation_seed = 0
    epoch = "last"             # or "best": the best validation epoch's weights are reported

    [methods.kd]               # a row of the leaderboard; keys are the method's params
    T = 4.0
    [methods.kd-T1]
    method = "kd"              # another row with the same method
    T = 1.0
    [methods.kd-grid]
    method = "kd"
    T = [1, 2, 4, 8]           # a grid: rows kd-grid[T=1] ... kd-grid[T=8] (kdbench.grid)

Every error names the file, the key and what is allowed, and comes before anything trains:
types, each value's range (the recipe's here, a plugin's in its params dataclass, see
:mod:`kdbench.params`), nan and inf anywhere, distinct seeds and rows, and a ``name`` that is
a safe file name.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from kdbench import grid
from kdbench.accel import Accel
from kdbench.errors import KdbenchError, SpecError
from kdbench.params import (
    MAX_EPOCHS,
    Around,
    Choice,
    Multiples,
    as_dict,
    bounded,
    build,
    check,
    not_finite,
    short_repr,
    smoke_caps,
    suggestion,
)
from kdbench.plugins import Plugins

MAX_SEEDS = 100_000
"""The most seeds a benchmark or ``--seeds`` may name; ``kdbench run`` also caps the runs."""
MAX_SEED = 2**32 - 1
"""The largest seed: every random generator a plugin may use (numpy's legacy one too) takes it."""
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""A benchmark name, which becomes the name of the leaderboard files and of the experiment."""


@dataclass(frozen=True)
class Recipe:
    """How a network is trained."""

    epochs: int = bounded(30, low=1, high=MAX_EPOCHS, search=Multiples((0.5, 1.0, 2.0)))
    """Tuned (``kdbench tune``, the baseline's row) among half, the same and twice the file's;
    every method row then trains with the tuned recipe, so budgets stay equal."""
    batch_size: int = bounded(100, low=1)
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = bounded(0.01, low=0, low_open=True, search=Around(10))
    momentum: float = bounded(0.9, low=0, high=1, high_open=True)
    weight_decay: float = bounded(0.0, low=0, search=Choice((0.0, 1e-5, 1e-4, 1e-3)))
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    milestones: tuple[int, ...] = ()
    """Epochs at which the ``step`` schedule multiplies the learning rate by ``gamma``:
    increasing, each in 1..epochs-1 (checked by :func:`check_recipe`)."""
    gamma: float = bounded(0.1, low=0, low_open=True)
    stage_budget: Literal["shared", "extra"] = "shared"
    """Where the epochs of a method's warm-up stages that train the student (FitNet's hints,
    FSP, AB's initialisation) come from: ``shared`` takes them out of ``epochs``, so every
    student of the leaderboard trains for as many epochs as the baseline and a method
    cannot win by training longer; ``extra`` runs them on top, as the papers did."""


@dataclass(frozen=True)
class Protocol:
    """What the runs may look at, and which epoch they report (``[protocol]``).

    A validation split is held out of the training split for every run (teacher, baseline
    and methods alike): it is carved once, by ``validation_seed`` and never by a run's seed,
    so every run trains on the same samples and is scored on the same held-out ones
    (:func:`kdbench.data.validation_split`). Every choice is made on it: the per-epoch
    curves, the reported epoch, tuning. The test split is read once per run, at the end,
    on the reported epoch's weights, for the reported number.
    """

    validation: float = bounded(0.1, low=0, high=0.5, low_open=True)
    """Fraction of the training split held out as the validation split, per class."""
    validation_seed: int = bounded(0, low=0, high=2**32 - 1)
    """Seed of the permutation that picks the validation samples."""
    epoch: Literal["last", "best"] = "last"
    """Which epoch's weights give the reported numbers: the last of the main training, or
    the one with the best validation value of the benchmark's ranking metric (the later
    epoch on a tie)."""
    smoke: int = bounded(0, low=0, high=1000)
    """0: a real run. N > 0: a smoke test (``--smoke``, never in a file): N batches per epoch
    and at most :data:`kdbench.train.SMOKE_EVALUATION` validation and test samples
    (:meth:`Spec.smoke`). Part of the protocol, so of every fingerprint: a smoke result is
    never reused as a real one."""


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
    """The leaderboard row's name: the table's key in ``[methods]``, or ``kd[T=1]`` for a row
    of a parameter grid (:mod:`kdbench.grid`)."""
    method: str
    params: dict[str, Any]
    table: str = ""
    """The ``[methods]`` table the row comes from ("": ``label``); ``--methods <table>`` picks
    every row of a grid."""
    grid: dict[str, Any] = field(default_factory=dict)
    """The row's values of the table's grid keys (``{"T": 1.0}``); empty without a grid."""
    smoke: dict[str, Any] = field(default_factory=dict)
    """The caps a ``--smoke`` run puts on the method's parameters (their ``smoke`` metadata,
    :func:`kdbench.params.bounded`)."""


@dataclass(frozen=True)
class Published:
    """The numbers a benchmark should reproduce (``[published]``), from ``source``.

    ``values`` maps ``teacher``, ``baseline`` or a row label to the published value of the
    ranking metric, as a fraction (the file gives percent, as papers do)."""

    source: str
    values: dict[str, float]
    note: str = ""


SMOKE_BATCHES = 2
"""Batches per epoch of a ``--smoke`` run."""
SMOKE_BATCH_SIZE = 4
"""The largest batch of a ``--smoke`` run: a smoke test checks that the code runs, and on a
CPU a CIFAR ResNet's time per batch is its per-layer overhead from here down (resnet56 on 4
images: 0.4 ms per convolution call), so larger batches cost time and check nothing more.
4, not 2: RKD's angles need three samples, and BatchNorm more than one value per channel."""
SMOKE_SEEDS = 2
SMOKE_EPOCHS = 2


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
    family: int = 0
    """How many rows the benchmark file lists: the multiplicity correction's family, kept
    when ``--methods`` shows fewer (0: ``len(methods)``)."""
    protocol: Protocol = Protocol()
    """The ``[protocol]`` table: the validation split and the epoch rule."""
    accel: Accel = field(default_factory=Accel)
    """How runs use the device (``--amp``, ``--channels-last``, ``--compile``;
    :mod:`kdbench.accel`): set from the command line, never from the file."""
    tuning: str = ""
    """How the rows' settings were chosen, as the leaderboard states it: ``tuned, 20 trials
    each on 2 seeds (validation)`` in a file ``kdbench tune`` wrote (:mod:`kdbench.tuning`);
    empty: the file's own settings (paper defaults)."""
    batch_runs: int = 0
    """``--batch-runs``: how many seeds of a row train at once as one stacked model
    (:mod:`kdbench.batched`); 1: none; 0 (auto): every seed of a row, up to
    ``kdbench.batched.AUTO_GROUP``, where the student is small and the method allows."""
    published: Published | None = None
    """``[published]``: the numbers the benchmark should reproduce, shown beside the
    measured ones."""

    def smoke(self, batches: int = SMOKE_BATCHES) -> Spec:
        """This spec shrunk to a smoke test (``--smoke``): ``batches`` batches of at most 4 per
        epoch, small validation and test splits, at most 2 seeds, 2 epochs (1 for a trained
        teacher), a method's stages (an int parameter named ``epochs`` or ``*_epochs``) 1
        epoch, the parameters its ``Params`` cap for a smoke (``bounded(..., smoke=)``:
        ZSKD's impressions and steps) capped, and the name ``<name>-smoke``, so that its board
        files and MLflow experiment are its own; the protocol's ``smoke`` puts it in every fingerprint."""
        def short(recipe: Recipe, epochs: int) -> Recipe:
            return replace(recipe, epochs=min(recipe.epochs, epochs), milestones=(),
                           batch_size=min(recipe.batch_size, SMOKE_BATCH_SIZE))

        def stages(params: dict[str, Any], caps: dict[str, Any]) -> dict[str, Any]:
            return {k: min(v, 1) if (k == "epochs" or k.endswith("_epochs"))
                    and isinstance(v, int) and not isinstance(v, bool)
                    else min(v, caps[k]) if k in caps else v for k, v in params.items()}

        spec = self if self.family else replace(self, family=len(self.methods))
        return replace(
            spec, name=f"{self.name}-smoke"[:100],
            description=f"SMOKE TEST, not a result: {self.description}",
            seeds=self.seeds[:SMOKE_SEEDS], recipe=short(self.recipe, SMOKE_EPOCHS),
            teacher=replace(self.teacher, recipe=short(self.teacher.recipe, 1)),
            methods=tuple(replace(m, params=stages(m.params, m.smoke)) for m in self.methods),
            protocol=replace(self.protocol, smoke=batches))

    def with_options(self, seeds: int | None = None, methods: list[str] | None = None) -> Spec:
        """This spec with ``--seeds N`` (seeds 0..N-1) and ``--methods a,b`` applied."""
        spec = self if self.family else replace(self, family=len(self.methods))
        if seeds is not None:
            if not 1 <= seeds <= MAX_SEEDS:
                raise SpecError(f"--seeds must be in 1..{MAX_SEEDS}, got {seeds}")
            spec = replace(spec, seeds=tuple(range(seeds)))
        if methods is not None:
            if not methods:
                raise SpecError("--methods names no row; give row names separated by commas")
            twice = _repeated(methods)
            if twice is not None:
                raise SpecError(f"--methods names {twice!r} twice; name each row once")
            rows = {m.label: m for m in spec.methods}
            picked = {name: [m for m in spec.methods if grid.selected(name, m.label, m.table or m.label)]
                      for name in methods}
            unknown = [name for name in methods if not picked[name]]
            if unknown:
                raise SpecError(
                    f"--methods: {unknown[0]!r} is not a method of benchmark {spec.name!r}"
                    f"{suggestion(unknown[0], rows)}; its methods: {', '.join(rows) or 'none'}"
                )
            chosen = [m for name in methods for m in picked[name]]
            twice = _repeated(m.label for m in chosen)
            if twice is not None:
                raise SpecError(f"--methods picks row {twice!r} twice (by its name and by its "
                                "grid's); name each row once")
            spec = replace(spec, methods=tuple(chosen))
        return spec


TOP_KEYS = {"name", "description", "seeds", "metric", "metrics", "dataset", "teacher",
            "student", "recipe", "methods", "executor", "protocol", "tuning", "published"}
TEACHER_KEYS = {"provider", "model", "seed", "recipe"}


def resolve(name_or_path: str, plugins: Plugins) -> Path:
    """The benchmark file for a path, or for a name registered by a plugin."""
    path = Path(name_or_path)
    try:
        exists = path.exists()
    except (OSError, ValueError) as error:  # a name too long, a NUL byte
        raise SpecError(f"benchmark file {name_or_path!r} cannot be opened: {error}") from None
    folder = exists and path.is_dir()
    if path.suffix == ".toml" or (exists and not folder):
        if folder:
            raise SpecError(f"{name_or_path} is a directory; give a benchmark .toml file in it")
        if not path.is_file():
            raise SpecError(f"benchmark file {name_or_path} does not exist")
        return path
    known = plugins.benchmarks()
    if name_or_path in known:  # a built-in name wins over a folder of the same name
        return Path(known[name_or_path].factory)
    if folder:
        raise SpecError(f"{name_or_path} is a directory; give a benchmark .toml file in it")
    raise SpecError(
        f"no benchmark named {name_or_path!r}{suggestion(name_or_path, known)}; "
        f"built-in: {', '.join(sorted(known)) or 'none'}; or give a path to a .toml file"
    )


def load(name_or_path: str, plugins: Plugins) -> Spec:
    """Read, check and complete a benchmark file; :class:`SpecError` on any problem."""
    path = resolve(name_or_path, plugins)
    try:
        return _parse(read(path), path, plugins)
    except KdbenchError as error:
        raise SpecError(f"{path}: {error}") from None


def read(path: Path) -> dict[str, Any]:
    """The TOML document in ``path``, with no nan or inf, no integer beyond 64 bits and no
    control character in a key; :class:`SpecError` for a file that cannot be read, is not
    UTF-8 or not TOML."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SpecError(f"cannot read the benchmark file: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SpecError(f"not UTF-8 text (byte {data[error.start]:#04x} at offset {error.start}); "
                        "save the benchmark file as UTF-8") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"not valid TOML: {error}") from None
    except ValueError as error:  # an integer of more than 4300 digits
        raise SpecError(f"not valid TOML: {str(error).split(';')[0]}") from None
    except RecursionError:
        raise SpecError("not valid TOML: arrays or tables nested too deeply") from None
    _check_values(raw, ())
    return raw


def _check_values(value: Any, keys: tuple[str, ...]) -> None:
    """Refuse nan and inf anywhere, integers TOML does not promise (beyond 64 bits, which
    could not even be printed past 4300 digits), and keys that would break a one-line
    message."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not key.isprintable():
                raise SpecError(f"{_where(keys)}key {key!r} has a control character; "
                                "use printable names")
            _check_values(item, (*keys, key))
    elif isinstance(value, list):
        for item in value:
            _check_values(item, keys)
    elif not_finite(value):
        raise SpecError(f"{_where(keys[:-1])}{_key(keys[-1])} must be a finite number, got "
                        f"{value!r} (TOML's nan and inf are not allowed)")
    elif isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise SpecError(f"{_where(keys[:-1])}{_key(keys[-1])} must be a 64-bit integer, got one "
                        f"of {value.bit_length()} bits")


def _where(tables: tuple[str, ...]) -> str:
    """``[teacher.recipe] `` for the table a key is in; ``""`` at the top."""
    return "[" + ".".join(_key(k) for k in tables) + "] " if tables else ""


def _key(key: str) -> str:
    """A key as TOML writes it: bare when it can be, else quoted."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def _parse(raw: dict[str, Any], path: Path, plugins: Plugins) -> Spec:
    _only(raw, TOP_KEYS, "")
    name = _name(raw, path)
    dataset = _component(raw, "dataset", "datasets", plugins)
    student = _component(raw, "student", "students", plugins)
    recipe = check_recipe(build(Recipe, _table(raw, "recipe"), where="[recipe] "), "[recipe] ")
    teacher = _teacher(_table(raw, "teacher"), plugins)
    if "smoke" in _table(raw, "protocol"):
        raise SpecError("[protocol] smoke is set by `kdbench run --smoke` only; remove it")
    protocol = build(Protocol, _table(raw, "protocol"), where="[protocol] ")

    methods = []
    for label, table in _table(raw, "methods").items():
        _label(label)
        if not isinstance(table, dict):
            raise SpecError(f"[methods.{label}] must be a table of the method's parameters")
        values = dict(table)
        method = check(str, values.pop("method", label), f"[methods.{label}] method")
        entry = plugins.entry("methods", method, where=f"[methods.{label}] ")
        for point in grid.expand(label, values, entry.params, where=f"[methods.{label}] "):
            if point.grid:
                _label(point.label)
            params = entry.make_params(point.values, where=f"[methods.{label}] ")
            methods.append(MethodSpec(point.label, method, as_dict(params), label, point.grid,
                                      smoke_caps(entry.params)))
    twice = _repeated(m.label for m in methods)
    if twice is not None:
        raise SpecError(f"[methods] row {twice!r} is named twice (by a table and by a grid); "
                        "rename the table")

    seeds = _seeds(raw.get("seeds", 5))
    metrics = tuple(check(list[str], raw.get("metrics", ["top1", "agreement"]), "metrics"))
    twice = _repeated(metrics)
    if twice is not None:
        raise SpecError(f"metrics lists {twice!r} twice; list each metric once")
    metric = check(str, raw.get("metric", metrics[0] if metrics else "top1"), "metric")
    if metric not in metrics:
        metrics = (metric, *metrics)
    for metric_name in metrics:
        plugins.entry("metrics", metric_name, where="metrics: ")

    executor = _component(raw, "executor", "executors", plugins, default="process")
    return Spec(
        name=name,
        path=path,
        description=check(str, raw.get("description", ""), "description"),
        dataset=dataset, teacher=teacher, student=student, recipe=recipe,
        methods=tuple(methods), seeds=seeds, metric=metric, metrics=metrics,
        executor=executor, protocol=protocol,
        tuning=check(str, raw.get("tuning", ""), "tuning"),
        published=_published(raw, [m.label for m in methods]),
    )


def _published(raw: dict[str, Any], rows: list[str]) -> Published | None:
    """``[published]``: ``source`` (required), ``note``, and ``values``, percent by row."""
    if "published" not in raw:
        return None
    table = _table(raw, "published")
    _only(table, {"source", "note", "values"}, "[published] ")
    source = check(str, table.get("source", ""), "[published] source")
    if not source.strip():
        raise SpecError("[published] needs source = \"...\": the paper or repository, and the "
                        "table the numbers come from")
    values = _table(table, "values", "[published] ", "published.")
    allowed = ["teacher", "baseline", *rows]
    out = {}
    for key, value in values.items():
        if key not in allowed:
            raise SpecError(f"[published.values] {key!r} is not a row of the benchmark"
                            f"{suggestion(key, allowed)}; rows: {', '.join(allowed)}")
        number = check(float, value, f"[published.values] {_key(key)}")
        if not 0 <= number <= 100:
            raise SpecError(f"[published.values] {_key(key)} must be a percentage in [0, 100], "
                            f"got {number}")
        out[key] = round(number / 100, 10)
    return Published(source, out, check(str, table.get("note", ""), "[published] note"))


def _name(raw: dict[str, Any], path: Path) -> str:
    """The benchmark's name, which names its leaderboard files under ``--out``: a plain file
    name, so that none lands outside ``--out`` or fails to be written after the training."""
    if "name" in raw:
        name = check(str, raw["name"], "name")
        if not NAME.fullmatch(name):
            raise SpecError(f"name {name[:120]!r} is not a safe file name: use 1 to 100 letters, "
                            "digits, '.', '_' or '-', starting with a letter or digit")
        return name
    if not NAME.fullmatch(path.stem):
        raise SpecError(f"the file name {path.stem[:120]!r} is not a safe benchmark name; set "
                        "`name = \"...\"` in the file: 1 to 100 letters, digits, '.', '_' or "
                        "'-', starting with a letter or digit")
    return path.stem


def _label(label: str) -> None:
    """A row's name: shown in every table, picked by ``--methods a,b``."""
    if not label or label != label.strip() or "," in label or len(label) > 100:
        raise SpecError(f"[methods] row name {label!r} must be 1 to 100 characters, with no comma "
                        "and no space at either end; rename the table")
    if label in ("baseline", "teacher"):
        raise SpecError(f"[methods.{label}]: {label!r} names the leaderboard's own {label} row; "
                        "give the row another name (and `method = ...`)")


def _seeds(value: Any) -> tuple[int, ...]:
    """A count (seeds 0..N-1) or a list of distinct seeds."""
    if isinstance(value, list):
        seeds = tuple(check(list[int], value, "seeds"))
        if not seeds:
            raise SpecError("seeds must name at least one seed")
        if len(seeds) > MAX_SEEDS:
            raise SpecError(f"seeds lists {len(seeds)} seeds, more than {MAX_SEEDS}")
        for seed in seeds:
            if not 0 <= seed <= MAX_SEED:
                raise SpecError(f"seeds must be in 0..{MAX_SEED}, got {seed}")
        twice = _repeated(seeds)
        if twice is not None:
            raise SpecError(f"seeds lists seed {twice} twice; each seed must be distinct, or "
                            "the same run is counted twice")
        return seeds
    count = check(int, value, "seeds")
    if not 1 <= count <= MAX_SEEDS:
        raise SpecError(f"seeds must be a count in 1..{MAX_SEEDS} (seeds 0..N-1) or a list of "
                        f"seeds, got {count}")
    return tuple(range(count))


def _repeated(items: Iterable[Any]) -> Any:
    """The first item that occurs twice, or ``None``."""
    seen = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


def check_recipe(recipe: Recipe, where: str) -> Recipe:
    """``recipe`` after the checks across its fields (each field's range is checked by
    :func:`kdbench.params.build`)."""
    if recipe.milestones and recipe.schedule != "step":
        raise SpecError(f'{where}milestones are used only by schedule = "step", not '
                        f'{recipe.schedule!r}; set schedule = "step" or remove them')
    previous = 0
    for milestone in recipe.milestones:
        if not previous < milestone < recipe.epochs:
            raise SpecError(f"{where}milestones must be increasing epochs in 1..{recipe.epochs - 1} "
                            f"(below epochs = {recipe.epochs}), got {list(recipe.milestones)}")
        previous = milestone
    return recipe


def _teacher(table: dict[str, Any], plugins: Plugins) -> TeacherSpec:
    provider = check(str, table.get("provider", "train"), "[teacher] provider")
    entry = plugins.entry("teachers", provider, where="[teacher] provider: ")
    model = _component(table, "model", "students", plugins, where="[teacher] ") \
        if "model" in table else None
    own = {k: v for k, v in table.items() if k not in TEACHER_KEYS}
    params = as_dict(entry.make_params(own, where=f"[teacher] ({provider}) "))
    if model is not None and not getattr(entry.factory, "needs_model", True):
        raise SpecError(f"[teacher] provider {provider!r} takes no `model` (it makes its own "
                        "teacher); remove the key")
    if getattr(entry.factory, "needs_model", False) and model is None:
        raise SpecError(f"[teacher] provider {provider!r} needs `model`, an architecture name; "
                        f"installed: {', '.join(sorted(plugins.students()))}")
    recipe = check_recipe(build(Recipe, _table(table, "recipe", "[teacher] ", "teacher."),
                                where="[teacher.recipe] "), "[teacher.recipe] ")
    seed = check(int, table.get("seed", 0), "[teacher] seed")
    if not 0 <= seed <= MAX_SEED:
        raise SpecError(f"[teacher] seed must be in 0..{MAX_SEED}, got {seed}")
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


def _table(raw: dict[str, Any], key: str, where: str = "", section: str = "") -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise SpecError(f"{where}{key} must be a table ([{section}{key}]), got {short_repr(value)}")
    return value


def _only(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise SpecError(f"{where}unknown key {key!r}{suggestion(key, allowed)}; "
                            f"allowed: {', '.join(sorted(allowed))}")
