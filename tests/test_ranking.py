"""kdbench.ranking against hand-worked ranks, scipy and Demšar (2006)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from kdbench.ranking import Ranking, _cliques, cd_diagram, critical_difference, nemenyi_q, rank

SCORES = {
    "b1": {"A": 0.90, "B": 0.80, "C": 0.70},
    "b2": {"A": 0.85, "B": 0.86, "C": 0.60},
    "b3": {"A": 0.70, "B": 0.70, "C": 0.75},
}


def test_average_ranks_by_hand():
    r = rank(SCORES)
    # b1: A 1, B 2, C 3; b2: B 1, A 2, C 3; b3: C 1, A and B tie for 2 and 3 -> 2.5 each
    assert r.methods == ["A", "B", "C"]
    assert r.benchmarks == ["b1", "b2", "b3"]
    assert r.average_ranks == pytest.approx({"A": 5.5 / 3, "B": 5.5 / 3, "C": 7 / 3})
    assert r.dropped == []
    assert r.alpha == 0.05


def test_lower_is_better_reverses_ranks():
    r = rank(SCORES, higher_is_better=False)
    # b1: C 1, B 2, A 3; b2: C 1, A 2, B 3; b3: A and B 1.5, C 3
    assert r.average_ranks == pytest.approx({"A": 6.5 / 3, "B": 6.5 / 3, "C": 5 / 3})


def test_friedman_against_scipy():
    r = rank(SCORES)
    cols = [[SCORES[b][m] for b in SCORES] for m in "ABC"]
    res = st.friedmanchisquare(*cols)
    assert r.friedman_statistic == pytest.approx(res.statistic)
    assert r.friedman_p == pytest.approx(res.pvalue)


def test_friedman_hand_formula_without_ties():
    scores = {
        "b1": {"A": 3.0, "B": 2.0, "C": 1.0, "D": 0.0},
        "b2": {"A": 3.0, "B": 1.0, "C": 2.0, "D": 0.0},
        "b3": {"A": 2.0, "B": 3.0, "C": 1.0, "D": 0.0},
        "b4": {"A": 3.0, "B": 2.0, "C": 0.0, "D": 1.0},
    }
    r = rank(scores)
    # ranks A 1 1 2 1, B 2 3 1 2, C 3 2 3 4, D 4 4 4 3 -> means 1.25 2 3 3.75
    assert list(r.average_ranks.values()) == pytest.approx([1.25, 2.0, 3.0, 3.75])
    n, k = 4, 4
    means = np.array([1.25, 2.0, 3.0, 3.75])
    chi2 = 12 * n / (k * (k + 1)) * ((means**2).sum() - k * (k + 1) ** 2 / 4)
    assert r.friedman_statistic == pytest.approx(chi2)
    assert r.friedman_p == pytest.approx(st.chi2.sf(chi2, k - 1))


@pytest.mark.parametrize(("k", "q"), [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728),
                                      (10, 3.164)])
def test_nemenyi_q_matches_demsar_table5(k, q):
    assert nemenyi_q(k, 0.05) == pytest.approx(q, abs=1e-3)
    # CD = q sqrt(k (k + 1) / (6 N)), here with N = 7 benchmarks
    assert critical_difference(k, 7) == pytest.approx(q * math.sqrt(k * (k + 1) / 42), abs=1e-3)


def test_ranking_critical_difference():
    r = rank(SCORES)
    assert r.critical_difference == pytest.approx(2.343 * math.sqrt(12 / 18), abs=1e-3)
    assert math.isnan(nemenyi_q(1))


def test_incomplete_methods_are_dropped():
    scores = {
        "b1": {"A": 0.9, "B": 0.8, "X": 0.5, "C": 0.7},
        "b2": {"A": 0.8, "B": 0.9, "C": 0.7, "Y": 0.1},
        "b3": {"A": 0.7, "B": 0.6, "C": float("nan"), "X": 0.2, "Y": 0.3},
    }
    r = rank(scores)
    assert r.methods == ["A", "B"]
    assert r.dropped == ["X", "C", "Y"]
    # two methods: ranks still defined, Friedman needs three
    assert r.average_ranks == pytest.approx({"A": 4 / 3, "B": 5 / 3})
    assert math.isnan(r.friedman_statistic) and math.isnan(r.friedman_p)
    assert r.critical_difference == pytest.approx(1.960 * math.sqrt(6 / 18), abs=1e-3)


def test_all_ties_give_nan_friedman():
    r = rank({"b1": {"A": 1.0, "B": 1.0, "C": 1.0}, "b2": {"A": 2.0, "B": 2.0, "C": 2.0}})
    assert r.average_ranks == pytest.approx({"A": 2.0, "B": 2.0, "C": 2.0})
    assert math.isnan(r.friedman_p)


def test_cliques_join_methods_closer_than_cd():
    # 1.0-1.5 within 1; 1.5-2.9 not; 2.9-3.2 within
    assert _cliques([1.0, 1.5, 2.9, 3.2], 1.0) == [(0, 1), (2, 3)]
    # a run contained in a longer one is not drawn twice
    assert _cliques([1.0, 1.2, 1.4, 3.0], 1.0) == [(0, 2)]
    assert _cliques([1.0, 2.0, 3.0], 0.5) == []


def test_cd_diagram_draws_and_saves(tmp_path):
    from matplotlib.figure import Figure

    r = rank(SCORES)
    fig = cd_diagram(r)
    assert isinstance(fig, Figure)
    texts = {t.get_text() for ax in fig.axes for t in ax.texts}
    assert {"A", "B", "C"} <= texts
    assert any(t.startswith("CD") for t in texts)
    out = tmp_path / "cd.png"
    fig.savefig(out)
    assert out.stat().st_size > 0


@pytest.mark.parametrize("k", [1, 2, 8])
def test_cd_diagram_any_size(tmp_path, k):
    rng = np.random.default_rng(k)
    scores = {f"b{i}": {f"method_{j}": float(rng.random()) for j in range(k)} for i in range(5)}
    r = rank(scores)
    assert isinstance(r, Ranking)
    fig = cd_diagram(r)
    out = tmp_path / f"cd{k}.png"
    fig.savefig(out)
    assert out.stat().st_size > 0


def test_iman_davenport_from_friedman_by_hand():
    from kdbench.ranking import iman_davenport

    r = rank(SCORES)
    k, n = 3, 3
    chi2 = r.friedman_statistic
    f = (n - 1) * chi2 / (n * (k - 1) - chi2)
    assert r.iman_davenport_statistic == pytest.approx(f)
    assert r.iman_davenport_p == pytest.approx(st.f.sf(f, k - 1, (k - 1) * (n - 1)))
    # Demšar (2006), section 3.2.2's example: chi2 = 9.28 on k = 4, N = 14 gives F = 3.69
    assert iman_davenport(9.28, 4, 14)[0] == pytest.approx(3.69, abs=0.01)
    # every benchmark ranks alike: chi2 = N (k - 1), F unbounded
    same = {f"b{i}": {"A": 3.0, "B": 2.0, "C": 1.0} for i in range(4)}
    assert rank(same).iman_davenport_statistic == math.inf and rank(same).iman_davenport_p == 0.0


def test_two_benchmarks_can_never_separate_methods():
    from kdbench.ranking import benchmarks_to_separate

    two = {"b1": SCORES["b1"], "b2": SCORES["b2"]}
    r = rank(two)
    # k = 3: CD = 3.314 * sqrt(3 * 4 / 12) / ... > 2 = the widest possible gap of average ranks
    assert r.critical_difference > 2 and not r.separable
    assert rank(SCORES).separable == (rank(SCORES).critical_difference <= 2)
    n = benchmarks_to_separate(3)
    assert critical_difference(3, n) <= 2 < critical_difference(3, n - 1)
