"""Several runs of one row trained at once, as one stacked model.

A small student leaves the hardware idle: each step of a few-thousand-parameter network is
a few microseconds of arithmetic behind a fixed cost per operation. Runs that differ only in
their seed (the same student, dataset, recipe, teacher, method and parameters) are trained
here together: their parameters are stacked along a new leading dimension
(:func:`torch.func.stack_module_state`) and one pass computes every run:
:func:`torch.func.vmap` over :func:`torch.func.functional_call` of the student, the method's
modules and its loss, which turns each convolution into one grouped convolution. (A
hand-grouped copy of the student, grouped convolutions without ``vmap``'s layout copies, was
1.45× faster forward and backward in isolation but no faster in the whole training loop, on
a loaded 2-core machine: not kept.)

Nothing else is shared. Each run keeps its own initialisation (built after
``torch.manual_seed(seed)``, in the same order as :func:`kdbench.train.execute`), its own
data order and augmentation (its own ``torch.Generator``), its own optimiser state (Adam,
SGD and their weight decay are element-wise, so one optimiser over the stacked parameters
is one per run), its own non-finite checks (a run that diverges fails alone; the others go
on) and its own :class:`~kdbench.runs.RunResult`. The summed loss has no term that mixes
runs, so each run's gradient is its own.

What differs is the order of floating-point sums inside the grouped kernels, so a stacked
run is the unbatched run up to rounding, which training then amplifies over many steps: the
two are not the same computation, and a run's fingerprint records the engine
(``Job.engine``). A stacked run gives the same bits whatever the size of its group (from two
up; one alone trains beside a dropped twin), which ``tests/test_batched.py`` checks, so the
group is not part of its identity.

A method opts in with ``batchable = True``: its loss must be a pure function of the taps
(no ``.item()``, no data-dependent branches, no state updated in place such as CRD's
memory bank), which is what :func:`torch.func.vmap` needs. Methods with warm-up stages or a
peer teacher are trained one by one.
"""

from __future__ import annotations

import copy
import math
import time
import traceback
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from kdbench import contract, train
from kdbench.errors import KdbenchError
from kdbench.method import Method
from kdbench.runs import Group, Job, RunResult
from kdbench.stream import materialize
from kdbench.taps import Tapped, Taps, shapes

GroupEmit = Callable[[int, str, int, int, dict[str, float]], None]
"""``emit(run_index, phase, epoch, epochs, metrics)``: progress of each run of a group."""

AUTO_MAX_PARAMETERS = 100_000
"""Students up to this size are batched automatically (``--batch-runs auto``): the default
student (16 channels) has 2,474 parameters. Far above it one run keeps a core busy
and stacking gains less (not measured here)."""

AUTO_GROUP = 10
"""Runs per group under ``--batch-runs auto``: every seed of a row up to this many."""

ENGINE = "stacked"
"""``Job.engine`` of a run trained here."""


def method_batchable(method: Method) -> bool:
    """Whether runs of ``method`` can be stacked: the baseline, or a method that declares
    ``batchable = True`` and has neither warm-up stages, nor a peer teacher, nor a transfer
    set of its own."""
    declared = type(method) is Method or type(method).batchable
    return bool(declared) and not method.trains_teacher and not method.stages() \
        and not method.makes_transfer_set()


def group_size(batch_runs: int, seeds: int) -> int:
    """Runs per group for ``--batch-runs`` (0: auto) on a benchmark of ``seeds`` seeds."""
    return min(seeds, AUTO_GROUP) if batch_runs == 0 else batch_runs


def group_key(job: Job) -> str:
    """Runs with equal keys can share a group: everything but the seed."""
    return repr(replace(job, seed=0))


def groups(jobs: list[Job], size: int) -> list[list[int]]:
    """Indices of ``jobs`` in groups of at most ``size`` stacked runs (``Job.engine ==
    "stacked"`` and the same :func:`group_key`); every other job is a group of one.
    Order is kept within a group; groups come in the order of their first job."""
    formed: list[list[int]] = []
    open_: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        if job.engine != ENGINE:
            formed.append([i])
            continue
        key = group_key(job)
        group = open_.get(key)
        if group is None or len(group) >= max(size, 1):
            group = open_[key] = []
            formed.append(group)
        group.append(i)
    return formed


def units(jobs: list[Job], size: int) -> tuple[list[list[int]], list[Job | Group]]:
    """What an executor receives for ``jobs``: the indices of each unit, and the unit (a
    plain :class:`Job`, or a :class:`Group` of stacked ones)."""
    formed = groups(jobs, size)
    return formed, [jobs[g[0]] if jobs[g[0]].engine != ENGINE
                    else Group(tuple(jobs[i] for i in g)) for g in formed]


def execute_unit(unit: Job | Group, emit: Callable[..., None] | None = None
                 ) -> RunResult | list[RunResult]:
    """What an executor calls in its worker: :func:`kdbench.train.execute` for a job, and
    :func:`execute_group` for a group, whose progress events name the member first:
    ``emit(member, phase, epoch, epochs, metrics)``."""
    if isinstance(unit, Group):
        return execute_group(list(unit.jobs), emit)
    return train.execute(unit, emit)


class _Runner(nn.Module):
    """One run's trainable modules and its loss, as one module for ``functional_call``:
    swapping the runner's parameters swaps the student's and the method's modules that the
    loss reads."""

    def __init__(self, student: nn.Module, extra: nn.Module | None, method: Method) -> None:
        super().__init__()
        self.student = student
        self.extra = extra
        self.tapped = Tapped(student, method.needs)
        self.method = method

    def forward(self, x: Tensor, t: dict[str, Any], y: Tensor, idx: Tensor, who: str
                ) -> dict[str, Tensor]:
        s = self.tapped(x)
        teacher = Taps(t["logits"], t.get("embedding"), t.get("stages", []),
                       t.get("targets", {})) if t else None
        return contract.check_terms(self.method.loss(s, teacher, y, idx), who)


def _taps_dict(taps: Taps | None) -> dict[str, Any]:
    if taps is None:
        return {}
    out: dict[str, Any] = {"logits": taps.logits}
    if taps.embedding is not None:
        out["embedding"] = taps.embedding
    if taps.stages:
        out["stages"] = list(taps.stages)
    if taps.targets:
        out["targets"] = dict(taps.targets)
    return out


def execute_group(jobs: list[Job], emit: GroupEmit | None = None) -> list[RunResult]:
    """Train the runs of ``jobs`` (one row, seeds differing) at once; one result per job,
    in order. A non-finite loss or gradient fails its own run, and the others train again
    from the start without it; any other error fails every run of the group with its
    one-line reason, as :func:`kdbench.train.execute` would fail each."""
    if len(jobs) == 1:
        # Stacked runs are bit-identical across group sizes from two up; one alone would
        # take another kernel path, so it trains beside a twin whose result is dropped.
        return execute_group([jobs[0], jobs[0]], emit and _first(emit))[:1]
    started = time.time()
    start = time.perf_counter()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(jobs[0].threads)
        with warnings.catch_warnings():
            # torch.func loops over the runs where it has no batching rule (kl_div): slower,
            # not wrong, and nothing a user can act on.
            warnings.filterwarnings("ignore", message="There is a performance drop because "
                                    "we have not yet implemented the batching rule")
            results = _execute(jobs, emit or (lambda *_: None), start)
    except _Restart as restart:
        # The others start again without the failed runs: a run's numbers never depend on
        # which of its neighbours diverged (it would be the same up to rounding, not bits).
        survivors = [i for i in range(len(jobs)) if i not in restart.failed]
        rest = iter(execute_group([jobs[i] for i in survivors],
                                  emit and _renumbered(emit, survivors)))
        results = [restart.failed[i] if i in restart.failed else next(rest)
                   for i in range(len(jobs))]
    except KdbenchError as error:
        results = [RunResult("", "failed", error=str(error),
                             traceback="".join(traceback.format_exception(error)))
                   for _ in jobs]
    except Exception as error:
        line = f"{type(error).__name__}: {error} (at {train._where(error)})"
        results = [RunResult("", "failed", error=line,
                             traceback="".join(traceback.format_exception(error)))
                   for _ in jobs]
    finally:
        torch.set_num_threads(threads)
    ended = time.time()
    for result in results:
        # Each run's share of the group's time: the cost the sweep paid for it.
        result.seconds = (time.perf_counter() - start) / len(jobs)
        result.started, result.ended = started, ended
    return results


class _Restart(Exception):
    """Some runs of a group failed and others did not: train the others again alone."""

    def __init__(self, failed: dict[int, RunResult]) -> None:
        super().__init__(f"{len(failed)} run(s) failed")
        self.failed = failed


def _renumbered(emit: GroupEmit, members: list[int]) -> GroupEmit:
    return lambda member, *event: emit(members[member], *event)


def _first(emit: GroupEmit) -> GroupEmit:
    def first(member: int, *event: Any) -> None:
        if member == 0:
            emit(member, *event)
    return first


def _execute(jobs: list[Job], emit: GroupEmit, start: float) -> list[RunResult]:
    first = jobs[0]
    keys = {group_key(j) for j in jobs}
    if len(keys) != 1:
        raise KdbenchError("a batched group must hold runs of one row that differ only in "
                           "their seed")
    n = len(jobs)
    device = torch.device(first.device)
    data = train.prepared(first)
    metrics = {name: train._metric(name) for name in first.metrics}
    method = train.make_method(first)
    if not method_batchable(method):
        raise KdbenchError(f"{train.describe_method(first)} cannot be batched (no "
                           "`batchable = True`, or it has warm-up stages or a peer teacher)")

    # Each run's modules, built in the order and from the seed that execute() uses.
    students: list[nn.Module] = []
    extras: list[nn.Module | None] = []
    methods: list[Method] = []
    teacher: nn.Module | None = None
    sample = data.inputs(data.x_train[:2])
    for job in jobs:
        torch.manual_seed(job.seed)
        student = train.build_model(job.model, data).to(device)
        t = train.load_teacher(job.teacher, data).to(device) \
            if job.teacher is not None else None
        teacher = teacher if teacher is not None else t
        run_method = train.make_method(job)
        s_shapes = shapes(student, sample)
        t_shapes = shapes(t, sample) if t is not None else None
        if run_method.uses_teacher() and t is None:
            raise KdbenchError(f"method {job.method!r} needs a teacher and the benchmark has "
                               "none")
        run_method.check(s_shapes, t_shapes)
        extra = run_method.build(s_shapes, t_shapes, data.info)
        students.append(student)
        extras.append(extra.to(device) if extra is not None else None)
        methods.append(run_method)

    # A copy of the first run's modules is the template that functional_call fills with each
    # run's slice of the stacked parameters; copied together, its method reads its modules.
    template = _Runner(*copy.deepcopy((students[0], extras[0], methods[0])))
    params, buffers = stack_module_state([
        nn.ModuleDict({"student": s, **({"extra": e} if e is not None else {})})
        for s, e in zip(students, extras, strict=True)])
    t_tapped = Tapped(teacher, method.teacher_taps()) \
        if teacher is not None and method.uses_teacher() else None
    teacher_taps = train.TeacherTaps(t_tapped, data, True, first.recipe.batch_size,
                                     targets=template.method.teacher_targets)
    trainable = list(params.values())

    compared = teacher is not None and any(m.needs_teacher for m in metrics.values())
    fixed = train.outputs_on([teacher], data.x_val, frozenset({"logits"}),
                             prepare=data.prepare)[0].logits \
        if compared else None

    who = f"{train.describe_method(first)}: its loss"
    s_params = {k.removeprefix("student."): v for k, v in params.items()
                if k.startswith("student.")}
    s_buffers = {k.removeprefix("student."): v for k, v in buffers.items()
                 if k.startswith("student.")}
    stacked = _vmap_engine(template, params, buffers, who)

    @torch.no_grad()
    def validation_logits() -> Tensor:
        """``(n, samples, classes)``: every run's logits on the validation split."""
        return torch.cat([stacked.logits(data.inputs(data.x_val[i])).float()
                          for i in train.batches(len(data.x_val), 1024)], dim=1)

    rank = first.metric or (first.metrics[0] if first.metrics else "")
    higher = metrics[rank].higher_is_better if rank in metrics else True
    best = [_BestSlice(first.protocol.epoch == "best", higher) for _ in jobs]

    generators = [torch.Generator().manual_seed(job.seed) for job in jobs]
    histories: list[list[dict[str, Any]]] = [[] for _ in jobs]
    failed: list[RunResult | None] = [None] * n
    updates = 0
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" \
        else nullcontext()
    recipe = train.main_recipe(method, first.recipe)
    optimizer = train.make_optimizer(trainable, recipe)
    n_batches = math.ceil(len(data.x_train) / recipe.batch_size)
    schedule = train.make_schedule(optimizer, recipe, n_batches)
    method_name = train.describe_method(first)

    for epoch in range(recipe.epochs):
        template.method.start_epoch(epoch, recipe.epochs)
        sums: dict[str, Tensor] = {}
        count = 0
        orders = [train.batches(len(data.x_train), recipe.batch_size, g) for g in generators]
        # Each run's steps, checked once per epoch (as execute() does): no step waits for
        # the device. A run that fails leaves the others untouched (nothing mixes runs), and
        # they train again without it anyway.
        log = contract.StepLog(method_name, "train", epoch + 1, recipe.epochs, n_batches, n)
        try:
            for batch, idxs in enumerate(zip(*orders, strict=True)):
                xs = []
                for idx, g in zip(idxs, generators, strict=True):
                    x = materialize(data.x_train[idx])  # a streamed split: decoded here
                    xs.append(data.inputs(data.augment(x, g) if data.augment is not None
                                          else x))
                idx = torch.stack(idxs)
                x = torch.stack(xs)
                y = data.y_train[idx]
                with autocast:
                    t = _stack_taps(teacher_taps, x, idx)
                    terms = stacked.loss(x, t, y, idx)
                total = sum(terms.values())
                contract.check_total(total, terms, who)
                optimizer.zero_grad(set_to_none=True)
                total.sum().backward()
                grad_sums = torch.stack([p.grad.flatten(1).sum(1, dtype=torch.float64)
                                         for p in trainable if p.grad is not None]).sum(0)
                log.add(terms, total, batch + 1, updates, grad_sums)
                optimizer.step()
                updates += 1
                if schedule is not None:
                    schedule.step()
                for name, value in terms.items():
                    # Summed in float64 like execute()'s Python floats.
                    v = value.detach().double()
                    sums[name] = sums[name] + v if name in sums else v
                count += 1
        except Exception:
            if not _failures(log, failed):
                raise
        if _failures(log, failed):
            if all(f is not None for f in failed):
                return [f for f in failed if f is not None]
            raise _Restart({r: f for r, f in enumerate(failed) if f is not None})
        rows = _rows(sums, count, n)
        val_logits = validation_logits()
        for r in range(n):
            if failed[r] is not None:
                continue
            val = train.score(metrics, Taps(val_logits[r]), data.y_val, fixed)
            row = {**rows[r], **train._prefixed("val", val)}
            histories[r].append({"phase": "train", "epoch": epoch + 1, **row})
            best[r].see(epoch + 1, row.get(f"val.{rank}", math.nan),
                        {k: v[r] for k, v in s_params.items()})
            emit(r, "train", epoch + 1, recipe.epochs, row)

    if t_tapped is not None:
        t_tapped.remove()
    results: list[RunResult] = []
    for r, job in enumerate(jobs):
        if failed[r] is not None:
            results.append(failed[r])
            continue
        student = students[r]
        state = best[r].state or {k: v[r] for k, v in s_params.items()}
        with torch.no_grad():
            for name, p in student.named_parameters():
                p.copy_(state[name])
        for name, b in student.named_buffers():
            b.copy_(s_buffers[name][r])
        results.append(_finish(job, data, metrics, student, teacher if compared else None,
                               histories[r], best[r].epoch, rank, start))
    return results


def _failures(log: contract.StepLog, failed: list[RunResult | None]) -> bool:
    """Read each run's steps; a run whose loss or gradient went non-finite gets its failed
    result in ``failed``. Whether any did."""
    for r in range(len(failed)):
        try:
            log.read(r)
        except KdbenchError as error:
            failed[r] = RunResult("", "failed", error=str(error))
    return any(f is not None for f in failed)


@dataclass
class _Engine:
    """How a group computes: every run's loss terms for its own batch (``x``: ``(n, batch,
    ...)``; terms ``(n,)``) and every run's logits on shared inputs (``(n, samples, K)``)."""

    loss: Callable[[Tensor, dict[str, Any], Tensor, Tensor], dict[str, Tensor]]
    logits: Callable[[Tensor], Tensor]
    name: str


def _vmap_engine(template: _Runner, params: dict[str, Tensor], buffers: dict[str, Tensor],
                 who: str) -> _Engine:
    """Any student and method: ``vmap`` of ``functional_call`` over the stacked state."""
    loss = vmap(lambda p, b, x, t, y, idx: functional_call(template, (p, b),
                                                           (x, t, y, idx, who)),
                in_dims=(0, 0, 0, 0, 0, 0), randomness="error")
    student = template.student
    s_params = {k.removeprefix("student."): v for k, v in params.items()
                if k.startswith("student.")}
    s_buffers = {k.removeprefix("student."): v for k, v in buffers.items()
                 if k.startswith("student.")}
    forward = vmap(lambda p, b, x: functional_call(student, (p, b), (x,)), in_dims=(0, 0, None))

    def logits(x: Tensor) -> Tensor:
        template.eval()
        try:
            return forward(s_params, s_buffers, x)
        finally:
            template.train()

    return _Engine(lambda x, t, y, idx: loss(params, buffers, x, t, y, idx), logits, "vmap")


def _stack_taps(teacher_taps: train.TeacherTaps, x: Tensor, idx: Tensor) -> dict[str, Any]:
    """The teacher's taps of every run's batch, ``(n, batch, ...)``: one pass over the
    stacked batches (a frozen teacher treats samples independently)."""
    n, b = idx.shape
    taps = teacher_taps(x.flatten(0, 1), idx.flatten())
    if taps is None:
        return {}
    def unstack(v: Any) -> Any:
        if isinstance(v, list):
            return [s.unflatten(0, (n, b)) for s in v]
        if isinstance(v, dict):
            return {k: s.unflatten(0, (n, b)) for k, s in v.items()}
        return v.unflatten(0, (n, b))
    return {k: unstack(v) for k, v in _taps_dict(taps).items()}


def _rows(sums: dict[str, Tensor], count: int, n: int) -> list[dict[str, float]]:
    """Each run's mean loss terms over an epoch, as execute() logs them."""
    means = {k: (v / count).tolist() for k, v in sums.items()}
    rows = []
    for r in range(n):
        row = {f"loss.{k}": v[r] for k, v in means.items()}
        row["loss"] = sum(row.values())
        rows.append(row)
    return rows


class _BestSlice:
    """:class:`kdbench.train._Best` for one run of a group: its best epoch on validation
    and a copy of its slice of the stacked weights."""

    def __init__(self, active: bool, higher: bool) -> None:
        self.active, self.higher = active, higher
        self.epoch = 0
        self.value = math.nan
        self.state: dict[str, Tensor] | None = None

    def see(self, epoch: int, value: float, state: dict[str, Tensor]) -> None:
        if not self.active or not train.improves(value, self.value, self.higher):
            return
        self.epoch, self.value = epoch, value
        self.state = {k: v.detach().clone() for k, v in state.items()}


def _finish(job: Job, data: Any, metrics: dict, student: nn.Module, teacher: nn.Module | None,
            history: list[dict[str, Any]], best_epoch: int, rank: str, start: float
            ) -> RunResult:
    """The run's final metrics from its own student, exactly as execute() computes them."""
    scored = [student, teacher] if teacher is not None else [student]
    main = [row for row in history if row["phase"] == "train"]
    reported = best_epoch or len(main)
    val = {k: v for k, v in main[reported - 1].items() if k.startswith("val.")}
    final = {**train._test_metrics(job, data, metrics, student, teacher), **val,
             **train._prefixed("train", train.evaluate(scored, data.x_train, data.y_train,
                                                       metrics, prepare=data.prepare)),
             "epoch": float(reported)}
    gain = train.validation_gain([row.get(f"val.{rank}", math.nan) for row in main])
    if gain is not None:
        final["val.gain"] = gain
    return RunResult("", "finished", final, history, time.perf_counter() - start,
                     train._size(student))
