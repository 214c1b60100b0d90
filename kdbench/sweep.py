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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from kdbench import identity, train
from kdbench.errors import Incompatible, KdbenchError
from kdbench.executors import Executor
from kdbench.plugins import Plugins
from kdbench.runs import Job, Run, RunResult, TeacherRef
from kdbench.spec import Spec
from kdbench.taps import shapes

# Bump when a change to the training loop changes results, so old runs are not reused.
RUN_FORMAT = "kdbench-run-2"


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


def plan(spec: Spec, plugins: Plugins, cache_dir: Path, device: str = "cpu",
         evaluate_test: bool = True) -> Sweep:
    """Every run of ``spec``; raises :class:`Incompatible` for a method that cannot work.

    ``evaluate_test=False`` (tuning) gives students runs that never read the test split
    (:attr:`Job.evaluate_test`); the teacher run reads it either way, once.

    A run's fingerprint covers its inputs, the device and thread count it runs with (both
    change the numbers), the protocol (the validation split, the epoch rule and the metric
    that applies it) and whether it reads the test split, and the code of every part that produced it
    (:mod:`kdbench.identity`): the dataset, the models, the teacher provider, the metrics,
    the method and kdbench's training loop. Its ``spec_fingerprint`` is the same without the
    code. A student's fingerprint includes its teacher's, so a retrained teacher retrains
    its students.
    """
    t = spec.teacher
    provider_entry = plugins.entry("teachers", t.provider)
    provider = provider_entry.factory(provider_entry.make_params(t.params))

    def code(kind: str, name: str) -> str:
        return identity.entry_code(plugins, kind, name)

    shared = {"kdbench": str(identity.kdbench_code()), "dataset": code("datasets", spec.dataset.name),
              **{f"metric.{m}": code("metrics", m) for m in spec.metrics}}
    teacher_code = {**shared, "teacher.provider": code("teachers", t.provider),
                    **({"teacher.model": code("students", t.model.name)} if t.model else {})}
    student_code = {**teacher_code, "student": code("students", spec.student.name)}

    def job(role: str, method: str | None, params: dict, seed: int,
            ref: TeacherRef | None = None) -> Job:
        teacher_role = role == "teacher"
        reads_test = evaluate_test or teacher_role
        return Job(role=role, method=method, method_params=params, seed=seed,
                   dataset=spec.dataset, model=t.model if teacher_role else spec.student,
                   recipe=t.recipe if teacher_role else spec.recipe, teacher=ref,
                   metrics=spec.metrics, cache_dir=str(cache_dir), device=device,
                   protocol=spec.protocol, metric=spec.metric, evaluate_test=reads_test)

    def identify(job: Job, code_ids: dict[str, str], teacher: tuple[str, str] | None = None,
                 **parts: Any) -> tuple[str, str]:
        """``(fingerprint, spec fingerprint)`` of a run of ``job``."""
        parts.update(metrics=job.metrics, device=job.device, threads=job.threads,
                     protocol=job.protocol, evaluate_test=job.evaluate_test, rank=job.metric)
        if teacher is None:
            return fingerprint(**parts, code=code_ids), fingerprint(**parts)
        return (fingerprint(**parts, code=code_ids, teacher=teacher[0]),
                fingerprint(**parts, teacher=teacher[1]))

    teacher_job = job("teacher", None, {}, t.seed)
    full, bare = identify(teacher_job, teacher_code, role="teacher", dataset=spec.dataset,
                          model=t.model, provider=t.provider, params=t.params,
                          recipe=t.recipe if provider.trains else None,
                          seed=t.seed if provider.trains else None)
    teacher_fps = provider.fingerprint(full), provider.fingerprint(bare)
    teacher_fp = teacher_fps[0]
    checkpoint = str(cache_dir / "teachers" / f"{teacher_fp}.pt") if provider.trains else None
    ref = TeacherRef(t.provider, t.model, t.params, teacher_fp, checkpoint)

    teacher = Run("teacher", "teacher", t.seed, teacher_fp, replace(teacher_job, teacher=ref),
                  teacher_fps[1], teacher_code)
    runs = [teacher]
    for seed in spec.seeds:
        baseline = job("baseline", None, {}, seed, ref)
        fp, bare = identify(baseline, student_code, teacher_fps, role="baseline",
                            dataset=spec.dataset, student=spec.student, recipe=spec.recipe,
                            seed=seed)
        runs.append(Run("baseline", "baseline", seed, fp, baseline, bare, student_code))

    _check_methods(spec, plugins, cache_dir, ref)
    for row in spec.methods:
        method_code = {**student_code, "method": code("methods", row.method)}
        for seed in spec.seeds:
            distil = job("method", row.method, row.params, seed, ref)
            fp, bare = identify(distil, method_code, teacher_fps, role="method",
                                method=row.method, params=row.params, dataset=spec.dataset,
                                student=spec.student, recipe=spec.recipe, seed=seed)
            runs.append(Run("method", row.label, seed, fp, distil, bare, method_code))
    return Sweep(spec, teacher, runs)


def _check_methods(spec: Spec, plugins: Plugins, cache_dir: Path, ref: TeacherRef) -> None:
    """Let every method look at the tap shapes of both models before anything trains."""
    if not spec.methods:
        return
    data = train.dataset(spec.dataset, str(cache_dir))
    sample = data.inputs(data.x_train[:2])
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


def retrain_reasons(runs: list[Run], previous: dict[str, dict[str, str]]) -> list[str]:
    """Why runs that look like finished ones retrain, one line per row:
    ``"kd: code changed (method: kdbench-extra 1.2.3 -> 1.2.4), 5 runs to retrain"``.

    ``runs`` are the runs about to train; ``previous`` maps a spec fingerprint to the code
    tags of its latest finished run. A run whose spec fingerprint has no finished run is
    simply new and gets no line.
    """
    by_row: dict[str, tuple[list[str], int]] = {}
    for run in runs:
        old = previous.get(run.spec_fingerprint)
        if old is None:
            continue
        what, count = by_row.get(run.label, ([], 0))
        what += [c for c in identity.changes(old, run.code) if c not in what]
        by_row[run.label] = what, count + 1
    return [f"{label}: code changed ({'; '.join(what) or 'its fingerprint differs'}), "
            f"{count} run{'s' if count > 1 else ''} to retrain"
            for label, (what, count) in by_row.items()]


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
