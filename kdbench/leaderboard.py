"""Results to leaderboards: a terminal table and ``<benchmark>.{md,csv,json,html,png}`` files.

The JSON file is the machine-readable contract::

    {"benchmark": str, "metric": str, "higher_is_better": bool,
     "unit": "percent",   # every value of the metric (and every difference of two) below
     "primary_test": str, "correction": str, "alpha": float,
     "family": int,   # comparisons the correction runs over
     "benchmark_family": int,   # rows of the benchmark file
     "teacher": {"name": str, "value": float,
                 "kind": str},   # "cnn1d, trained by kdbench", "sklearn pca + ...", ...
     "protocol": {"validation": float,   # fraction of the training split held out
                  "validation_samples": int, "train_samples": int,   # null if unknown
                  "validation_seed": int, "epoch": "last" | "best",
                  "test": "read once per run"},
     "baseline": {"seeds": [int], "values": [float], "mean": float, "std": float, "ci95": [lo, hi],
                  "train": float,   # mean of train.<metric>: the reported weights on the
                                    # training split (less validation), eval mode
                  "val_gain": float},   # mean val.gain: its validation metric's rise over
                                        # the last quarter of its epochs (train.validation_gain)
     "warnings": [str],   # e.g. the baseline is still climbing (a decided recipe_check,
                          # else its curves: see CLIMBING)
     "recipe_check": {"verdict": "not checked" | "converged" | "still climbing"
                                 | "undecided" | "failed",
                      "experiment": str,   # where kdbench check-recipe logged it
                      # the rest only when checked: the first longer budget against ×1
                      "budget": str, "epochs": int, "gain": float, "ci95": [lo, hi],
                      "seeds": int, "message": str} | null,   # null: not looked up
     "tuning": str,   # "tuned, 20 trials each on 2 seeds (validation)" or PAPER_DEFAULTS
     "tuned": bool,   # a tuned board's files are <benchmark>-tuned.*
     "rows": [{"method": str, "uses": str, "params": {...},
               "grid": {...},   # a grid row's coordinates ({"T": 1.0}), else {}
               "seeds": [int], "values": [float],
               "mean": float, "std": float, "ci95": [lo, hi], "delta": float,
               "delta_ci95": [lo, hi], "p": {"paired_t", "wilcoxon", "welch", "mannwhitney"},
               "p_holm": float, "hedges_g": float, "prob_improvement": float,
               "verdict": str, "seeds_needed": {...}, "note": str}],
     "failed": [{"method": str, "seed": int, "error": str}],
     "smoke": int,   # batches per epoch of a --smoke board (never a result), else 0
     "published": {"source": str, "note": str, "teacher": float, "baseline": float}}
                     # only with a [published] table; each row then has "published" too

A ``published`` value is the number the benchmark's source reports for that row (in
percent, like ``mean``), shown beside the measured mean; ``null`` where it reports none.

``values[i]`` is the final metric of seed ``seeds[i]`` (on the test split, for the
weights of the epoch the protocol reports); rows are ranked by mean.

**One unit everywhere.** The runs report fractions (0.953); every board, in every format
(terminal, markdown, CSV, JSON, HTML, the plot) and the progress lines, states the metric
in percent (95.3) and its differences (``delta``, ``val_gain``, the recipe check's gain)
in percent points. The p-values, ``hedges_g`` and ``prob_improvement`` have no unit.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from kdbench import stats, train
from kdbench.data import validation_split
from kdbench.runs import RunResult
from kdbench.sweep import Sweep

PAPER_DEFAULTS = "paper defaults (not tuned)"
"""What a board says of its settings when its benchmark file was not written by
``kdbench tune`` (:attr:`kdbench.spec.Spec.tuning`)."""
CLIMBING = 0.005
"""Without a decided recipe check, the board warns that the baseline is still climbing when its
validation metric rose by more than this, in the better direction, over the last quarter of
its training (mean ``val.gain`` over seeds, in the metric's units: half a point of accuracy).

A curve is weak evidence: on the default benchmark it read +0.03 points where doubling the
epochs gained +0.78 (an interval above zero, 30 seeds), and +0.6 where doubling gained +0.20
(an interval across zero). The last quarter of a step or cosine schedule mixes the learning
rate's drop with the plateau. So a ``kdbench check-recipe`` verdict of this recipe, when the
store holds one ("converged" or "still climbing"), decides the warning, and the curve's rise
is then only stated beside it (:func:`recipe_line`)."""


@dataclass(frozen=True)
class Options:
    correction: str = "holm"
    alpha: float = 0.05
    family: int | None = None
    """How many comparisons the correction runs over; ``None``: every row of the
    benchmark file (``Spec.family``). A board of some of a benchmark's rows
    (``--methods``) keeps the benchmark's whole family by default, so that choosing
    which rows to show cannot change a verdict."""


def build(sweep: Sweep, results: dict[str, RunResult], higher_is_better: bool = True,
          options: Options = Options(), recipe_check: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    """The leaderboard of ``sweep`` from ``results`` (by fingerprint), as the JSON contract,
    in percent. ``recipe_check`` is the latest ``kdbench check-recipe`` verdict of the
    benchmark's recipe (:func:`kdbench.convergence.recorded`); ``None`` leaves it unsaid."""
    spec = sweep.spec
    metric = spec.metric
    samples: dict[str, tuple[list[int], list[float]]] = {}
    failed = []
    for run in sweep.students():
        result = results.get(run.fingerprint)
        if result is None:
            continue
        value = result.metrics.get(metric)
        if result.status != "finished" or value is None or not math.isfinite(float(value)):
            why = result.error if result.status != "finished" else \
                f"finished without a {metric}" if value is None else \
                f"finished with {metric} = {value} (a metric plugin returned a non-finite value)"
            failed.append({"method": run.label, "seed": run.seed, "error": why})
            continue
        seeds, values = samples.setdefault(run.label, ([], []))
        seeds.append(run.seed)
        values.append(float(value))

    teacher = results.get(sweep.teacher.fingerprint)
    teacher_value = teacher.metrics.get(metric) if teacher and teacher.status == "finished" \
        else None
    base_seeds, base_values = samples.get("baseline", ([], []))
    base = stats.summarize(base_values) if base_values else None
    base_results = [results[r.fingerprint] for r in sweep.students()
                    if r.role == "baseline" and r.fingerprint in results
                    and results[r.fingerprint].status == "finished"]
    base_train = _mean([r.metrics.get(f"train.{metric}") for r in base_results])
    base_gain = _mean([r.metrics.get("val.gain") for r in base_results])
    board: dict[str, Any] = {
        "benchmark": spec.name,
        "metric": metric,
        "higher_is_better": higher_is_better,
        "unit": "percent",
        "primary_test": "paired_t",
        "correction": options.correction,
        "alpha": options.alpha,
        "family": options.family if options.family is not None
        else max(spec.family, len(spec.methods)),
        "benchmark_family": max(spec.family, len(spec.methods)),
        "teacher": {"name": _teacher_name(sweep), "value": _pc(teacher_value),
                    "kind": sweep.teacher_kind or _teacher_name(sweep)},
        "baseline": {"seeds": base_seeds, "values": [_pc(v) for v in base_values],
                     "mean": _pc(base.mean if base else None),
                     "std": _pc(base.std if base else None),
                     "ci95": _pc_pair(base.ci95 if base else None),
                     "train": _pc(base_train), "val_gain": _pc(base_gain)},
        "protocol": _protocol(sweep),
        "tuning": spec.tuning or PAPER_DEFAULTS, "tuned": bool(spec.tuning),
        "warnings": _check_warnings(recipe_check) if _decided(recipe_check) else
        _warnings(metric, higher_is_better, base_train, base_gain, spec.recipe.epochs),
        "recipe_check": recipe_check,
        "rows": [],
        "failed": failed,
        "smoke": spec.protocol.smoke,
    }
    published = spec.published
    if published is not None:
        board["published"] = {"source": published.source, "note": published.note,
                              "teacher": _pc(published.values.get("teacher")),
                              "baseline": _pc(published.values.get("baseline"))}
    rows = {m.label: m for m in spec.methods}
    method_samples = {label: stats.Sample(*samples[label]) for label in rows if label in samples}
    comparisons = stats.compare(stats.Sample(base_seeds, base_values), method_samples,
                                alpha=options.alpha, correction=options.correction,
                                higher_is_better=higher_is_better,
                                family_size=max(board["family"], len(method_samples))) \
        if base_values and method_samples else {}
    for label, sample in method_samples.items():
        row: dict[str, Any] = {"method": label, "uses": rows[label].method,
                               "params": rows[label].params, "grid": rows[label].grid,
                               **({"published": _pc(published.values.get(label))}
                                  if published is not None else {}),
                               "seeds": sample.seeds,
                               "values": [_pc(v) for v in sample.values]}
        c = comparisons.get(label)
        summary = c.summary if c else stats.summarize(sample.values)
        row.update(mean=_pc(summary.mean), std=_pc(summary.std), ci95=_pc_pair(summary.ci95))
        if c is not None:
            row.update(
                delta=_pc(c.delta), delta_ci95=_pc_pair(c.delta_ci95),
                p={k: _num(v) for k, v in c.p.items()}, primary=c.primary,
                p_holm=_num(c.p_holm), hedges_g=_num(c.hedges_g),
                prob_improvement=_num(c.prob_improvement), verdict=c.verdict,
                seeds_needed=c.seeds_needed, note=c.note)
        board["rows"].append(row)
    sign = -1 if higher_is_better else 1
    board["rows"].sort(key=lambda r: sign * (r["mean"] if r["mean"] is not None else -math.inf))
    return board


def _mean(values: list[float | None]) -> float | None:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(finite) / len(finite) if finite else None


def _protocol(sweep: Sweep) -> dict[str, Any]:
    """What the runs saw: the validation split (its size computed from the dataset's labels,
    ``None`` when the dataset cannot be loaded here) and the epoch rule."""
    p = sweep.spec.protocol
    sizes: tuple[int | None, int | None] = (None, None)
    try:
        data = train.dataset(sweep.spec.dataset, sweep.teacher.job.cache_dir)
        kept, held = validation_split(data.y_train, p.validation, p.validation_seed)
        sizes = len(held), len(kept)
    except Exception:  # a leaderboard from the store must not need the data
        pass
    if p.smoke:  # a smoke run's splits are cut after the validation split (train.prepared)
        sizes = None, None
    return {"validation": p.validation, "validation_samples": sizes[0],
            "train_samples": sizes[1], "validation_seed": p.validation_seed, "epoch": p.epoch,
            "test": "read once per run"}


def _warnings(metric: str, higher_is_better: bool, train_value: float | None,
              gain: float | None, epochs: int) -> list[str]:
    if not _climbs(gain, higher_is_better):
        return []
    trained = f"; train {metric} {100 * train_value:.2f}%" if train_value is not None else ""
    return [f"the baseline is still climbing (validation {metric} {100 * gain:+.1f} points "
            f"over the last quarter of its {epochs} epochs{trained}): lengthen [recipe] epochs "
            "(see kdbench check-recipe)"]


def _climbs(gain: float | None, higher_is_better: bool) -> bool:
    """Whether the baseline's curves rose (``gain``, a fraction) more than :data:`CLIMBING`."""
    return gain is not None and (gain if higher_is_better else -gain) > CLIMBING


def _decided(check: dict[str, Any] | None) -> bool:
    """Whether a recipe check gave a verdict that outweighs the baseline's curves."""
    return bool(check) and check.get("verdict") in ("converged", "still climbing")


def _check_warnings(check: dict[str, Any] | None) -> list[str]:
    """A warning when the latest ``kdbench check-recipe`` of this recipe found the baseline
    still climbing: the board then compares methods with an under-trained student."""
    if not check or check.get("verdict") != "still climbing":
        return []
    return [f"kdbench check-recipe found the baseline {check['message']}"]


def recipe_line(board: dict[str, Any]) -> str:
    """What the board knows of its recipe's convergence, from ``kdbench check-recipe``:
    ``recipe checked: converged (×2 = 240 epochs: +0.21 points on validation, 95% CI -0.30
    to +0.72) at 10 seeds``, or ``recipe not checked: ...``; empty when not looked up."""
    check = board.get("recipe_check")
    if not check:
        return ""
    if check["verdict"] == "not checked":
        return (f"recipe not checked: `kdbench check-recipe {board['benchmark']}` trains the "
                "baseline longer and says whether it has converged")
    if check["verdict"] == "failed":
        return f"recipe check failed: {check['message']}"
    lo, hi = check.get("ci95") or (None, None)
    interval = f", 95% CI {lo:+.2f} to {hi:+.2f}" if lo is not None and hi is not None else ""
    line = (f"recipe checked: {check['verdict']} ({check['budget']} = {check['epochs']} "
            f"epochs: {check['gain']:+.2f} points on validation{interval}) at "
            f"{check['seeds']} seeds")
    gain = (board.get("baseline") or {}).get("val_gain")  # in points
    if check["verdict"] == "converged" and gain is not None and \
            _climbs(gain / 100, board.get("higher_is_better", True)):
        line += (f"; the baseline's validation curves rose {gain:+.1f} points over their last "
                 "quarter, which the check's longer runs outweigh")
    return line


def protocol_line(board: dict[str, Any]) -> str:
    """``protocol: 10% of the training split held out for validation (400 samples, seed 0);
    last epoch reported; test split read once per run; baseline train top1 72.1%``."""
    p = board.get("protocol")
    if not p:
        return ""
    size = f"{p['validation_samples']} samples, " if p.get("validation_samples") else ""
    rule = "last epoch reported" if p["epoch"] == "last" else \
        f"best validation {board['metric']} epoch reported"
    line = (f"protocol: {100 * p['validation']:g}% of the training split held out for "
            f"validation ({size}seed {p['validation_seed']}); {rule}; test split "
            f"{p['test']}")
    train_value = (board.get("baseline") or {}).get("train")
    if train_value is not None:
        line += f"; baseline train {board['metric']} {train_value:.2f}%"
    return line


def _teacher_name(sweep: Sweep) -> str:
    t = sweep.spec.teacher
    return t.model.name if t.model is not None else t.provider


def _num(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return float(value)


def _pair(values: tuple[float, float] | None) -> list[float | None] | None:
    return None if values is None else [_num(v) for v in values]


def _pc(fraction: float | None) -> float | None:
    """A fraction in percent (a difference of two in percent points), rounded to 1e-6
    points so that 0.953 reads 95.3, not 95.30000000000001."""
    value = _num(fraction)
    return None if value is None else round(100.0 * value, 6)


def _pc_pair(values: tuple[float, float] | None) -> list[float | None] | None:
    return None if values is None else [_pc(v) for v in values]


# Rendering ----------------------------------------------------------------------
# Every format shows the same numbers in the same unit: the board's (percent, and percent
# points for differences), two decimals where people read them, more in the CSV.

COLUMNS = ["rank", "method", "mean", "std", "ci95", "delta", "delta_ci95", "p_paired_t",
           "p_wilcoxon", "p_welch", "p_mannwhitney", "p_holm", "hedges_g",
           "prob_improvement", "verdict", "seeds", "seeds_needed"]
SIGNED = {"delta", "delta_ci95"}
UNITLESS = {"hedges_g", "prob_improvement"}


def columns(board: dict[str, Any]) -> list[str]:
    """The full table's columns: :data:`COLUMNS`, with ``published`` after ``mean`` when
    the benchmark records published numbers."""
    if "published" not in board:
        return COLUMNS
    at = COLUMNS.index("mean") + 1
    return [*COLUMNS[:at], "published", *COLUMNS[at:]]


def headline(board: dict[str, Any]) -> list[str]:
    """The lines that say what a board is before its table: a smoke test, and where its
    published numbers come from."""
    lines = []
    if board.get("smoke"):
        lines.append(f"SMOKE TEST ({board['smoke']} batches per epoch, tiny splits): checks "
                     "that the benchmark runs; its numbers are not results")
    published = board.get("published")
    if published:
        note = f"; {published['note']}" if published.get("note") else ""
        lines.append(f"published: {published['source']}{note}")
    return lines


def context(board: dict[str, Any]) -> list[str]:
    """The lines every format prints between the title and the table: settings, teacher,
    protocol (with the baseline's train accuracy) and the recipe check."""
    lines = [f"settings: {board['tuning']}"] if "tuning" in board else []
    lines += [f"teacher: {board['teacher']['kind']}"] if board["teacher"].get("kind") else []
    return lines + [line for line in (protocol_line(board), recipe_line(board)) if line]


def title(board: dict[str, Any]) -> str:
    return (f"{board['benchmark']}: {board['metric']} (%), {len(board['baseline']['values'])} "
            f"seeds, primary test {board['primary_test']}, {family_line(board)}, "
            f"α = {board['alpha']}")


def notes(board: dict[str, Any]) -> list[str]:
    """One line per distinct note (with many methods and few seeds they often say the
    same): ``"kd, at: with 3 seeds the test can never win"``."""
    grouped: dict[str, list[str]] = {}
    for r in board["rows"]:
        if r.get("note"):
            grouped.setdefault(r["note"], []).append(r["method"])
    return [f"{'every method' if len(methods) == len(board['rows']) > 1 else ', '.join(methods)}"
            f": {note}" for note, methods in grouped.items()]


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v, digits) for v in value) + "]"
    return str(value)


def _points(value: float | None, signed: bool = False) -> str:
    """A value in the board's unit (percent, or points), as people read it: ``95.32``."""
    if value is None:
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def cell(column: str, value: Any) -> str:
    """A value of the full table as people read it: the metric and its differences with two
    decimals, p-values with three significant digits."""
    if value is None or value == "":
        return "–" if value is None else ""
    if column.startswith("p_"):
        return f"{value:.3g}"
    if column in UNITLESS:
        return f"{value:.2f}"
    if isinstance(value, list):
        return "[" + ", ".join(_points(v, column in SIGNED) for v in value) + "]"
    if isinstance(value, float):
        return _points(value, column in SIGNED)
    return str(value)


def table_rows(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat rows (teacher, baseline, then the ranked methods) for CSV and markdown."""
    base = board["baseline"]
    published = board.get("published") or {}
    out = [
        {"rank": "", "method": "teacher", "mean": board["teacher"]["value"],
         "published": published.get("teacher"), "verdict": "", "seeds": 1},
        {"rank": "", "method": "baseline", "mean": base["mean"], "std": base["std"],
         "published": published.get("baseline"),
         "ci95": base["ci95"], "verdict": "(reference)", "seeds": len(base["values"])},
    ]
    for i, row in enumerate(board["rows"], 1):
        flat = {k: row.get(k) for k in columns(board) if k in row}
        flat.update(rank=i, seeds=len(row["values"]))
        for test, p in (row.get("p") or {}).items():
            flat[f"p_{test}"] = p
        needed = row.get("seeds_needed") or {}
        flat["seeds_needed"] = needed.get("for_80_power")
        out.append(flat)
    return out


def compact(board: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The table people read first, the same in the terminal, markdown and HTML: header and
    rows of ``#, method, mean ± std, [published,] Δ [95% CI], p, verdict, seeds``."""
    base = board["baseline"]
    header = ["#", "method", f"{board['metric']} (%) mean ± std", "Δ vs baseline [95% CI]",
              "p (Holm)" if board["correction"] == "holm" else "p (BH)", "verdict", "seeds"]
    lines = [["", "teacher", _points(board["teacher"]["value"]), "", "", "", "1"],
             ["", "baseline", f"{_points(base['mean'])} ± {_points(base['std'])}", "", "",
              "(reference)", str(len(base["values"]))]]
    for i, row in enumerate(board["rows"], 1):
        ci = row.get("delta_ci95") or [None, None]
        delta = (f"{_points(row.get('delta'), True)} [{_points(ci[0], True)}, "
                 f"{_points(ci[1], True)}]") if row.get("delta") is not None else "–"
        p = row.get("p_holm")
        lines.append([str(i), row["method"], f"{_points(row['mean'])} ± {_points(row['std'])}",
                      delta, "–" if p is None else f"{p:.3g}", row.get("verdict", "–"),
                      str(len(row["values"]))])
    published = board.get("published")
    if published:
        header.insert(3, "published")
        values = [published.get("teacher"), published.get("baseline"),
                  *(r.get("published") for r in board["rows"])]
        for line, value in zip(lines, values, strict=True):
            line.insert(3, _points(value))
    return header, lines


def terminal(board: dict[str, Any]) -> str:
    """A compact table for people: metric in percent, verdict beside every row."""
    header, lines = compact(board)
    widths = [max(len(str(r[c])) for r in [header, *lines]) for c in range(len(header))]

    def fmt(r: list[str]) -> str:
        return "  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
    text = [title(board), *headline(board), *context(board)]
    text += [f"warning: {w}" for w in board.get("warnings", [])]
    text += [fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in lines)]
    if notes(board):
        text += ["notes:", *(f"  {line}" for line in notes(board))]
    for f in board["failed"]:
        text.append(f"failed: {f['method']} seed {f['seed']}: {f['error']}")
    return "\n".join(text)


def family_line(board: dict[str, Any]) -> str:
    """``holm-corrected over 17 methods`` (and how many of them the board shows)."""
    family, shown = board.get("family") or len(board["rows"]), len(board["rows"])
    whole = board.get("benchmark_family") or family
    line = f"{board['correction']}-corrected over {family} method{'s' if family != 1 else ''}"
    if family < whole:
        line += f" ONLY, not the benchmark's {whole} (--family shown)"
    elif shown < family:
        line += f" (the benchmark's; {shown} shown)"
    return line


def _sentence(line: str) -> str:
    return line[0].upper() + line[1:] + ("" if line.endswith(".") else ".")


def markdown(board: dict[str, Any], statistics: bool = True) -> str:
    """The terminal's table and lines, then (with ``statistics``) every statistic of every
    row."""
    header, lines = compact(board)
    text = [f"# {board['benchmark']}", "", title(board) + ".", ""]
    text += [f"**{_sentence(line)}**" for line in headline(board)]
    text += [""] if headline(board) else []
    for line in context(board):
        text += [_sentence(line), ""]
    text += [f"**Warning:** {w}." for w in board.get("warnings", [])]
    text += [""] if board.get("warnings") else []
    text += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    text += ["| " + " | ".join(v.replace("|", "\\|") for v in line) + " |" for line in lines]
    if notes(board):
        text += ["", "Notes:", "", *(f"- {line}" for line in notes(board))]
    if board["failed"]:
        text += ["", "Failed runs:", ""]
        text += [f"- {f['method']} seed {f['seed']}: {f['error']}" for f in board["failed"]]
    if not statistics:
        return "\n".join(text) + "\n"
    cols = columns(board)
    text += ["", "## Every statistic", "",
             f"`{board['metric']}` in percent, `delta` in percent points (see the CSV and JSON "
             "for more digits).", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    text += ["| " + " | ".join(cell(c, row.get(c)) for c in cols) + " |"
             for row in table_rows(board)]
    return "\n".join(text) + "\n"


def csv_text(board: dict[str, Any]) -> str:
    """Every statistic of every row, in percent (``delta``: percent points)."""
    buffer = io.StringIO()
    cols = columns(board)
    writer = csv.DictWriter(buffer, cols, extrasaction="ignore")
    writer.writeheader()
    for row in table_rows(board):
        writer.writerow({c: "" if row.get(c) is None else
                         f"{row[c]:.6g}" if c.startswith("p_") else _fmt(row.get(c), 6)
                         for c in cols})
    return buffer.getvalue()


def html(board: dict[str, Any], figure_svg: str) -> str:
    """One self-contained page that fits a laptop screen (1366 px): the lines and table of
    the terminal, the notes, the plot (inline SVG), then every statistic, scrolling
    sideways on its own."""
    header, lines = compact(board)
    verdict = header.index("verdict")
    head = "".join(f"<th>{escape(c)}</th>" for c in header)
    body = "".join(
        "<tr class=\"{}\">{}</tr>".format(escape(line[verdict].replace(" ", "-")),
                                          "".join(f"<td>{escape(v)}</td>" for v in line))
        for line in lines)
    cols = columns(board)
    full_head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    full_body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell(c, r.get(c)))}</td>" for c in cols) + "</tr>"
        for r in table_rows(board))
    failed = "".join(f"<li>{escape(f['method'])} seed {f['seed']}: {escape(f['error'])}</li>"
                     for f in board["failed"])
    intro = "".join(f"<p><strong>{escape(line)}</strong></p>" for line in headline(board)) + \
        "".join(f"<p>{escape(_sentence(line))}</p>" for line in context(board)) + \
        "".join(f"<p class=\"warning\"><strong>Warning:</strong> {escape(w)}</p>"
                for w in board.get("warnings", []))
    note_list = "".join(f"<li>{escape(line)}</li>" for line in notes(board))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(board['benchmark'])} · kdbench leaderboard</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem auto; padding: 0 1rem;
       max-width: 72rem; color: #1f2328; line-height: 1.4; }}
p, li {{ overflow-wrap: anywhere; }}
figure {{ margin: 1rem 0; }} figure svg {{ max-width: 100%; height: auto; }}
table {{ border-collapse: collapse; font-size: 0.85rem; }}
th, td {{ border-bottom: 1px solid #d0d7de; padding: 0.25rem 0.5rem; text-align: right;
         white-space: nowrap; }}
th:nth-child(2), td:nth-child(2) {{ text-align: left; }}
tr.better td {{ background: #dafbe1; }} tr.worse td {{ background: #ffebe9; }}
.warning {{ color: #9a6700; }}
.scroll {{ overflow-x: auto; max-width: 100%; }}
</style></head><body>
<h1>{escape(board['benchmark'])}</h1>
<p>{escape(title(board))}. Every value of <code>{escape(board['metric'])}</code> is
in percent, Δ in percent points. In the plot every dot is one seed; diamonds are means with
their 95% confidence intervals; the band is the baseline's 95% CI.</p>
{intro}
<div class="scroll"><table id="board"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>
{f'<h2>Notes</h2><ul id="notes">{note_list}</ul>' if note_list else ""}
{f"<h2>Failed runs</h2><ul>{failed}</ul>" if failed else ""}
<figure id="plot">{figure_svg}</figure>
<details><summary>Every statistic</summary>
<div class="scroll"><table id="statistics"><thead><tr>{full_head}</tr></thead>
<tbody>{full_body}</tbody></table></div>
</details>
</body></html>
"""


def write(board: dict[str, Any], out: Path) -> list[Path]:
    """Write ``<out>/<benchmark>.{json,md,csv,html,png}`` (``<benchmark>-tuned.*`` for a
    tuned benchmark, so that it never overwrites the untuned board); returns the paths."""
    from kdbench import plots

    out.mkdir(parents=True, exist_ok=True)
    name = board["benchmark"] + ("-tuned" if board.get("tuned") else "")
    figure = plots.seeds_figure(board)
    files: dict[Path, str | bytes] = {
        out / f"{name}.json": json.dumps(board, indent=2, allow_nan=False) + "\n",
        out / f"{name}.md": markdown(board) + f"\n![every seed, each mean with its 95% CI]"
                                               f"({name}.png)\n",
        out / f"{name}.csv": csv_text(board),
        out / f"{name}.html": html(board, plots.svg(figure)),
        out / f"{name}.png": plots.png(figure),
    }
    for path, content in files.items():
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return list(files)
