"""``kdbench check-recipe``: has the baseline converged under the benchmark's recipe?

A method that eases optimisation (a warm-up stage, an extra regression target) "wins"
against an under-trained baseline for that reason alone, so a benchmark's recipe is
checked, not assumed. :func:`check` trains the baseline (the student alone, no teacher)
with the recipe and with its epochs multiplied by each budget factor (``--budgets 1,2,4``;
a ``step`` schedule's milestones are scaled alike, a cosine schedule anneals over the new
length), on seeds 0..N-1, and compares the validation metric across budgets.

It never reads the test split: every job has ``evaluate_test = False``, which seals it in
the training loop (any use raises), and only ``val.<metric>`` and ``train.<metric>`` are
read back.

**The plateau rule.** Let ``v_b(s)`` be seed ``s``'s validation value of the benchmark's
ranking metric at budget ``b`` (the reported epoch's, by ``[protocol] epoch``), in points
(×100), signed so that higher is better. The gain of budget ``b`` is the mean over seeds of
the paired difference ``v_b(s) − v_1(s)``, with its 95% t-interval. With ``b`` the smallest
budget above 1:

- **converged**: the gain is below :data:`TOLERANCE` (0.5 points), or negative;
- **still climbing**: the gain is at least :data:`TOLERANCE` and its interval lies above
  zero; the advice is the smallest budget ``b' ≥ b`` whose next budget gains less than
  :data:`TOLERANCE` over it (paired mean), else the largest budget "or more";
- **undecided**: a gain of at least :data:`TOLERANCE` that the seeds cannot tell from
  noise (the interval includes zero): more seeds decide, and reuse these runs.

Runs are logged to their own MLflow experiment, ``<benchmark>-check-recipe``, one parent
run per invocation, and a run whose fingerprint already finished there is reused, as
``kdbench run`` does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from kdbench import batched, grid, stats
from kdbench import sweep as sweeps
from kdbench.errors import KdbenchError
from kdbench.executors import Executor
from kdbench.plugins import Plugins
from kdbench.runs import Run, RunResult
from kdbench.spec import Spec, check_recipe

TOLERANCE = 0.5
"""Points of validation metric below which a longer budget's gain does not count."""
MAX_BUDGET = 100.0
"""The largest budget factor: more is a typo that would train for ever."""
CHECK_FORMAT = "kdbench-check-recipe-1"

Verdict = Literal["converged", "still climbing", "undecided", "failed"]


@dataclass(frozen=True)
class Budget:
    """The baseline's runs at one budget: ``factor`` × the recipe's epochs."""

    factor: float
    epochs: int
    seeds: tuple[int, ...] = ()
    val: tuple[float, ...] = ()
    """The validation value of the ranking metric, per seed of ``seeds`` (a fraction)."""
    train: tuple[float, ...] = ()
    """The same metric on the training split (less the validation part), per seed."""
    failed: tuple[str, ...] = ()
    """``"seed 3: <why>"`` for each run that failed."""

    @property
    def label(self) -> str:
        return f"×{grid.compact(float(self.factor))}"


@dataclass(frozen=True)
class Gain:
    """A budget's gain over the recipe (×1), in points, paired by seed."""

    factor: float
    mean: float
    ci95: tuple[float, float]
    seeds: int


@dataclass(frozen=True)
class Report:
    """What ``check-recipe`` found; :func:`render` prints it."""

    benchmark: str
    student: str
    metric: str
    higher_is_better: bool
    epochs: int
    budgets: tuple[Budget, ...]
    gains: tuple[Gain, ...]
    verdict: Verdict
    message: str
    suggested_epochs: int | None = None
    reused: int = 0
    trained: int = 0


@dataclass(frozen=True)
class Planned:
    factor: float
    run: Run


@dataclass
class Options:
    budgets: tuple[float, ...] = (1.0, 2.0)
    seeds: int = 3
    fresh: bool = False
    on_result: Callable[[Run, RunResult], Any] | None = field(default=None, repr=False)
    """Called with each run as it finishes (the CLI prints a line)."""


def parse_budgets(text: str) -> tuple[float, ...]:
    """``"1,2,4"`` as sorted distinct factors, with the recipe's own (1) added when missing;
    :class:`KdbenchError` for anything else."""
    factors = set()
    for part in (p.strip() for p in text.split(",")):
        try:
            factor = float(part)
        except ValueError:
            raise KdbenchError(f"--budgets: {part!r} is not a number; give factors of the "
                               "recipe's epochs separated by commas, e.g. 1,2,4") from None
        if not (math.isfinite(factor) and 0 < factor <= MAX_BUDGET):
            raise KdbenchError(f"--budgets: {part} must be a factor in (0, {MAX_BUDGET:g}]")
        factors.add(factor)
    factors.add(1.0)
    if max(factors) <= 1:
        raise KdbenchError("--budgets needs a factor above 1 (e.g. 1,2,4): the recipe is "
                           "judged by what a longer budget gains")
    return tuple(sorted(factors))


def budget_spec(spec: Spec, factor: float) -> Spec:
    """``spec`` with its recipe's epochs (and a step schedule's milestones) × ``factor``, no
    method rows."""
    recipe = spec.recipe
    epochs = max(1, round(recipe.epochs * factor))
    milestones = tuple(round(m * factor) for m in recipe.milestones)
    scaled = check_recipe(replace(recipe, epochs=epochs, milestones=milestones),
                          f"--budgets {grid.compact(float(factor))}: the scaled [recipe] ")
    return replace(spec, recipe=scaled, methods=())


def plan(spec: Spec, plugins: Plugins, cache_dir: Path, device: str, budgets: tuple[float, ...],
         seeds: int) -> list[Planned]:
    """The baseline's runs at every budget on seeds 0..``seeds``-1, built with
    :func:`kdbench.sweep.plan`, then made teacher-free and test-free: no teacher (the
    student trains alone), no metric that compares with one, and ``evaluate_test = False``.
    A run's fingerprint covers the job (all but the cache folder) and its code."""
    if not 1 <= seeds <= 1000:
        raise KdbenchError(f"--seeds must be in 1..1000, got {seeds}")
    if 1.0 not in budgets or max(budgets) <= 1:
        raise KdbenchError("the budgets must include the recipe's own (1) and a longer one")
    metrics = own_metrics(spec, plugins)
    planned = []
    for factor in budgets:
        sweep = sweeps.plan(replace(budget_spec(spec, factor), seeds=tuple(range(seeds))),
                            plugins, cache_dir, device)
        for run in sweep.students():
            job = replace(run.job, teacher=None, metrics=metrics, evaluate_test=False,
                          protocol=spec.protocol, metric=spec.metric)
            code = {k: v for k, v in run.code.items() if not k.startswith("teacher")}
            identity = {k: v for k, v in asdict(job).items() if k != "cache_dir"}
            fp = sweeps.fingerprint(check=CHECK_FORMAT, job=identity, code=code)
            label = f"baseline ×{grid.compact(float(factor))}"
            planned.append(Planned(factor, Run("baseline", label, run.seed, fp, job, "", code)))
    return planned


def own_metrics(spec: Spec, plugins: Plugins) -> tuple[str, ...]:
    """The benchmark's metrics that need no teacher; the ranking metric must be one."""
    kept = []
    for name in spec.metrics:
        entry = plugins.entry("metrics", name)
        if not entry.factory(entry.make_params({})).needs_teacher:
            kept.append(name)
    if spec.metric not in kept:
        raise KdbenchError(f"check-recipe judges the baseline by the ranking metric, and "
                           f"{spec.metric!r} compares with a teacher; rank by another metric")
    return tuple(kept)


def experiment_name(spec: Spec) -> str:
    return f"{spec.name}-check-recipe"


def check(spec: Spec, plugins: Plugins, tracker: Any, executor: Executor, cache_dir: Path,
          device: str, options: Options) -> Report:
    """Train (or reuse from MLflow) the baseline at every budget and judge the recipe."""
    planned = plan(spec, plugins, cache_dir, device, options.budgets, options.seeds)
    named = replace(spec, name=experiment_name(spec),
                    description=f"kdbench check-recipe of benchmark {spec.name!r}: the baseline "
                    "trained with longer budgets, scored on the validation split")
    experiment = tracker.experiment(named)
    keys = (f"val.{spec.metric}", f"train.{spec.metric}")
    reused = {} if options.fresh else tracker.finished(
        experiment, {p.run.fingerprint for p in planned}, keys)
    results: dict[str, RunResult] = dict(reused)
    todo = [p.run for p in planned if p.run.fingerprint not in results]
    parent = tracker.start_sweep(experiment, named, {
        "check": "recipe", "budgets": ",".join(grid.compact(b) for b in options.budgets),
        "check_seeds": options.seeds, "fresh": options.fresh, "device": device})
    status = "FAILED"
    try:
        # Stacked like a sweep's rows: seeds of one budget train as one model.
        sweeps.require_groups([r.job for r in todo], executor)
        members, units = batched.units([r.job for r in todo],
                                       batched.group_size(spec.batch_runs, options.seeds))
        for index, outcome in executor.map(units, lambda *_: None):
            for member, result in zip(members[index],
                                      sweeps.per_member(outcome, len(members[index])),
                                      strict=True):
                run = todo[member]
                result.fingerprint = run.fingerprint
                tracker.log(experiment, parent, run, result)
                results[run.fingerprint] = result
                if options.on_result is not None:
                    options.on_result(run, result)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracker.end_sweep(parent, status)
    budgets = collect(spec, planned, results)
    higher = plugins.higher_is_better(spec.metric)
    gains, verdict, message, suggested = judge(budgets, higher)
    return Report(spec.name, spec.student.name, spec.metric, higher, spec.recipe.epochs,
                  budgets, gains, verdict, message, suggested, len(reused), len(todo))


def collect(spec: Spec, planned: list[Planned], results: dict[str, RunResult]
            ) -> tuple[Budget, ...]:
    """Each budget's values per seed from ``results``; a failed run, or one without the
    validation value, is listed with its reason."""
    key, train_key = f"val.{spec.metric}", f"train.{spec.metric}"
    budgets = []
    for factor in dict.fromkeys(p.factor for p in planned):
        runs = [p.run for p in planned if p.factor == factor]
        seeds, val, train, failed = [], [], [], []
        for run in runs:
            result = results.get(run.fingerprint)
            value = result.metrics.get(key) if result is not None else None
            if result is None or result.status != "finished" or value is None \
                    or not math.isfinite(value):
                why = "not run" if result is None else result.error if result.status != "finished" \
                    else f"finished without a finite {key}"
                failed.append(f"seed {run.seed}: {why}")
                continue
            seeds.append(run.seed)
            val.append(float(value))
            train.append(float(result.metrics.get(train_key, math.nan)))
        budgets.append(Budget(factor, runs[0].job.recipe.epochs, tuple(seeds), tuple(val),
                              tuple(train), tuple(failed)))
    return tuple(budgets)


def gain(base: Budget, other: Budget, higher_is_better: bool) -> Gain:
    """``other``'s gain over ``base`` in points, paired on the seeds both have."""
    mine = dict(zip(base.seeds, base.val, strict=True))
    theirs = dict(zip(other.seeds, other.val, strict=True))
    sign = 100.0 if higher_is_better else -100.0
    diffs = [sign * (theirs[s] - mine[s]) for s in mine if s in theirs]
    summary = stats.summarize(diffs)
    return Gain(other.factor, summary.mean, summary.ci95, len(diffs))


def judge(budgets: tuple[Budget, ...], higher_is_better: bool
          ) -> tuple[tuple[Gain, ...], Verdict, str, int | None]:
    """``(gains over ×1, verdict, the verdict line, suggested epochs)`` by the plateau rule
    of this module's docstring."""
    base = next(b for b in budgets if b.factor == 1)
    gains = tuple(gain(base, b, higher_is_better) for b in budgets if b.factor != 1)
    above = [b for b in budgets if b.factor > 1]
    first = next(g for g in gains if g.factor == above[0].factor)
    if first.seeds == 0:
        return gains, "failed", (f"failed: no seed finished at both ×1 and {above[0].label}; see "
                                 "the failed runs above"), None
    lo, hi = first.ci95
    what = f"{above[0].label} epochs gains {first.mean:+.1f} points on validation"
    interval = f"95% CI {lo:+.1f} to {hi:+.1f}" if math.isfinite(lo) else "one seed, no interval"
    if first.mean < TOLERANCE:
        return gains, "converged", f"converged: {what} ({interval}; under {TOLERANCE:g})", None
    if math.isfinite(lo) and lo > 0:
        epochs, more = _suggest(above, higher_is_better)
        return gains, "still climbing", (f"still climbing: {what} ({interval}); use [recipe] "
                                         f"epochs = {epochs}{' or more' if more else ''}"), epochs
    return gains, "undecided", (f"undecided: {what}, but the seeds cannot tell it from noise "
                                f"({interval}); rerun with more --seeds (the runs so far are "
                                "reused)"), None


def _suggest(above: list[Budget], higher_is_better: bool) -> tuple[int, bool]:
    """The epochs of the first budget above 1 after which the next gains under the tolerance,
    and whether the climb went on to the last budget (advise "or more")."""
    for shorter, longer in itertools.pairwise(above):
        step = gain(shorter, longer, higher_is_better)
        if step.seeds and step.mean < TOLERANCE:
            return shorter.epochs, False
    return above[-1].epochs, True


def render(report: Report) -> str:
    """The report as the terminal shows it: one line per budget, then the verdict."""
    metric = report.metric
    lines = [f"check-recipe {report.benchmark}: the baseline ({report.student}) at "
             f"{len(report.budgets)} budgets of [recipe] epochs = {report.epochs}, "
             f"{metric} on the validation split (the test split is not read); "
             f"{report.trained} runs trained, {report.reused} reused",
             f"{'budget':>7}  {'epochs':>6}  {'val ' + metric:>15}  {'train ' + metric:>11}  "
             "gain vs ×1 (95% CI)"]
    gains = {g.factor: g for g in report.gains}
    for budget in report.budgets:
        summary = stats.summarize([100 * v for v in budget.val])
        val = f"{summary.mean:.2f} ± {summary.std:.2f}" if budget.val else "–"
        train = [100 * v for v in budget.train if math.isfinite(v)]
        train_text = f"{sum(train) / len(train):.2f}" if train else "–"
        g = gains.get(budget.factor)
        gain_text = "" if g is None or not g.seeds else f"{g.mean:+.2f}" + (
            f" ({g.ci95[0]:+.2f} to {g.ci95[1]:+.2f})" if math.isfinite(g.ci95[0]) else "")
        lines.append(f"{budget.label:>7}  {budget.epochs:>6}  {val:>15}  {train_text:>11}  "
                     f"{gain_text}".rstrip())
        lines += [f"{'':>7}  FAILED {why}" for why in budget.failed]
    lines.append(report.message)
    return "\n".join(lines)


def line(run: Run, result: RunResult) -> str:
    """One finished run, as the CLI reports it while the check trains."""
    if result.status != "finished":
        return f"{run.describe()}: FAILED: {result.error}"
    from kdbench.progress import shown

    values = {k: v for k, v in result.metrics.items() if k.startswith("val.")}
    return f"{run.describe()}: {shown(values, run.job.metrics)} ({result.seconds:.1f} s)"


def recorded(spec: Spec, plugins: Plugins, tracker: Any, cache_dir: Path, device: str
             ) -> dict[str, Any] | None:
    """The latest ``kdbench check-recipe`` verdict of ``spec``'s recipe in ``tracker``'s
    store, as the leaderboard states it (``recipe_check`` of :mod:`kdbench.leaderboard`):
    ``{"verdict": "not checked", ...}`` when the store holds none for this recipe.

    The check's sweeps are read newest first; each is planned again with its budgets and
    seeds from this spec, and the first whose every run is FINISHED in the store is judged
    as :func:`check` would judge it. A run's fingerprint covers the recipe, the student, the
    data, the protocol and the code, so a check of another recipe (or other code) never
    matches. ``None`` for a smoke board, which states no recipe."""
    if spec.protocol.smoke:
        return None
    name = experiment_name(spec)
    unchecked = {"verdict": "not checked", "experiment": name}
    experiment = tracker.experiment(replace(spec, name=name), create=False)
    if experiment is None:
        return unchecked
    keys = (f"val.{spec.metric}", f"train.{spec.metric}")
    tried: set[tuple[tuple[float, ...], int]] = set()
    for params in tracker.finished_sweeps(experiment):
        try:
            setting = parse_budgets(params.get("budgets", "")), int(params.get("check_seeds", ""))
        except (KdbenchError, ValueError):
            continue
        if setting in tried:
            continue
        tried.add(setting)
        try:
            planned = plan(spec, plugins, cache_dir, device, *setting)
        except KdbenchError:
            return unchecked  # this benchmark cannot be checked (its metric needs a teacher)
        results = tracker.finished(experiment, {p.run.fingerprint for p in planned}, keys)
        if len(results) < len(planned):
            continue
        higher = plugins.higher_is_better(spec.metric)
        budgets = collect(spec, planned, results)
        gains, verdict, message, _ = judge(budgets, higher)
        first = next(b for b in budgets if b.factor > 1)
        gain = next(g for g in gains if g.factor == first.factor)
        interval = [_number(c) for c in gain.ci95]
        return {**unchecked, "verdict": verdict, "budget": first.label, "epochs": first.epochs,
                "gain": _number(gain.mean), "seeds": gain.seeds,
                "ci95": interval if None not in interval else None, "message": message}
    return unchecked


def _number(x: float) -> float | None:
    """``x`` as the board's JSON holds it: rounded to 1e-6, ``None`` when not finite."""
    return round(x, 6) if math.isfinite(x) else None
