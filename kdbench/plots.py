"""The leaderboard as a picture: every seed as a dot, each mean with its 95% CI, and the
baseline as a band, so that a gain smaller than the seed-to-seed spread looks like one.

Uses matplotlib's object API (``Figure``), never pyplot's global state.
"""

from __future__ import annotations

import io
from typing import Any

from matplotlib.figure import Figure

VERDICT_COLOURS = {"better": "#1a7f37", "worse": "#cf222e", "no evidence": "#57606a"}


def seeds_figure(board: dict[str, Any]) -> Figure:
    """One row per method (ranked, best on top), the baseline and the teacher as lines."""
    rows = board["rows"]
    base = board["baseline"]
    height = 1.2 + 0.45 * (len(rows) + 1)
    figure = Figure(figsize=(8, height), layout="constrained")
    axes = figure.add_subplot()
    labels = ["baseline", *[r["method"] for r in rows]][::-1]
    position = {label: i for i, label in enumerate(labels)}

    if base["mean"] is not None:
        lo, hi = base["ci95"] if base["ci95"] and None not in base["ci95"] else (base["mean"],) * 2
        axes.axvspan(lo, hi, color="#0969da", alpha=0.12, lw=0,
                     label="baseline 95% CI")
        axes.axvline(base["mean"], color="#0969da", lw=1, alpha=0.7)
    if board["teacher"]["value"] is not None:
        axes.axvline(board["teacher"]["value"], color="#8250df", lw=1, ls="--",
                     label=f"teacher {board['teacher']['value']:.2f}")

    entries = [("baseline", base, "#0969da"),
               *[(r["method"], r, VERDICT_COLOURS.get(r.get("verdict"), "#57606a")) for r in rows]]
    for label, row, colour in entries:
        y = position[label]
        values = row["values"]
        jitter = [((i % 5) - 2) * 0.06 for i in range(len(values))]
        axes.scatter(values, [y + j for j in jitter], s=18, color=colour, alpha=0.55, lw=0)
        if row["mean"] is not None:
            ci = row.get("ci95") or [None, None]
            if None not in ci:
                axes.errorbar(row["mean"], y, xerr=[[row["mean"] - ci[0]],
                              [ci[1] - row["mean"]]], fmt="none", ecolor=colour,
                              elinewidth=2, capsize=4)
            axes.plot(row["mean"], y, marker="D", color=colour, ms=7)

    axes.set_yticks(range(len(labels)))
    axes.set_yticklabels([
        f"{label}  ({next((r.get('verdict') for r in rows if r['method'] == label), '')})"
        if label != "baseline" else label for label in labels])
    axes.set_xlabel(f"{board['metric']} (%), one dot per seed; ◆ mean with 95% CI")
    axes.set_title(f"{board['benchmark']}: methods against the student baseline")
    axes.grid(axis="x", alpha=0.3)
    axes.legend(loc="lower right", fontsize="small", frameon=False)
    return figure


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg"):]
