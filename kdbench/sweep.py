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
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from kdbench import contract, identity, train
from kdbench.accel import Accel
from kdbench.claims import Claims
from kdbench.errors import Incompatible, KdbenchError
from kdbench.executors import Executor
from kdbench.plugins import Plugins
from kdbench.runs import Job, Run, RunResult, TeacherRef
from kdbench.spec import Spec
from kdbench.taps import shapes, tap_points

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
    teacher_kind: str = ""
    """The teacher in words for the leaderboard (:func:`teacher_kind`)."""

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
                   accel=spec.accel, protocol=spec.protocol, metric=spec.metric, evaluate_test=reads_test)

    stackable = _stackable(spec, plugins, cache_dir)

    def identify(job: Job, code_ids: dict[str, str], teacher: tuple[str, str] | None = None,
                 **parts: Any) -> tuple[str, str]:
        """``(fingerprint, spec fingerprint)`` of a run of ``job``."""
        parts.update(metrics=job.metrics, device=job.device, threads=job.threads,
                     protocol=job.protocol, evaluate_test=job.evaluate_test, rank=job.metric)
        if job.accel != Accel():  # absent when off, so fp32 runs keep their fingerprints
            parts.update(accel=job.accel)
        if job.engine != "plain":
            # Stacked and plain runs agree only up to rounding (kdbench.batched).
            parts.update(engine=job.engine)
            code_ids = {**code_ids, "batched": batched_code()}
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
    # A teacher kdbench trains or fits is cached by its fingerprint, as the provider saves it.
    fits = getattr(provider, "fits", False)
    checkpoint = str(cache_dir / "teachers" / f"{teacher_fp}{getattr(provider, 'suffix', '.pt')}") \
        if provider.trains or fits else None
    ref = TeacherRef(t.provider, t.model, t.params, teacher_fp, checkpoint)

    teacher = Run("teacher", "teacher", t.seed, teacher_fp, replace(teacher_job, teacher=ref),
                  teacher_fps[1], teacher_code)
    runs = [teacher]
    for seed in spec.seeds:
        baseline = stackable(job("baseline", None, {}, seed, ref))
        fp, bare = identify(baseline, student_code, teacher_fps, role="baseline",
                            dataset=spec.dataset, student=spec.student, recipe=spec.recipe,
                            seed=seed)
        runs.append(Run("baseline", "baseline", seed, fp, baseline, bare,
                        _with_batched(student_code, baseline)))

    _check_methods(spec, plugins, cache_dir, replace(teacher_job, teacher=ref))
    for row in spec.methods:
        method_code = {**student_code, "method": code("methods", row.method)}
        for seed in spec.seeds:
            distil = stackable(job("method", row.method, row.params, seed, ref))
            fp, bare = identify(distil, method_code, teacher_fps, role="method",
                                method=row.method, params=row.params, dataset=spec.dataset,
                                student=spec.student, recipe=spec.recipe, seed=seed)
            runs.append(Run("method", row.label, seed, fp, distil, bare,
                            _with_batched(method_code, distil)))
    return Sweep(spec, teacher, runs, teacher_kind=teacher_kind(spec, plugins))


def batched_code() -> str:
    """The code of the stacked engine and the loss checks it applies, part of a stacked run's
    identity; the training code it shares with plain runs is in the ``kdbench`` part. Only
    their own files: hashing the modules they import too (the spec, the plugin registry,
    the run records) retrained every stacked run whenever the planner changed."""
    return str(identity.CodeId("kdbench", identity.kdbench_code().version,
                               identity.own_source_sha256(("kdbench.batched",
                                                           "kdbench.contract"))))


def _with_batched(code: dict[str, str], job: Job) -> dict[str, str]:
    return {**code, "batched": batched_code()} if job.engine != "plain" else code


def _stackable(spec: Spec, plugins: Plugins, cache_dir: Path) -> Callable[[Job], Job]:
    """``job -> job`` with ``engine = "stacked"`` where its row's seeds train as one stacked
    model (``spec.batch_runs``: 1 never; 0 where the student is small; N always), and the
    method allows it (:func:`kdbench.batched.method_batchable`)."""
    from kdbench import batched

    if spec.batch_runs == 1 or len(spec.seeds) < 2:
        return lambda job: job
    # The stacked engine trains in float32 on logits-level metrics only: bf16, channels-last,
    # compile and retrieval metrics (embeddings, a database) run one by one.
    needs = set().union(*(plugins.entry("metrics", m).factory(
        plugins.entry("metrics", m).make_params({})).needs for m in spec.metrics))
    if spec.accel != Accel() or needs - {"logits", "teacher"}:
        return lambda job: job
    if spec.batch_runs == 0:
        data = train.dataset(spec.dataset, str(cache_dir))
        size = sum(p.numel() for p in train.build_model(spec.student, data).parameters())
        if size > batched.AUTO_MAX_PARAMETERS:
            return lambda job: job
    allowed: dict[str, bool] = {}

    def stackable(job: Job) -> Job:
        key = json.dumps([job.method, job.method_params], sort_keys=True, default=str)
        if key not in allowed:
            allowed[key] = batched.method_batchable(train.make_method(job))
        return replace(job, engine=batched.ENGINE) if allowed[key] else job

    return stackable


def _check_methods(spec: Spec, plugins: Plugins, cache_dir: Path, teacher_job: Job) -> None:
    """Let every method look at the tap shapes of both models before anything trains, and
    refuse a method that reads a tap the teacher lacks (AT from a PCA teacher). A teacher
    fitted by kdbench (scikit-learn, PCA) is fitted here, on the training split less
    validation, and cached for its run; one loaded from elsewhere is loaded."""
    if not spec.methods:
        return
    ref = teacher_job.teacher
    data = train.dataset(spec.dataset, str(cache_dir))
    sample = data.inputs(data.x_train[:2])
    student_model = train.build_model(spec.student, data)
    student = shapes(student_model, sample)
    provider_entry = plugins.entry("teachers", ref.provider)
    model = train.build_model(ref.model, data) if ref.model else None
    if model is None and getattr(provider_entry.factory, "needs_data", False):
        model = train.load_teacher(ref, train.prepared(replace(teacher_job, evaluate_test=False)))
    teacher = shapes(model, sample) if model is not None else None
    has = tap_points(model).available() if model is not None else frozenset()
    kind = describe_teacher(spec, plugins)
    for row in spec.methods:
        entry = plugins.entry("methods", row.method)
        method = entry.factory(entry.make_params(row.params))
        if method.trains_teacher and ref.model is None:
            raise Incompatible(f"[methods.{row.label}] {row.method} trains a peer of the "
                               f"teacher's architecture and teacher {kind} has none; remove "
                               "the row or use a teacher with `model`")
        lacking = sorted(method.teacher_taps() - has) if model is not None and \
            not method.trains_teacher else []
        if lacking:
            raise Incompatible(f"[methods.{row.label}] {row.method} needs the teacher's "
                               f"{' and '.join(repr(t) for t in lacking)} tap and teacher "
                               f"{kind} has none (it has: {', '.join(sorted(has)) or 'none'}); "
                               "remove the row or pick a teacher that has it")
        try:
            method.check(student, teacher)
        except Incompatible as error:
            raise Incompatible(f"[methods.{row.label}] {row.method} cannot run on student "
                               f"{spec.student.name!r} and teacher {kind}: {error}; "
                               "remove it from the benchmark or pick other models") from None
        try:
            train.main_recipe(method, spec.recipe)
        except Incompatible as error:
            raise Incompatible(f"[methods.{row.label}] {row.method}: {error}") from None
        # A loss that reads `t` while the method declares no teacher would fail every run
        # on its first step: refused here, in one line that says which attribute to set.
        contract.check_teacher_declared(method, student_model, sample, data.y_train[:2], student,
                                        teacher, data.info, f"[methods.{row.label}] {row.method}")


def _provider(spec: Spec, plugins: Plugins) -> Any:
    """The benchmark's teacher provider, built from ``[teacher]``."""
    entry = plugins.entry("teachers", spec.teacher.provider)
    return entry.factory(entry.make_params(spec.teacher.params))


def describe_teacher(spec: Spec, plugins: Plugins) -> str:
    """The teacher in words: ``'cnn1d'`` (trained by kdbench), or what its provider says it is
    (``sklearn Pipeline(PCA(n_components=16), LogisticRegression())``)."""
    t = spec.teacher
    provider = _provider(spec, plugins)
    if getattr(provider, "describe", None) is not None:
        return provider.describe()
    return repr(t.model.name) if t.model is not None else repr(t.provider)


def teacher_kind(spec: Spec, plugins: Plugins) -> str:
    """What kind of teacher the board's teacher row is: ``cnn1d, trained by kdbench``,
    ``cnn1d from checkpoint teacher.pt``, or what its provider says (``sklearn pca +
    logistic_regression``, ``features HOG (2×2 cells, 9 bins)``)."""
    t = spec.teacher
    provider = _provider(spec, plugins)
    if getattr(provider, "describe", None) is not None:
        return provider.describe()
    name = t.model.name if t.model is not None else t.provider
    if provider.trains:
        return f"{name}, trained by kdbench"
    path = t.params.get("path")
    return f"{name} from {t.provider} {Path(path).name}" if path else f"{name} ({t.provider})"


def _claim(todo: list[Run], claims: Claims | None,
           settled: Callable[[set[str]], dict[str, RunResult]] | None,
           results: dict[str, RunResult]) -> tuple[list[Run], list[Run]]:
    """``(mine, waiting)``: the runs of ``todo`` to train here, and those another process
    holds; runs that finished elsewhere meanwhile go into ``results``."""
    if claims is None or settled is None:
        return todo, []
    mine = [r for r in todo if claims.take(r.fingerprint)]
    # Checked after the claim: the holder may have finished the run since the sweep began.
    done = settled({r.fingerprint for r in mine}) if mine else {}
    for fp, result in done.items():
        results[fp] = result
        claims.release(fp)
    return ([r for r in mine if r.fingerprint not in done],
            [r for r in todo if r not in mine])


def _recalled(teacher: Run, plugins: Plugins, log: Callable[[Run, RunResult], Any],
              results: dict[str, RunResult]) -> bool:
    """Log ``teacher``'s run kept in the cache (:mod:`kdbench.teacher_cache`) as this
    store's, instead of training it; whether it was there."""
    from kdbench import teacher_cache

    kept = teacher_cache.recall(teacher)
    if kept is None:
        return False
    print(f"kdbench: teacher {teacher.fingerprint[:8]} was trained before (its checkpoint and "
          f"run are cached in {Path(kept.source).parent}): logged here, not retrained",
          file=sys.stderr)
    plugins.run_start(teacher)
    log(teacher, kept)
    kept.reused = True
    results[teacher.fingerprint] = kept
    plugins.run_end(teacher, kept)
    return True


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


def batched_size(sweep: Sweep, executor: Executor) -> int:
    """Runs per stacked group; refuses an executor that cannot train groups when the plan
    has stacked runs (it would train them one by one under a stacked run's identity)."""
    from kdbench import batched

    require_groups([r.job for r in sweep.runs], executor)
    return batched.group_size(sweep.spec.batch_runs, len(sweep.spec.seeds))


def require_groups(jobs: list[Job], executor: Executor) -> None:
    """Refuse an executor without ``groups = True`` when ``jobs`` has stacked runs."""
    if any(job.engine != "plain" for job in jobs) and not getattr(executor, "groups", False):
        raise KdbenchError(f"executor {type(executor).__name__} cannot train runs stacked "
                           "(it has no `groups = True`); use --batch-runs off")


def per_member(outcome: RunResult | list[RunResult], members: int) -> list[RunResult]:
    """A unit's results, one per member: a group whose worker died returns one failed result,
    which each of its runs gets (a copy, since each is logged as its own run)."""
    if isinstance(outcome, list):
        return outcome
    return [outcome] if members == 1 else [replace(outcome) for _ in range(members)]


def execute(sweep: Sweep, executor: Executor, plugins: Plugins, log: Callable[[Run, RunResult], Any],
            reused: dict[str, RunResult],
            settled: Callable[[set[str]], dict[str, RunResult]] | None = None,
            cached_teacher: bool = True) -> dict[str, RunResult]:
    """Run what is not in ``reused``, teacher first; ``log`` each new result as it arrives.

    The teacher run must succeed before the students start: without it there is
    nothing to distil from.

    With ``settled`` (the FINISHED results among some fingerprints, read from the store
    now), a run is trained only under its claim (:mod:`kdbench.claims`): one that another
    process is training is waited for and reused, so sweeps sharing a store and a cache
    train each run once.

    A teacher that the store lacks but whose checkpoint and run are kept in the cache
    (:mod:`kdbench.teacher_cache`: trained for another store) is logged from there, not
    trained again, unless ``cached_teacher`` is false (``--fresh``).
    """
    from kdbench import batched, teacher_cache

    results = sweep.results
    results.update(reused)
    teacher = sweep.teacher
    plugins.sweep_start(sweep)

    size = batched_size(sweep, executor)

    def progress(batch: list[Run], members: list[list[int]]) -> Callable[..., None]:
        def on(i: int, *event: Any) -> None:
            # A group's events name its member first (kdbench.batched.execute_unit).
            member, event = (event[0], event[1:]) if batch[members[i][0]].job.engine != \
                "plain" else (0, event)
            plugins.epoch_end(batch[members[i][member]], *event)
        return on

    teacher_ready = teacher.fingerprint in results and (
        teacher.job.teacher.checkpoint is None or Path(teacher.job.teacher.checkpoint).is_file())
    phases = [[teacher]] if not teacher_ready else []
    phases.append([r for r in sweep.students() if r.fingerprint not in results])
    claims = Claims(Path(teacher.job.cache_dir)) if settled is not None else None
    try:
        for batch in phases:
            todo = batch
            while todo:
                mine, waiting = _claim(todo, claims, settled, results)
                if cached_teacher and teacher in mine and _recalled(teacher, plugins, log,
                                                                    results):
                    mine.remove(teacher)
                    if claims is not None:
                        claims.release(teacher.fingerprint)
                if not mine and waiting:
                    if todo is batch:
                        print(f"kdbench: {len(waiting)} run(s) are being trained by another "
                              "kdbench process; waiting for them", file=sys.stderr)
                    time.sleep(1)
                for run in mine:
                    plugins.run_start(run)
                members, units = batched.units([r.job for r in mine], size)
                arriving = executor.map(units, progress(mine, members))
                try:
                    for index, outcome in arriving:
                        for member, result in zip(members[index],
                                                  per_member(outcome, len(members[index])),
                                                  strict=True):
                            run = mine[member]
                            result.fingerprint = run.fingerprint
                            log(run, result)
                            if run is teacher:
                                teacher_cache.keep(run, result)
                            results[run.fingerprint] = result
                            if claims is not None:
                                claims.release(run.fingerprint)
                            plugins.run_end(run, result)
                finally:
                    # An interrupt or a store error while a result is logged: stop the
                    # workers now, not when the executor's iterator is collected.
                    getattr(arriving, "close", lambda: None)()
                todo = waiting
            if batch and batch[0] is teacher and results[teacher.fingerprint].status != "finished":
                raise KdbenchError("the teacher failed to train: "
                                   f"{results[teacher.fingerprint].error}")
    finally:
        if claims is not None:
            claims.release_all()
    plugins.sweep_end(sweep, results)
    return results
