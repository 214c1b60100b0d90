"""From a spec to runs, and runs to results.

:func:`plan` turns a :class:`~kdbench.spec.Spec` into a :class:`Sweep`: the
teacher run, the baseline on every seed and each method on every seed, each
with a fingerprint of everything that determines its result. Methods that
cannot work on the benchmark's models refuse here, before any training.
:func:`execute` skips runs whose fingerprint already finished in the tracking
store, trains the teacher first, hands the rest to an executor and logs each
result as it arrives: a crash or Ctrl-C loses no finished run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kdbench import train
from kdbench.errors import Incompatible, KdbenchError
from kdbench.executors import Executor
from kdbench.plugins import Plugins
from kdbench.runs import Job, Run, RunResult, TeacherRef
from kdbench.spec import Spec
from kdbench.taps import shapes

# Bump when a change to the training loop changes results, so old runs are not reused.
RUN_FORMAT = "kdbench-run-1"


@dataclass
class Sweep:
    spec: Spec
    teacher: Run
    runs: list[Run]
    """Every run, the teacher first."""
    results: dict[str, RunResult] = field(default_factory=dict)
    """By fingerprint: reused and new results alike."""

    def students(self) -> list[Run]:
        return [r for r in self.runs if r.role != "teacher"]


def fingerprint(**parts: Any) -> str:
    """A stable hash of ``parts`` (JSON-serialisable values)."""
    text = json.dumps({"format": RUN_FORMAT, **parts}, sort_keys=True, default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot fingerprint {type(value).__name__}")


def plan(spec: Spec, plugins: Plugins, cache_dir: Path, device: str = "cpu") -> Sweep:
    """Every run of ``spec``; raises :class:`Incompatible` for a method that cannot work."""
    t = spec.teacher
    provider_entry = plugins.entry("teachers", t.provider)
    provider = provider_entry.factory(provider_entry.make_params(t.params))
    base = fingerprint(role="teacher", dataset=spec.dataset, model=t.model, provider=t.provider,
                       params=t.params, recipe=t.recipe if provider.trains else None,
                       seed=t.seed if provider.trains else None, metrics=spec.metrics)
    teacher_fp = provider.fingerprint(base)
    checkpoint = str(cache_dir / "teachers" / f"{teacher_fp}.pt") if provider.trains else None
    ref = TeacherRef(t.provider, t.model, t.params, teacher_fp, checkpoint)

    def job(role: str, method: str | None, params: dict, seed: int) -> Job:
        teacher_role = role == "teacher"
        return Job(role=role, method=method, method_params=params, seed=seed,
                   dataset=spec.dataset, model=t.model if teacher_role else spec.student,
                   recipe=t.recipe if teacher_role else spec.recipe, teacher=ref,
                   metrics=spec.metrics, cache_dir=str(cache_dir), device=device)

    teacher = Run("teacher", "teacher", t.seed, teacher_fp, job("teacher", None, {}, t.seed))
    runs = [teacher]
    for seed in spec.seeds:
        fp = fingerprint(role="baseline", dataset=spec.dataset, student=spec.student,
                         recipe=spec.recipe, seed=seed, teacher=teacher_fp, metrics=spec.metrics)
        runs.append(Run("baseline", "baseline", seed, fp, job("baseline", None, {}, seed)))

    _check_methods(spec, plugins, cache_dir, ref)
    for row in spec.methods:
        for seed in spec.seeds:
            fp = fingerprint(role="method", method=row.method, params=row.params,
                             dataset=spec.dataset, student=spec.student, recipe=spec.recipe,
                             seed=seed, teacher=teacher_fp, metrics=spec.metrics)
            runs.append(Run("method", row.label, seed, fp,
                            job("method", row.method, row.params, seed)))
    return Sweep(spec, teacher, runs)


def _check_methods(spec: Spec, plugins: Plugins, cache_dir: Path, ref: TeacherRef) -> None:
    """Let every method look at the tap shapes of both models before anything trains."""
    if not spec.methods:
        return
    data = train.dataset(spec.dataset, str(cache_dir))
    sample = data.x_train[:2]
    student = shapes(train.build_model(spec.student, data), sample)
    teacher = shapes(train.build_model(ref.model, data), sample) if ref.model else None
    for row in spec.methods:
        entry = plugins.entry("methods", row.method)
        method = entry.factory(entry.make_params(row.params))
        try:
            method.check(student, teacher)
        except Incompatible as error:
            raise Incompatible(f"[methods.{row.label}] {row.method} cannot run on student "
                               f"{spec.student.name!r} and teacher "
                               f"{ref.model.name if ref.model else ref.provider!r}: {error}; "
                               "remove it from the benchmark or pick other models") from None
        try:
            train.main_recipe(method, spec.recipe)
        except Incompatible as error:
            raise Incompatible(f"[methods.{row.label}] {row.method}: {error}") from None


Progress = Callable[[Run, str, int, int, dict[str, float]], None]


def execute(sweep: Sweep, executor: Executor, plugins: Plugins, log: Callable[[Run, RunResult], Any],
            reused: dict[str, RunResult]) -> dict[str, RunResult]:
    """Run what is not in ``reused``, teacher first; ``log`` each new result as it arrives.

    The teacher run must succeed before the students start: without it there is
    nothing to distil from.
    """
    results = sweep.results
    results.update(reused)
    plugins.sweep_start(sweep)

    def progress(batch: list[Run]) -> Callable[..., None]:
        return lambda i, phase, epoch, epochs, metrics: plugins.epoch_end(
            batch[i], phase, epoch, epochs, metrics)

    teacher = sweep.teacher
    teacher_ready = teacher.fingerprint in results and (
        teacher.job.teacher.checkpoint is None or Path(teacher.job.teacher.checkpoint).is_file())
    phases = [[teacher]] if not teacher_ready else []
    phases.append([r for r in sweep.students() if r.fingerprint not in results])
    for batch in phases:
        if not batch:
            continue
        for run in batch:
            plugins.run_start(run)
        for index, result in executor.map([r.job for r in batch], progress(batch)):
            run = batch[index]
            result.fingerprint = run.fingerprint
            log(run, result)
            results[run.fingerprint] = result
            plugins.run_end(run, result)
        if batch[0] is teacher and results[teacher.fingerprint].status != "finished":
            raise KdbenchError(f"the teacher failed to train: {results[teacher.fingerprint].error}")
    plugins.sweep_end(sweep, results)
    return results
