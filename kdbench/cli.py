"""``kdbench run | tune | check-recipe | leaderboard | compare | plugins | ui``: the command line.

Each command parses its flags, calls the module that does the work (``sweep``,
``tuning``, ``convergence``, ``leaderboard``, ``ranking``) and prints.

Every problem a user can fix is one line on stderr and exit code 2; ``--debug``
shows the traceback instead.

Exit codes, for scripts and CI:

- 0: every run finished and the board was written.
- 1: the sweep completed and the board was written, but it lists failed runs
  (each with its reason, in the terminal table and the board files); with
  ``--debug`` each failed run's worker traceback goes to stderr. ``kdbench
  leaderboard`` returns 1 too when the board it rebuilds lists failed runs
  (a stored run whose metric is not finite).
- 2: a usage error (bad benchmark file, flag, plugin or store), reported as one
  line before anything trains; also a teacher that fails to train, since no
  board can be built without it.
- 130, 143, 129: stopped by Ctrl-C (SIGINT), SIGTERM or SIGHUP (128 + the signal):
  the workers are killed within seconds, the sweep's MLflow run ends KILLED, finished
  runs are kept and reused by the same command run again (one line says which). A
  second Ctrl-C exits at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kdbench import __version__, executors, interrupts, leaderboard
from kdbench.errors import KdbenchError
from kdbench.plugins import Plugins
from kdbench.progress import Progress
from kdbench.spec import Spec, load

DEFAULT_BENCHMARK = "mnist1d"
DEFAULT_MAX_RUNS = 2000
"""More runs than a sweep on a workstation is meant to train: a larger plan is most often a
typo in ``--seeds`` or ``seeds``; ``--max-runs`` goes past it."""


DATA_ROOT_HELP = ("where datasets are found (sets $KDBENCH_DATA for this command and its "
                  "workers; a [dataset] root in the benchmark wins)")


def default_cache() -> Path:
    return Path(os.environ.get("KDBENCH_CACHE", Path.home() / ".cache" / "kdbench"))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="kdbench", description="Benchmark knowledge distillation methods against the "
        "student trained alone, over several seeds, with statistics.")
    top.add_argument("--version", action="version", version=f"kdbench {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    common.add_argument("--strict-plugins", action="store_true",
                        help="a plugin that fails to load is an error, not a warning")
    common.add_argument("--disable-plugin", action="append", default=[], metavar="NAME",
                        help="do not load this plugin (an entry-point name from `kdbench "
                        "plugins`; repeatable; adds to $KDBENCH_DISABLE_PLUGINS), e.g. to pick "
                        "one of two plugins that register the same name")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    bench = argparse.ArgumentParser(add_help=False)
    bench.add_argument("benchmark", nargs="?", default=DEFAULT_BENCHMARK,
                       help=f"a built-in benchmark name or a .toml path (default {DEFAULT_BENCHMARK})")
    bench.add_argument("--seeds", type=int, metavar="N", help="use seeds 0..N-1")
    bench.add_argument("--methods", metavar="A,B", help="only these methods (row names)")
    bench.add_argument("--out", type=Path, default=Path("leaderboard"),
                       help="where leaderboard files go (default ./leaderboard)")
    bench.add_argument("--tracking-uri", metavar="URI",
                       help="MLflow store (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    bench.add_argument("--cache-dir", type=Path, default=None,
                       help="datasets and teacher checkpoints (default $KDBENCH_CACHE or "
                       "~/.cache/kdbench)")
    bench.add_argument("--correction", choices=["holm", "bh"], default="holm",
                       help="multiple-comparison correction across methods (default holm)")
    bench.add_argument("--device", default="auto",
                       help="cpu, cuda or auto (default); part of each run's identity, so "
                       "`leaderboard` finds the runs trained on the same device")
    _accel_flags(bench)
    bench.add_argument("--batch-runs", type=_batch_runs, default=0, metavar="N|off|auto",
                       help="train N seeds of a row at once as one stacked model (auto, the "
                       "default: every seed of a row where the student is small and the "
                       "method allows; off: one by one); part of each run's identity")
    bench.add_argument("--smoke", action="store_true",
                       help="a smoke test: a few batches per epoch, 2 epochs, 2 seeds, small "
                       "validation and test splits; its board and MLflow experiment are "
                       "<name>-smoke, and its results are never reused as real ones")
    bench.add_argument("--data-root", type=Path, metavar="DIR", help=DATA_ROOT_HELP)
    bench.add_argument("--family", choices=["benchmark", "shown"], default="benchmark",
                       help="what the correction runs over: every row of the benchmark file "
                       "(default), or only the rows --methods shows, which can flip verdicts")

    run = sub.add_parser("run", parents=[common, bench], help="train what is missing, then "
                         "print and write the leaderboard")
    run.add_argument("--fresh", nargs="?", const=True, default=False, metavar="ROWS",
                     help="retrain even runs that finished: all of them, or only these rows "
                     "(comma list of row names, baseline, teacher)")
    run.add_argument("--workers", type=int, metavar="N",
                     help="worker processes (default: one per core)")
    run.add_argument("--executor", metavar="NAME", help="executor plugin (default: the "
                     "benchmark's, else process)")
    run.add_argument("--address", metavar="HOST:PORT",
                     help="with --executor ray: the Ray cluster's head (`ray start --head`)")
    run.add_argument("--dry-run", action="store_true",
                     help="plan and check the runs (models build, every method accepts the pair, "
                     "data are found) and print them; train nothing, open no store")
    run.add_argument("--until-decided", action="store_true",
                     help="add seeds to methods without a verdict until decided (needs "
                     "--max-seeds); each look is tested at an alpha-spending level")
    run.add_argument("--max-runs", type=int, metavar="N", default=DEFAULT_MAX_RUNS,
                     help=f"refuse to plan more runs than this (default {DEFAULT_MAX_RUNS}; "
                     "with --until-decided counted at --max-seeds)")
    run.add_argument("--max-seeds", type=int, metavar="N",
                     help="with --until-decided: the most seeds any method gets")

    tune = sub.add_parser("tune", parents=[common, bench], help="tune every row (the baseline's "
                          "recipe too) with the same number of trials on the validation split, "
                          "then run the tuned benchmark on its seeds and print its leaderboard")
    tune.add_argument("--trials", type=int, required=True, metavar="N",
                      help="trials per row, the same for every row")
    tune.add_argument("--tune-seeds", type=int, default=2, metavar="K",
                      help="runs per trial, on seeds 1000..1000+K-1 (default 2); the trial's "
                      "score is their mean validation metric")
    tune.add_argument("--tuning-storage", metavar="URL",
                      help="Optuna storage (default sqlite:///optuna.db next to a SQLite "
                      "MLflow store, else in the working directory)")
    tune.add_argument("--workers", type=int, metavar="N",
                      help="worker processes (default: one per core)")
    tune.add_argument("--max-runs", type=int, metavar="N", default=DEFAULT_MAX_RUNS,
                      help=f"refuse to plan more runs, tuning included (default {DEFAULT_MAX_RUNS})")
    sub.add_parser("leaderboard", parents=[common, bench],
                   help="rebuild the leaderboard from MLflow without training")
    compare = sub.add_parser("compare", parents=[common],
                             help="rank methods across benchmarks: average ranks, Friedman test, "
                             "critical-difference diagram (Nemenyi)")
    compare.add_argument("benchmarks", nargs="+", help="benchmark names or .toml paths")
    compare.add_argument("--out", type=Path, default=Path("leaderboard"))
    compare.add_argument("--name", default="compare", help="file name stem (default compare)")
    compare.add_argument("--tracking-uri", metavar="URI")
    compare.add_argument("--cache-dir", type=Path, default=None)
    compare.add_argument("--device", default="auto", help="the device the runs were trained on")
    recipe = sub.add_parser("check-recipe", parents=[common], help="train the baseline with "
                            "the recipe and longer budgets; say whether validation accuracy "
                            "has plateaued (never reads the test split)")
    recipe.add_argument("benchmark", nargs="?", default=DEFAULT_BENCHMARK,
                        help=f"a built-in benchmark name or a .toml path (default {DEFAULT_BENCHMARK})")
    recipe.add_argument("--budgets", default="1,2", metavar="1,2,4",
                        help="factors of the recipe's epochs to train (default 1,2; 1 is always "
                        "included)")
    recipe.add_argument("--seeds", type=int, default=3, metavar="N",
                        help="seeds 0..N-1 at each budget (default 3)")
    recipe.add_argument("--tracking-uri", metavar="URI")
    recipe.add_argument("--cache-dir", type=Path, default=None)
    recipe.add_argument("--device", default="auto")
    _accel_flags(recipe)
    recipe.add_argument("--workers", type=int, metavar="N")
    recipe.add_argument("--executor", metavar="NAME")
    recipe.add_argument("--fresh", action="store_true", help="retrain runs that finished before")
    recipe.add_argument("--batch-runs", type=_batch_runs, default=0, metavar="N|off|auto",
                        help="train up to N seeds of a budget at once as one stacked model "
                        "(default auto: where the student is small)")
    recipe.add_argument("--data-root", type=Path, metavar="DIR", help=DATA_ROOT_HELP)
    sub.add_parser("plugins", parents=[common], help="list plugins and what they registered")
    ui = sub.add_parser("ui", parents=[common], help="start the MLflow UI on 127.0.0.1, "
                        "opened on a benchmark's runs")
    ui.add_argument("benchmark", nargs="?", help="a benchmark name or .toml path (default: "
                    "the one of the newest sweep in the store)")
    ui.add_argument("--tracking-uri", metavar="URI")
    ui.add_argument("--port", type=int, default=5000, help="default 5000; 0: any free port")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    warnings.showwarning = _one_line_warning
    if args.disable_plugin:
        from kdbench.plugins import DISABLE_ENV, disabled_plugins

        # Through the environment, so that worker processes skip the same plugins.
        names = disabled_plugins() | {n.strip() for v in args.disable_plugin for n in v.split(",")}
        os.environ[DISABLE_ENV] = ",".join(sorted(n for n in names if n))
    if getattr(args, "data_root", None) is not None:
        # Through the environment, so that worker processes look in the same place.
        os.environ["KDBENCH_DATA"] = str(args.data_root.expanduser().resolve())
    try:
        with interrupts.handled():
            return COMMANDS[args.command](args)
    except KdbenchError as error:
        if args.debug:
            raise
        print(f"kdbench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        return interrupts.report(stop)


def _one_line_warning(message: Any, category: type, *_: Any, **__: Any) -> None:
    print(f"kdbench: warning: {message}", file=sys.stderr)


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


def _spec(args: argparse.Namespace, plugins: Plugins) -> Spec:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    spec = load(args.benchmark, plugins).with_options(seeds=args.seeds, methods=methods)
    spec = _accelerated(args, replace(spec, batch_runs=getattr(args, "batch_runs", 0)))
    return spec.smoke() if getattr(args, "smoke", False) else spec


def _accel_flags(parser: argparse.ArgumentParser) -> None:
    """``--amp``, ``--channels-last``, ``--compile`` (:mod:`kdbench.accel`)."""
    parser.add_argument("--amp", choices=["off", "bf16"], default="off",
                        help="bf16: forward passes under bfloat16 autocast, losses in float32 "
                        "(default off); part of each run's identity")
    parser.add_argument("--channels-last", action="store_true",
                        help="convolutions in channels-last memory order; part of each run's "
                        "identity")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the student and teacher (needs a C++ compiler on "
                        "CPU, triton on CUDA); part of each run's identity")


def _accelerated(args: argparse.Namespace, spec: Spec) -> Spec:
    """``spec`` with the device settings of the command line."""
    from kdbench import accel

    return replace(spec, accel=accel.configured(_device(args.device), args.amp,
                                                args.channels_last, args.compile))


def _batch_runs(value: str) -> int:
    """``--batch-runs``: ``auto`` 0, ``off`` 1, else a count of at least 1."""
    if value in ("auto", "off"):
        return 0 if value == "auto" else 1
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise argparse.ArgumentTypeError(f"expected a number of runs (1 or more), off or auto, "
                                     f"got {value!r}")


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise KdbenchError("--device cuda: no CUDA device is available; use --device cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise KdbenchError(f"--device must be cpu, cuda or auto, got {name!r}")
    return name


@dataclass
class Session:
    """What one ``kdbench run`` holds while it trains: one sweep run in MLflow, one executor."""

    plugins: Plugins
    spec: Spec
    tracker: Any
    executor: Any
    experiment: str
    sweep_id: str
    cache: Path
    device: str
    fresh: bool | frozenset[str]
    """``True``: retrain everything; a set of row labels: retrain those rows."""

    def train(self, sweep: Any) -> dict:
        """Train what ``sweep`` lacks; every result is logged as it arrives. Says on stderr
        why runs that finished before with other code retrain."""
        from kdbench import sweep as sweeps

        known = self.tracker.finished(self.experiment, {r.fingerprint for r in sweep.runs},
                                      self.spec.metrics)
        reused = {} if self.fresh is True else dict(known)
        if self.fresh is not True:
            rows = self.fresh or frozenset()
            retrain = {r.fingerprint for r in sweep.runs if r.label in rows}
            reused = {fp: result for fp, result in reused.items() if fp not in retrain}
            missing = [r for r in sweep.runs if r.fingerprint not in reused and r.label not in rows]
            previous = self.tracker.previous_code(self.experiment,
                                                  {r.spec_fingerprint for r in missing})
            for line in sweeps.retrain_reasons(missing, previous):
                print(f"kdbench: {line}", file=sys.stderr)
        teacher = sweep.teacher
        checkpoint = teacher.job.teacher.checkpoint
        if teacher.fingerprint in reused and checkpoint and not \
                self.tracker.verified_checkpoint(reused[teacher.fingerprint].run_id,
                                                 Path(checkpoint)):
            del reused[teacher.fingerprint]
        self.fresh = False  # within one invocation, a run trained once is reused after
        # A run to retrain (--fresh, a bad checkpoint) is reused only from a newer run that
        # another sweep sharing the store finished meanwhile.
        stale = {fp: result.run_id for fp, result in known.items() if fp not in reused}
        progress = Progress(workers=getattr(self.executor, "workers", 1))
        self.plugins.register_observer(progress, "kdbench-progress")
        try:
            return sweeps.execute(
                sweep, self.executor, self.plugins, reused=reused,
                log=lambda run, result: self.tracker.log(self.experiment, self.sweep_id, run,
                                                         result),
                settled=lambda fps: {
                    fp: result for fp, result in self.tracker.finished(
                        self.experiment, fps, self.spec.metrics).items()
                    if result.run_id != stale.get(fp)})
        finally:
            self.plugins.unregister_observer(progress)


def cmd_run(args: argparse.Namespace) -> int:
    from kdbench import sweep as sweeps
    from kdbench.tracking import Tracker

    plugins = Plugins.load(strict=args.strict_plugins)
    spec = _spec(args, plugins)
    if args.until_decided and args.max_seeds is None:
        raise KdbenchError("--until-decided needs --max-seeds N, the most seeds to spend")
    if args.max_seeds is not None and args.max_seeds < len(spec.seeds):
        raise KdbenchError(f"--max-seeds {args.max_seeds} is fewer than the "
                           f"{len(spec.seeds)} seeds the benchmark starts with")
    check_run_count(spec, args.max_seeds if args.until_decided else len(spec.seeds),
                    args.max_runs)
    if not args.dry_run:  # creates the folder
        writable_dir(args.out)
    fresh = _fresh_rows(args.fresh, spec)
    cache = args.cache_dir or default_cache()
    device = _device(args.device)
    sweep = sweeps.plan(spec, plugins, cache, device)  # before the store: a missing dataset
    if args.dry_run:                                   # stops here, having created nothing
        print(dry_run(sweep))
        return 0
    tracker = Tracker(args.tracking_uri)

    executor_name = args.executor or spec.executor.name
    executor = executors.configured(plugins, spec, args.executor, args.workers, device,
                                    args.address)

    experiment = tracker.experiment(spec)
    sweep_id = tracker.start_sweep(experiment, spec, {"fresh": args.fresh, "device": device,
                                                      "executor": executor_name,
                                                      "until_decided": args.until_decided,
                                                      "smoke": spec.protocol.smoke})
    session = Session(plugins, spec, tracker, executor, experiment, sweep_id, cache, device,
                      fresh)
    options = _options(args, spec)
    higher = plugins.higher_is_better(spec.metric)

    def train() -> tuple[Any, dict, leaderboard.Options]:
        if args.until_decided:
            return until_decided(session, args.max_seeds, options, higher)
        return sweep, session.train(sweep), options

    ui = "kdbench ui" + ("" if tracker.uri == "sqlite:///mlflow.db"
                         else f" --tracking-uri {tracker.uri}")
    return publish(session, sweep, train, higher, args, where=f"MLflow: {tracker.uri} ({ui})")


def dry_run(sweep: Any) -> str:
    """What ``kdbench run --dry-run`` prints: each row's runs as planned (seeds, how they train,
    fingerprints), and that nothing was trained."""
    rows: dict[str, list[Any]] = {}
    for run in sweep.runs:
        rows.setdefault(run.label, []).append(run)
    lines = [f"{sweep.spec.name}: {len(sweep.runs)} runs planned and checked; nothing trained "
             "(--dry-run)"]
    for label, runs in rows.items():
        engines = sorted({r.job.engine for r in runs})
        lines.append(f"  {label:<24} seeds {','.join(str(r.seed) for r in runs):<14} "
                     f"{'/'.join(engines):<8} {' '.join(r.fingerprint[:8] for r in runs)}")
    return "\n".join(lines)


def publish(session: Session, planned: Any, train: Any, higher: bool, args: argparse.Namespace,
            where: str, extra: tuple[Path, ...] = ()) -> int:
    """Train (``train() -> (sweep, results, options)``), then build, print and write the
    board, log its files (and ``extra``) to the sweep's MLflow run and end it; the exit code.

    The sweep's MLflow run ends KILLED on Ctrl-C and FAILED on an error, and with
    ``--debug`` a failed teacher's worker traceback (from ``planned``, the sweep that
    trains it) is printed before the error."""
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
            if args.debug:
                _print_tracebacks(planned.runs, planned.results)
    from kdbench import convergence

    board = leaderboard.build(sweep, results, higher_is_better=higher, options=options,
                              recipe_check=convergence.recorded(
                                  session.spec, session.plugins, tracker, session.cache,
                                  session.device))
    paths = [*leaderboard.write(board, args.out), *extra]
    tracker.log_board(sweep_id, board)
    for path in paths:
        tracker.log_artifact(sweep_id, path)
    tracker.end_sweep(sweep_id, "FINISHED")
    print(leaderboard.terminal(board))
    print(f"\nwrote {', '.join(str(p) for p in paths)}; {where}")
    if args.debug:
        _print_tracebacks(sweep.runs, results)
    return _exit_code(board)


def _print_tracebacks(runs: list[Any], results: dict) -> None:
    """The worker's traceback of each failed run among ``runs``, on stderr (``--debug``)."""
    for run in runs:
        result = results.get(run.fingerprint)
        if result is not None and result.status == "failed" and result.traceback:
            print(f"kdbench: {run.describe()} failed: {result.error}\n{result.traceback}",
                  file=sys.stderr)


def _exit_code(board: dict) -> int:
    """1 when the board that was written lists failed runs (said on stderr too), else 0."""
    failed = board["failed"]
    if not failed:
        return 0
    print(f"kdbench: {len(failed)} run(s) failed (listed above and in the board files); "
          "exit code 1", file=sys.stderr)
    return 1


def _fresh_rows(value: bool | str, spec: Spec) -> bool | frozenset[str]:
    """``--fresh``: ``True`` for every run, else the set of row labels it names (checked)."""
    if isinstance(value, bool):
        return value
    rows = frozenset(n.strip() for n in value.split(",") if n.strip())
    labels = {"teacher", "baseline", *(m.label for m in spec.methods)}
    # A grid's table name (kd) stands for every row of the grid (kd[T=1], kd[T=4]).
    grids = {m.table: {r.label for r in spec.methods if r.table == m.table}
             for m in spec.methods if m.grid}
    unknown = sorted(rows - labels - set(grids))
    if unknown or not rows:
        raise KdbenchError(f"--fresh {value}: no row named {', '.join(unknown) or '(none)'} in "
                           f"benchmark {spec.name!r}; rows: {', '.join(sorted(labels))} "
                           "(a bare --fresh, after the benchmark, retrains everything)")
    return frozenset(label for row in rows for label in grids.get(row, {row}))


def until_decided(session: Session, max_seeds: int, options: leaderboard.Options,
                  higher: bool) -> tuple[Any, dict, leaderboard.Options]:
    """Add seeds to the undecided methods, a batch per look, until each has a verdict or
    ``max_seeds`` are spent.

    Each look is tested at the alpha that an O'Brien–Fleming-type spending
    function (Lan–DeMets) assigns to it (:func:`kdbench.stats.sequential_alpha`),
    so the chance of a false "better" or "worse" over all looks stays at alpha:
    adding seeds until significance is otherwise a well-known way to manufacture it.
    """
    from kdbench import stats
    from kdbench import sweep as sweeps

    spec = session.spec
    start = len(spec.seeds)
    batch = max(2, start)
    looks = 1 + -(-(max_seeds - start) // batch)
    order = seed_order(spec.seeds, max_seeds)
    seeds_of = {row.label: tuple(spec.seeds) for row in spec.methods}
    n = start
    for look in range(1, looks + 1):
        full = sweeps.plan(replace(spec, seeds=order[:n]), session.plugins,
                           session.cache, session.device)
        runs = [r for r in full.runs if r.role != "method" or r.seed in seeds_of[r.label]]
        sweep = sweeps.Sweep(full.spec, full.teacher, runs)
        results = session.train(sweep)
        alpha = stats.sequential_alpha(look, looks, options.alpha)
        look_options = replace(options, alpha=alpha)
        board = leaderboard.build(sweep, results, higher_is_better=higher, options=look_options)
        undecided = [r["method"] for r in board["rows"] if r.get("verdict") == "no evidence"]
        print(f"look {look}/{looks}: {n} seeds, α = {alpha:.4g}; undecided: "
              f"{', '.join(undecided) or 'none'}", file=sys.stderr)
        if not undecided or n >= max_seeds:
            return sweep, results, look_options
        n = min(max_seeds, n + batch)
        for label in undecided:
            seeds_of[label] = order[:n]
    return sweep, results, look_options


def seed_order(seeds: tuple[int, ...], total: int) -> tuple[int, ...]:
    """The benchmark's own seeds first, then the smallest unused ones, ``total`` in all:
    ``(10, 11)`` grows to ``(10, 11, 0, 1)``; ``(0, 1, 7)`` to ``(0, 1, 7, 2, 3)``."""
    order = list(seeds)
    candidate = 0
    while len(order) < total:
        if candidate not in seeds:
            order.append(candidate)
        candidate += 1
    return tuple(order)


def cmd_tune(args: argparse.Namespace) -> int:
    """``kdbench tune``: :func:`kdbench.tuning.tune`, then the tuned benchmark on its own
    seeds, compared on test as ``kdbench run`` does (board ``<out>/<name>-tuned.*``, file
    ``<out>/<name>-tuned.toml``)."""
    from kdbench import sweep as sweeps
    from kdbench import tuning
    from kdbench.tracking import Tracker

    if args.smoke:  # a tuned file written from a shrunk spec would read as a real benchmark
        raise KdbenchError("--smoke is for `kdbench run` and `kdbench leaderboard`; check the "
                           "benchmark with `kdbench run NAME --smoke`, then tune it")
    plugins = Plugins.load(strict=args.strict_plugins)
    spec = _spec(args, plugins)
    seeds = tuning.tuning_seeds(args.tune_seeds)
    tuning.check(spec, args.trials, seeds)
    rows = 1 + len(spec.methods)
    planned = 1 + rows * (args.trials * len(seeds) + len(spec.seeds))
    if planned > args.max_runs:
        raise KdbenchError(f"this tuning plans up to {planned:,} runs ({rows} rows × "
                           f"({args.trials} trials × {len(seeds)} seeds + {len(spec.seeds)} "
                           f"evaluation seeds) + 1 teacher), more than the ceiling of "
                           f"{args.max_runs:,}; use fewer --trials or --methods, or pass "
                           f"--max-runs {planned}")
    writable_dir(args.out)
    cache = args.cache_dir or default_cache()
    device = _device(args.device)
    tracker = Tracker(args.tracking_uri)
    settings = tuning.Settings(args.trials, seeds,
                               tuning.storage_url(args.tuning_storage, tracker.uri))
    executor = executors.configured(plugins, spec, workers=args.workers, device=device)
    higher = plugins.higher_is_better(spec.metric)

    result = tuning.tune(spec, plugins, tracker, executor, settings, cache, device, higher,
                         report=lambda line: print(f"kdbench: {line}", file=sys.stderr),
                         observer=lambda: Progress(workers=getattr(executor, "workers", 1)))
    toml = tuning.write_toml(result, args.out)
    for row in result.rows:
        best = f"{100 * row.best_value:.2f}% with {row.best}" if row.best_value is not None \
            else row.note
        print(f"tuned {row.label}: best validation {spec.metric} {best} "
              f"({len(row.trials)} trials, {row.trained} run now)")

    tuned = result.spec
    sweep = sweeps.plan(tuned, plugins, cache, device)
    experiment = tracker.experiment(tuned)
    sweep_id = tracker.start_sweep(experiment, tuned, {"device": device, "tuning": tuned.tuning,
                                                       "tuning_storage": settings.storage})
    session = Session(plugins, tuned, tracker, executor, experiment, sweep_id, cache, device,
                      False)
    return publish(session, sweep, lambda: (sweep, session.train(sweep), _options(args, tuned)),
                   higher, args, where=f"MLflow: {tracker.uri}; Optuna: {settings.storage}",
                   extra=(toml,))


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from kdbench.tracking import Tracker

    plugins = Plugins.load(strict=args.strict_plugins)
    spec = _spec(args, plugins)
    writable_dir(args.out)
    tracker = Tracker(args.tracking_uri)
    sweep, results, board = stored_board(spec, plugins, tracker, args.cache_dir, args.benchmark,
                                         _device(args.device),
                                         _options(args, spec))
    paths = leaderboard.write(board, args.out)
    missing = sum(1 for r in sweep.runs if r.fingerprint not in results)
    print(leaderboard.terminal(board))
    if missing:
        print(f"\n{missing} run(s) of this benchmark have not finished yet: "
              f"`kdbench run {args.benchmark}` trains them")
    print(f"\nwrote {', '.join(str(p) for p in paths)}")
    return _exit_code(board)


def cmd_compare(args: argparse.Namespace) -> int:
    """Each method's mean on each benchmark, ranked (the baseline is ranked too)."""
    import json

    from kdbench import plots, ranking
    from kdbench.tracking import Tracker

    if len(args.benchmarks) < 2:
        raise KdbenchError("compare needs at least two benchmarks")
    from kdbench.spec import NAME

    if not NAME.fullmatch(args.name):
        raise KdbenchError(f"--name {args.name[:120]!r} is not a safe file name: use 1 to 100 "
                           "letters, digits, '.', '_' or '-', starting with a letter or digit")
    writable_dir(args.out)
    plugins = Plugins.load(strict=args.strict_plugins)
    tracker = Tracker(args.tracking_uri)
    scores: dict[str, dict[str, float]] = {}
    higher = None
    for name in args.benchmarks:
        spec = load(name, plugins)
        _, _, board = stored_board(spec, plugins, tracker, args.cache_dir, name,
                                   _device(args.device))
        if higher is not None and board["higher_is_better"] != higher:
            raise KdbenchError("compare: the benchmarks rank by metrics of opposite directions")
        higher = board["higher_is_better"]
        if board["baseline"]["mean"] is None:
            raise KdbenchError(f"compare: benchmark {spec.name!r} has no finished baseline run "
                               f"in {tracker.uri}; run `kdbench run {name}` first")
        # A row whose every run failed has no mean: it is dropped from the ranking, not 0.
        scores[spec.name] = {"baseline": board["baseline"]["mean"],
                             **{r["method"]: r["mean"] for r in board["rows"]
                                if r["mean"] is not None}}
    result = ranking.rank(scores, higher_is_better=bool(higher))
    args.out.mkdir(parents=True, exist_ok=True)
    figure = ranking.cd_diagram(result)
    (args.out / f"{args.name}.png").write_bytes(plots.png(figure))
    (args.out / f"{args.name}.json").write_text(json.dumps({
        "benchmarks": result.benchmarks, "average_ranks": result.average_ranks,
        "friedman_statistic": result.friedman_statistic, "friedman_p": result.friedman_p,
        "iman_davenport_statistic": result.iman_davenport_statistic,
        "iman_davenport_p": result.iman_davenport_p,
        "critical_difference": result.critical_difference, "alpha": result.alpha,
        "separable": result.separable,
        "dropped": result.dropped, "scores": scores}, indent=2, allow_nan=True) + "\n")
    print(f"average ranks over {len(result.benchmarks)} benchmarks (1 = best):")
    for method in sorted(result.average_ranks, key=result.average_ranks.get):
        print(f"  {result.average_ranks[method]:5.2f}  {method}")
    print(f"Friedman χ² = {result.friedman_statistic:.3f}, p = {result.friedman_p:.3g}; "
          f"Iman–Davenport F = {result.iman_davenport_statistic:.3f}, "
          f"p = {result.iman_davenport_p:.3g}; "
          f"Nemenyi critical difference at α = {result.alpha}: {result.critical_difference:.3f}")
    k, n = len(result.methods), len(result.benchmarks)
    if k >= 2 and not result.separable:
        warnings.warn(f"with {n} benchmarks and {k} methods the critical difference "
                      f"({result.critical_difference:.2f}) exceeds the largest possible gap in "
                      f"average rank ({k - 1}): no two methods can be told apart; add "
                      f"benchmarks (≥ {ranking.benchmarks_to_separate(k, result.alpha)} for "
                      f"{k} methods)", stacklevel=2)
    if result.dropped:
        print(f"not ranked (missing on some benchmark): {', '.join(result.dropped)}")
    print(f"wrote {args.out / (args.name + '.png')}, {args.out / (args.name + '.json')}")
    return 0


def stored_board(spec: Spec, plugins: Plugins, tracker: Any, cache_dir: Path | None, name: str,
                 device: str = "cpu", options: leaderboard.Options | None = None
                 ) -> tuple[Any, dict, dict]:
    """The leaderboard of ``spec`` from the runs already finished in the store, no training."""
    from kdbench import sweep as sweeps

    sweep = sweeps.plan(spec, plugins, cache_dir or default_cache(), device)
    results = tracker.finished(tracker.experiment(spec, create=False),
                               {r.fingerprint for r in sweep.runs}, spec.metrics)
    if not any(r.role != "teacher" and r.fingerprint in results for r in sweep.runs):
        raise KdbenchError(f"no finished runs of benchmark {spec.name!r} in {tracker.uri}: "
                           f"run `kdbench run {name}` first")
    from kdbench import convergence

    board = leaderboard.build(sweep, results, higher_is_better=plugins.higher_is_better(spec.metric),
                              options=options or leaderboard.Options(),
                              recipe_check=convergence.recorded(
                                  spec, plugins, tracker, cache_dir or default_cache(), device))
    return sweep, results, board


def _options(args: argparse.Namespace, spec: Spec) -> leaderboard.Options:
    """The leaderboard's statistics options; says so when the correction's family shrinks."""
    family = None
    if args.family == "shown":
        family = len(spec.methods)
        if family < spec.family:
            warnings.warn(f"--family shown: the {args.correction} correction runs over the "
                          f"{family} rows shown, not the benchmark's {spec.family}; verdicts "
                          "can differ from the full board's", stacklevel=2)
    return leaderboard.Options(correction=args.correction, family=family)


def cmd_check_recipe(args: argparse.Namespace) -> int:
    """Exit code 0 whatever the verdict (it is printed); 1 when runs failed."""
    from kdbench import convergence
    from kdbench.tracking import Tracker

    plugins = Plugins.load(strict=args.strict_plugins)
    spec = _accelerated(args, replace(load(args.benchmark, plugins), batch_runs=args.batch_runs))
    budgets = convergence.parse_budgets(args.budgets)
    device = _device(args.device)
    tracker = Tracker(args.tracking_uri)
    executor = executors.configured(plugins, spec, args.executor, args.workers, device)
    options = convergence.Options(budgets, args.seeds, args.fresh, on_result=lambda run, result:
                                  print(convergence.line(run, result), file=sys.stderr))
    report = convergence.check(spec, plugins, tracker, executor, args.cache_dir or default_cache(),
                               device, options)
    print(convergence.render(report))
    return 1 if any(b.failed for b in report.budgets) else 0


def cmd_plugins(args: argparse.Namespace) -> int:
    plugins = Plugins.load(strict=args.strict_plugins)
    for info in plugins.infos:
        origin = f"{info.distribution} {info.version}".strip()
        print(f"{info.name}  ({origin}; {info.module})")
        if info.disabled:
            print("  DISABLED (--disable-plugin / KDBENCH_DISABLE_PLUGINS)")
            continue
        if info.error:
            print(f"  FAILED: {info.error}")
            continue
        for kind, names in plugins.registered_by(info.name).items():
            print(f"  {kind}: {', '.join(names)}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from kdbench import ui

    return ui.serve(args.tracking_uri, args.benchmark, args.port)


COMMANDS = {"run": cmd_run, "tune": cmd_tune, "check-recipe": cmd_check_recipe,
            "leaderboard": cmd_leaderboard, "compare": cmd_compare, "plugins": cmd_plugins,
            "ui": cmd_ui}


if __name__ == "__main__":
    sys.exit(main())
