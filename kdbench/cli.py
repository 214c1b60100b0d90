"""``kdbench run | leaderboard | plugins | ui``: the command line.

Every problem a user can fix is one line on stderr and exit code 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kdbench import __version__, leaderboard
from kdbench.errors import KdbenchError
from kdbench.plugins import Plugins
from kdbench.progress import Progress
from kdbench.spec import Spec, load

DEFAULT_BENCHMARK = "mnist1d"


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

    run = sub.add_parser("run", parents=[common, bench], help="train what is missing, then "
                         "print and write the leaderboard")
    run.add_argument("--fresh", action="store_true", help="retrain even runs that finished")
    run.add_argument("--workers", type=int, metavar="N",
                     help="worker processes (default: one per core)")
    run.add_argument("--executor", metavar="NAME", help="executor plugin (default: the "
                     "benchmark's, else process)")
    run.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    run.add_argument("--until-decided", action="store_true",
                     help="add seeds to methods without a verdict until decided (needs "
                     "--max-seeds); each look is tested at an alpha-spending level")
    run.add_argument("--max-seeds", type=int, metavar="N",
                     help="with --until-decided: the most seeds any method gets")

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
    sub.add_parser("plugins", parents=[common], help="list plugins and what they registered")
    ui = sub.add_parser("ui", parents=[common], help="start the MLflow UI on 127.0.0.1")
    ui.add_argument("--tracking-uri", metavar="URI")
    ui.add_argument("--port", type=int, default=5000)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    warnings.showwarning = _one_line_warning
    try:
        return COMMANDS[args.command](args)
    except KdbenchError as error:
        if args.debug:
            raise
        print(f"kdbench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kdbench: interrupted; finished runs are saved and will be reused", file=sys.stderr)
        return 130


def _one_line_warning(message: Any, category: type, *_: Any, **__: Any) -> None:
    print(f"kdbench: warning: {message}", file=sys.stderr)


def _spec(args: argparse.Namespace, plugins: Plugins) -> Spec:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    return load(args.benchmark, plugins).with_options(seeds=args.seeds, methods=methods)


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
    fresh: bool

    def train(self, sweep: Any) -> dict:
        """Train what ``sweep`` lacks; every result is logged as it arrives."""
        from kdbench import sweep as sweeps

        reused = {} if self.fresh else self.tracker.finished(
            self.experiment, {r.fingerprint for r in sweep.runs}, self.spec.metrics)
        teacher = sweep.teacher
        checkpoint = teacher.job.teacher.checkpoint
        if teacher.fingerprint in reused and checkpoint and not Path(checkpoint).is_file() \
                and not self.tracker.restore_checkpoint(reused[teacher.fingerprint].run_id,
                                                        Path(checkpoint)):
            del reused[teacher.fingerprint]
        self.fresh = False  # within one invocation, a run trained once is reused after
        progress = Progress(workers=getattr(self.executor, "workers", 1))
        self.plugins.register_observer(progress, "kdbench-progress")
        try:
            return sweeps.execute(
                sweep, self.executor, self.plugins, reused=reused,
                log=lambda run, result: self.tracker.log(self.experiment, self.sweep_id, run,
                                                         result))
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
    cache = args.cache_dir or default_cache()
    device = _device(args.device)
    tracker = Tracker(args.tracking_uri)
    sweep = sweeps.plan(spec, plugins, cache, device)

    executor_name = args.executor or spec.executor.name
    entry = plugins.entry("executors", executor_name, where="--executor: ")
    values = dict(spec.executor.params) if executor_name == spec.executor.name else {}
    if args.workers is not None:
        values["workers"] = args.workers
    if device != "cpu":
        values["workers"] = 1  # one process owns the GPU
    executor = entry.factory(entry.make_params(values, where=f"executor {executor_name}: "))

    experiment = tracker.experiment(spec)
    sweep_id = tracker.start_sweep(experiment, spec, {"fresh": args.fresh, "device": device,
                                                      "executor": executor_name,
                                                      "until_decided": args.until_decided})
    session = Session(plugins, spec, tracker, executor, experiment, sweep_id, cache, device,
                      args.fresh)
    options = leaderboard.Options(correction=args.correction)
    higher = _higher(plugins, spec)
    status = "FAILED"
    try:
        if args.until_decided:
            sweep, results, options = until_decided(session, args.max_seeds, options, higher)
        else:
            results = session.train(sweep)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if status != "FINISHED":
            tracker.end_sweep(sweep_id, status)
    board = leaderboard.build(sweep, results, higher_is_better=higher, options=options)
    paths = leaderboard.write(board, args.out)
    for path in paths:
        tracker.log_artifact(sweep_id, path)
    tracker.end_sweep(sweep_id, "FINISHED")
    print(leaderboard.terminal(board))
    ui = "kdbench ui" + ("" if tracker.uri == "sqlite:///mlflow.db"
                         else f" --tracking-uri {tracker.uri}")
    print(f"\nwrote {', '.join(str(p) for p in paths)}; MLflow: {tracker.uri} ({ui})")
    return 0


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
    seeds_of = {row.label: tuple(spec.seeds) for row in spec.methods}
    n = start
    for look in range(1, looks + 1):
        full = sweeps.plan(replace(spec, seeds=tuple(range(n))), session.plugins,
                           session.cache, session.device)
        runs = [r for r in full.runs if r.role != "method" or r.seed in seeds_of[r.label]]
        sweep = sweeps.Sweep(full.spec, full.teacher, runs)
        results = session.train(sweep)
        alpha = stats.sequential_alpha(look, looks, options.alpha)
        look_options = leaderboard.Options(options.correction, alpha)
        board = leaderboard.build(sweep, results, higher_is_better=higher, options=look_options)
        undecided = [r["method"] for r in board["rows"] if r.get("verdict") == "no evidence"]
        print(f"look {look}/{looks}: {n} seeds, α = {alpha:.4g}; undecided: "
              f"{', '.join(undecided) or 'none'}", file=sys.stderr)
        if not undecided or n >= max_seeds:
            return sweep, results, look_options
        n = min(max_seeds, n + batch)
        for label in undecided:
            seeds_of[label] = tuple(range(n))
    return sweep, results, look_options


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from kdbench.tracking import Tracker

    plugins = Plugins.load(strict=args.strict_plugins)
    spec = _spec(args, plugins)
    tracker = Tracker(args.tracking_uri)
    sweep, results, board = stored_board(spec, plugins, tracker, args.cache_dir, args.benchmark,
                                         leaderboard.Options(correction=args.correction))
    paths = leaderboard.write(board, args.out)
    missing = sum(1 for r in sweep.runs if r.fingerprint not in results)
    print(leaderboard.terminal(board))
    if missing:
        print(f"\n{missing} run(s) of this benchmark have not finished yet: "
              f"`kdbench run {args.benchmark}` trains them")
    print(f"\nwrote {', '.join(str(p) for p in paths)}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Each method's mean on each benchmark, ranked (the baseline is ranked too)."""
    import json

    from kdbench import plots, ranking
    from kdbench.tracking import Tracker

    if len(args.benchmarks) < 2:
        raise KdbenchError("compare needs at least two benchmarks")
    plugins = Plugins.load(strict=args.strict_plugins)
    tracker = Tracker(args.tracking_uri)
    scores: dict[str, dict[str, float]] = {}
    higher = None
    for name in args.benchmarks:
        spec = load(name, plugins)
        _, _, board = stored_board(spec, plugins, tracker, args.cache_dir, name)
        if higher is not None and board["higher_is_better"] != higher:
            raise KdbenchError("compare: the benchmarks rank by metrics of opposite directions")
        higher = board["higher_is_better"]
        scores[spec.name] = {"baseline": board["baseline"]["mean"],
                             **{r["method"]: r["mean"] for r in board["rows"]}}
    result = ranking.rank(scores, higher_is_better=bool(higher))
    args.out.mkdir(parents=True, exist_ok=True)
    figure = ranking.cd_diagram(result)
    (args.out / f"{args.name}.png").write_bytes(plots.png(figure))
    (args.out / f"{args.name}.json").write_text(json.dumps({
        "benchmarks": result.benchmarks, "average_ranks": result.average_ranks,
        "friedman_statistic": result.friedman_statistic, "friedman_p": result.friedman_p,
        "critical_difference": result.critical_difference, "alpha": result.alpha,
        "dropped": result.dropped, "scores": scores}, indent=2, allow_nan=True) + "\n")
    print(f"average ranks over {len(result.benchmarks)} benchmarks (1 = best):")
    for method in sorted(result.average_ranks, key=result.average_ranks.get):
        print(f"  {result.average_ranks[method]:5.2f}  {method}")
    print(f"Friedman χ² = {result.friedman_statistic:.3f}, p = {result.friedman_p:.3g}; "
          f"Nemenyi critical difference at α = {result.alpha}: {result.critical_difference:.3f}")
    if result.dropped:
        print(f"not ranked (missing on some benchmark): {', '.join(result.dropped)}")
    print(f"wrote {args.out / (args.name + '.png')}, {args.out / (args.name + '.json')}")
    return 0


def stored_board(spec: Spec, plugins: Plugins, tracker: Any, cache_dir: Path | None, name: str,
                 options: leaderboard.Options | None = None) -> tuple[Any, dict, dict]:
    """The leaderboard of ``spec`` from the runs already finished in the store, no training."""
    from kdbench import sweep as sweeps

    sweep = sweeps.plan(spec, plugins, cache_dir or default_cache())
    results = tracker.finished(tracker.experiment(spec, create=False),
                               {r.fingerprint for r in sweep.runs}, spec.metrics)
    if not any(r.role != "teacher" and r.fingerprint in results for r in sweep.runs):
        raise KdbenchError(f"no finished runs of benchmark {spec.name!r} in {tracker.uri}: "
                           f"run `kdbench run {name}` first")
    board = leaderboard.build(sweep, results, higher_is_better=_higher(plugins, spec),
                              options=options or leaderboard.Options())
    return sweep, results, board


def _higher(plugins: Plugins, spec: Spec) -> bool:
    entry = plugins.entry("metrics", spec.metric)
    return entry.factory(entry.make_params({})).higher_is_better


def cmd_plugins(args: argparse.Namespace) -> int:
    plugins = Plugins.load(strict=args.strict_plugins)
    for info in plugins.infos:
        origin = f"{info.distribution} {info.version}".strip()
        print(f"{info.name}  ({origin}; {info.module})")
        if info.error:
            print(f"  FAILED: {info.error}")
            continue
        for kind, names in plugins.registered_by(info.name).items():
            print(f"  {kind}: {', '.join(names)}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from kdbench.tracking import resolve_uri

    uri = resolve_uri(args.tracking_uri)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", "127.0.0.1", "--port", str(args.port)]
    print(f"MLflow UI for {uri} on http://127.0.0.1:{args.port} (Ctrl-C stops it)")
    os.execv(sys.executable, command)
    return 0


COMMANDS = {"run": cmd_run, "leaderboard": cmd_leaderboard, "compare": cmd_compare,
            "plugins": cmd_plugins,
            "ui": cmd_ui}


if __name__ == "__main__":
    sys.exit(main())
