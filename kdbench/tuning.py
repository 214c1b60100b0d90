"""``kdbench tune``: every row's settings chosen on the validation split, with equal budgets.

What is computed, and the choices behind it:

* **Rows and spaces.** The baseline's row tunes the recipe's searchable fields
  (:class:`~kdbench.spec.Recipe`: ``lr`` log-uniform over a tenth to ten times the file's,
  ``weight_decay`` among 0, 1e-5, 1e-4 and 1e-3, ``epochs`` among half, the same and twice
  the file's, a step schedule's milestones scaled with them). Every method row then tunes
  what its ``Params`` declare searchable (:func:`kdbench.params.search_space`: temperatures,
  loss weights), *training with the baseline's tuned recipe*: every row keeps the
  baseline's training budget, and no method wins by being given a better recipe than the
  baseline's. Keys a parameter grid fixes (``kd[T=1]``) are not searched. A row with
  nothing to search (``dml``) runs no trial and keeps its settings; the tuned leaderboard's
  statement names it.
* **Equal budgets.** Every row gets the same number of trials, ``N``. A trial trains the
  row on ``K`` tuning seeds, ``1000 .. 1000 + K - 1`` by default, disjoint from the
  benchmark's evaluation seeds (overlap is refused), with ``evaluate_test = False``: the
  test split is never read, the runs hold no test metric. Its score is the mean over the
  seeds of the validation value of the benchmark's ranking metric at the reported epoch
  (``val.<metric>``), maximised or minimised as the metric's ``higher_is_better`` says. A
  trial whose runs fail (a setting that diverges) counts in the budget, as a failed trial:
  that is the setting's result.
* **Search.** Optuna's TPE sampler (its default: the first 10 trials random). Trial 0 of a
  row is the row's own setting (the benchmark file's values), so the tuned setting is never
  one that scored below it on validation. The sampler of trial ``i`` is seeded from
  ``(sampler seed, row, i)``: given the same finished trials, a resumed tuning asks the same
  setting as one that was never interrupted (and a row's random first trials are the same
  draws for any benchmark and any ``N``). A row's trials run one after another (TPE
  learns from each); the method rows are tuned side by side, in rounds of one trial per
  row whose runs go to the executor together, so a process pool stays busy.
* **Storage and resume.** One Optuna study per row in an RDB storage (SQLite; by default
  ``optuna.db`` next to a SQLite MLflow store, else in the working directory), named
  ``<benchmark>.<row>.<fingerprint>``: the fingerprint covers what defines the search:
  the row's runs as ``kdbench run`` fingerprints them (inputs and code; for a method row,
  the tuned recipe), the space, the tuning seeds, the number of trials, the metric and the
  sampler seed. Another ``kdbench tune`` of the same search resumes it: finished trials
  are kept, trials a killed process left RUNNING are marked failed (``kdbench.interrupted``)
  and do not count, and only the missing trials run. One ``kdbench tune`` per storage at a
  time, as one ``kdbench run`` per MLflow store.
* **MLflow.** Per row, a tuning run (tag ``kdbench.role = tuning``; the study, the space;
  at the end the best setting and score); each trial a run nested under it
  (``mlflow.parentRunId``; tag ``kdbench.role = trial``, params the trial's setting,
  metric ``score``: the mean validation value in percent, like the board, with the exact
  fraction beside it as ``fraction.score``), each training run of a trial nested under the trial with its
  per-epoch curves. Those runs have fingerprints of their own: ``kdbench run`` never reuses
  a run that did not read the test split.
* **After tuning**, :attr:`Tuning.spec` is the benchmark with the tuned recipe and the rows'
  tuned parameters, and its ``tuning`` statement (``tuned, N trials each on K seeds
  (validation)``) that its leaderboard shows; :func:`tuned_toml` writes it as a benchmark
  file that ``kdbench run`` reruns. The command line runs it on the benchmark's own seeds
  and compares on test exactly as ``kdbench run`` does.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from kdbench import sweep as sweeps
from kdbench import tomlwrite
from kdbench.errors import Incompatible, KdbenchError
from kdbench.executors import Executor
from kdbench.params import Choice, LogUniform, Space, as_dict, search_space
from kdbench.plugins import Plugins
from kdbench.runs import Run, RunResult
from kdbench.spec import Recipe, Spec, check_recipe, read
from kdbench.tracking import in_percent_with_fraction

TUNING_SEED = 1000
"""The first tuning seed: far from the evaluation seeds a benchmark lists (0, 1, 2, ...)."""
STUDY_FORMAT = "kdbench-tune-1"
"""Part of every study's fingerprint: bump when a change here changes what a study means."""
ERROR = "kdbench.error"
"""The user attribute of a trial that failed because its runs failed: it counts."""
INTERRUPTED = "kdbench.interrupted"
"""The user attribute of a trial left RUNNING by a killed process: it does not count."""
MLFLOW_RUN = "kdbench.mlflow_run"
"""The user attribute (of a study or a trial) holding its MLflow run's id."""


@dataclass(frozen=True)
class Settings:
    """What every row's tuning gets: ``trials`` trials of ``seeds`` runs each."""

    trials: int
    seeds: tuple[int, ...]
    storage: str
    """An Optuna RDB storage URL (``sqlite:///optuna.db``)."""
    sampler_seed: int = 0

    def statement(self) -> str:
        """What the tuned leaderboard says of its settings."""
        k = len(self.seeds)
        return (f"tuned, {self.trials} trial{'s' if self.trials != 1 else ''} each on {k} "
                f"seed{'s' if k != 1 else ''} (validation)")


def tuning_seeds(count: int) -> tuple[int, ...]:
    """``count`` tuning seeds: ``1000 .. 1000 + count - 1``."""
    if count < 1:
        raise KdbenchError(f"--tune-seeds must be at least 1, got {count}")
    return tuple(range(TUNING_SEED, TUNING_SEED + count))


def check(spec: Spec, trials: int, seeds: tuple[int, ...]) -> None:
    """Refuse a budget of no trial, and tuning seeds that are evaluation seeds too: a setting
    chosen on the runs it is then judged by would be judged on its own selection."""
    if trials < 1:
        raise KdbenchError(f"--trials must be at least 1, got {trials}")
    overlap = sorted(set(seeds) & set(spec.seeds))
    if overlap:
        raise KdbenchError(f"the tuning seeds {_seeds(seeds)} overlap the benchmark's "
                           f"evaluation seeds ({_seeds(overlap)}); tune on other seeds or "
                           "evaluate on fewer")


def storage_url(flag: str | None, tracking_uri: str) -> str:
    """``--tuning-storage``, else ``optuna.db`` next to a SQLite MLflow store, else
    ``sqlite:///optuna.db`` in the working directory."""
    if flag:
        return flag
    if tracking_uri.startswith("sqlite:///"):
        return "sqlite:///" + str(Path(tracking_uri[len("sqlite:///"):]).with_name("optuna.db"))
    return "sqlite:///optuna.db"


@dataclass
class TrialRecord:
    """A trial that counts in a row's budget: its setting and score, or why it failed."""

    number: int
    params: dict[str, Any]
    value: float | None
    error: str | None = None


@dataclass
class RowTuning:
    """The tuning of one row."""

    label: str
    method: str | None
    """``None`` for the baseline's row (the recipe)."""
    study: str
    space: dict[str, Space]
    trials: list[TrialRecord] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    """The best trial's setting; empty when nothing was searched or every trial failed."""
    best_value: float | None = None
    trained: int = 0
    """Trials this call ran (the others were found finished in the storage)."""
    note: str = ""


@dataclass
class Tuning:
    """What :func:`tune` found: the tuned benchmark and each row's tuning."""

    spec: Spec
    settings: Settings
    rows: list[RowTuning]


Report = Callable[[str], None]


def tune(spec: Spec, plugins: Plugins, tracker: Any, executor: Executor, settings: Settings,
         cache_dir: Path, device: str = "cpu", higher_is_better: bool = True,
         report: Report = lambda line: None, observer: Callable[[], Any] | None = None
         ) -> Tuning:
    """Tune the baseline's recipe, then every method row with the tuned recipe; ``N`` trials
    each (:class:`Settings`). Resumes the studies already in ``settings.storage``.

    ``report`` gets one line per finished trial; ``observer()`` makes an event-hook observer
    (a progress display) registered for each round of runs."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check(spec, settings.trials, settings.seeds)
    try:
        storage = optuna.storages.RDBStorage(settings.storage)
    except Exception as error:
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() \
            else type(error).__name__
        raise KdbenchError(f"cannot use tuning storage {settings.storage}: {first}; give "
                           "--tuning-storage sqlite:///path/optuna.db") from None
    session = _Session(spec, plugins, tracker, executor, settings, cache_dir, device,
                       higher_is_better, storage, report, observer)
    baseline = session.row("baseline", None, spec.recipe, spec)
    session.run([baseline])
    recipe = baseline.recipe(baseline.tuning.best) if baseline.tuning.best else spec.recipe
    tuned_base = replace(spec, recipe=recipe)
    rows = [session.row(m.label, m.method, m.params, tuned_base, fixed=set(m.grid))
            for m in spec.methods]
    session.run(rows)
    methods = tuple(replace(m, params={**m.params, **row.tuning.best})
                    for m, row in zip(spec.methods, rows, strict=True))
    everything = [baseline.tuning, *(row.tuning for row in rows)]
    statement = settings.statement()
    untunable = [t.label for t in everything if not t.space]
    failed = [t.label for t in everything if t.space and not t.best]
    if untunable:
        statement += f"; nothing to search: {', '.join(untunable)}"
    if failed:
        statement += f"; every trial failed, settings kept: {', '.join(failed)}"
    tuned = replace(tuned_base, methods=methods, tuning=statement)
    return Tuning(tuned, settings, everything)


def _seeds(seeds: Any) -> str:
    seeds = list(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}..{seeds[-1]}"
    return ", ".join(map(str, seeds))


class _Row:
    """A row under tuning: its study, its MLflow run, and how a setting becomes runs."""

    def __init__(self, session: _Session, label: str, method: str | None, values: Any,
                 base: Spec, fixed: set[str]) -> None:
        self.session, self.label, self.method, self.base = session, label, method, base
        if method is None:
            space = search_space(Recipe, values)
            space = {k: v for k, v in space.items() if k not in fixed}
            if "epochs" in space and base.recipe.milestones:
                # A step schedule's milestones scale with the epochs; keep the choices they fit.
                fits = tuple(e for e in space["epochs"].values if _milestones(base.recipe, e))
                space["epochs"] = Choice(fits)
                if len(fits) < 2:
                    del space["epochs"]
            self.values = as_dict(values)
        else:
            entry = session.plugins.entry("methods", method)
            space = search_space(entry.params, values) if entry.params else {}
            space = {k: v for k, v in space.items() if k not in fixed}
            self.values = dict(values)
        self.space: dict[str, Space] = space
        self.parent: str | None = None
        untuned = self.runs({}, None)
        s = session.settings
        key = sweeps.fingerprint(study=STUDY_FORMAT, runs=[r.fingerprint for r in untuned],
                                 space={k: [type(v).__name__, asdict(v)] for k, v in space.items()},
                                 seeds=s.seeds, trials=s.trials, metric=base.metric,
                                 higher=session.higher, sampler_seed=s.sampler_seed)
        name = f"{base.name}.{label}.{key}"
        self.tuning = RowTuning(label, method, name, space)
        self.study = None if not space else self._study(name)

    def recipe(self, setting: dict[str, Any]) -> Recipe:
        """The base recipe with a trial's setting (milestones scaled with the epochs)."""
        recipe = self.base.recipe
        values = dict(setting)
        if "epochs" in values and recipe.milestones:
            values["milestones"] = _milestones(recipe, values["epochs"])
        return check_recipe(replace(recipe, **values), "[recipe] ")

    def spec(self, setting: dict[str, Any]) -> Spec:
        """The benchmark reduced to this row with ``setting``, on the tuning seeds."""
        base = replace(self.base, seeds=self.session.settings.seeds)
        if self.method is None:
            return replace(base, recipe=self.recipe(setting), methods=())
        entry = self.session.plugins.entry("methods", self.method)
        params = as_dict(entry.make_params({**self.values, **setting},
                                           where=f"[methods.{self.label}] "))
        row = next(m for m in self.base.methods if m.label == self.label)
        return replace(base, methods=(replace(row, params=params),))

    def runs(self, setting: dict[str, Any], trial: int | None) -> list[Run]:
        """This row's runs of ``setting`` on the tuning seeds, reading no test split. Their
        fingerprints name the study and the trial: a trial's runs are its own."""
        session = self.session
        try:
            planned = sweeps.plan(self.spec(setting), session.plugins, session.cache_dir,
                                  session.device)
        except Incompatible as error:
            raise KdbenchError(f"tuning {self.label}: {error} (with the tuned recipe "
                               f"{_describe(setting) or 'of the file'})") from None
        session.teacher = planned.teacher
        out = []
        for run in planned.runs:
            if run.role == "teacher" or run.label != self.label:
                continue
            if trial is None:
                out.append(run)
                continue
            fp = sweeps.fingerprint(tuning=run.fingerprint, study=self.tuning.study, trial=trial)
            bare = sweeps.fingerprint(tuning=run.spec_fingerprint, study=self.tuning.study,
                                      trial=trial)
            out.append(replace(run, fingerprint=fp, spec_fingerprint=bare,
                               job=replace(run.job, evaluate_test=False)))
        return out

    def _study(self, name: str) -> Any:
        import optuna
        from optuna.trial import TrialState

        session = self.session
        study = optuna.create_study(storage=session.storage, study_name=name, load_if_exists=True,
                                    direction="maximize" if session.higher else "minimize")
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            session.storage.set_trial_user_attr(stale._trial_id, INTERRUPTED, True)
            study.tell(stale.number, state=TrialState.FAIL)
            if MLFLOW_RUN in stale.user_attrs:
                session.tracker.end_sweep(stale.user_attrs[MLFLOW_RUN], "KILLED")
        # A kill between Optuna's record of a trial and MLflow's can leave a counted trial's
        # MLflow run RUNNING: Optuna is the record, so its run is closed to agree with it.
        ended = {TrialState.COMPLETE: "FINISHED", TrialState.FAIL: "FAILED"}
        for trial in study.get_trials(deepcopy=False, states=tuple(ended)):
            run_id = trial.user_attrs.get(MLFLOW_RUN)
            if run_id and session.tracker.client.get_run(run_id).info.status == "RUNNING":
                if trial.state == TrialState.COMPLETE:
                    session.tracker.log_values(
                        run_id, in_percent_with_fraction("score", trial.value))
                session.tracker.end_sweep(run_id, ended[trial.state])
        # A kill between a trial run's creation and Optuna's note of it leaves a run that no
        # trial names; nothing of this study is running now, so it was killed.
        orphans = session.tracker.client.search_runs(
            [session.experiment], f"tags.`kdbench.study` = '{name}' and "
            "tags.`kdbench.role` = 'trial' and attributes.status = 'RUNNING'")
        for run in orphans:
            session.tracker.end_sweep(run.info.run_id, "KILLED")
        return study

    def counted(self) -> list[Any]:
        """The trials that count in the budget: finished, or failed by their runs."""
        from optuna.trial import TrialState

        if self.study is None:
            return []
        return [t for t in self.study.get_trials(deepcopy=False)
                if t.state == TrialState.COMPLETE
                or (t.state == TrialState.FAIL and ERROR in t.user_attrs)]

    def done(self) -> bool:
        return self.study is None or len(self.counted()) >= self.session.settings.trials

    def summarise(self) -> None:
        """Fill :attr:`tuning` from the study: the counted trials and the best."""
        from optuna.trial import TrialState

        counted = self.counted()[:self.session.settings.trials]
        self.tuning.trials = [TrialRecord(t.number, dict(t.params), t.value,
                                          t.user_attrs.get(ERROR)) for t in counted]
        complete = [t for t in counted if t.state == TrialState.COMPLETE]
        if not self.space:
            self.tuning.note = "nothing to search: the row keeps its settings"
        elif not complete:
            errors = [t.user_attrs.get(ERROR) for t in counted]
            self.tuning.note = (f"every trial failed ({errors[0]}); the row keeps its settings"
                                if errors else "")
        else:
            sign = 1 if self.session.higher else -1
            best = max(complete, key=lambda t: (sign * t.value, -t.number))
            self.tuning.best, self.tuning.best_value = dict(best.params), float(best.value)


class _Session:
    """One call of :func:`tune`: where runs go and what is already known."""

    def __init__(self, spec: Spec, plugins: Plugins, tracker: Any, executor: Executor,
                 settings: Settings, cache_dir: Path, device: str, higher: bool, storage: Any,
                 report: Report, observer: Callable[[], Any] | None) -> None:
        self.spec, self.plugins, self.tracker, self.executor = spec, plugins, tracker, executor
        self.settings, self.cache_dir, self.device = settings, cache_dir, device
        self.higher, self.storage, self.report, self.observer = higher, storage, report, observer
        self.experiment = tracker.experiment(spec)
        self.teacher: Run | None = None
        self.known: dict[str, RunResult] = {}
        self.metric = f"val.{spec.metric}"

    def row(self, label: str, method: str | None, values: Any, base: Spec,
            fixed: set[str] | None = None) -> _Row:
        return _Row(self, label, method, values, base, fixed or set())

    def run(self, rows: list[_Row]) -> None:
        """Tune ``rows`` side by side until each has its trials."""
        for row in rows:
            if row.study is not None:
                row.tuning.trained = 0
                self._parent(row)
        while True:
            pending = [row for row in rows if not row.done()]
            if not pending:
                break
            batch = [t for t in (self._ask(row) for row in pending) if t is not None]
            if batch:
                self._execute(batch)
        for row in rows:
            row.summarise()
            self._close(row)

    def _parent(self, row: _Row) -> None:
        """The row's MLflow tuning run: the study's, created once and reopened on resume."""
        attrs = row.study.user_attrs
        run_id = attrs.get(MLFLOW_RUN)
        if run_id is not None and self.tracker.reopen(run_id, self.experiment):
            row.parent = run_id
            return
        s = self.settings
        row.parent = self.tracker.start_group(
            self.experiment, f"tune {row.label}",
            tags={"kdbench.role": "tuning", "kdbench.label": row.label,
                  "kdbench.method": row.method or "", "kdbench.study": row.tuning.study},
            params={"study": row.tuning.study, "storage": s.storage, "trials": s.trials,
                    "seeds": ",".join(map(str, s.seeds)), "metric": self.metric,
                    "direction": "maximize" if self.higher else "minimize",
                    **{f"space.{k}": _space(v) for k, v in row.space.items()}})
        row.study.set_user_attr(MLFLOW_RUN, row.parent)

    def _ask(self, row: _Row) -> _Trial | None:
        """The row's next trial, with its MLflow run; ``None`` when its setting is refused
        (a check across the method's parameters): that trial fails, and counts."""
        import optuna
        from optuna.trial import TrialState

        study = row.study
        index = len(row.counted())
        digest = hashlib.sha256(json.dumps([self.settings.sampler_seed, row.label, index]).encode())
        study.sampler = optuna.samplers.TPESampler(seed=int(digest.hexdigest()[:8], 16))
        if index == 0 and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            own = {k: row.values[k] for k, space in row.space.items()
                   if k in row.values and _inside(row.values[k], space)}
            study.enqueue_trial(own)
        trial = study.ask()
        setting = {name: _suggest(trial, name, space) for name, space in row.space.items()}
        try:
            runs = row.runs(setting, trial.number)
        except KdbenchError as error:
            trial.set_user_attr(ERROR, str(error)[:2000])
            study.tell(trial, state=TrialState.FAIL)
            self.report(f"tune {row.label}: trial {index + 1}/{self.settings.trials} "
                        f"{_describe(setting)}: REFUSED: {error}")
            return None
        prefix = "recipe." if row.method is None else "method."
        run_id = self.tracker.start_group(
            self.experiment, f"{row.label} trial {trial.number}", parent=row.parent,
            tags={"kdbench.role": "trial", "kdbench.label": row.label,
                  "kdbench.study": row.tuning.study, "kdbench.trial": str(trial.number)},
            params={**{prefix + k: v for k, v in setting.items()},
                    "seeds": ",".join(map(str, self.settings.seeds))})
        trial.set_user_attr(MLFLOW_RUN, run_id)
        return _Trial(row, trial, setting, runs, run_id)

    def _execute(self, batch: list[_Trial]) -> None:
        """Train every run of ``batch`` (and the teacher first, once); each trial is told to
        its study the moment its last run is in, so a kill loses no finished trial."""
        teacher = self.teacher
        if teacher.fingerprint not in self.known:
            self.known.update(self._reusable_teacher(teacher))
        by_fp = {run.fingerprint: t for t in batch for run in t.runs}
        runs = [run for t in batch for run in t.runs]

        def log(run: Run, result: RunResult) -> None:
            if run.role == "teacher":
                self.tracker.log(self.experiment, None, run, result)
                self.known[run.fingerprint] = result
                return
            trial = by_fp[run.fingerprint]
            self.tracker.log(self.experiment, trial.run_id, run, result)
            trial.results.append(result)
            if len(trial.results) == len(trial.runs):
                self._tell(trial)

        sweep = sweeps.Sweep(replace(self.spec, seeds=self.settings.seeds), teacher,
                             [teacher, *runs])
        observer = self.observer() if self.observer is not None else None
        if observer is not None:
            self.plugins.register_observer(observer, "kdbench-tuning-progress")
        try:
            sweeps.execute(sweep, self.executor, self.plugins, log=log,
                           reused={fp: r for fp, r in self.known.items()
                                   if fp == teacher.fingerprint})
        finally:
            if observer is not None:
                self.plugins.unregister_observer(observer)

    def _reusable_teacher(self, teacher: Run) -> dict[str, RunResult]:
        """The teacher's finished run, if MLflow has it and its checkpoint can be had."""
        found = self.tracker.finished(self.experiment, {teacher.fingerprint}, self.spec.metrics)
        checkpoint = teacher.job.teacher.checkpoint
        if teacher.fingerprint in found and checkpoint and not \
                self.tracker.verified_checkpoint(found[teacher.fingerprint].run_id,
                                                 Path(checkpoint)):
            return {}
        return found

    def _tell(self, trial: _Trial) -> None:
        from optuna.trial import TrialState

        row = trial.row
        failed = [r for r in trial.results if r.status != "finished"]
        values = [r.metrics.get(self.metric) for r in trial.results]
        error = failed[0].error if failed else None
        if error is None and any(v is None or not math.isfinite(v) for v in values):
            error = f"a run finished without a finite {self.metric}"
        done = len(row.counted()) + 1
        if error is not None:
            trial.trial.set_user_attr(ERROR, error[:2000])
            row.study.tell(trial.trial, state=TrialState.FAIL)
            self.tracker.end_sweep(trial.run_id, "FAILED")
            self.report(f"tune {row.label}: trial {done}/{self.settings.trials} "
                        f"{_describe(trial.setting)}: FAILED: {error}")
        else:
            score = sum(values) / len(values)
            row.study.tell(trial.trial, score)
            self.tracker.log_values(trial.run_id, in_percent_with_fraction("score", score))
            self.tracker.end_sweep(trial.run_id, "FINISHED")
            self.report(f"tune {row.label}: trial {done}/{self.settings.trials} "
                        f"{_describe(trial.setting)}: {self.metric} {100 * score:.2f}%")
        row.tuning.trained += 1

    def _close(self, row: _Row) -> None:
        """End the row's tuning run with the best setting and its score."""
        if row.study is None:
            return
        t = row.tuning
        self.tracker.log_values(row.parent, in_percent_with_fraction("best_score", t.best_value)
                                if t.best_value is not None else {},
                                {f"best.{k}": v for k, v in t.best.items()})
        self.tracker.end_sweep(row.parent, "FINISHED")


@dataclass
class _Trial:
    row: _Row
    trial: Any
    setting: dict[str, Any]
    runs: list[Run]
    run_id: str
    results: list[RunResult] = field(default_factory=list)


def _suggest(trial: Any, name: str, space: Space) -> Any:
    if isinstance(space, Choice):
        return trial.suggest_categorical(name, list(space.values))
    log = isinstance(space, LogUniform)
    if isinstance(space.low, int) and isinstance(space.high, int):
        return trial.suggest_int(name, space.low, space.high, log=log)
    return trial.suggest_float(name, space.low, space.high, log=log)


def _inside(value: Any, space: Space) -> bool:
    if isinstance(space, Choice):
        return value in space.values
    return isinstance(value, int | float) and space.low <= value <= space.high


def _space(space: Space) -> str:
    if isinstance(space, Choice):
        return "one of " + ", ".join(map(str, space.values))
    return f"{type(space).__name__.lower()} [{space.low:g}, {space.high:g}]"


def _describe(setting: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in setting.items())


def _milestones(recipe: Recipe, epochs: int) -> tuple[int, ...] | None:
    """``recipe``'s milestones scaled to ``epochs``; ``None`` when they no longer fit."""
    scaled = tuple(round(m * epochs / recipe.epochs) for m in recipe.milestones)
    fits = all(0 < a < b for a, b in zip((0, *scaled), (*scaled, epochs), strict=True))
    return scaled if fits else None


# The tuned benchmark as a file -------------------------------------------------------

def tuned_toml(tuning: Tuning) -> str:
    """The tuned benchmark as a benchmark file: the original file with the tuned recipe,
    every tuned row as its own table with all its parameters, the evaluation seeds, and the
    ``tuning`` statement its leaderboard shows. ``kdbench run`` on it trains (or reuses)
    what ``kdbench tune`` compared on test."""
    spec = tuning.spec
    raw = read(spec.path)
    doc: dict[str, Any] = {"name": spec.name, "tuning": spec.tuning}
    doc.update({k: v for k, v in raw.items() if k not in doc})
    doc["seeds"] = list(spec.seeds)
    doc["recipe"] = _plain(as_dict(spec.recipe))
    doc["methods"] = {m.label: _plain({"method": m.method, **m.params}) for m in spec.methods}
    lines = [f"# Written by `kdbench tune` from {spec.path.name}: each row's settings chosen on",
             f"# the validation split: {tuning.settings.statement()}, tuning seeds "
             f"{_seeds(tuning.settings.seeds)}.",
             f"# Optuna storage: {tuning.settings.storage}",
             "# Rerun with `kdbench run <this file>`. Best validation score per row:"]
    for row in tuning.rows:
        what = (f"{100 * row.best_value:.2f}% ({_describe(row.best)})"
                if row.best_value is not None else row.note or "not tuned")
        lines.append(f"#   {row.label}: {what}; study {row.study}")
    return "\n".join(lines) + "\n\n" + tomlwrite.dump(doc)


def write_toml(tuning: Tuning, out: Path) -> Path:
    """``<out>/<benchmark>-tuned.toml``."""
    path = out / f"{tuning.spec.name}-tuned.toml"
    path.write_text(tuned_toml(tuning))
    return path


def _plain(table: dict[str, Any]) -> dict[str, Any]:
    """A table without ``None`` values: TOML has no null, and a field left out keeps its
    default, which is the only way a ``None`` reaches a benchmark's values."""
    return {k: v for k, v in table.items() if v is not None}


