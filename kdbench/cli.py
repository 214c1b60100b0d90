"""``kdbench run | tune | check-recipe | leaderboard | compare | plugins | ui``: the command line.

Each command parses its flags, calls :mod:`kdbench.api` (the Python API: the same
functions for notebooks and scripts), prints what it returns and chooses the exit code.

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
import contextlib
import os
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

# Only what parsing needs: torch, scipy and MLflow load in the command that uses them, so
# that `--help`, `plugins` and a one-line error answer at once, and a worker process
# (which imports this module again as `__mp_main__`) loads only what its run needs.
from kdbench import __version__, api, scaffold
from kdbench.api import DEFAULT_BENCHMARK, DEFAULT_MAX_RUNS, DEFAULT_OUT, default_cache
from kdbench.errors import KdbenchError

DATA_ROOT_HELP = ("where datasets are found (sets $KDBENCH_DATA for this command and its "
                  "workers; a [dataset] root in the benchmark wins)")


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
    bench.add_argument("--out", type=Path, default=DEFAULT_OUT,
                       help=f"where leaderboard files go (default ./{DEFAULT_OUT})")
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
    run.add_argument("--runs-per-gpu", type=int, metavar="N", help="on CUDA: N runs at once "
                     "on each visible GPU, each worker pinned to one (ray: 1/N of a GPU per run)")
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
    compare.add_argument("--out", type=Path, default=DEFAULT_OUT,
                         help=f"where the diagram and its numbers go (default ./{DEFAULT_OUT})")
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
    scaffold.add_command(sub, [common])
    return top


def main(argv: list[str] | None = None) -> int:
    """Run the command in ``argv`` (default: the process's arguments); its exit code.

    Called as a program (no ``argv``: the ``kdbench`` script, ``python -m kdbench.cli``), it
    ends the process itself once the command is done: the exit handlers run, but not the
    interpreter's teardown of torch's, MLflow's and SciPy's modules, which took 1.4 s of a
    6.6 s fully reused ``kdbench run`` and does nothing a finished command needs."""
    code = _main(argv)
    if argv is None:
        _exit(code)
    return code


def _exit(code: int) -> None:
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe (`kdbench run | head`)
            stream.flush()
    os._exit(code)


def _main(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    warnings.showwarning = _one_line_warning
    if args.disable_plugin:
        from kdbench.plugins import DISABLE_ENV, disabled_plugins

        # Through the environment, so that worker processes skip the same plugins.
        names = disabled_plugins() | {n.strip() for v in args.disable_plugin for n in v.split(",")}
        os.environ[DISABLE_ENV] = ",".join(sorted(n for n in names if n))
    api.use_data_root(getattr(args, "data_root", None))
    from kdbench import interrupts

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


def _batch_runs(value: str) -> int:
    """``--batch-runs``: ``auto`` 0, ``off`` 1, else a count of at least 1."""
    if value in ("auto", "off"):
        return 0 if value == "auto" else 1
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise argparse.ArgumentTypeError(f"expected a number of runs (1 or more), off or auto, "
                                     f"got {value!r}")


def _selection(args: argparse.Namespace) -> dict[str, Any]:
    """The options ``run``, ``leaderboard`` and ``tune`` share, as :mod:`kdbench.api` takes
    them (``--data-root`` is already in the environment: :func:`main`)."""
    return {"seeds": args.seeds, "methods": args.methods, "cache_dir": args.cache_dir,
            "device": args.device, "batch_runs": args.batch_runs, "amp": args.amp,
            "channels_last": args.channels_last, "compile": args.compile,
            "strict_plugins": args.strict_plugins}


def _exit_code(failed: tuple[Any, ...]) -> int:
    """1 when the board that was written lists failed runs (said on stderr too), else 0."""
    if not failed:
        return 0
    print(f"kdbench: {len(failed)} run(s) failed (listed above and in the board files); "
          "exit code 1", file=sys.stderr)
    return 1


# run ---------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    checks = {"fresh": args.fresh, "until_decided": args.until_decided,
              "max_seeds": args.max_seeds, "max_runs": args.max_runs, "smoke": args.smoke}
    if args.dry_run:
        print(dry_run(api.plan(args.benchmark, **_selection(args), **checks)))
        return 0
    result = api.run(args.benchmark, **_selection(args), **checks, out=args.out,
                     tracking_uri=args.tracking_uri, correction=args.correction,
                     family=args.family, executor=args.executor, workers=args.workers,
                     address=args.address, tracebacks=args.debug,
                     runs_per_gpu=args.runs_per_gpu)
    uri = result.tracking_uri
    ui = "kdbench ui" + ("" if uri == "sqlite:///mlflow.db" else f" --tracking-uri {uri}")
    return _published(result, where=f"MLflow: {uri} ({ui})")


def _published(result: api.Result, where: str) -> int:
    print(result.board.terminal())
    print(f"\nwrote {', '.join(str(p) for p in result.files)}; {where}")
    return _exit_code(result.failed)


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


# tune --------------------------------------------------------------------------------

def cmd_tune(args: argparse.Namespace) -> int:
    """``kdbench tune``: :func:`kdbench.api.tune`, the tuned benchmark compared on test as
    ``kdbench run`` does (board ``<out>/<name>-tuned.*``, file ``<out>/<name>-tuned.toml``)."""
    if args.smoke:  # a tuned file written from a shrunk spec would read as a real benchmark
        raise KdbenchError("--smoke is for `kdbench run` and `kdbench leaderboard`; check the "
                           "benchmark with `kdbench run NAME --smoke`, then tune it")
    tuned = api.tune(args.benchmark, trials=args.trials, tune_seeds=args.tune_seeds,
                     tuning_storage=args.tuning_storage, **_selection(args), out=args.out,
                     tracking_uri=args.tracking_uri, correction=args.correction,
                     family=args.family, workers=args.workers, max_runs=args.max_runs,
                     tracebacks=args.debug)
    metric = tuned.tuning.spec.metric
    for row in tuned.tuning.rows:
        best = f"{100 * row.best_value:.2f}% with {row.best}" if row.best_value is not None \
            else row.note
        print(f"tuned {row.label}: best validation {metric} {best} "
              f"({len(row.trials)} trials, {row.trained} run now)")
    return _published(tuned.result,
                      where=f"MLflow: {tuned.result.tracking_uri}; Optuna: {tuned.storage}")


# leaderboard -------------------------------------------------------------------------

def cmd_leaderboard(args: argparse.Namespace) -> int:
    result = api.read_board(args.benchmark, **_selection(args), smoke=args.smoke, out=args.out,
                            tracking_uri=args.tracking_uri, correction=args.correction,
                            family=args.family)
    print(result.board.terminal())
    if result.missing:
        print(f"\n{result.missing} run(s) of this benchmark have not finished yet: "
              f"`kdbench run {args.benchmark}` trains them")
    print(f"\nwrote {', '.join(str(p) for p in result.files)}")
    return _exit_code(result.failed)


# compare -----------------------------------------------------------------------------

def cmd_compare(args: argparse.Namespace) -> int:
    """Each method's mean on each benchmark, ranked (the baseline is ranked too)."""
    compared = api.compare(args.benchmarks, out=args.out, name=args.name,
                           tracking_uri=args.tracking_uri, cache_dir=args.cache_dir,
                           device=args.device, strict_plugins=args.strict_plugins)
    result = compared.ranking
    print(f"average ranks over {len(result.benchmarks)} benchmarks (1 = best):")
    for method in sorted(result.average_ranks, key=result.average_ranks.get):
        print(f"  {result.average_ranks[method]:5.2f}  {method}")
    print(f"Friedman χ² = {result.friedman_statistic:.3f}, p = {result.friedman_p:.3g}; "
          f"Iman–Davenport F = {result.iman_davenport_statistic:.3f}, "
          f"p = {result.iman_davenport_p:.3g}; "
          f"Nemenyi critical difference at α = {result.alpha}: {result.critical_difference:.3f}")
    if result.dropped:
        print(f"not ranked (missing on some benchmark): {', '.join(result.dropped)}")
    print(f"wrote {', '.join(str(p) for p in compared.files)}")
    return 0


# check-recipe ------------------------------------------------------------------------

def cmd_check_recipe(args: argparse.Namespace) -> int:
    """Exit code 0 whatever the verdict (it is printed); 1 when runs failed."""
    from kdbench import accel, convergence, executors
    from kdbench.spec import load
    from kdbench.tracking import Tracker

    plugins = api.load_plugins(args.strict_plugins)
    spec = load(args.benchmark, plugins)
    device = api.resolve_device(args.device)
    spec = replace(spec, batch_runs=args.batch_runs,
                   accel=accel.configured(device, args.amp, args.channels_last, args.compile))
    budgets = convergence.parse_budgets(args.budgets)
    tracker = Tracker(args.tracking_uri)
    executor = executors.configured(plugins, spec, args.executor, args.workers, device)
    options = convergence.Options(budgets, args.seeds, args.fresh, on_result=lambda run, result:
                                  print(convergence.line(run, result), file=sys.stderr))
    report = convergence.check(spec, plugins, tracker, executor, args.cache_dir or default_cache(),
                               device, options)
    print(convergence.render(report))
    return 1 if any(b.failed for b in report.budgets) else 0


# plugins -----------------------------------------------------------------------------

def cmd_plugins(args: argparse.Namespace) -> int:
    plugins = api.load_plugins(args.strict_plugins)
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


# ui ----------------------------------------------------------------------------------

def cmd_ui(args: argparse.Namespace) -> int:
    from kdbench import ui

    return ui.serve(args.tracking_uri, args.benchmark, args.port)


COMMANDS = {"run": cmd_run, "tune": cmd_tune, "check-recipe": cmd_check_recipe,
            "leaderboard": cmd_leaderboard, "compare": cmd_compare, "plugins": cmd_plugins,
            "ui": cmd_ui, "new": scaffold.cmd_new}


if __name__ == "__main__":
    sys.exit(main())
