"""Every method against the student baseline, across seeds.

Pure functions over lists of floats: no torch, no I/O. A method's final metric on
each seed forms a :class:`Sample`; :func:`compare` sets every method of a leaderboard
against the baseline sample, tests the difference four ways, corrects the primary
test for multiplicity across the leaderboard and turns the result into a verdict.

Conventions, applied by every function here:

* Two samples are *paired* by seed: seed ``s`` of the method and seed ``s`` of the
  baseline share data order and initialisation, so their difference removes most
  of the seed-to-seed noise. Paired tests use the shared seeds only; the unpaired
  tests (Welch, Mann–Whitney) always use every value of each sample.
* A p-value is ``nan`` when the test is not computable: too few observations, or
  no variation at all (zero variance for a t test, every observation tied for a
  rank test, every paired difference zero for Wilcoxon). Identical constant
  samples therefore give ``nan`` for all four tests, never ``1.0``: "no variation"
  is absence of information, not evidence of equality. A ``nan`` p-value is left
  out of the multiplicity correction and always yields the verdict
  ``"no evidence"``.
* Degenerate inputs never raise and never write warnings to stderr: scipy's
  ``RuntimeWarning`` for them is suppressed.

References
----------
.. [1] S. Holm, "A simple sequentially rejective multiple test procedure",
   Scandinavian Journal of Statistics 6(2), 1979.
.. [2] Y. Benjamini and Y. Hochberg, "Controlling the false discovery rate",
   JRSS B 57(1), 1995.
.. [3] L. V. Hedges, "Distribution theory for Glass's estimator of effect size",
   Journal of Educational Statistics 6(2), 1981.
.. [4] A. Vargha and H. D. Delaney, "A critique and improvement of the CL common
   language effect size statistics", JEBS 25(2), 2000.
.. [5] K. K. G. Lan and D. L. DeMets, "Discrete sequential boundaries for clinical
   trials", Biometrika 70(3), 1983.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

__all__ = [
    "TESTS",
    "Comparison",
    "Sample",
    "Summary",
    "adjust_pvalues",
    "compare",
    "corrected_level",
    "min_seeds_for_significance",
    "seeds_for_power",
    "sequential_alpha",
    "summarize",
    "t_test_power",
]

TESTS = ("paired_t", "wilcoxon", "welch", "mannwhitney")
"""Keys of :attr:`Comparison.p`, in that order."""

CORRECTIONS = ("holm", "bh")

_MAX_SEEDS = 10_000
# Up to this many distinct splits, a tied Mann–Whitney test is run as an exact
# permutation test (n = 8 per arm has 12 870); beyond it scipy's normal approximation.
_MWU_EXACT_SPLITS = 20_000


@contextmanager
def _quiet() -> Iterator[None]:
    # scipy warns (precision loss, 0/0) on exactly the degenerate inputs this module
    # turns into nan on purpose; the caller gets the nan, not a line on stderr.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


# ----------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class Sample:
    """The final metric of one method on several seeds.

    Attributes
    ----------
    seeds : list of int
        Distinct seeds.
    values : list of float
        ``values[i]`` is the final metric of ``seeds[i]``; finite.

    Raises
    ------
    ValueError
        If the lengths differ, a seed repeats or a value is not finite (a diverged
        run must be dropped or imputed by the caller, explicitly).
    """

    seeds: list[int]
    values: list[float]

    def __post_init__(self) -> None:
        seeds = [int(s) for s in self.seeds]
        values = [float(v) for v in self.values]
        if len(seeds) != len(values):
            raise ValueError(f"{len(seeds)} seeds but {len(values)} values")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"repeated seed in {seeds}")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"non-finite value in {values}: drop or impute failed runs first")
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "values", values)

    def by_seed(self) -> dict[int, float]:
        """Return ``{seed: value}``."""
        return dict(zip(self.seeds, self.values, strict=True))


@dataclass(frozen=True)
class Summary:
    """Location and spread of one sample.

    Attributes
    ----------
    n : int
        Number of values.
    mean : float
        Arithmetic mean; ``nan`` when ``n == 0``.
    std : float
        Sample standard deviation (``ddof=1``); ``0.0`` when ``n == 1``, ``nan`` when
        ``n == 0``.
    ci95 : tuple of float
        Two-sided 95% Student-t confidence interval of the mean,
        ``mean ± t_{0.975, n-1} · std / sqrt(n)``; ``(nan, nan)`` when ``n < 2``.
    """

    n: int
    mean: float
    std: float
    ci95: tuple[float, float]


def summarize(values: Sequence[float]) -> Summary:
    """Summarize a sample by its mean, standard deviation and t-interval of the mean.

    Parameters
    ----------
    values : sequence of float
        The sample, e.g. one method's final metric on each seed.

    Returns
    -------
    Summary
        See :class:`Summary` for the conventions at ``n < 2``.

    Notes
    -----
    The interval assumes the values are independent draws from a normal
    distribution; with a handful of seeds that assumption cannot be checked, so
    treat the interval as a rough guide to the spread of the mean.
    """
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    if n == 0:
        return Summary(0, math.nan, math.nan, (math.nan, math.nan))
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, 0.0, (math.nan, math.nan))
    std = float(x.std(ddof=1))
    return Summary(n, mean, std, _t_interval(mean, std / math.sqrt(n), n - 1))


def _t_interval(centre: float, se: float, df: float, level: float = 0.95) -> tuple[float, float]:
    if not math.isfinite(df) or df <= 0:
        return (math.nan, math.nan)
    if se == 0.0:
        # the formula itself collapses to a point; t.ppf * 0 would be fine too, but a
        # zero-variance Welch df is 0/0, so be explicit for both cases.
        return (centre, centre)
    half = float(st.t.ppf(0.5 + level / 2, df)) * se
    return (centre - half, centre + half)


# ----------------------------------------------------------------------------- tests


def _tolerance(*samples: np.ndarray) -> float:
    # Differences of equal-looking metrics (0.81 - 0.80 on every seed) differ in the
    # last bits; without a tolerance the t test would read float noise as a
    # near-zero variance and report p ~ 0.
    scale = max((float(np.abs(a).max()) for a in samples if a.size), default=0.0)
    return 1e-12 * scale


def _flat(a: np.ndarray, tol: float) -> bool:
    return a.size == 0 or float(np.ptp(a)) <= tol


def _p_paired_t(diffs: np.ndarray, tol: float) -> float:
    if diffs.size < 2 or _flat(diffs, tol):
        return math.nan
    with _quiet():
        return float(st.ttest_rel(diffs, np.zeros_like(diffs)).pvalue)


def _p_wilcoxon(diffs: np.ndarray, tol: float) -> float:
    diffs = np.where(np.abs(diffs) <= tol, 0.0, diffs)
    if diffs.size < 2 or not np.any(diffs):
        return math.nan
    # scipy's method="auto": exact null distribution without ties/zeros, an exact
    # (fully enumerated) permutation test with ties for n <= 13, normal beyond.
    with _quiet():
        return float(st.wilcoxon(diffs, zero_method="wilcox").pvalue)


def _p_welch(x: np.ndarray, y: np.ndarray, tol: float) -> float:
    if x.size < 2 or y.size < 2 or (_flat(x, tol) and _flat(y, tol)):
        return math.nan
    with _quiet():
        return float(st.ttest_ind(x, y, equal_var=False).pvalue)


def _p_mannwhitney(x: np.ndarray, y: np.ndarray, tol: float) -> float:
    # One value in an arm (a row whose other seeds failed) permits no test; scipy's exact
    # permutation path refuses it outright.
    if x.size < 2 or y.size < 2:
        return math.nan
    pooled = np.concatenate([x, y])
    if _flat(pooled, tol):
        return math.nan
    method: str | st.PermutationMethod = "auto"
    has_ties = np.unique(pooled).size < pooled.size
    if has_ties and math.comb(x.size + y.size, x.size) <= _MWU_EXACT_SPLITS:
        # with ties scipy falls back to the normal approximation, which at 3 seeds per
        # arm can print p < 0.05 where the exact permutation p is 0.1; enumerate.
        method = st.PermutationMethod(n_resamples=_MWU_EXACT_SPLITS)
    with _quiet():
        return float(st.mannwhitneyu(x, y, alternative="two-sided", method=method).pvalue)


def adjust_pvalues(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """Adjust p-values for multiple comparisons.

    Parameters
    ----------
    pvalues : sequence of float
        One p-value per hypothesis of the family; ``nan`` marks a test that could
        not be computed.
    method : {"holm", "bh"}
        ``"holm"``: Holm's step-down procedure [1]_, which controls the family-wise
        error rate under any dependence. With the m finite p-values sorted,
        ``p_(1) <= ... <= p_(m)``, the adjusted value is
        ``max_{j <= i} min(1, (m - j + 1) p_(j))``.
        ``"bh"``: Benjamini–Hochberg [2]_ (``scipy.stats.false_discovery_control``),
        which controls the false discovery rate under independence or positive
        dependence.

    Returns
    -------
    list of float
        Adjusted p-values in the input order. ``nan`` inputs are excluded from the
        family (they do not count towards m) and stay ``nan``.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, not {method!r}")
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if ok.size == 0:
        return out.tolist()
    if method == "bh":
        out[ok] = st.false_discovery_control(p[ok], method="bh")
        return out.tolist()
    m = ok.size
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    # the running maximum keeps the adjusted values in the order of the raw ones
    out[order] = np.maximum.accumulate(scaled)
    return out.tolist()


# ----------------------------------------------------------------------------- planning


def corrected_level(pvalues: Sequence[float], alpha: float = 0.05,
                    method: str = "holm") -> list[float]:
    """The level each raw p-value must clear for its corrected p-value to be below ``alpha``.

    With the m finite p-values of the family ranked ``r = 1..m`` (smallest first):
    Holm's step-down compares rank r with ``alpha / (m - r + 1)``; Benjamini–Hochberg
    compares it with ``r alpha / m``. A ``nan`` p-value has no rank and gets the
    strictest level, ``alpha / m`` (Holm) or ``alpha / m`` (BH's rank 1).

    This is the level at which a power calculation for one comparison is consistent
    with the verdict of the corrected family: planning at the uncorrected ``alpha``
    promises seeds that the correction would not accept. The rank is the current
    one; more seeds can move a method up or down, so it is a planning figure, not
    a guarantee. Holm also needs every smaller p-value rejected before it.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, not {method!r}")
    p = np.asarray(pvalues, dtype=float)
    finite = np.flatnonzero(~np.isnan(p))
    m = max(1, finite.size)
    out = np.full(p.shape, alpha / m)
    order = finite[np.argsort(p[finite], kind="stable")]
    for rank, index in enumerate(order, 1):
        out[index] = alpha / (m - rank + 1) if method == "holm" else alpha * rank / m
    return out.tolist()


def _significance_threshold(alpha: float, n_comparisons: int, correction: str) -> float:
    # Holm rejects nothing unless the smallest p-value clears alpha/m, so with every
    # arm at the same n a test whose smallest attainable p is >= alpha/m can never
    # give a corrected p < alpha. BH can reject when all m p-values are <= alpha,
    # so its most favourable threshold is alpha itself.
    m = max(1, int(n_comparisons))
    return alpha / m if correction == "holm" else alpha


def _min_p_wilcoxon(n: int) -> float:
    return min(1.0, 2.0 / 2.0**n)


def _min_p_mannwhitney(n1: int, n2: int) -> float:
    return min(1.0, 2.0 / math.comb(n1 + n2, n1))


def min_seeds_for_significance(
    test: str, alpha: float = 0.05, n_comparisons: int = 1, correction: str = "holm"
) -> int | None:
    """Smallest number of seeds at which a test can possibly reach significance.

    Parameters
    ----------
    test : {"paired_t", "welch", "wilcoxon", "mannwhitney"}
        The test. For the paired tests n is the number of pairs, for the unpaired
        ones the number of seeds in each of the two (equal) arms.
    alpha : float
        Family-wise significance level.
    n_comparisons : int
        Number of methods compared with the baseline in the same family.
    correction : {"holm", "bh"}
        Multiplicity correction applied to the family.

    Returns
    -------
    int or None
        The smallest n whose most extreme outcome gives a corrected p below
        ``alpha``; ``None`` if no n up to 10 000 does.

    Notes
    -----
    The per-test threshold is the most favourable one the correction allows:
    ``alpha / m`` for Holm (nothing is rejected unless the smallest p clears it)
    and ``alpha`` for BH (when every p-value of the family is small). For the t
    tests any n >= 2 can reach any threshold, since the statistic is unbounded.
    The rank tests have a floor: the exact two-sided Wilcoxon signed-rank p-value
    is at least ``2 / 2**n`` (n >= 6 for 0.05) and the exact two-sided
    Mann–Whitney p-value with n per arm at least ``2 / C(2n, n)`` (n >= 4 for
    0.05). Ties and zero differences only raise these floors.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, not {correction!r}")
    if test in ("paired_t", "welch"):
        return 2
    floors: dict[str, Callable[[int], float]] = {
        "wilcoxon": _min_p_wilcoxon,
        "mannwhitney": lambda n: _min_p_mannwhitney(n, n),
    }
    if test not in floors:
        raise ValueError(f"test must be one of {TESTS}, not {test!r}")
    threshold = _significance_threshold(alpha, n_comparisons, correction)
    for n in range(1, _MAX_SEEDS + 1):
        if floors[test](n) < threshold:
            return n
    return None


def t_test_power(d: float, n: int, alpha: float = 0.05, *, paired: bool = True) -> float:
    """Power of the two-sided t test at standardized effect ``d``.

    Parameters
    ----------
    d : float
        Standardized effect: ``mean(diff) / sd(diff)`` for the paired test,
        Cohen's d (difference of means over the pooled SD) for the two-sample test.
    n : int
        Number of pairs (paired) or of seeds in each of the two arms (two-sample).
    alpha : float
        Two-sided significance level.
    paired : bool
        Paired (one-sample on differences) or two-sample test.

    Returns
    -------
    float
        ``P(|T| > t_{1-alpha/2, df})`` where T follows the noncentral t
        distribution with ``df = n - 1`` and noncentrality ``d sqrt(n)`` (paired) or
        ``df = 2n - 2`` and ``d sqrt(n/2)`` (two-sample); ``nan`` for ``n < 2``.

    Notes
    -----
    For the two-sample case this is the power of Student's equal-variance test
    with equal arms, the usual planning approximation for Welch's test.
    """
    if n < 2:
        return math.nan
    # power is symmetric in d; with ncp >= 0 the rejection region's far tail is the
    # negligible term, where scipy's nct underflows to nan for large ncp
    d = abs(d)
    df, ncp = (n - 1, d * math.sqrt(n)) if paired else (2 * n - 2, d * math.sqrt(n / 2))
    with _quiet():
        crit = float(st.t.ppf(1 - alpha / 2, df))
        near = float(st.nct.sf(crit, df, ncp))
        far = float(st.nct.cdf(-crit, df, ncp))
    if not math.isfinite(near):
        # large-df limit of the noncentral t: a normal shifted by ncp
        near, far = float(st.norm.sf(crit - ncp)), float(st.norm.cdf(-crit - ncp))
    return near + (far if math.isfinite(far) else 0.0)


def seeds_for_power(
    d: float,
    alpha: float = 0.05,
    power: float = 0.8,
    *,
    paired: bool = True,
    max_n: int = _MAX_SEEDS,
) -> int | None:
    """Smallest n with :func:`t_test_power` ``>= power``.

    Returns ``None`` when ``d`` is zero or not finite (no effect, or an effect
    without spread, to plan for) or when even ``max_n`` seeds fall short.
    Power increases with n, so doubling then bisecting finds the smallest n.
    """
    if not math.isfinite(d) or d == 0.0:
        return None
    # power(lo) < power <= power(hi); n = 1 has no test. Doubling keeps the search
    # near the answer instead of evaluating nct where the power is ~1.
    lo, hi = 1, 2
    while t_test_power(d, hi, alpha, paired=paired) < power:
        if hi >= max_n:
            return None
        lo, hi = hi, min(2 * hi, max_n)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if t_test_power(d, mid, alpha, paired=paired) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def sequential_alpha(look: int, max_looks: int, alpha: float = 0.05) -> float:
    """Nominal significance level of one look of a group-sequential design.

    ``kdbench run --until-decided`` adds seeds in batches and tests after each
    batch; testing every look at ``alpha`` would inflate the false positive rate.
    The overall ``alpha`` is spent over the looks with the Lan–DeMets
    O'Brien–Fleming-type spending function [5]_

    .. math:: \\alpha^*(t) = 2 - 2\\Phi\\left(z_{1-\\alpha/2} / \\sqrt{t}\\right)

    at information fraction ``t = look / max_looks``, and look k is tested at the
    alpha spent in its own step, ``alpha*(t_k) - alpha*(t_{k-1})``.

    Parameters
    ----------
    look : int
        1-based index of the look.
    max_looks : int
        Planned number of looks.
    alpha : float
        Overall two-sided significance level.

    Returns
    -------
    float
        The nominal level for this look. The levels sum to ``alpha`` over all
        looks; for ``alpha < 0.083`` they increase from look to look (the
        spending function is convex on (0, 1] when ``z_{1-alpha/2}^2 > 3``).

    Notes
    -----
    Using the increment as the nominal level is a Bonferroni bound on the
    probability of crossing at any look, so the design is conservative: the exact
    recursive boundary, which accounts for the correlation between looks, would
    allow slightly larger levels. The simplicity is worth the small loss of power.
    """
    if not 1 <= look <= max_looks:
        raise ValueError(f"look must be in 1..{max_looks}, not {look}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), not {alpha}")
    z = st.norm.isf(alpha / 2)

    def spent(t: float) -> float:
        # norm.sf keeps the tiny early levels accurate where 1 - cdf would round to 0
        return 0.0 if t <= 0.0 else float(2.0 * st.norm.sf(z / math.sqrt(t)))

    return spent(look / max_looks) - spent((look - 1) / max_looks)


# ----------------------------------------------------------------------------- effect sizes


def _sum_sq(a: np.ndarray) -> float:
    return float(((a - a.mean()) ** 2).sum())


def _pooled_sd(x: np.ndarray, y: np.ndarray) -> float:
    # callers guarantee n1 + n2 > 2; a single-value arm contributes no spread
    return math.sqrt((_sum_sq(x) + _sum_sq(y)) / (x.size + y.size - 2))


def _hedges_g(x: np.ndarray, y: np.ndarray, tol: float) -> float:
    n1, n2 = x.size, y.size
    if n1 < 1 or n2 < 1 or n1 + n2 < 3:
        return math.nan
    sd = _pooled_sd(x, y)
    if sd <= tol:
        return math.nan
    j = 1.0 - 3.0 / (4.0 * (n1 + n2) - 9.0)
    return float(j * (x.mean() - y.mean()) / sd)


def _a12(x: np.ndarray, y: np.ndarray, higher_is_better: bool) -> float:
    if x.size == 0 or y.size == 0:
        return math.nan
    diff = x[:, None] - y[None, :]
    if not higher_is_better:
        diff = -diff
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def _cohens_d(x: np.ndarray, y: np.ndarray, tol: float) -> float:
    if x.size < 2 or y.size < 2:
        return math.nan
    sd = _pooled_sd(x, y)
    return float((x.mean() - y.mean()) / sd) if sd > tol else math.nan


# ----------------------------------------------------------------------------- compare


@dataclass(frozen=True)
class Comparison:
    """One method against the baseline.

    Attributes
    ----------
    summary : Summary
        Of the method's whole sample.
    paired : bool
        True when the method and the baseline share >= 2 seeds and the comparison
        is made on those pairs.
    n_pairs : int
        Number of seeds shared with the baseline (used only when ``paired``).
    delta : float
        ``mean(method) - mean(baseline)``; when paired, the mean of the per-seed
        differences over the shared seeds. Its sign is that of the raw metric,
        whatever ``higher_is_better`` says.
    delta_ci95 : tuple of float
        95% interval of ``delta``: paired t-interval when paired, Welch interval
        (Welch–Satterthwaite df) otherwise; ``(nan, nan)`` when not computable.
    p : dict of str to float
        Two-sided p-values, keys :data:`TESTS`: ``"paired_t"``
        (``scipy.stats.ttest_rel``) and ``"wilcoxon"`` (``scipy.stats.wilcoxon``,
        exact or fully enumerated permutation for small n) on the shared seeds;
        ``"welch"`` (``ttest_ind(equal_var=False)``) and ``"mannwhitney"``
        (``mannwhitneyu``, exact or fully enumerated permutation when small) on the
        whole samples. ``nan`` where not computable (see the module notes).
    primary : str
        ``"paired_t"`` when paired, else ``"welch"``.
    p_holm : float
        The primary p-value adjusted across all methods of the call, by
        ``p_adjusted_method`` (the name is kept for compatibility even for BH).
    p_adjusted_method : str
        ``"holm"`` or ``"bh"``.
    hedges_g : float
        ``J (mean_m - mean_b) / s_pooled`` with ``J = 1 - 3 / (4 (n1 + n2) - 9)``,
        on the same observations as ``delta`` (the shared seeds when paired, the
        whole samples otherwise); ``nan`` when the pooled SD is zero or undefined.
    prob_improvement : float
        Vargha–Delaney A12: the share of (method, baseline) pairs of observations
        in which the method is better, ties counting one half, on the same
        observations as ``delta``. 0.5 means no tendency; "better" follows
        ``higher_is_better``.
    verdict : str
        ``"better"``, ``"worse"`` or ``"no evidence"``.
    seeds_needed : dict
        ``"min_for_significance"``: :func:`min_seeds_for_significance` of the
        primary test for this family; ``"for_80_power"``: :func:`seeds_for_power`
        at the observed standardized effect and at ``"alpha"``, the level this
        comparison's raw p-value must clear for the corrected verdict to be
        significant at its current place in the family (:func:`corrected_level`);
        ``None`` when the effect is zero or undefined.
    note : str
        A sentence for a human about what limits this comparison, or ``""``.
    """

    summary: Summary
    paired: bool
    n_pairs: int
    delta: float
    delta_ci95: tuple[float, float]
    p: dict[str, float]
    primary: str
    p_holm: float
    p_adjusted_method: str
    hedges_g: float
    prob_improvement: float
    verdict: str
    seeds_needed: dict
    note: str


def _fmt_p(p: float) -> str:
    return f"{p:.3g}"


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def compare(
    baseline: Sample,
    methods: dict[str, Sample],
    *,
    alpha: float = 0.05,
    correction: str = "holm",
    higher_is_better: bool = True,
    family_size: int | None = None,
) -> dict[str, Comparison]:
    """Compare every method with the baseline and decide which ones differ.

    Parameters
    ----------
    baseline : Sample
        The student trained without distillation, on several seeds.
    methods : dict of str to Sample
        The family of methods compared with the baseline; the multiplicity
        correction runs over all of them.
    alpha : float
        Family-wise level (Holm) or false discovery rate (BH) of the verdicts.
    correction : {"holm", "bh"}
        How the primary p-values are adjusted across the family.
    higher_is_better : bool
        Direction of the metric; decides what "better" and A12 mean.
    family_size : int, optional
        The number of hypotheses the correction runs over, when ``methods`` is
        only part of the family (a leaderboard shown for some of a benchmark's
        rows). The missing ones count with p = 1, which keeps the correction
        valid whatever their p-values would be: Holm and BH then adjust the
        given p-values as if by the full family's m. Defaults to ``len(methods)``.

    Returns
    -------
    dict of str to Comparison
        In the order of ``methods``.

    Notes
    -----
    The primary test is the paired t test on the per-seed differences when the
    method shares at least two seeds with the baseline, Welch's t test otherwise.
    Both assume approximately normal (differences of) final metrics across seeds;
    the rank tests are reported alongside as a check that does not. The verdict is
    ``"better"`` (or ``"worse"``) when the adjusted primary p-value is below
    ``alpha`` and ``delta`` points in the improving (worsening) direction, and
    ``"no evidence"`` otherwise, including whenever the primary test is not
    computable.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, not {correction!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), not {alpha}")

    m = len(methods) if family_size is None else int(family_size)
    if m < len(methods):
        raise ValueError(f"family_size {family_size} is smaller than the {len(methods)} methods")
    base = baseline.by_seed()
    y_all = np.asarray(baseline.values, dtype=float)
    raw: dict[str, dict] = {}
    for name, sample in methods.items():
        x_all = np.asarray(sample.values, dtype=float)
        mine = sample.by_seed()
        shared = sorted(set(mine) & set(base))
        paired = len(shared) >= 2
        tol = _tolerance(x_all, y_all)
        if paired:
            x = np.array([mine[s] for s in shared])
            y = np.array([base[s] for s in shared])
            diffs = x - y
            delta = float(diffs.mean())
            sd = float(diffs.std(ddof=1))
            ci = _t_interval(delta, sd / math.sqrt(diffs.size), diffs.size - 1)
            d = delta / sd if sd > tol else math.nan
        else:
            x, y = x_all, y_all
            diffs = np.array([mine[s] - base[s] for s in shared])
            delta = float(x.mean() - y.mean()) if x.size and y.size else math.nan
            ci = _welch_interval(x, y, tol)
            d = _cohens_d(x, y, tol)
        p = {
            "paired_t": _p_paired_t(diffs, tol),
            "wilcoxon": _p_wilcoxon(diffs, tol),
            "welch": _p_welch(x_all, y_all, tol),
            "mannwhitney": _p_mannwhitney(x_all, y_all, tol),
        }
        primary = "paired_t" if paired else "welch"
        raw[name] = dict(
            summary=summarize(sample.values),
            paired=paired,
            n_pairs=len(shared),
            delta=delta,
            delta_ci95=ci,
            p=p,
            primary=primary,
            hedges_g=_hedges_g(x, y, tol),
            prob_improvement=_a12(x, y, higher_is_better),
            d=d,
            seeds_needed={
                "min_for_significance": min_seeds_for_significance(primary, alpha, m, correction),
            },
            note=_note(paired, len(shared), diffs, x_all, y_all, tol, alpha, m, correction),
        )

    names = list(raw)
    primary_p = [raw[k]["p"][raw[k]["primary"]] for k in names]
    padding = [1.0] * (m - len(names))
    adjusted = adjust_pvalues(primary_p + padding, correction)[: len(names)]
    levels = corrected_level(primary_p + padding, alpha, correction)
    out: dict[str, Comparison] = {}
    for name, p_adj, level in zip(names, adjusted, levels, strict=False):
        r = raw[name]
        d = r.pop("d")
        r["seeds_needed"].update(
            alpha=level, for_80_power=seeds_for_power(d, level, 0.8, paired=r["paired"]))
        out[name] = Comparison(
            p_holm=p_adj,
            p_adjusted_method=correction,
            verdict=_verdict(p_adj, r["delta"], alpha, higher_is_better),
            **r,
        )
    return out


def _welch_interval(x: np.ndarray, y: np.ndarray, tol: float) -> tuple[float, float]:
    n1, n2 = x.size, y.size
    if n1 < 2 or n2 < 2:
        return (math.nan, math.nan)
    v1, v2 = x.var(ddof=1) / n1, y.var(ddof=1) / n2
    se = math.sqrt(v1 + v2)
    delta = float(x.mean() - y.mean())
    if se <= tol:
        return (delta, delta)
    df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    return _t_interval(delta, se, df)


def _verdict(p_adj: float, delta: float, alpha: float, higher_is_better: bool) -> str:
    if not (p_adj < alpha) or not math.isfinite(delta) or delta == 0.0:
        return "no evidence"
    improving = delta > 0.0 if higher_is_better else delta < 0.0
    return "better" if improving else "worse"


def _note(
    paired: bool,
    n_shared: int,
    diffs: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    tol: float,
    alpha: float,
    m: int,
    correction: str,
) -> str:
    n_method, n_base = x.size, y.size
    parts: list[str] = []
    if paired:
        if _flat(diffs, tol):
            parts.append(
                f"the per-seed differences are all equal ({diffs[0]:.4g}), so the paired t "
                "test is undefined; check that the seed reaches training"
            )
    elif n_method < 2 or n_base < 2:
        parts.append(
            f"with {_seeds(n_method)} for the method and {_seeds(n_base)} for the baseline "
            "the t test is undefined (it needs 2 shared seeds, or 2 seeds on each side)"
        )
    else:
        if n_shared < 2:
            shared = "only 1 seed is" if n_shared == 1 else "no seed is"
            parts.append(
                f"{shared} shared with the baseline, so the comparison is unpaired (Welch)"
            )
        if _flat(x, tol) and _flat(y, tol):
            parts.append(
                "both samples are constant across seeds, so the Welch test is undefined; "
                "check that the seed reaches training"
            )

    threshold = _significance_threshold(alpha, m, correction)
    corrected = m > 1 and correction == "holm"
    level = f"p < {_fmt_p(threshold)}"
    if corrected:
        level += f" ({_fmt_p(alpha)} Holm-corrected for {m} methods"
    if paired:
        nonzero = int(np.count_nonzero(np.abs(diffs) > tol))
        if _min_p_wilcoxon(nonzero) >= threshold:
            need = min_seeds_for_significance("wilcoxon", alpha, m, correction)
            tail = f"; needs ≥ {need})" if corrected else f" (needs ≥ {need})"
            zeros = "" if nonzero == n_shared else f" ({n_shared - nonzero} zero differences)"
            parts.append(
                f"with {_seeds(n_shared)}{zeros} the Wilcoxon signed-rank test can never "
                f"reach {level}{tail}"
            )
    elif n_method >= 1 and n_base >= 1 and _min_p_mannwhitney(n_method, n_base) >= threshold:
        need = min_seeds_for_significance("mannwhitney", alpha, m, correction)
        tail = f"; needs ≥ {need} per arm)" if corrected else f" (needs ≥ {need} per arm)"
        seeds = (
            f"{_seeds(n_method)} per arm"
            if n_method == n_base
            else f"{n_method} and {_seeds(n_base)}"
        )
        parts.append(f"with {seeds} the Mann–Whitney test can never reach {level}{tail}")
    return "; ".join(parts)
