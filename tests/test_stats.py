"""kdbench.stats: every figure against an independent computation.

Independent means: worked by hand in the comments, or numpy formulas, or scipy
called directly on the same values, never the function under test.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from scipy import stats as st

from kdbench.stats import (
    TESTS,
    Comparison,
    Sample,
    adjust_pvalues,
    compare,
    corrected_level,
    min_seeds_for_significance,
    seeds_for_power,
    sequential_alpha,
    summarize,
    t_test_power,
)

SEEDS = [0, 1, 2, 3, 4]
BASE = [0.80, 0.82, 0.81, 0.79, 0.83]
KD = [0.83, 0.84, 0.82, 0.82, 0.86]
# Per-seed differences KD - BASE = [0.03, 0.02, 0.01, 0.03, 0.03]
#   mean 0.024; deviations .006 -.004 -.014 .006 .006; squares sum 320e-6
#   var 80e-6, sd 0.0089443, se = sd/sqrt(5) = 0.004, t = 6.0 on 4 df


def _kd() -> Comparison:
    return compare(Sample(SEEDS, BASE), {"kd": Sample(SEEDS, KD)})["kd"]


# ----------------------------------------------------------------------------- summarize


def test_summary_hand_example():
    s = summarize(BASE)
    # mean 0.81; squared deviations 1e-4 1e-4 0 4e-4 4e-4 sum 1e-3; var 2.5e-4
    assert s.n == 5
    assert s.mean == pytest.approx(0.81)
    assert s.std == pytest.approx(math.sqrt(2.5e-4))
    # t_{0.975,4} = 2.776445, se = 0.0158114/sqrt(5) = 0.00707107, half-width 0.0196327
    assert s.ci95 == pytest.approx((0.81 - 0.0196327, 0.81 + 0.0196327), abs=1e-6)
    lo, hi = st.t.interval(0.95, 4, loc=np.mean(BASE), scale=st.sem(BASE))
    assert s.ci95 == pytest.approx((lo, hi))


def test_summary_small_samples():
    one = summarize([0.7])
    assert (one.n, one.mean, one.std) == (1, 0.7, 0.0)
    assert all(math.isnan(v) for v in one.ci95)
    empty = summarize([])
    assert empty.n == 0 and math.isnan(empty.mean) and math.isnan(empty.std)
    const = summarize([0.5, 0.5, 0.5])
    assert const.std == 0.0 and const.ci95 == (0.5, 0.5)


def test_sample_validation():
    with pytest.raises(ValueError, match="seeds"):
        Sample([0, 1], [0.1])
    with pytest.raises(ValueError, match="repeated"):
        Sample([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="non-finite"):
        Sample([0, 1], [0.1, float("nan")])
    s = Sample((0, 1), np.array([0.1, 0.2]))
    assert s.seeds == [0, 1] and s.values == [0.1, 0.2]


# ----------------------------------------------------------------------------- paired


def test_paired_hand_example():
    c = _kd()
    assert c.paired and c.n_pairs == 5 and c.primary == "paired_t"
    assert set(c.p) == set(TESTS)
    assert c.delta == pytest.approx(0.024)
    # 0.024 ± 2.776445 * 0.004
    assert c.delta_ci95 == pytest.approx((0.024 - 0.0111058, 0.024 + 0.0111058), abs=1e-6)
    assert c.p["paired_t"] == pytest.approx(2 * st.t.sf(6.0, 4))
    assert c.p["paired_t"] == pytest.approx(st.ttest_rel(KD, BASE).pvalue)
    # every difference positive: the most extreme of 2^5 sign patterns, two-sided
    assert c.p["wilcoxon"] == pytest.approx(2 / 32)
    assert c.p["welch"] == pytest.approx(st.ttest_ind(KD, BASE, equal_var=False).pvalue)
    assert c.summary == summarize(KD)
    # a single method: Holm leaves its p unchanged
    assert c.p_holm == pytest.approx(c.p["paired_t"])
    assert c.p_adjusted_method == "holm"
    assert c.verdict == "better"


def test_mannwhitney_is_exact_permutation_with_ties():
    # KD and BASE share the values 0.82 and 0.83: enumerate all C(10, 5) splits
    pooled = np.array(BASE + KD)
    ranks = st.rankdata(pooled)
    observed = ranks[5:].sum()
    centre = 5 * 11 / 2
    sums = [ranks[list(idx)].sum() for idx in itertools.combinations(range(10), 5)]
    extreme = sum(abs(s - centre) >= abs(observed - centre) - 1e-9 for s in sums)
    assert _kd().p["mannwhitney"] == pytest.approx(extreme / len(sums))


def test_mannwhitney_exact_without_ties():
    base = Sample([0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0])
    m = Sample([0, 1, 2, 3], [5.0, 6.0, 7.0, 8.0])
    p = compare(base, {"m": m})["m"].p["mannwhitney"]
    assert p == pytest.approx(2 / math.comb(8, 4))
    assert p == pytest.approx(st.mannwhitneyu(m.values, base.values, method="exact").pvalue)


def test_hedges_g_formula():
    c = _kd()
    # ss(KD) = 1120e-6, ss(BASE) = 1000e-6, pooled var 2120e-6 / 8; J = 1 - 3/31
    d = 0.024 / math.sqrt(2120e-6 / 8)
    assert c.hedges_g == pytest.approx((1 - 3 / 31) * d)
    x, y = np.array(KD), np.array(BASE)
    sp = math.sqrt(((4 * x.var(ddof=1)) + 4 * y.var(ddof=1)) / 8)
    assert c.hedges_g == pytest.approx((1 - 3 / (4 * 10 - 9)) * (x.mean() - y.mean()) / sp)


def test_a12_by_counting_pairs():
    # 0.83 beats 4, ties 1 -> 4.5; 0.84 -> 5; 0.82 beats 3 ties 1 -> 3.5 (twice); 0.86 -> 5
    assert _kd().prob_improvement == pytest.approx(21.5 / 25)
    wins = sum((a > b) + 0.5 * (a == b) for a in KD for b in BASE)
    assert _kd().prob_improvement == pytest.approx(wins / 25)


def test_power_seeds_for_hand_example():
    c = _kd()
    d = 0.024 / math.sqrt(80e-6)
    n = c.seeds_needed["for_80_power"]

    def power(k):
        crit = st.t.ppf(0.975, k - 1)
        ncp = d * math.sqrt(k)
        return st.nct.sf(crit, k - 1, ncp) + st.nct.cdf(-crit, k - 1, ncp)

    assert power(n - 1) < 0.8 <= power(n)
    assert c.seeds_needed["min_for_significance"] == 2


# ----------------------------------------------------------------------------- unpaired


def test_unpaired_fallback_on_different_seeds():
    base = Sample(SEEDS, BASE)
    other = Sample([10, 11, 12], [0.84, 0.86, 0.85])
    c = compare(base, {"m": other})["m"]
    assert not c.paired and c.n_pairs == 0 and c.primary == "welch"
    assert math.isnan(c.p["paired_t"]) and math.isnan(c.p["wilcoxon"])
    assert c.delta == pytest.approx(0.85 - 0.81)
    res = st.ttest_ind(other.values, BASE, equal_var=False)
    assert c.p["welch"] == pytest.approx(res.pvalue)
    assert c.p_holm == pytest.approx(res.pvalue)
    ci = res.confidence_interval(0.95)
    assert c.delta_ci95 == pytest.approx((ci.low, ci.high))
    # Welch–Satterthwaite by hand: v1 = 1e-4/3, v2 = 2.5e-4/5
    v1, v2 = 1e-4 / 3, 2.5e-4 / 5
    df = (v1 + v2) ** 2 / (v1**2 / 2 + v2**2 / 4)
    half = st.t.ppf(0.975, df) * math.sqrt(v1 + v2)
    assert c.delta_ci95 == pytest.approx((0.04 - half, 0.04 + half))
    # unpaired effect sizes use the whole samples
    assert c.prob_improvement == pytest.approx(1.0)
    assert "no seed is shared" in c.note
    # Cohen's d with the pooled sd drives the two-sample power calculation
    sp = math.sqrt((2e-4 + 1e-3) / 6)
    d = 0.04 / sp
    n = c.seeds_needed["for_80_power"]
    assert t_test_power(d, n, paired=False) >= 0.8 > t_test_power(d, n - 1, paired=False)


def test_one_shared_seed_is_not_paired():
    base = Sample([0, 1, 2], [0.80, 0.81, 0.82])
    m = Sample([2, 3, 4], [0.85, 0.86, 0.84])
    c = compare(base, {"m": m})["m"]
    assert not c.paired and c.n_pairs == 1
    assert math.isnan(c.p["paired_t"])
    assert c.p["welch"] == pytest.approx(st.ttest_ind(m.values, base.values,
                                                      equal_var=False).pvalue)
    assert "only 1 seed is shared" in c.note


def test_pairing_is_by_seed_not_position():
    base = Sample([0, 1, 2, 3], [0.80, 0.90, 0.70, 0.60])
    # same seeds listed in another order
    m = Sample([3, 2, 1, 0], [0.62, 0.71, 0.93, 0.81])
    c = compare(base, {"m": m})["m"]
    diffs = [0.01, 0.03, 0.01, 0.02]
    assert c.delta == pytest.approx(np.mean(diffs))
    assert c.p["paired_t"] == pytest.approx(st.ttest_1samp(diffs, 0.0).pvalue)


# ----------------------------------------------------------------------------- corrections


def test_holm_hand_example():
    # sorted: 0.01*3 = 0.03; 0.03*2 = 0.06; 0.04*1 = 0.04 -> max(0.06, 0.04) = 0.06
    assert adjust_pvalues([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # 0.001*4 = .004; .005*3 = .015; .03*2 = .06; .04*1 = .04 -> .06
    assert adjust_pvalues([0.04, 0.001, 0.03, 0.005]) == pytest.approx(
        [0.06, 0.004, 0.06, 0.015]
    )
    # capped at 1
    assert adjust_pvalues([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def test_nan_is_outside_the_family():
    out = adjust_pvalues([0.01, float("nan"), 0.04, 0.03])
    assert math.isnan(out[1])
    assert [out[0], out[2], out[3]] == pytest.approx([0.03, 0.06, 0.06])
    assert all(math.isnan(v) for v in adjust_pvalues([float("nan")] * 2, "bh"))
    assert adjust_pvalues([]) == []


def test_bh_matches_scipy():
    p = [0.01, 0.04, 0.03, 0.2, 0.001]
    assert adjust_pvalues(p, "bh") == pytest.approx(st.false_discovery_control(p, method="bh"))
    # by hand: sorted .001 .01 .03 .04 .2 times 5/i -> .005 .025 .05 .05 .2 (min from the top)
    assert adjust_pvalues(p, "bh") == pytest.approx([0.025, 0.05, 0.05, 0.2, 0.005])
    with pytest.raises(ValueError):
        adjust_pvalues(p, "bonferroni")


def _family() -> tuple[Sample, dict[str, Sample]]:
    base = Sample(SEEDS, BASE)
    methods = {
        "kd": Sample(SEEDS, KD),
        "small": Sample(SEEDS, [0.81, 0.82, 0.83, 0.79, 0.84]),
        "worse": Sample(SEEDS, [0.78, 0.80, 0.78, 0.77, 0.80]),
    }
    return base, methods


def test_compare_corrects_across_the_family():
    base, methods = _family()
    raw = [st.ttest_rel(m.values, base.values).pvalue for m in methods.values()]
    for correction, expected in (
        ("holm", adjust_pvalues(raw, "holm")),
        ("bh", st.false_discovery_control(raw, method="bh")),
    ):
        out = compare(base, methods, correction=correction)
        assert list(out) == list(methods)
        got = [c.p_holm for c in out.values()]
        assert got == pytest.approx(list(expected))
        assert all(c.p_adjusted_method == correction for c in out.values())
    with pytest.raises(ValueError):
        compare(base, methods, correction="none")


# ----------------------------------------------------------------------------- verdicts


def test_verdicts_better_worse_no_evidence():
    base, methods = _family()
    out = compare(base, methods)
    assert out["kd"].verdict == "better"
    assert out["worse"].verdict == "worse"
    # diffs 0.01 0 0.02 0 0.01: paired p ~ 0.07 before correction
    assert out["small"].verdict == "no evidence"
    assert out["worse"].prob_improvement < 0.5 < out["kd"].prob_improvement


def test_lower_is_better_flips_direction():
    base, methods = _family()
    out = compare(base, methods, higher_is_better=False)
    assert out["kd"].verdict == "worse"
    assert out["worse"].verdict == "better"
    # delta keeps the sign of the raw metric
    assert out["kd"].delta == pytest.approx(0.024)
    assert out["kd"].prob_improvement == pytest.approx(1 - 21.5 / 25)
    # a loss that goes down
    loss_base = Sample(SEEDS, [1.20, 1.25, 1.22, 1.30, 1.18])
    loss = Sample(SEEDS, [1.10, 1.16, 1.15, 1.18, 1.10])
    c = compare(loss_base, {"kd": loss}, higher_is_better=False)["kd"]
    assert c.delta < 0 and c.verdict == "better"


# ----------------------------------------------------------------------------- seeds needed


def test_three_seed_note():
    base = Sample([0, 1, 2], [0.80, 0.82, 0.81])
    m = Sample([0, 1, 2], [0.84, 0.85, 0.83])
    c = compare(base, {"m": m})["m"]
    assert c.note == (
        "with 3 seeds the Wilcoxon signed-rank test can never reach p < 0.05 (needs ≥ 6)"
    )
    # the exact floor behind it: three positive differences, 2 / 2^3
    assert c.p["wilcoxon"] == pytest.approx(st.wilcoxon([0.04, 0.03, 0.02]).pvalue)
    assert c.p["wilcoxon"] == pytest.approx(0.25)
    # Holm over three methods tightens the rank test's target to 0.05 / 3
    out = compare(base, {"a": m, "b": m, "c": m})
    assert "p < 0.0167" in out["a"].note and "needs ≥ 7" in out["a"].note


def test_no_note_with_enough_seeds():
    seeds = list(range(6))
    base = Sample(seeds, [0.80, 0.82, 0.81, 0.79, 0.83, 0.80])
    m = Sample(seeds, [0.83, 0.84, 0.82, 0.82, 0.86, 0.85])
    c = compare(base, {"m": m})["m"]
    assert c.note == ""
    # six distinct positive differences reach the floor 2/64
    assert c.p["wilcoxon"] == pytest.approx(2 / 64)


def test_rank_test_floors():
    assert min_seeds_for_significance("paired_t") == 2
    assert min_seeds_for_significance("welch", n_comparisons=10) == 2
    assert min_seeds_for_significance("wilcoxon") == 6
    assert min_seeds_for_significance("mannwhitney") == 4
    # Holm, 3 methods: 2/2^6 = .031 > .0167 >= 2/2^7 = .0156
    assert min_seeds_for_significance("wilcoxon", 0.05, 3, "holm") == 7
    # BH's most favourable case is alpha itself
    assert min_seeds_for_significance("wilcoxon", 0.05, 3, "bh") == 6
    # the floors are what scipy returns for the most extreme outcome
    assert st.wilcoxon([1.0, 2, 3, 4, 5]).pvalue > 0.05 > st.wilcoxon([1.0, 2, 3, 4, 5, 6]).pvalue
    assert st.mannwhitneyu([1, 2, 3], [4, 5, 6]).pvalue > 0.05
    assert st.mannwhitneyu([1, 2, 3, 4], [5, 6, 7, 8]).pvalue < 0.05
    with pytest.raises(ValueError):
        min_seeds_for_significance("sign")


def _power_direct(d: float, n: int, paired: bool) -> float:
    df, ncp = (n - 1, d * math.sqrt(n)) if paired else (2 * n - 2, d * math.sqrt(n / 2))
    crit = st.t.ppf(0.975, df)
    return st.nct.sf(crit, df, ncp) + st.nct.cdf(-crit, df, ncp)


@pytest.mark.parametrize(("d", "paired", "expected"), [(0.5, True, 34), (0.5, False, 64),
                                                        (0.8, False, 26), (1.0, True, 10)])
def test_power_sample_sizes(d, paired, expected):
    # Cohen's tables: d = 0.5 needs 64 per arm (two-sample), 34 pairs (paired)
    n = seeds_for_power(d, paired=paired)
    assert n == expected
    assert _power_direct(d, n - 1, paired) < 0.8 <= _power_direct(d, n, paired)
    assert seeds_for_power(-d, paired=paired) == n


def test_power_undefined_or_beyond_cap():
    assert seeds_for_power(0.0) is None
    assert seeds_for_power(float("nan")) is None
    assert seeds_for_power(float("inf")) is None
    assert seeds_for_power(0.01) is None  # needs ~ 78 000 pairs
    assert math.isnan(t_test_power(0.5, 1))


# ----------------------------------------------------------------------------- degenerate


def _no_warnings(capfd, fn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = fn()
    assert capfd.readouterr().err == ""
    return out


def test_identical_constant_samples(capfd):
    base = Sample([0, 1, 2], [0.5, 0.5, 0.5])
    c = _no_warnings(capfd, lambda: compare(base, {"m": Sample([0, 1, 2], [0.5, 0.5, 0.5])}))["m"]
    assert all(math.isnan(p) for p in c.p.values())
    assert math.isnan(c.p_holm) and c.verdict == "no evidence"
    assert c.delta == 0.0 and math.isnan(c.hedges_g) and c.prob_improvement == 0.5
    assert c.seeds_needed["for_80_power"] is None
    assert "undefined" in c.note


def test_constant_offset_is_not_significant(capfd):
    # 0.81 - 0.80 and 0.83 - 0.82 differ in the last bits; that is not variance
    base = Sample([0, 1, 2], [0.80, 0.82, 0.81])
    m = Sample([0, 1, 2], [0.81, 0.83, 0.82])
    c = _no_warnings(capfd, lambda: compare(base, {"m": m}))["m"]
    assert math.isnan(c.p["paired_t"]) and c.verdict == "no evidence"
    assert c.p["wilcoxon"] == pytest.approx(0.25)
    unpaired = _no_warnings(
        capfd,
        lambda: compare(Sample([0, 1], [0.8, 0.8]), {"m": Sample([5, 6], [0.9, 0.9])}),
    )["m"]
    assert math.isnan(unpaired.p["welch"]) and unpaired.verdict == "no evidence"


def test_single_seed(capfd):
    base = Sample([0], [0.8])
    c = _no_warnings(capfd, lambda: compare(base, {"m": Sample([0], [0.9])}))["m"]
    assert not c.paired and c.n_pairs == 1
    assert math.isnan(c.p["paired_t"]) and math.isnan(c.p["welch"])
    assert c.verdict == "no evidence"
    assert all(math.isnan(v) for v in c.delta_ci95)
    assert "t test is undefined" in c.note
    assert c.summary.std == 0.0


def test_empty_family_and_empty_sample(capfd):
    assert compare(Sample([0, 1], [0.1, 0.2]), {}) == {}
    c = _no_warnings(capfd, lambda: compare(Sample([], []), {"m": Sample([0, 1], [0.1, 0.2])}))
    assert c["m"].verdict == "no evidence" and math.isnan(c["m"].delta)


# ----------------------------------------------------------------------------- sequential


@pytest.mark.parametrize("looks", [1, 2, 5, 10])
def test_sequential_alpha_spends_alpha(looks):
    levels = [sequential_alpha(k, looks) for k in range(1, looks + 1)]
    assert sum(levels) == pytest.approx(0.05, abs=1e-12)
    assert all(v > 0 for v in levels)
    assert all(a < b for a, b in itertools.pairwise(levels))


def test_sequential_alpha_hand_values():
    z = st.norm.ppf(0.975)
    # first of two looks: t = 1/2, 2 - 2 Phi(1.959964 * sqrt 2 = 2.771808) = 0.005575
    assert sequential_alpha(1, 2) == pytest.approx(2 - 2 * st.norm.cdf(z / math.sqrt(0.5)))
    assert sequential_alpha(1, 2) == pytest.approx(0.005575, abs=1e-6)
    assert sequential_alpha(1, 1, 0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        sequential_alpha(0, 3)
    with pytest.raises(ValueError):
        sequential_alpha(4, 3)


# ----------------------------------------------------------------------------- the family


def test_corrected_level_is_the_threshold_of_each_rank():
    # p sorted: 0.001 (rank 1), 0.02 (rank 2), 0.04 (rank 3); nan has no rank
    p = [0.02, 0.001, math.nan, 0.04]
    assert corrected_level(p, 0.05, "holm") == pytest.approx([0.05 / 2, 0.05 / 3, 0.05 / 3, 0.05])
    assert corrected_level(p, 0.05, "bh") == pytest.approx([0.05 * 2 / 3, 0.05 / 3, 0.05 / 3, 0.05])
    # Holm's step-down rejects p_(r) exactly when p_(r) < alpha / (m - r + 1) and the smaller
    # ones were rejected: at these p-values all three clear their levels, so all are rejected.
    raw = [0.001, 0.012, 0.03]
    levels = corrected_level(raw, 0.05, "holm")
    assert all(p < lvl for p, lvl in zip(raw, levels, strict=True))
    assert max(adjust_pvalues(raw, "holm")) < 0.05


def test_power_is_planned_at_the_corrected_level():
    rng = np.random.default_rng(3)
    base = Sample(SEEDS, BASE)
    methods = {f"m{i}": Sample(SEEDS, list(np.add(BASE, rng.normal(0.01, 0.01, 5))))
               for i in range(6)}
    out = compare(base, methods)
    primary = [c.p["paired_t"] for c in out.values()]
    assert min(corrected_level(primary)) == pytest.approx(0.05 / 6)
    for (name, c), level in zip(out.items(), corrected_level(primary), strict=True):
        assert c.seeds_needed["alpha"] == pytest.approx(level) and level <= 0.05
        sample = methods[name]
        diffs = np.subtract(sample.values, BASE)
        d = diffs.mean() / diffs.std(ddof=1)
        n = c.seeds_needed["for_80_power"]
        assert t_test_power(d, n, level) >= 0.8 > t_test_power(d, n - 1, level)
        # planning at the uncorrected alpha would promise fewer seeds than the verdict needs
        assert n >= seeds_for_power(d, 0.05)


def test_a_family_larger_than_the_methods_given_counts_the_rest_as_p_1():
    base = Sample(SEEDS, BASE)
    kd = Sample(SEEDS, KD)
    other = Sample(SEEDS, [0.80, 0.83, 0.80, 0.80, 0.83])
    alone = compare(base, {"kd": kd, "other": other}, family_size=17)
    raw = [alone["kd"].p["paired_t"], alone["other"].p["paired_t"]]
    assert [alone[k].p_holm for k in ("kd", "other")] == pytest.approx(
        adjust_pvalues([*raw, *[1.0] * 15], "holm")[:2])
    assert alone["kd"].p_holm == pytest.approx(min(1.0, 17 * raw[0]))
    bh = compare(base, {"kd": kd, "other": other}, correction="bh", family_size=17)
    assert bh["kd"].p_holm == pytest.approx(
        st.false_discovery_control([*raw, *[1.0] * 15])[0])
    assert "17 methods" in alone["kd"].note or alone["kd"].note == "" or "Holm" in alone["kd"].note
    with pytest.raises(ValueError, match="family_size"):
        compare(base, {"kd": kd, "other": other}, family_size=1)


def test_an_arm_with_one_value_has_no_mann_whitney_p() -> None:
    """A row whose other seeds failed leaves one value: no rank test, and no crash (scipy's
    exact permutation path refuses a one-value sample)."""
    from kdbench.stats import _p_mannwhitney

    assert math.isnan(_p_mannwhitney(np.array([0.5]), np.array([0.5, 0.25]), 1e-12))
