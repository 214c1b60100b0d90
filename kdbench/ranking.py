"""Several methods over several benchmarks at once (``kdbench compare A B ...``).

Follows Demšar (2006) [1]_, as implemented by autorank [2]_: rank the methods on
every benchmark, average the ranks, test whether they differ at all with the
Friedman test, and read off which pairs differ with the Nemenyi critical
difference, drawn as a critical-difference diagram.

References
----------
.. [1] J. Demšar, "Statistical comparisons of classifiers over multiple data
   sets", JMLR 7, 2006.
.. [2] S. Herbold, "Autorank: a Python package for automated ranking of
   classifiers", JOSS 5(48), 2020.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats as st

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "Ranking",
    "benchmarks_to_separate",
    "cd_diagram",
    "critical_difference",
    "iman_davenport",
    "nemenyi_q",
    "rank",
]


@dataclass(frozen=True)
class Ranking:
    """Average ranks of methods over benchmarks, with Friedman and Nemenyi.

    Attributes
    ----------
    methods : list of str
        The ranked methods, in column order (order of first appearance).
    benchmarks : list of str
        The benchmarks the ranks are averaged over.
    average_ranks : dict of str to float
        Mean rank over the benchmarks; rank 1 is the best, ties share the average
        of the ranks they span.
    friedman_statistic, friedman_p : float
        ``scipy.stats.friedmanchisquare`` over the benchmarks (blocks); ``nan``
        with fewer than 3 methods or 2 benchmarks, or when every benchmark ties
        every method.
    iman_davenport_statistic, iman_davenport_p : float
        Iman and Davenport's F, ``(N - 1) chi2 / (N (k - 1) - chi2)`` on
        ``(k - 1, (k - 1)(N - 1))`` degrees of freedom: the less conservative form of
        Friedman's test that Demšar (2006) recommends. ``nan`` where Friedman's is;
        ``inf`` and p = 0 when every benchmark ranks the methods alike.
    critical_difference : float
        Nemenyi critical difference: two methods whose average ranks differ by at
        least this much differ at level ``alpha``; ``nan`` with fewer than 2
        methods.
    alpha : float
        Significance level of the Friedman test and the critical difference.
    dropped : list of str
        Methods left out because they lack a finite score on some benchmark.
    separable : bool
        Whether any two methods could differ by the critical difference at all: the
        average ranks of two methods differ by at most ``k - 1`` (one always first,
        the other always last), so with ``critical_difference > k - 1`` no pair can
        ever be told apart, whatever the scores.
    """

    methods: list[str]
    benchmarks: list[str]
    average_ranks: dict[str, float]
    friedman_statistic: float
    friedman_p: float
    critical_difference: float
    alpha: float
    dropped: list[str] = field(default_factory=list)
    iman_davenport_statistic: float = math.nan
    iman_davenport_p: float = math.nan

    @property
    def separable(self) -> bool:
        k = len(self.methods)
        return math.isfinite(self.critical_difference) and self.critical_difference <= k - 1


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Critical value of the Nemenyi test for k methods.

    ``q_alpha = studentized_range.ppf(1 - alpha, k, inf) / sqrt(2)``: the upper
    ``alpha`` quantile of the range of k independent standard normals, divided by
    sqrt(2) to put it on the scale of a difference of two means (Demšar 2006,
    Table 5a).
    """
    if k < 2:
        return math.nan
    return float(st.studentized_range.ppf(1.0 - alpha, k, np.inf) / math.sqrt(2.0))


def critical_difference(k: int, n_benchmarks: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference ``q_alpha sqrt(k (k + 1) / (6 N))``.

    Assumes the N benchmarks are independent and N is large enough for the
    average ranks to be approximately normal (Demšar suggests N > 10, k > 5 for
    the Friedman chi-square; the Nemenyi test is conservative for small N).
    """
    if k < 2 or n_benchmarks < 1:
        return math.nan
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6.0 * n_benchmarks))


def rank(
    scores: dict[str, dict[str, float]],
    *,
    higher_is_better: bool = True,
    alpha: float = 0.05,
) -> Ranking:
    """Rank methods over benchmarks.

    Parameters
    ----------
    scores : dict of str to dict of str to float
        ``scores[benchmark][method]`` is the method's mean metric on the benchmark.
    higher_is_better : bool
        Direction of the metric.
    alpha : float
        Level of the Friedman test and of the critical difference.

    Returns
    -------
    Ranking
        Only methods with a finite score on every benchmark are ranked; the others
        are listed in ``dropped``.

    Notes
    -----
    Each benchmark ranks the methods with ``scipy.stats.rankdata`` (ties get the
    average rank, 1 = best). The Friedman test treats the benchmarks as
    independent blocks and uses the chi-square approximation.
    """
    benchmarks = list(scores)
    order: list[str] = []
    for per_method in scores.values():
        order.extend(m for m in per_method if m not in order)

    def complete(method: str) -> bool:
        return all(
            method in scores[b] and math.isfinite(float(scores[b][method])) for b in benchmarks
        )

    methods = [m for m in order if complete(m)]
    dropped = [m for m in order if not complete(m)]
    k, n = len(methods), len(benchmarks)

    table = np.array([[float(scores[b][m]) for m in methods] for b in benchmarks], dtype=float)
    table = table.reshape(n, k)
    # rankdata gives rank 1 to the smallest value, so negate when larger is better
    ranks = st.rankdata(-table if higher_is_better else table, axis=1) if table.size else table
    average = ranks.mean(axis=0) if n else np.full(k, np.nan)

    stat = p = math.nan
    if k >= 3 and n >= 2 and not np.all(ranks == ranks[:, :1]):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            res = st.friedmanchisquare(*table.T)
        stat, p = float(res.statistic), float(res.pvalue)
    f_stat, f_p = iman_davenport(stat, k, n)

    return Ranking(
        methods=methods,
        benchmarks=benchmarks,
        average_ranks={m: float(r) for m, r in zip(methods, average, strict=True)},
        friedman_statistic=stat,
        friedman_p=p,
        critical_difference=critical_difference(k, n, alpha),
        alpha=alpha,
        dropped=dropped,
        iman_davenport_statistic=f_stat,
        iman_davenport_p=f_p,
    )


def benchmarks_to_separate(k: int, alpha: float = 0.05) -> int:
    """The fewest benchmarks at which two of k methods can differ by the critical
    difference: the smallest N with ``critical_difference(k, N) <= k - 1``."""
    n = 1
    while critical_difference(k, n, alpha) > k - 1:
        n += 1
    return n


def iman_davenport(chi2: float, k: int, n: int) -> tuple[float, float]:
    """Iman–Davenport's F from Friedman's chi-square for k methods on n benchmarks.

    ``F = (n - 1) chi2 / (n (k - 1) - chi2)``, referred to the F distribution with
    ``k - 1`` and ``(k - 1)(n - 1)`` degrees of freedom (Iman and Davenport 1980;
    Demšar 2006, eq. 2). Returns ``(F, p)``; ``(nan, nan)`` when chi2 is not finite.
    """
    if not math.isfinite(chi2) or k < 2 or n < 2:
        return math.nan, math.nan
    denominator = n * (k - 1) - chi2
    if denominator <= 0:  # every benchmark ranks the methods alike: chi2 at its maximum
        return math.inf, 0.0
    f = (n - 1) * chi2 / denominator
    return float(f), float(st.f.sf(f, k - 1, (k - 1) * (n - 1)))


def _cliques(ranks: list[float], cd: float) -> list[tuple[int, int]]:
    # With the ranks sorted, the methods not significantly different from method i
    # and worse than it form a contiguous run i..j; keep the maximal runs only.
    runs = []
    for i in range(len(ranks)):
        j = i
        while j + 1 < len(ranks) and ranks[j + 1] - ranks[i] < cd:
            j += 1
        if j > i and not (runs and runs[-1][1] >= j):
            runs.append((i, j))
    return runs


def cd_diagram(ranking: Ranking) -> Figure:
    """Draw the critical-difference diagram of a ranking.

    An axis of average ranks from 1 (best, left) to k; each method is a leader
    line from its average rank to its label, the better half on the left and the
    worse half on the right; thick bars join groups of methods whose average ranks
    differ by less than the critical difference; the critical difference itself is
    a segment above the axis.

    Returns
    -------
    matplotlib.figure.Figure
        Built with the object API (no pyplot state), so it renders with Agg and
        can be saved with ``fig.savefig``.
    """
    from matplotlib.figure import Figure

    order = sorted(ranking.methods, key=lambda m: ranking.average_ranks[m])
    ranks = [ranking.average_ranks[m] for m in order]
    k = len(order)
    cd = ranking.critical_difference
    cliques = _cliques(ranks, cd) if math.isfinite(cd) else []

    # Layout in inches on y (downwards) and rank units on x, so text sizes do not
    # depend on k.
    axis_w = max(4.0, 0.8 * max(k - 1, 1))
    label_w = 0.3 + 0.075 * max((len(m) for m in order), default=1)
    per_in = max(k - 1, 1) / axis_w
    row_h, bar_h = 0.25, 0.12
    axis_y = 0.85
    bars_top = axis_y + 0.2
    rows_top = bars_top + bar_h * len(cliques) + 0.15
    n_left = (k + 1) // 2
    height = rows_top + row_h * max(n_left, k - n_left) + 0.1
    x_lo = 1.0 - label_w * per_in
    x_hi = max(float(k), 1.0 + (cd if math.isfinite(cd) else 0.0)) + label_w * per_in

    fig = Figure(figsize=(axis_w + 2 * label_w, height))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(height, 0.0)

    line = {"color": "black", "linewidth": 0.8}
    ax.plot([1, max(k, 1)], [axis_y, axis_y], **line)
    for tick in np.arange(1.0, k + 0.5, 0.5):
        major = float(tick).is_integer()
        ax.plot([tick, tick], [axis_y - (0.1 if major else 0.05), axis_y], **line)
        if major:
            ax.text(tick, axis_y - 0.13, f"{int(tick)}", ha="center", va="bottom", fontsize=9)

    if math.isfinite(cd):
        cd_y = 0.3
        ax.plot([1.0, 1.0 + cd], [cd_y, cd_y], color="black", linewidth=1.2)
        for end in (1.0, 1.0 + cd):
            ax.plot([end, end], [cd_y - 0.05, cd_y + 0.05], **line)
        ax.text(1.0 + cd / 2, cd_y - 0.07, f"CD = {cd:.2f}", ha="center", va="bottom",
                fontsize=9)

    for idx, (method, r) in enumerate(zip(order, ranks, strict=True)):
        left = idx < n_left
        row = idx if left else k - 1 - idx
        y = rows_top + row_h * row
        edge = 1.0 - 0.2 * per_in if left else max(float(k), 1.0) + 0.2 * per_in
        ax.plot([r, r, edge], [axis_y, y, y], **line)
        ax.text(edge + (-0.05 if left else 0.05) * per_in, y, method,
                ha="right" if left else "left", va="center", fontsize=9)
        ax.text((r + edge) / 2, y - 0.02, f"{r:.2f}", ha="center", va="bottom", fontsize=7,
                color="0.35")

    for level, (i, j) in enumerate(cliques):
        y = bars_top + bar_h * level
        overhang = 0.1 * per_in
        ax.plot([ranks[i] - overhang, ranks[j] + overhang], [y, y], color="black",
                linewidth=3.0, solid_capstyle="round")
    return fig
