"""The plugin contract, checked before a long sweep: the conformance kit's checks.

Each ``check_*`` function takes a registered name, exercises the plugin the way a sweep
would (on random tensors of the right shape, a batch or a few steps, in well under a
second for a small model) and raises :class:`Nonconformance` with one line that names
the plugin, what it did and what the contract expects. They return what they checked, so
a test can say more than "passed".

What is checked, per kind:

- **parameters** (every kind with a ``Params`` dataclass): the defaults round-trip through a
  benchmark file (TOML has no null: ``None`` defaults are left out) and through MLflow's
  parameter store, where a value is a string of at most 6000 characters.
- **models**: the factory builds from a :class:`~kdbench.data.DataInfo`, the module carries
  its :class:`~kdbench.taps.TapPoints`, every tap resolves, the logits have one column per
  class, and a backward pass reaches every parameter.
- **datasets**: the factory's tensors have matching lengths, float or uint8 inputs, int64
  labels in ``[0, num_classes)``, and non-empty train and test splits.
- **methods**, on each built-in model pair the method accepts (``check`` does not raise
  :class:`~kdbench.errors.Incompatible`): the loss, and each warm-up stage's, is a dict of
  finite floating-point scalars; a method that declares no teacher (``teacher_needs``
  left at its default) does not read one; gradients reach the student and the method's own modules
  and never a frozen teacher; a few optimiser steps on one batch lower the loss; the same
  seed gives the same numbers. A method must accept at least one pair.
- **metrics**: the factory's metric returns a finite float on random outputs (logits, a
  teacher's logits, embeddings and a retrieval database) and says whether higher is better.

The pytest side (``pytest --kdbench-conformance``) lives in :mod:`kdbench.testing`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import tempfile
import tomllib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kdbench import tomlwrite
from kdbench.contract import BrokenMethod, check_teacher_declared, check_terms
from kdbench.data import DataInfo, Dataset
from kdbench.errors import Incompatible, KdbenchError
from kdbench.metrics import Database, Outputs
from kdbench.params import as_dict
from kdbench.plugins import Plugins
from kdbench.registry import Entry
from kdbench.taps import Tapped, Taps, shapes, tap_points

MLFLOW_PARAM_LIMIT = 6000
"""The longest parameter value MLflow stores (longer ones are cut: a silent change)."""


class Nonconformance(AssertionError):
    """A plugin breaks the contract of :mod:`kdbench.hookspecs`.

    An ``AssertionError``, so pytest reports it as a failed check, not as an error in the
    test itself."""


@dataclass(frozen=True)
class Pair:
    """A student and a teacher architecture on inputs of one shape: where a method is tried."""

    student: str
    teacher: str
    input_shape: tuple[int, ...]
    num_classes: int = 10
    student_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    teacher_params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.teacher} -> {self.student} on {tuple(self.input_shape)}"


PAIRS: tuple[Pair, ...] = (
    Pair("cnn1d_small", "cnn1d", (40,)),
    Pair("cnn2d_small", "cnn2d", (1, 8, 8)),
    Pair("mlp", "mlp", (40,), student_params={"hidden": (16,)},
         teacher_params={"hidden": (32, 32)}),
)
"""The built-in pairs a method is tried on: 1-D maps, 2-D maps and flat features."""

INPUT_SHAPES: tuple[tuple[int, ...], ...] = ((40,), (1, 8, 8), (1, 28, 28), (3, 32, 32))
"""The input shapes a model is tried on; one that refuses a shape (its factory raises a
``ValueError`` or :class:`~kdbench.errors.KdbenchError`, or its first batch a
``RuntimeError``) is tried on the next."""

BATCH = 8


@dataclass(frozen=True)
class MethodReport:
    """What :func:`check_method` exercised: the pairs tried and the ones the method refused."""

    name: str
    checked: tuple[str, ...]
    refused: tuple[str, ...]
    terms: tuple[str, ...]


def _fail(who: str, what: str) -> Nonconformance:
    return Nonconformance(f"{who}: {what}")


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op torch thread inside the block, the caller's count restored after. Checks
    are tiny, and more threads on a busy machine spin for seconds (the conformance suite and
    the tests use this too)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# Parameters ---------------------------------------------------------------------------


def check_params(kind: str, name: str, plugins: Plugins | None = None,
                 tracking_uri: str | None = None) -> dict[str, Any]:
    """The defaults of ``name``'s ``Params`` survive a benchmark file and MLflow.

    The defaults are written as a TOML table, read back and built with the entry's own
    ``make_params`` (the path a benchmark file takes); the result must equal the defaults.
    Each value is then logged as an MLflow parameter to ``tracking_uri`` (a throwaway
    SQLite store when ``None``: pass one store to many checks, creating it takes seconds)
    and read back unchanged. Returns the defaults as a dict.
    """
    plugins = plugins or Plugins.load()
    entry = plugins.entry(kind, name)
    who = f"{kind[:-1]} {name!r}"
    defaults = entry.make_params({})
    values = {k: v for k, v in as_dict(defaults).items() if v is not None}
    try:
        text = tomlwrite.dump(values)
    except KdbenchError as error:
        raise _fail(who, f"a default cannot be written in a benchmark file ({error}); "
                    "parameters must be bool, int, float, str, or lists or tables of them"
                    ) from None
    rebuilt = entry.make_params(tomllib.loads(text))
    if rebuilt != defaults:
        raise _fail(who, f"its defaults {defaults} came back from a benchmark file as "
                    f"{rebuilt}")
    long = [k for k, v in values.items() if len(str(v)) > MLFLOW_PARAM_LIMIT]
    if long:
        raise _fail(who, f"parameters {long} are longer than MLflow's {MLFLOW_PARAM_LIMIT} "
                    "characters and would be cut in the store")
    if values:
        _mlflow_roundtrip(who, {f"{kind}.{k}": str(v) for k, v in values.items()}, tracking_uri)
    return values


def _mlflow_roundtrip(who: str, params: dict[str, str], tracking_uri: str | None) -> None:
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    # MLflow's own deprecation warnings (SQLAlchemy's, from its store) are not the plugin's:
    # they would fill the plugin author's test report.
    with tempfile.TemporaryDirectory(prefix="kdbench-conformance-") as tmp, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client = MlflowClient(tracking_uri or f"sqlite:///{Path(tmp) / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("kdbench-conformance")
        experiment_id = experiment.experiment_id if experiment is not None else \
            client.create_experiment("kdbench-conformance")
        run = client.create_run(experiment_id)
        try:
            client.log_batch(run.info.run_id,
                             params=[Param(k, v) for k, v in params.items()])
            stored = client.get_run(run.info.run_id).data.params
        finally:
            client.set_terminated(run.info.run_id)
    changed = {k: (v, stored.get(k)) for k, v in params.items() if stored.get(k) != v}
    if changed:
        raise _fail(who, f"parameters changed in MLflow (sent, stored): {changed}")


# Models -------------------------------------------------------------------------------


def build_model(name: str, info: DataInfo, params: dict[str, Any] | None = None,
                plugins: Plugins | None = None) -> nn.Module:
    """``name`` built the way a sweep builds it, with ``params`` over its defaults."""
    plugins = plugins or Plugins.load()
    entry = plugins.entry("students", name)
    return entry.factory(entry.make_params(params or {}), info)


def check_model(name: str, info: DataInfo | None = None, params: dict[str, Any] | None = None,
                plugins: Plugins | None = None) -> DataInfo:
    """``name`` builds, its taps resolve and its logits and gradients are sound.

    With ``info`` ``None`` the model is tried on :data:`INPUT_SHAPES` in turn and checked on
    the first it accepts. Returns the ``DataInfo`` it was checked on.
    """
    with one_thread():
        return _check_model(name, info, params, plugins or Plugins.load())


def _check_model(name: str, info: DataInfo | None, params: dict[str, Any] | None,
                 plugins: Plugins) -> DataInfo:
    who = f"model {name!r}"
    candidates = [info] if info is not None else \
        [DataInfo(shape, 10, 64) for shape in INPUT_SHAPES]
    refusals = []
    for candidate in candidates:
        torch.manual_seed(0)
        try:
            model = build_model(name, candidate, params, plugins)
            with torch.no_grad():
                model.eval()(torch.zeros(2, *candidate.input_shape))
        except (ValueError, RuntimeError, KdbenchError) as error:
            # A model is built for some input shapes only (a 2-D CNN for images): a shape
            # it refuses, when building or on its first batch, is not a breach.
            refusals.append(f"{candidate.input_shape}: {str(error).splitlines()[0]}")
            continue
        _check_built(who, model, candidate)
        return candidate
    raise _fail(who, "builds on none of the input shapes " + "; ".join(refusals))


def _check_built(who: str, model: nn.Module, info: DataInfo) -> None:
    if not isinstance(model, nn.Module):
        raise _fail(who, f"its factory returned {type(model).__name__}, not a torch.nn.Module")
    try:
        tap_points(model)
    except KdbenchError as error:
        raise _fail(who, str(error)) from None
    x = torch.randn(BATCH, *info.input_shape)
    try:
        found = shapes(model, x)
    except KdbenchError as error:
        raise _fail(who, f"a tap does not resolve: {error}") from None
    if found.logits != (info.num_classes,):
        raise _fail(who, f"its logits have shape {found.logits} per sample; expected "
                    f"({info.num_classes},), one per class")
    if found.embedding is None:
        raise _fail(who, "its embedding tap produced nothing")
    model.train()
    out = model(x)
    out.float().logsumexp(1).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    if missing:
        raise _fail(who, f"parameters {missing[:5]} get no gradient from the logits: dead "
                    "weights count in the model's size and may break methods")


# Datasets -----------------------------------------------------------------------------


def check_dataset(name: str, params: dict[str, Any] | None = None, cache_dir: Path | None = None,
                  plugins: Plugins | None = None) -> DataInfo:
    """``name``'s factory returns a sound :class:`~kdbench.data.Dataset`; returns its info.

    Builds the real data (a dataset that downloads needs its files under its data root).
    """
    plugins = plugins or Plugins.load()
    entry = plugins.entry("datasets", name)
    who = f"dataset {name!r}"
    with tempfile.TemporaryDirectory(prefix="kdbench-conformance-") as tmp:
        data = entry.factory(entry.make_params(params or {}), cache_dir or Path(tmp))
    if not isinstance(data, Dataset):
        raise _fail(who, f"its factory returned {type(data).__name__}, not a kdbench.data.Dataset")
    for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        if len(x) == 0:
            raise _fail(who, f"its {split} split is empty")
        if len(x) != len(y):
            raise _fail(who, f"its {split} split has {len(x)} inputs and {len(y)} labels")
        if not (x.is_floating_point() or x.dtype == torch.uint8):
            raise _fail(who, f"its {split} inputs are {x.dtype}; expected a float or uint8 tensor")
        if y.dtype != torch.int64 or y.dim() != 1:
            raise _fail(who, f"its {split} labels are {y.dtype} of shape {tuple(y.shape)}; "
                        "expected a 1-D int64 tensor of class indices")
        if int(y.min()) < 0 or int(y.max()) >= data.num_classes:
            raise _fail(who, f"its {split} labels span {int(y.min())}..{int(y.max())}, outside "
                        f"0..{data.num_classes - 1}")
        if tuple(x.shape[1:]) != tuple(data.x_train.shape[1:]):
            raise _fail(who, f"its {split} inputs have shape {tuple(x.shape[1:])}, the train "
                        f"inputs {tuple(data.x_train.shape[1:])}")
    if data.augment is not None:
        batch = data.x_train[:BATCH]
        a = data.augment(batch, torch.Generator().manual_seed(0))
        b = data.augment(batch, torch.Generator().manual_seed(0))
        if a.shape[1:] != batch.shape[1:] or not torch.equal(a, b):
            raise _fail(who, "its augmentation changes the shape or is not fixed by the "
                        "generator it is given (the run's seed must fix it)")
    return data.info


# Metrics ------------------------------------------------------------------------------


def check_metric(name: str, plugins: Plugins | None = None) -> float:
    """``name``'s metric gives a finite float on random outputs of a split; returns it."""
    plugins = plugins or Plugins.load()
    entry = plugins.entry("metrics", name)
    who = f"metric {name!r}"
    metric = entry.factory(entry.make_params({}))
    if not isinstance(getattr(metric, "higher_is_better", None), bool):
        raise _fail(who, "has no boolean `higher_is_better`")
    generator = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (64,), generator=generator)
    outputs = Outputs(y, logits=torch.randn(64, 10, generator=generator),
                      teacher_logits=torch.randn(64, 10, generator=generator),
                      embedding=torch.randn(64, 16, generator=generator),
                      database=Database(torch.randn(128, 16, generator=generator),
                                        torch.randint(0, 10, (128,), generator=generator)))
    if not metric.applies(outputs):
        raise _fail(who, f"needs {sorted(metric.needs)}, more than a split's outputs hold")
    value = metric.score(outputs)
    if not isinstance(value, float) or not math.isfinite(value):
        raise _fail(who, f"returned {value!r}; expected a finite float")
    return value


# Methods ------------------------------------------------------------------------------


def check_method(name: str, pairs: Sequence[Pair] = PAIRS, params: dict[str, Any] | None = None,
                 plugins: Plugins | None = None, steps: int = 25) -> MethodReport:
    """``name``'s losses keep the contract on every pair of ``pairs`` it accepts.

    On one random batch of :data:`BATCH` samples per pair: the main loss and each stage's
    are dicts of finite float scalars (:func:`kdbench.contract.check_terms`); the summed
    loss's gradient reaches the student and, between the stages and the main loss, the
    method's own modules, and never a frozen teacher; ``steps`` Adam steps on that batch
    lower the main loss; the same seed gives the same terms.
    """
    with one_thread():
        return _check_method(name, pairs, params, plugins or Plugins.load(), steps)


def _check_method(name: str, pairs: Sequence[Pair], params: dict[str, Any] | None,
                  plugins: Plugins, steps: int) -> MethodReport:
    entry = plugins.entry("methods", name)
    who = f"method {name!r}"
    checked, refused, terms = [], [], set()
    for pair in pairs:
        try:
            first = _method_on(entry, pair, params, plugins, who, steps)
        except Incompatible as why:
            refused.append(f"{pair}: {why}")
            continue
        again = _method_on(entry, pair, params, plugins, who, steps=0)
        if {k: v.item() for k, v in first.items()} != {k: v.item() for k, v in again.items()}:
            raise _fail(who, f"on {pair}, the same seed gave different loss terms: "
                        f"{_values(first)} then {_values(again)}")
        checked.append(str(pair))
        terms.update(first)
    if not checked:
        raise _fail(who, "accepts none of the model pairs it was tried on: " + "; ".join(refused))
    return MethodReport(name, tuple(checked), tuple(refused), tuple(sorted(terms)))


def _terms(terms: Any, who: str) -> dict[str, Tensor]:
    try:
        return check_terms(terms, who)
    except BrokenMethod as error:
        raise Nonconformance(str(error)) from None


def _values(terms: dict[str, Tensor]) -> dict[str, float]:
    return {k: round(v.item(), 6) for k, v in terms.items()}


def _method_on(entry: Entry, pair: Pair, params: dict[str, Any] | None, plugins: Plugins,
               who: str, steps: int) -> dict[str, Tensor]:
    """The method's first loss terms on ``pair`` after checking stages, gradients and steps."""
    info = DataInfo(pair.input_shape, pair.num_classes, 4 * BATCH)
    torch.manual_seed(0)
    method = entry.factory(entry.make_params(params or {}))
    student = build_model(pair.student, info, pair.student_params, plugins)
    teacher = build_model(pair.teacher, info, pair.teacher_params, plugins) \
        if method.uses_teacher() else None
    if teacher is not None and not method.trains_teacher:
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, *pair.input_shape, generator=generator)
    y = torch.arange(BATCH) % pair.num_classes
    idx = torch.arange(BATCH)
    s_shapes = shapes(student, x)
    t_shapes = shapes(teacher, x) if teacher is not None else None
    method.check(s_shapes, t_shapes)
    if teacher is None:
        # The default teacher_needs (none) hands the loss t = None: one that reads it anyway
        # would fail every run on its first step.
        try:
            check_teacher_declared(method, student, x, y, s_shapes, None, info, who)
        except BrokenMethod as error:
            raise Nonconformance(str(error)) from None
    extra = method.build(s_shapes, t_shapes, info)
    s_tap = Tapped(student, method.needs)
    t_tap = Tapped(teacher, method.teacher_taps()) if teacher is not None else None

    def teacher_taps() -> Taps | None:
        if t_tap is None:
            return None
        if method.trains_teacher:
            return t_tap(x)
        with torch.no_grad():
            return t_tap(x)

    reached: set[str] = set()
    for stage in method.stages():
        _zero(student, teacher, extra)
        s = s_tap(x) if stage.trains_student else None
        stage_terms = _terms(stage.loss(s, teacher_taps(), y, idx),
                                  f"{who}: stage {stage.name!r}")
        _backward(who, f"stage {stage.name!r}", stage_terms)
        reached |= _with_grad(extra)

    method.start_epoch(0, 1)
    _zero(student, teacher, extra)
    first = _terms(method.loss(s_tap(x), teacher_taps(), y, idx), f"{who}: its loss")
    _backward(who, "its loss", first)
    if not _with_grad(student):
        raise _fail(who, f"on {pair}, its loss sends no gradient to the student")
    reached |= _with_grad(extra)
    if extra is not None and any(p.requires_grad for p in extra.parameters()) and not reached:
        raise _fail(who, f"on {pair}, neither its loss nor its stages send a gradient to the "
                    "modules it built (connectors, heads): they would never train")
    if teacher is not None and not method.trains_teacher and \
            any(p.grad is not None for p in teacher.parameters()):
        raise _fail(who, f"on {pair}, its loss sends a gradient to the frozen teacher")

    if steps:
        trainable = [*student.parameters(), *(extra.parameters() if extra is not None else []),
                     *(teacher.parameters() if method.trains_teacher and teacher is not None
                       else [])]
        optimizer = torch.optim.Adam([p for p in trainable if p.requires_grad], lr=1e-3)
        start = sum(first.values()).item()
        for _ in range(steps):
            optimizer.zero_grad()
            total = sum(method.loss(s_tap(x), teacher_taps(), y, idx).values())
            total.backward()
            optimizer.step()
        with torch.no_grad():
            end = sum(method.loss(s_tap(x), teacher_taps(), y, idx).values()).item()
        if not end < start:
            raise _fail(who, f"on {pair}, {steps} Adam steps (lr 1e-3) on one batch did not "
                        f"lower its loss ({start:.4g} -> {end:.4g}): check the sign of each term")
    s_tap.remove()
    if t_tap is not None:
        t_tap.remove()
    return {k: v.detach() for k, v in first.items()}


def _zero(*modules: nn.Module | None) -> None:
    for module in modules:
        if module is not None:
            module.zero_grad(set_to_none=True)


def _backward(who: str, what: str, terms: dict[str, Tensor]) -> None:
    total = sum(terms.values())
    if not total.requires_grad:
        raise _fail(who, f"{what} does not depend on any trainable parameter")
    total.backward()


def _with_grad(module: nn.Module | None) -> set[str]:
    if module is None:
        return set()
    return {n for n, p in module.named_parameters()
            if p.grad is not None and bool(p.grad.abs().sum() > 0)}
