"""The one training loop: a student, a (frozen or peer) teacher and a method.

:func:`execute` is a pure function of its :class:`~kdbench.runs.Job`: the
seed fixes the student's initialisation, the data order and any augmentation,
so the same job gives the same result. It runs in a worker process, never
writes to the tracking store, and reports progress through ``emit``.
"""

from __future__ import annotations

import functools
import json
import math
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kdbench import accel as accelerate
from kdbench import cachefile, contract
from kdbench.contract import BrokenMethod
from kdbench.data import Dataset, batches, hold_out, seal_test, seal_train, subset
from kdbench.errors import Diverged, Incompatible, KdbenchError
from kdbench.method import LossTerms, Method, TransferContext
from kdbench.metrics import Database, Metric, Outputs, needs_of
from kdbench.plugins import Plugins
from kdbench.runs import Job, RunResult, TeacherRef
from kdbench.spec import Component, Recipe
from kdbench.stream import TrainingBatches
from kdbench.taps import Tapped, Taps, shapes, tap_points
from kdbench.teacher import freeze

Emit = Callable[[str, int, int, dict[str, float]], None]
"""``emit(phase, epoch, epochs, metrics)``: progress of a run, epoch by epoch."""

# Teacher taps for the whole training set are cached when they fit in this many numbers.
TEACHER_CACHE_LIMIT = 2**27
SMOKE_EVALUATION = 8
"""Validation and test samples of a smoke run (``protocol.smoke``): enough to exercise them."""


@functools.cache
def plugins() -> Plugins:
    """This process's plugins (workers load their own)."""
    return Plugins.load()


@functools.cache
def _dataset(name: str, params_json: str, cache_dir: str) -> Dataset:
    entry = plugins().entry("datasets", name)
    return entry.factory(entry.make_params(json.loads(params_json)), Path(cache_dir) / "data")


def dataset(component: Component, cache_dir: str, device: str = "cpu") -> Dataset:
    """The dataset of ``component``, built once per process."""
    data = _dataset(component.name, json.dumps(component.params, sort_keys=True), cache_dir)
    return data if device == "cpu" else data.to(device)


def build_model(component: Component, data: Dataset) -> nn.Module:
    entry = plugins().entry("students", component.name)
    return entry.factory(entry.make_params(component.params), data.info)


def load_teacher(ref: TeacherRef, data: Dataset) -> nn.Module:
    """The frozen teacher of ``ref``. A provider that ``needs_data`` (one fitted on the
    training split, or sized by the dataset) gets ``data``: the training split less
    validation."""
    entry = plugins().entry("teachers", ref.provider)
    provider = entry.factory(entry.make_params(ref.params))
    model = build_model(ref.model, data) if ref.model is not None else None
    checkpoint = Path(ref.checkpoint) if ref.checkpoint else None
    if getattr(provider, "needs_data", False):
        return freeze(provider.load(model, checkpoint, data))
    return freeze(provider.load(model, checkpoint))


def describe_method(job: Job) -> str:
    """How messages name the method of ``job``: ``method 'kd' (plugin 'methods' (kdbench
    0.1.0))``, or ``the baseline``."""
    if job.method is None:
        return "the baseline"
    entry = plugins().entry("methods", job.method)
    info = plugins().info(entry.plugin)
    return f"method {job.method!r}" + (f" ({info.origin})" if info is not None else "")


def make_method(job: Job) -> Method:
    if job.method is None:
        return Method()
    entry = plugins().entry("methods", job.method)
    return entry.factory(entry.make_params(job.method_params))


def make_optimizer(params: Iterable[nn.Parameter], recipe: Recipe) -> torch.optim.Optimizer:
    params = list(params)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                               weight_decay=recipe.weight_decay, nesterov=recipe.momentum > 0)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


def make_schedule(optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int
                  ) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-step schedule, so that short runs anneal as smoothly as long ones."""
    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total, 1))
    if recipe.schedule == "step":
        milestones = [m * steps_per_epoch for m in recipe.milestones]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, recipe.gamma)
    return None


def main_recipe(method: Method, recipe: Recipe) -> Recipe:
    """The recipe of the main training phase: under ``stage_budget = "shared"`` the epochs
    of the method's stages that train the student come out of the recipe's."""
    if recipe.stage_budget != "shared":
        return recipe
    taken = sum(stage.epochs for stage in method.stages() if stage.trains_student)
    if taken >= recipe.epochs:
        raise Incompatible(
            f"its warm-up stages take {taken} of the recipe's {recipe.epochs} epochs, leaving "
            "none for the main training; shorten the stages, lengthen [recipe] epochs, or set "
            '[recipe] stage_budget = "extra"')
    return replace(recipe, epochs=recipe.epochs - taken)


class TeacherTaps:
    """The teacher's taps for a batch of training indices.

    Without augmentation the frozen teacher sees the same inputs every epoch,
    so its taps over the whole training set are computed once and indexed, and so are
    the method's ``targets`` (:meth:`Method.teacher_targets`) computed from them.
    """

    def __init__(self, tapped: Tapped | None, data: Dataset, frozen: bool, batch_size: int,
                 targets: Callable[[Taps], dict[str, Tensor]] | None = None):
        self.tapped = tapped
        self.frozen = frozen
        self.targets = targets if frozen else None
        self.cache: Taps | None = None
        if tapped is None or not frozen or data.augment is not None:
            return
        with torch.no_grad():
            first = self._targeted(tapped(data.inputs(data.x_train[:1])))
            size = sum(t.numel() for t in _flat(first)) * len(data.x_train)
            if size > TEACHER_CACHE_LIMIT:
                return
            parts = [self._targeted(tapped(data.inputs(data.x_train[i])))
                     for i in batches(len(data.x_train), 4 * batch_size)]
        self.cache = Taps(
            logits=torch.cat([p.logits for p in parts]) if first.logits is not None else None,
            embedding=torch.cat([p.embedding for p in parts]) if first.embedding is not None
            else None,
            stages=[torch.cat([p.stages[k] for p in parts]) for k in range(len(first.stages))],
            targets={k: torch.cat([p.targets[k] for p in parts]) for k in first.targets},
        )

    def _targeted(self, taps: Taps) -> Taps:
        if self.targets is not None:
            with torch.no_grad():
                taps.targets = dict(self.targets(taps))
        return taps

    def __call__(self, x: Tensor, idx: Tensor) -> Taps | None:
        if self.tapped is None:
            return None
        if self.cache is not None:
            c = self.cache
            return Taps(c.logits[idx] if c.logits is not None else None,
                        c.embedding[idx] if c.embedding is not None else None,
                        [s[idx] for s in c.stages], {k: v[idx] for k, v in c.targets.items()})
        if self.frozen:
            with torch.no_grad():
                return self._targeted(self.tapped(x))
        return self.tapped(x)


def _flat(taps: Taps) -> list[Tensor]:
    return [t for t in (taps.logits, taps.embedding, *taps.stages, *taps.targets.values())
            if t is not None]


def _stamped(execute: Callable[..., RunResult]) -> Callable[..., RunResult]:
    """Stamp a result with the wall-clock start and end of its run (MLflow shows them)."""

    @functools.wraps(execute)
    def stamped(job: Job, emit: Emit | None = None) -> RunResult:
        started = time.time()
        result = execute(job, emit)
        result.started, result.ended = started, time.time()
        return result

    return stamped


@_stamped
def execute(job: Job, emit: Emit | None = None) -> RunResult:
    """Train (or, for a teacher from elsewhere, evaluate) the network of ``job``.

    A non-finite loss or any error gives a ``failed`` result with a one-line
    reason (and the worker's traceback, for ``--debug``) instead of an exception, so a
    sweep never loses finished work.

    The run uses ``job.threads`` torch threads whoever calls it, and gives the calling
    process's count back: a different count sums in a different order, so the same
    fingerprint would otherwise give other numbers under another executor or pool size.
    """
    start = time.perf_counter()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(job.threads)
        return _execute(job, emit or (lambda *_: None), start)
    except KdbenchError as error:
        return RunResult("", "failed", seconds=time.perf_counter() - start, error=str(error),
                         traceback=_traceback(error))
    except Exception as error:
        return RunResult("", "failed", seconds=time.perf_counter() - start,
                         error=f"{type(error).__name__}: {error} (at {_where(error)})",
                         traceback=_traceback(error))
    finally:
        torch.set_num_threads(threads)


def _traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


def _where(error: BaseException) -> str:
    """``file:line`` of the innermost frame outside torch: the line of the method, model or
    loop that called torch wrongly, not torch's internals."""
    frames = traceback.extract_tb(error.__traceback__)
    torch_dir = Path(torch.__file__).parent
    outside = [f for f in frames if not Path(f.filename).is_relative_to(torch_dir)]
    frame = (outside or frames)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


def _execute(job: Job, emit: Emit, start: float) -> RunResult:
    device = torch.device(job.device)
    data = prepared(job)
    metrics = {name: _metric(name) for name in job.metrics}
    method = make_method(job)
    if method.makes_transfer_set():
        # Sealed before anything can read it: the run trains on the method's transfer set.
        data = seal_train(data)

    if job.role == "teacher" and job.teacher is not None:
        entry = plugins().entry("teachers", job.teacher.provider)
        if not entry.factory.trains:
            teacher = load_teacher(job.teacher, data).to(device)
            val = _prefixed("val", evaluate([teacher], data.x_val, data.y_val, metrics,
                                            _database(data)))
            emit("eval", 1, 1, val)
            final = {**_test_metrics(job, data, metrics, teacher, None), **val,
                     **_prefixed("train", evaluate([teacher], data.x_train, data.y_train,
                                                   metrics, prepare=data.prepare))}
            # A teacher kdbench fitted (scikit-learn, PCA) keeps its fit as the checkpoint.
            fitted = job.teacher.checkpoint if getattr(entry.factory, "fits", False) else None
            return RunResult("", "finished", final, [{"phase": "eval", "epoch": 1, **val}],
                             time.perf_counter() - start, _size(teacher), fitted)

    torch.manual_seed(job.seed)
    student = build_model(job.model, data).to(device)
    teacher: nn.Module | None = None
    if job.teacher is not None and job.role != "teacher":
        if method.trains_teacher:
            teacher = build_model(job.teacher.model, data).to(device)
        else:
            teacher = load_teacher(job.teacher, data).to(device)

    artifacts: dict[str, bytes] = {}
    if method.makes_transfer_set():
        data, artifacts = with_transfer_set(job, method, teacher, data)

    sample = data.inputs(data.x_train[:2])
    s_shapes = shapes(student, sample)
    t_shapes = shapes(teacher, sample) if teacher is not None else None
    if method.uses_teacher() and teacher is None:
        raise KdbenchError(f"method {job.method!r} needs a teacher and the benchmark has none")
    method.check(s_shapes, t_shapes)
    extra = method.build(s_shapes, t_shapes, data.info)
    if extra is not None:
        extra.to(device)

    s_tapped = Tapped(student, method.needs)
    t_tapped = Tapped(teacher, method.teacher_taps()) \
        if teacher is not None and method.uses_teacher() else None
    teacher_taps = TeacherTaps(t_tapped, data, not method.trains_teacher, job.recipe.batch_size,
                               targets=method.teacher_targets)
    trainable = [*student.parameters(), *(extra.parameters() if extra is not None else [])]
    if method.trains_teacher and teacher is not None:
        trainable += list(teacher.parameters())
    modules = [m for m in (student, extra, teacher if method.trains_teacher else None)
               if m is not None]

    # The models scored: the student, and the teacher where a metric compares with it.
    compared = teacher is not None and any(m.needs_teacher for m in metrics.values()) \
        and "logits" in tap_points(teacher).available()
    scored = [student, teacher] if compared and teacher is not None else [student]
    # A frozen teacher's validation logits never change: computing them every epoch cost as
    # much as the student's training on the 2-D benchmark.
    fixed = outputs_on([teacher], data.x_val, frozenset({"logits"}), prepare=data.prepare
                       )[0].logits \
        if compared and teacher is not None and not method.trains_teacher else None

    def on_validation() -> dict[str, float]:
        """Every metric of the student on the validation split (queries against the training
        split for retrieval), in one pass over it."""
        if fixed is not None:
            taps = outputs_on([student], data.x_val, _taps_for(metrics),
                              prepare=data.prepare)[0]
            return score(metrics, taps, data.y_val, fixed, database(student, data, metrics))
        return evaluate(scored, data.x_val, data.y_val, metrics, _database(data), data.prepare)

    rank = job.metric or (job.metrics[0] if job.metrics else "")
    higher = metrics[rank].higher_is_better if rank in metrics else True
    best = _Best(job.protocol.epoch == "best", higher,
                 [student, *([teacher] if method.trains_teacher and teacher is not None else [])])

    generator = torch.Generator().manual_seed(job.seed)
    history: list[dict[str, Any]] = []
    updates = 0  # optimiser steps so far: none means a non-finite loss cannot be divergence
    method_name = describe_method(job)
    autocast = accelerate.autocast(job.accel, device)
    for m in (student, teacher):  # after the taps' hooks are on: compile traces them
        if m is not None:
            accelerate.prepare(m, job.accel)
    if extra is not None:  # the method's own modules run in its float32 loss, uncompiled
        accelerate.prepare(extra, replace(job.accel, compile=False))

    def epochs(phase: str, loss_fn: Callable[..., LossTerms], n_epochs: int,
               optimizer: torch.optim.Optimizer, schedule: Any, on_epoch: Callable | None,
               student_forward: bool = True) -> None:
        nonlocal updates
        who = f"{method_name}: its loss" if phase == "train" else \
            f"{method_name}: the loss of its stage {phase!r}"
        n_batches = math.ceil(len(data.x_train) / job.recipe.batch_size)
        source = TrainingBatches(data.x_train, data.augment, job.recipe.batch_size)
        for epoch in range(n_epochs):
            if on_epoch is not None:
                on_epoch(epoch, n_epochs)
            for m in modules:
                m.train()
            # Checked and read once per epoch: no step waits for the device (contract.StepLog).
            log = contract.StepLog(method_name, phase, epoch + 1, n_epochs, n_batches)
            try:
                for batch, (idx, x) in enumerate(source.epoch(generator)):
                    y = data.y_train[idx]
                    x = accelerate.batch(data.inputs(x), job.accel)
                    with autocast:
                        s = s_tapped(x) if student_forward else None
                        t = teacher_taps(x, idx)
                    s, t = accelerate.fp32(s), accelerate.fp32(t)
                    terms = contract.check_terms(loss_fn(s, t, y, idx), who)
                    total = sum(terms.values())
                    contract.check_total(total, terms, who)
                    optimizer.zero_grad(set_to_none=True)
                    total.backward()
                    log.add(terms, total, batch + 1, updates, contract.gradient_sum(trainable),
                            lambda s=s, t=t: contract.outputs_sum(
                                [s, t if method.trains_teacher else None]))
                    optimizer.step()
                    updates += 1
                    if schedule is not None:
                        schedule.step()
            except Diverged:
                raise  # the log's own: a non-finite step
            except Exception:
                log.read()  # an earlier non-finite step caused it: that step's error instead
                raise
            sums: dict[str, float] = {}
            steps = log.read()
            for terms_of_step in steps:
                for name, value in terms_of_step.items():
                    sums[name] = sums.get(name, 0.0) + value
            count = len(steps)
            row = {f"loss.{k}": v / count for k, v in sums.items()}
            row["loss"] = sum(row.values())
            row.update(_prefixed("val", on_validation()))
            history.append({"phase": phase, "epoch": epoch + 1, **row})
            if phase == "train":
                best.see(epoch + 1, row.get(f"val.{rank}", math.nan))
            emit(phase, epoch + 1, n_epochs, row)

    recipe = main_recipe(method, job.recipe)
    for stage in method.stages():
        constant = replace(job.recipe, schedule="constant")
        epochs(stage.name, stage.loss, stage.epochs, make_optimizer(trainable, constant), None,
               None, stage.trains_student)
    optimizer = make_optimizer(trainable, recipe)
    steps = math.ceil(len(data.x_train) / recipe.batch_size)
    epochs("train", method.loss, recipe.epochs, optimizer,
           make_schedule(optimizer, recipe, steps), method.start_epoch)

    s_tapped.remove()
    if t_tapped is not None:
        t_tapped.remove()
    main = [row for row in history if row["phase"] == "train"]
    reported = best.restore() or len(main)
    if job.role == "teacher" and job.protocol.smoke:
        calibrate_batchnorm(student, (accelerate.batch(data.inputs(data.x_train[i]), job.accel)
                                      for i in batches(len(data.x_train), job.recipe.batch_size)))
    val = {k: v for k, v in main[reported - 1].items() if k.startswith("val.")}
    final = {**_test_metrics(job, data, metrics, student, teacher if compared else None), **val,
             **_prefixed("train", evaluate(scored, data.x_train, data.y_train, metrics,
                                          prepare=data.prepare)),
             "epoch": float(reported)}
    gain = validation_gain([row.get(f"val.{rank}", math.nan) for row in main])
    if gain is not None:
        final["val.gain"] = gain
    checkpoint = None
    if job.role == "teacher" and job.teacher is not None and job.teacher.checkpoint:
        checkpoint = job.teacher.checkpoint
        cachefile.save({k: v.cpu() for k, v in student.state_dict().items()}, Path(checkpoint))
    return RunResult("", "finished", final, history, time.perf_counter() - start,
                     _size(student), checkpoint, artifacts=artifacts)


def calibrate_batchnorm(model: nn.Module, inputs: Iterable[Tensor]) -> None:
    """Set every BatchNorm's running statistics to their average over the batches ``inputs``
    (the training split, not augmented) at the model's final weights: "precise BN" (Wu and
    Johnson 2021).

    For a smoke teacher only: after its 2 batches, momentum 0.1 leaves the running variance at
    0.81 + 0.19 · the batches' variance, so in eval mode each BN under-normalises and the error
    compounds through depth (a 2-batch wrn_40_2: last stage 21× and logits 60× their
    batch-statistics RMS, measured), and the feature losses of its students overflow at their
    first steps. A real teacher's running statistics have converged over its epochs: untouched."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    was = model.training
    model.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
        m.train()
    with torch.no_grad():
        for x in inputs:
            model(x)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.train(was)


def with_transfer_set(job: Job, method: Method, teacher: nn.Module | None, data: Dataset
                      ) -> tuple[Dataset, dict[str, bytes]]:
    """``data`` whose training split is the transfer set ``method`` makes from the frozen
    ``teacher`` (:meth:`Method.transfer_set`), and the artifacts it returned."""
    name = describe_method(job)
    if teacher is None or job.teacher is None or method.trains_teacher:
        raise KdbenchError(f"{name} makes its transfer set from a frozen teacher; the "
                           "benchmark needs a [teacher] that is not trained with the student")
    info = data.info
    context = TransferContext(info, job.teacher.fingerprint,
                              Path(job.cache_dir) / "transfer" / str(job.method), job.device)
    made = method.transfer_set(teacher, context)
    x, y = getattr(made, "x", None), getattr(made, "y", None)
    if not (isinstance(x, Tensor) and isinstance(y, Tensor) and x.dim() >= 1 and len(x) > 0
            and tuple(x.shape[1:]) == info.input_shape and x.is_floating_point()
            and y.shape == (len(x),) and not y.is_floating_point()):
        raise BrokenMethod(
            f"{name}: its transfer_set returned {type(made).__name__}; expected a TransferSet "
            f"with x of shape (n, {', '.join(map(str, info.input_shape))}) (floating point, "
            "n > 0) and y of n class indices")
    x = x.detach()
    if data.prepare is not None:
        # The impressions are model inputs; the split holds samples that `prepare` maps to
        # inputs (a uint8 image's scale and normalisation), so they are stored mapped back.
        inverse = getattr(data.prepare, "inverse", None)
        if inverse is None:
            raise KdbenchError(
                f"{name}: its transfer set holds model inputs, and dataset "
                f"{job.dataset.name!r} prepares its samples with "
                f"{type(data.prepare).__name__}, which has no `inverse` to store them as samples")
        x = inverse(x)
    device = data.x_val.device if data.x_val is not None else torch.device(job.device)
    return replace(data, x_train=x.to(device), y_train=y.to(device),
                   train_info=None), dict(getattr(made, "artifacts", {}) or {})


@functools.cache
def _held_out(name: str, params_json: str, cache_dir: str, fraction: float, seed: int
              ) -> Dataset:
    return hold_out(_dataset(name, params_json, cache_dir), fraction, seed)


def prepared(job: Job) -> Dataset:
    """The dataset a run of ``job`` sees: its validation split held out of the training split
    (built once per process), on the job's device, and its test split sealed (any use
    raises) unless the job evaluates it."""
    p = job.protocol
    data = _held_out(job.dataset.name, json.dumps(job.dataset.params, sort_keys=True),
                     job.cache_dir, p.validation, p.validation_seed)
    if p.smoke:
        data = subset(data, p.smoke * job.recipe.batch_size, SMOKE_EVALUATION)
    data = data if job.device == "cpu" else data.to(job.device)
    return data if job.evaluate_test else seal_test(data)


def improves(value: float, best: float, higher: bool) -> bool:
    """Whether an epoch scoring ``value`` replaces the best so far (``nan``: none yet): a
    tie does, the later epoch having trained longer; a ``nan`` value never does."""
    if math.isnan(value):
        return False
    return math.isnan(best) or (value >= best if higher else value <= best)


class _Best:
    """The best epoch of the main training on the validation split, and a copy of the
    weights it ended with (``epoch = "best"``; the later epoch wins a tie, having trained
    longer). Under ``epoch = "last"`` it keeps nothing."""

    def __init__(self, active: bool, higher: bool, models: list[nn.Module]) -> None:
        self.active, self.higher, self.models = active, higher, models
        self.epoch = 0
        self.value = math.nan
        self.states: list[dict[str, Tensor]] = []

    def see(self, epoch: int, value: float) -> None:
        if not self.active or not improves(value, self.value, self.higher):
            return
        self.epoch, self.value = epoch, value
        self.states = [{k: v.detach().clone() for k, v in m.state_dict().items()}
                       for m in self.models]

    def restore(self) -> int:
        """Load the best epoch's weights back; that epoch, or 0 when none was kept."""
        for model, state in zip(self.models, self.states, strict=False):
            model.load_state_dict(state)
        return self.epoch


def validation_gain(values: list[float]) -> float | None:
    """How much the validation curve ``values`` (one per epoch of the main training) still
    rose over its last quarter, in the metric's units: the mean of its last ``w`` epochs
    minus the mean of the ``w`` epochs ending at epoch ``q = floor(0.75 E)`` (clamped to
    1..E-1), with ``w = min(3, q, E - q)`` so that the two windows never overlap. For
    E = 30: epochs 28-30 against 20-22. Positive: the metric was still growing. ``None``
    for a single epoch or a curve with a nan in either window."""
    n = len(values)
    if n < 2:
        return None
    q = min(max(math.floor(0.75 * n), 1), n - 1)
    w = min(3, q, n - q)
    late, early = values[n - w:], values[q - w:q]
    gain = sum(late) / w - sum(early) / w
    return None if math.isnan(gain) else gain


def _test_metrics(job: Job, data: Dataset, metrics: dict[str, Metric], model: nn.Module,
                  teacher: nn.Module | None) -> dict[str, float]:
    """The run's one reading of the test split (none unless ``job.evaluate_test``): every
    metric of ``model``, comparing with ``teacher`` where given, in one pass over it."""
    if not job.evaluate_test:
        return {}
    return evaluate([model, *([teacher] if teacher is not None else [])], data.x_test,
                    data.y_test, metrics, _database(data), data.prepare)


def _database(data: Dataset) -> tuple[Tensor, Tensor]:
    """The retrieval database's inputs and labels: the training split less validation."""
    return data.x_train, data.y_train


def _taps_for(metrics: dict[str, Metric]) -> frozenset[str]:
    needs = needs_of(metrics.values())
    return frozenset({"logits", *(["embedding"] if needs & {"embedding", "database"} else [])})


def database(model: nn.Module, data: Dataset, metrics: dict[str, Metric]) -> Database | None:
    """``model``'s embeddings of the training split (less validation) with their labels, when a
    metric retrieves from them and the model has an embedding; else ``None``."""
    if "database" not in needs_of(metrics.values()) or \
            "embedding" not in tap_points(model).available():
        return None
    return Database(outputs_on([model], data.x_train, frozenset({"embedding"}),
                               prepare=data.prepare)[0].embedding, data.y_train)


def evaluate(models: list[nn.Module], x: Tensor, y: Tensor, metrics: dict[str, Metric],
             database: tuple[Tensor, Tensor] | None = None,
             prepare: Callable[[Tensor], Tensor] | None = None) -> dict[str, float]:
    """Every metric of ``models[0]`` on samples ``x`` (made inputs by ``prepare``, the
    dataset's) with labels ``y``, comparing with the teacher ``models[1]`` when there is one,
    in one pass over ``x``. Retrieval metrics query ``database`` (samples and labels of the
    training split); without one they are left out."""
    outputs = outputs_on(models, x, _taps_for(metrics), prepare=prepare)
    db = None
    if database is not None and "database" in needs_of(metrics.values()) and \
            outputs[0].embedding is not None:
        db = Database(outputs_on(models[:1], database[0], frozenset({"embedding"}),
                                 prepare=prepare)[0].embedding, database[1])
    return score(metrics, outputs[0], y, outputs[1].logits if len(outputs) > 1 else None, db)


def score(metrics: dict[str, Metric], taps: Taps, y: Tensor, teacher_logits: Tensor | None,
          database: Database | None = None) -> dict[str, float]:
    """Every metric of a model's ``taps`` against labels ``y``. A metric whose inputs are
    missing is left out: agreement without ``teacher_logits``, top-1 of a model with no
    logits, retrieval without an embedding or a ``database``."""
    outputs = Outputs(y, taps.logits, teacher_logits, taps.embedding, database)
    return {name: m.score(outputs) for name, m in metrics.items() if m.applies(outputs)}


@torch.no_grad()
def outputs_on(models: list[nn.Module], x: Tensor, wanted: frozenset[str],
               batch_size: int = 1024, prepare: Callable[[Tensor], Tensor] | None = None
               ) -> list[Taps]:
    """Each model's logits and embedding (those of ``wanted`` that it has) on the samples
    ``x`` (made inputs by ``prepare``, the dataset's), in float32 and eval mode (modes are
    restored), from a single pass over ``x``: the test split is read once for the student and
    its teacher."""
    was = [m.training for m in models]
    tapped = [Tapped(m, wanted & tap_points(m).available()) for m in models]
    for m in models:
        m.eval()
    parts: list[list[Taps]] = [[] for _ in models]
    try:
        for i in batches(len(x), batch_size):
            batch = x[i] if prepare is None else prepare(x[i])
            for part, t in zip(parts, tapped, strict=True):
                part.append(t(batch))
    finally:
        for m, t, training in zip(models, tapped, was, strict=True):
            t.remove()
            m.train(training)

    def cat(tensors: list[Tensor | None]) -> Tensor | None:
        return None if not tensors or tensors[0] is None else torch.cat(tensors).float()

    return [Taps(cat([p.logits for p in part]), cat([p.embedding for p in part]))
            for part in parts]


def _prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}.{k}": v for k, v in values.items()}


def _metric(name: str) -> Metric:
    entry = plugins().entry("metrics", name)
    return entry.factory(entry.make_params({}))


def _size(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
