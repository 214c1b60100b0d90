"""The Python API: what ``kdbench run``, ``leaderboard``, ``tune`` and ``compare`` do, for
notebooks and scripts::

    import kdbench

    result = kdbench.run("mnist1d", seeds=3, methods=["kd", "fitnet"])
    result.board.row("kd").verdict          # 'better', 'worse' or 'no evidence'
    result.board.per_seed()["kd"]           # {seed: final test value}
    board = kdbench.read_board("mnist1d").board   # from MLflow, nothing trained

Each function takes the options of the command of the same name as keyword arguments,
trains and logs exactly as the command does (the command line is a thin layer over these
functions), and returns plain dataclasses (:class:`Result`, :class:`kdbench.board.Board`)
instead of printing a table; the progress of the runs still goes to stderr
(``progress=False`` hides it). A problem a user can fix raises
:class:`kdbench.errors.KdbenchError` with the command line's one-line message, before
anything trains.

This module imports nothing heavy at import time: torch, scipy and MLflow load when a
function needs them, so that ``import kdbench`` and ``kdbench --help`` stay instant.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdbench.board import Board, Failure
from kdbench.errors import KdbenchError

if TYPE_CHECKING:
    from kdbench.leaderboard import Options
    from kdbench.plugins import Plugins
    from kdbench.ranking import Ranking
    from kdbench.runs import RunResult
    from kdbench.session import Session
    from kdbench.spec import Spec
    from kdbench.sweep import Sweep
    from kdbench.tuning import Tuning

DEFAULT_BENCHMARK = "mnist1d"
DEFAULT_OUT = Path("results")
"""Where board files go by default: a folder of the working directory that git ignores, so
that a run in the checkout never overwrites the committed boards of ``leaderboard/``."""
DEFAULT_MAX_RUNS = 2000
"""More runs than a sweep on a workstation is meant to train: a larger plan is most often a
typo in ``--seeds`` or ``seeds``; ``max_runs`` goes past it."""

Methods = str | Sequence[str] | None
"""Row names: a comma list (``"kd,fitnet"``) or a sequence."""


def default_cache() -> Path:
    """``$KDBENCH_CACHE``, else ``~/.cache/kdbench``: datasets and teacher checkpoints."""
    return Path(os.environ.get("KDBENCH_CACHE", Path.home() / ".cache" / "kdbench"))


# What every function returns ---------------------------------------------------------

@dataclass(frozen=True)
class RunRecord:
    """One run of the sweep: trained now, reused from the store, failed or not there yet."""

    role: str
    """``teacher``, ``baseline`` or ``method``."""
    label: str
    seed: int
    fingerprint: str
    status: str
    """``finished``, ``failed`` or ``missing`` (not in the store: :func:`read_board`)."""
    reused: bool
    """Found finished in the store (or the cache, for a teacher), not trained by this call."""
    metrics: dict[str, float]
    """The run's own values as it produced them: fractions for accuracies (the board, and
    MLflow's plain keys, show them in percent)."""
    run_id: str | None
    error: str | None = None
    traceback: str | None = None


@dataclass(frozen=True)
class Result:
    """A leaderboard and the runs behind it."""

    board: Board
    runs: tuple[RunRecord, ...]
    files: tuple[Path, ...]
    """The board files written (``<out>/<benchmark>.{json,md,csv,html,png}``)."""
    tracking_uri: str
    sweep_run_id: str | None
    """The sweep's MLflow run (``None`` when nothing was trained: :func:`read_board`)."""

    @property
    def trained(self) -> int:
        """Runs this call trained (finished or failed)."""
        return sum(1 for r in self.runs if not r.reused and r.status != "missing")

    @property
    def reused(self) -> int:
        return sum(1 for r in self.runs if r.reused)

    @property
    def missing(self) -> int:
        """Runs of the benchmark not in the store (:func:`read_board`)."""
        return sum(1 for r in self.runs if r.status == "missing")

    @property
    def failed(self) -> tuple[Failure, ...]:
        """The failed runs the board lists (the command line exits 1 when there are any)."""
        return self.board.failed


# Options, checked before anything trains ---------------------------------------------

def resolve_device(name: str = "auto") -> str:
    """``cpu``, ``cuda`` (or ``cuda:N``), or for ``auto`` CUDA when torch sees a GPU."""
    if name not in ("cpu", "cuda", "auto") and not name.startswith("cuda:"):
        raise KdbenchError(f"--device must be cpu, cuda or auto, got {name!r}")
    if name == "cpu":
        return name
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise KdbenchError("--device cuda: no CUDA device is available; use --device cpu")
    return name


def batch_runs(value: int | str) -> int:
    """``batch_runs``: ``"auto"`` 0 (stack where the student is small), ``"off"`` 1, else a
    count of runs stacked at most."""
    if value in ("auto", "off"):
        return 0 if value == "auto" else 1
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit() and int(value) >= 1:
        return int(value)
    raise KdbenchError(f"--batch-runs: expected a number of runs (1 or more), off or auto, "
                       f"got {value!r}")


def use_data_root(path: str | Path | None) -> None:
    """Look for datasets under ``path`` (``$KDBENCH_DATA``, so that worker processes look in
    the same place); ``None`` leaves it as it is."""
    if path is not None:
        os.environ["KDBENCH_DATA"] = str(Path(path).expanduser().resolve())


def check_run_count(spec: Spec, seeds: int, ceiling: int) -> None:
    """Refuse a plan of more than ``ceiling`` runs (1 teacher + (baseline + rows) × seeds)
    before anything is planned or trained."""
    if ceiling < 1:
        raise KdbenchError(f"--max-runs must be at least 1, got {ceiling}")
    rows = 1 + len(spec.methods)
    runs = 1 + rows * seeds
    if runs > ceiling:
        raise KdbenchError(f"this sweep plans {runs:,} runs (1 teacher + {rows} rows × {seeds:,} "
                           f"seeds), more than the ceiling of {ceiling:,}; use fewer seeds or "
                           f"--methods, or pass --max-runs {runs} to train them all")


def writable_dir(path: Path, flag: str = "--out") -> None:
    """Create ``path`` if it is missing and write a file in it, so that a leaderboard that
    cannot be written is refused before the training, not after it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise KdbenchError(f"{flag} {path} is a file, not a directory; give a directory for the "
                           "leaderboard files") from None
    except OSError as error:
        raise KdbenchError(f"{flag} {path}: cannot create the directory ({error.strerror or error}); "
                           "give a writable directory") from None
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise KdbenchError(f"{flag} {path} is not writable ({error.strerror or error}); give a "
                           "writable directory") from None


def fresh_rows(value: bool | str | Sequence[str], spec: Spec) -> bool | frozenset[str]:
    """``fresh``: ``True`` for every run, else the set of row labels it names (checked); a
    grid's table name (``kd``) stands for every row of the grid."""
    if isinstance(value, bool):
        return value
    names = value.split(",") if isinstance(value, str) else list(value)
    shown = value if isinstance(value, str) else ",".join(names)
    rows = frozenset(n.strip() for n in names if n.strip())
    labels = {"teacher", "baseline", *(m.label for m in spec.methods)}
    grids = {m.table: {r.label for r in spec.methods if r.table == m.table}
             for m in spec.methods if m.grid}
    unknown = sorted(rows - labels - set(grids))
    if unknown or not rows:
        raise KdbenchError(f"--fresh {shown}: no row named {', '.join(unknown) or '(none)'} in "
                           f"benchmark {spec.name!r}; rows: {', '.join(sorted(labels))} "
                           "(a bare --fresh, after the benchmark, retrains everything)")
    return frozenset(label for row in rows for label in grids.get(row, {row}))


def load_plugins(strict: bool = False) -> Plugins:
    from kdbench.plugins import Plugins

    return Plugins.load(strict=strict)


def load_spec(benchmark: str | Path, plugins: Plugins, *, seeds: int | None = None,
              methods: Methods = None, batch: int | str = "auto", device_name: str = "auto",
              amp: str = "off", channels_last: bool = False, compile: bool = False,
              smoke: bool = False) -> Spec:
    """The benchmark file with the options applied: seeds ``0..seeds-1``, only ``methods``,
    the device settings, and shrunk to a smoke test with ``smoke``."""
    from kdbench import accel
    from kdbench.spec import load

    if isinstance(methods, str):
        methods = methods.split(",")
    rows = [m.strip() for m in methods if m.strip()] if methods else None
    spec = load(str(benchmark), plugins).with_options(seeds=seeds, methods=rows)
    spec = replace(spec, batch_runs=batch_runs(batch),
                   accel=accel.configured(resolve_device(device_name), amp, channels_last, compile))
    return spec.smoke() if smoke else spec


def board_options(spec: Spec, correction: str = "holm", family: str = "benchmark") -> Options:
    """The leaderboard's statistics options; says so when the correction's family shrinks."""
    from kdbench.leaderboard import Options

    if correction not in ("holm", "bh"):
        raise KdbenchError(f"--correction must be holm or bh, got {correction!r}")
    if family not in ("benchmark", "shown"):
        raise KdbenchError(f"--family must be benchmark or shown, got {family!r}")
    size = None
    if family == "shown":
        size = len(spec.methods)
        if size < spec.family:
            warnings.warn(f"--family shown: the {correction} correction runs over the "
                          f"{size} rows shown, not the benchmark's {spec.family}; verdicts "
                          "can differ from the full board's", stacklevel=3)
    return Options(correction=correction, family=size)


# The functions -----------------------------------------------------------------------

def plan(benchmark: str | Path = DEFAULT_BENCHMARK, *, seeds: int | None = None,
         methods: Methods = None, cache_dir: str | Path | None = None, device: str = "auto",
         batch_runs: int | str = "auto", amp: str = "off", channels_last: bool = False,
         compile: bool = False, smoke: bool = False, data_root: str | Path | None = None,
         fresh: bool | str | Sequence[str] = False, until_decided: bool = False,
         max_seeds: int | None = None, max_runs: int = DEFAULT_MAX_RUNS,
         strict_plugins: bool = False, plugins: Plugins | None = None) -> Sweep:
    """Plan and check every run of :func:`run` with the same options (models build, every
    method accepts the pair, the data are found), without training or opening a store:
    ``kdbench run --dry-run``."""
    return _planned(benchmark, seeds, methods, cache_dir, device, batch_runs, amp,
                    channels_last, compile, smoke, data_root, fresh, until_decided, max_seeds,
                    max_runs, strict_plugins, plugins, out=None).sweep


@dataclass(frozen=True)
class _Plan:
    plugins: Plugins
    spec: Spec
    rows: bool | frozenset[str]
    cache: Path
    device: str
    sweep: Sweep


def _planned(benchmark: str | Path, seeds: int | None, methods: Methods,
             cache_dir: str | Path | None, device: str, batch: int | str, amp: str,
             channels_last: bool, compile: bool, smoke: bool, data_root: str | Path | None,
             fresh: bool | str | Sequence[str], until: bool, most: int | None, max_runs: int,
             strict_plugins: bool, plugins: Plugins | None, out: Path | None) -> _Plan:
    """The checks of ``kdbench run`` in its order, then the plan (before any store is
    opened: a missing dataset stops here, having created nothing)."""
    use_data_root(data_root)
    plugins = plugins or load_plugins(strict_plugins)
    spec = load_spec(benchmark, plugins, seeds=seeds, methods=methods, batch=batch,
                     device_name=device, amp=amp, channels_last=channels_last, compile=compile,
                     smoke=smoke)
    if until and most is None:
        raise KdbenchError("--until-decided needs --max-seeds N, the most seeds to spend")
    if most is not None and most < len(spec.seeds):
        raise KdbenchError(f"--max-seeds {most} is fewer than the "
                           f"{len(spec.seeds)} seeds the benchmark starts with")
    check_run_count(spec, most if until and most else len(spec.seeds), max_runs)
    if out is not None:
        writable_dir(out)
    rows = fresh_rows(fresh, spec)
    cache = _cache(cache_dir)
    where = resolve_device(device)
    from kdbench import sweep as sweeps  # torch: after the checks that need none

    return _Plan(plugins, spec, rows, cache, where, sweeps.plan(spec, plugins, cache, where))


def run(benchmark: str | Path = DEFAULT_BENCHMARK, *, seeds: int | None = None,
        methods: Methods = None, out: str | Path | None = DEFAULT_OUT,
        tracking_uri: str | None = None, cache_dir: str | Path | None = None,
        correction: str = "holm", family: str = "benchmark", device: str = "auto",
        batch_runs: int | str = "auto", amp: str = "off", channels_last: bool = False,
        compile: bool = False, smoke: bool = False, data_root: str | Path | None = None,
        fresh: bool | str | Sequence[str] = False, executor: str | None = None,
        workers: int | None = None, address: str | None = None, until_decided: bool = False,
        max_seeds: int | None = None, max_runs: int = DEFAULT_MAX_RUNS,
        strict_plugins: bool = False, plugins: Plugins | None = None, progress: bool = True,
        tracebacks: bool = False, runs_per_gpu: int | None = None) -> Result:
    """Train what is missing, then build and write the leaderboard: ``kdbench run``.

    Runs whose fingerprint already finished in the store (``tracking_uri``, default
    ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``) are reused, so a second call with
    the same options trains nothing. ``out=None`` writes no board file here (the sweep's
    MLflow run still gets them as artifacts). ``fresh``: ``True`` retrains every run, a list
    of row names (``baseline``, ``teacher`` too) those rows. ``until_decided`` adds seeds to
    undecided methods up to ``max_seeds`` (:func:`kdbench.session.until_decided`).
    ``tracebacks`` prints each failed run's worker traceback on stderr (``--debug``).
    ``runs_per_gpu``: on CUDA, that many runs at once on each visible GPU (``--runs-per-gpu``)."""
    out = Path(out) if out is not None else None
    p = _planned(benchmark, seeds, methods, cache_dir, device, batch_runs, amp, channels_last,
                 compile, smoke, data_root, fresh, until_decided, max_seeds, max_runs,
                 strict_plugins, plugins, out)
    from kdbench import executors
    from kdbench.session import Session
    from kdbench.session import until_decided as sequential
    from kdbench.tracking import Tracker

    spec, sweep = p.spec, p.sweep
    options = board_options(spec, correction, family)
    tracker = Tracker(tracking_uri)
    chosen = executors.configured(p.plugins, spec, executor, workers, p.device, address,
                                  runs_per_gpu)
    experiment = tracker.experiment(spec)
    sweep_id = tracker.start_sweep(experiment, spec, {
        "fresh": fresh if isinstance(fresh, bool | str) else ",".join(fresh),
        "device": p.device, "executor": executor or spec.executor.name,
        "until_decided": until_decided, "smoke": spec.protocol.smoke})
    session = Session(p.plugins, spec, tracker, chosen, experiment, sweep_id, p.cache,
                      p.device, p.rows, progress)
    higher = p.plugins.higher_is_better(spec.metric)

    def train() -> tuple[Sweep, dict[str, RunResult], Options]:
        if until_decided and max_seeds is not None:
            return sequential(session, max_seeds, options, higher)
        return sweep, session.train(sweep), options

    return publish(session, sweep, train, higher, out, tracebacks=tracebacks)


def read_board(benchmark: str | Path = DEFAULT_BENCHMARK, *, seeds: int | None = None,
               methods: Methods = None, out: str | Path | None = None,
               tracking_uri: str | None = None, cache_dir: str | Path | None = None,
               correction: str = "holm", family: str = "benchmark", device: str = "auto",
               batch_runs: int | str = "auto", amp: str = "off", channels_last: bool = False,
               compile: bool = False, smoke: bool = False,
               data_root: str | Path | None = None, strict_plugins: bool = False,
               plugins: Plugins | None = None) -> Result:
    """The leaderboard of the runs already finished in the store, nothing trained:
    ``kdbench leaderboard``. The options must be those of the ``run`` that trained them
    (they are part of each run's identity); runs not found are ``missing`` in
    :attr:`Result.runs`. With ``out`` the board files are written there too."""
    use_data_root(data_root)
    plugins = plugins or load_plugins(strict_plugins)
    spec = load_spec(benchmark, plugins, seeds=seeds, methods=methods, batch=batch_runs,
                     device_name=device, amp=amp, channels_last=channels_last,
                     compile=compile, smoke=smoke)
    from kdbench import leaderboard
    from kdbench.tracking import Tracker

    if out is not None:
        writable_dir(Path(out))
    tracker = Tracker(tracking_uri)
    sweep, results, board = stored_board(spec, plugins, tracker, _cache(cache_dir),
                                         str(benchmark), resolve_device(device),
                                         board_options(spec, correction, family))
    files = tuple(leaderboard.write(board, Path(out))) if out is not None else ()
    return Result(Board.from_json(board), _records(sweep, results), files, tracker.uri, None)


def stored_board(spec: Spec, plugins: Plugins, tracker: Any, cache_dir: Path, name: str,
                 device: str = "cpu", options: Options | None = None
                 ) -> tuple[Sweep, dict[str, RunResult], dict[str, Any]]:
    """The leaderboard of ``spec`` (the JSON contract) from the runs already finished in the
    store, no training; refuses a store without any of its runs."""
    from kdbench import leaderboard
    from kdbench import sweep as sweeps

    sweep = sweeps.plan(spec, plugins, cache_dir, device)
    results = tracker.finished(tracker.experiment(spec, create=False),
                               {r.fingerprint for r in sweep.runs}, spec.metrics)
    if not any(r.role != "teacher" and r.fingerprint in results for r in sweep.runs):
        raise KdbenchError(f"no finished runs of benchmark {spec.name!r} in {tracker.uri}: "
                           f"run `kdbench run {name}` first")
    from kdbench import convergence

    board = leaderboard.build(sweep, results, higher_is_better=plugins.higher_is_better(spec.metric),
                              options=options or leaderboard.Options(),
                              recipe_check=convergence.recorded(spec, plugins, tracker, cache_dir,
                                                                device))
    return sweep, results, board


@dataclass(frozen=True)
class Tuned:
    """What :func:`tune` found, and the tuned benchmark's board on its own seeds."""

    tuning: Tuning
    """Each row's trials and best setting (:class:`kdbench.tuning.Tuning`)."""
    toml: Path
    """The tuned benchmark file (``<out>/<name>-tuned.toml``)."""
    storage: str
    """The Optuna storage the studies live in."""
    result: Result


def tune(benchmark: str | Path = DEFAULT_BENCHMARK, *, trials: int, tune_seeds: int = 2,
         tuning_storage: str | None = None, seeds: int | None = None, methods: Methods = None,
         out: str | Path = DEFAULT_OUT, tracking_uri: str | None = None,
         cache_dir: str | Path | None = None, correction: str = "holm",
         family: str = "benchmark", device: str = "auto", batch_runs: int | str = "auto",
         amp: str = "off", channels_last: bool = False, compile: bool = False,
         data_root: str | Path | None = None, workers: int | None = None,
         max_runs: int = DEFAULT_MAX_RUNS, strict_plugins: bool = False,
         plugins: Plugins | None = None, progress: bool = True,
         report: Callable[[str], None] | None = None, tracebacks: bool = False) -> Tuned:
    """Tune every row (the baseline's recipe too) with ``trials`` trials of ``tune_seeds``
    runs on the validation split, then run the tuned benchmark on its own seeds and compare
    on test: ``kdbench tune`` (:func:`kdbench.tuning.tune`). ``report`` gets one line per
    finished trial (default: stderr)."""
    use_data_root(data_root)
    plugins = plugins or load_plugins(strict_plugins)
    spec = load_spec(benchmark, plugins, seeds=seeds, methods=methods, batch=batch_runs,
                     device_name=device, amp=amp, channels_last=channels_last,
                     compile=compile)
    from kdbench import executors, tuning
    from kdbench import sweep as sweeps
    from kdbench.progress import Progress
    from kdbench.session import Session
    from kdbench.tracking import Tracker

    tune_on = tuning.tuning_seeds(tune_seeds)
    tuning.check(spec, trials, tune_on)
    rows = 1 + len(spec.methods)
    planned = 1 + rows * (trials * len(tune_on) + len(spec.seeds))
    if planned > max_runs:
        raise KdbenchError(f"this tuning plans up to {planned:,} runs ({rows} rows × "
                           f"({trials} trials × {len(tune_on)} seeds + {len(spec.seeds)} "
                           f"evaluation seeds) + 1 teacher), more than the ceiling of "
                           f"{max_runs:,}; use fewer --trials or --methods, or pass "
                           f"--max-runs {planned}")
    out = Path(out)
    writable_dir(out)
    cache = _cache(cache_dir)
    where = resolve_device(device)
    tracker = Tracker(tracking_uri)
    settings = tuning.Settings(trials, tune_on, tuning.storage_url(tuning_storage, tracker.uri))
    executor = executors.configured(plugins, spec, workers=workers, device=where)
    higher = plugins.higher_is_better(spec.metric)
    workers_shown = getattr(executor, "workers", 1)
    found = tuning.tune(spec, plugins, tracker, executor, settings, cache, where, higher,
                        report=report or (lambda line: print(f"kdbench: {line}", file=sys.stderr)),
                        observer=(lambda: Progress(workers=workers_shown)) if progress else None)
    toml = tuning.write_toml(found, out)

    tuned = found.spec
    sweep = sweeps.plan(tuned, plugins, cache, where)
    experiment = tracker.experiment(tuned)
    sweep_id = tracker.start_sweep(experiment, tuned, {"device": where, "tuning": tuned.tuning,
                                                       "tuning_storage": settings.storage})
    session = Session(plugins, tuned, tracker, executor, experiment, sweep_id, cache, where,
                      False, progress)
    options = board_options(tuned, correction, family)
    result = publish(session, sweep, lambda: (sweep, session.train(sweep), options), higher,
                     out, extra=(toml,), tracebacks=tracebacks)
    return Tuned(found, toml, settings.storage, result)


@dataclass(frozen=True)
class Comparison:
    """Methods ranked across benchmarks (:func:`kdbench.ranking.rank`)."""

    ranking: Ranking
    scores: dict[str, dict[str, float]]
    """Each benchmark's mean per method (the baseline too), the ranks' input."""
    files: tuple[Path, ...]


def compare(benchmarks: Sequence[str | Path], *, out: str | Path | None = DEFAULT_OUT,
            name: str = "compare", tracking_uri: str | None = None,
            cache_dir: str | Path | None = None, device: str = "auto",
            strict_plugins: bool = False, plugins: Plugins | None = None) -> Comparison:
    """Rank methods across benchmarks from their stored runs: average ranks, the Friedman
    and Iman–Davenport tests and the Nemenyi critical difference (``kdbench compare``);
    ``<out>/<name>.png`` is the critical-difference diagram, ``<out>/<name>.json`` the
    numbers. Warns when the benchmarks are too few to tell any two methods apart."""
    from kdbench.spec import NAME, load

    if len(benchmarks) < 2:
        raise KdbenchError("compare needs at least two benchmarks")
    if not NAME.fullmatch(name):
        raise KdbenchError(f"--name {name[:120]!r} is not a safe file name: use 1 to 100 "
                           "letters, digits, '.', '_' or '-', starting with a letter or digit")
    out = Path(out) if out is not None else None
    if out is not None:
        writable_dir(out)
    plugins = plugins or load_plugins(strict_plugins)
    import json

    from kdbench import plots, ranking
    from kdbench.tracking import Tracker

    tracker = Tracker(tracking_uri)
    scores: dict[str, dict[str, float]] = {}
    higher = None
    for benchmark in benchmarks:
        spec = load(str(benchmark), plugins)
        _, _, board = stored_board(spec, plugins, tracker, _cache(cache_dir), str(benchmark),
                                   resolve_device(device))
        if higher is not None and board["higher_is_better"] != higher:
            raise KdbenchError("compare: the benchmarks rank by metrics of opposite directions")
        higher = board["higher_is_better"]
        if board["baseline"]["mean"] is None:
            raise KdbenchError(f"compare: benchmark {spec.name!r} has no finished baseline run "
                               f"in {tracker.uri}; run `kdbench run {benchmark}` first")
        # A row whose every run failed has no mean: it is dropped from the ranking, not 0.
        scores[spec.name] = {"baseline": board["baseline"]["mean"],
                             **{r["method"]: r["mean"] for r in board["rows"]
                                if r["mean"] is not None}}
    result = ranking.rank(scores, higher_is_better=bool(higher))
    files: tuple[Path, ...] = ()
    if out is not None:
        figure = ranking.cd_diagram(result)
        files = (out / f"{name}.png", out / f"{name}.json")
        files[0].write_bytes(plots.png(figure))
        files[1].write_text(json.dumps({
            "benchmarks": result.benchmarks, "average_ranks": result.average_ranks,
            "friedman_statistic": result.friedman_statistic, "friedman_p": result.friedman_p,
            "iman_davenport_statistic": result.iman_davenport_statistic,
            "iman_davenport_p": result.iman_davenport_p,
            "critical_difference": result.critical_difference, "alpha": result.alpha,
            "separable": result.separable,
            "dropped": result.dropped, "scores": scores}, indent=2, allow_nan=True) + "\n")
    k, n = len(result.methods), len(result.benchmarks)
    if k >= 2 and not result.separable:
        warnings.warn(f"with {n} benchmarks and {k} methods the critical difference "
                      f"({result.critical_difference:.2f}) exceeds the largest possible gap in "
                      f"average rank ({k - 1}): no two methods can be told apart; add "
                      f"benchmarks (≥ {ranking.benchmarks_to_separate(k, result.alpha)} for "
                      f"{k} methods)", stacklevel=2)
    return Comparison(result, scores, files)


# Shared steps --------------------------------------------------------------------------

def publish(session: Session, planned: Sweep,
            train: Callable[[], tuple[Sweep, dict[str, RunResult], Options]], higher: bool,
            out: Path | None, extra: tuple[Path, ...] = (), tracebacks: bool = False) -> Result:
    """Train (``train() -> (sweep, results, options)``), then build and write the board, log
    its files (and ``extra``) to the sweep's MLflow run and end it.

    The sweep's MLflow run ends KILLED on Ctrl-C and FAILED on an error, and with
    ``tracebacks`` a failed teacher's worker traceback (from ``planned``, the sweep that
    trains it) is printed before the error."""
    from kdbench import leaderboard

    tracker, sweep_id = session.tracker, session.sweep_id
    status = "FAILED"
    try:
        sweep, results, options = train()
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if status != "FINISHED":
            tracker.end_sweep(sweep_id, status)
            if tracebacks:
                print_tracebacks(planned.runs, planned.results)
    from kdbench import convergence

    board = leaderboard.build(sweep, results, higher_is_better=higher, options=options,
                              recipe_check=convergence.recorded(
                                  session.spec, session.plugins, tracker, session.cache,
                                  session.device))
    tracker.log_board(sweep_id, board)
    with tempfile.TemporaryDirectory() if out is None else contextlib.nullcontext() as tmp:
        written = leaderboard.write(board, Path(tmp) if out is None else out)
        for path in [*written, *extra]:
            tracker.log_artifact(sweep_id, path)
    tracker.end_sweep(sweep_id, "FINISHED")
    if tracebacks:
        print_tracebacks(sweep.runs, results)
    files = (*written, *extra) if out is not None else extra
    return Result(Board.from_json(board), _records(sweep, results), tuple(files), tracker.uri,
                  sweep_id)


def print_tracebacks(runs: list[Any], results: dict[str, RunResult]) -> None:
    """The worker's traceback of each failed run among ``runs``, on stderr (``--debug``)."""
    for run in runs:
        result = results.get(run.fingerprint)
        if result is not None and result.status == "failed" and result.traceback:
            print(f"kdbench: {run.describe()} failed: {result.error}\n{result.traceback}",
                  file=sys.stderr)


def _records(sweep: Sweep, results: dict[str, RunResult]) -> tuple[RunRecord, ...]:
    records = []
    for run in sweep.runs:
        r = results.get(run.fingerprint)
        records.append(RunRecord(
            run.role, run.label, run.seed, run.fingerprint,
            r.status if r is not None else "missing", bool(r is not None and r.reused),
            dict(r.metrics) if r is not None else {}, r.run_id if r is not None else None,
            r.error if r is not None else None, r.traceback if r is not None else None))
    return tuple(records)


def _cache(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache()

