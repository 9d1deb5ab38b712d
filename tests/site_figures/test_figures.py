"""The site report's statistics (NumPy only) against scikit-learn's and hand-worked answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from pneumo.site.figures import bootstrap_auc, cohen_kappa, ks_distance, ks_pvalue, psi, rank_auc, wilson


def test_wilson_interval_matches_the_textbook_values():
    # 8 of 10: Wilson 95 % is [0.4902, 0.9433] (Newcombe 1998, table I).
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    assert wilson(0, 50)[0] == 0.0 and wilson(25, 25)[1] == 1.0  # exact, not rounding noise
    assert wilson(0, 0) is None


@pytest.mark.parametrize("seed", range(5))
def test_kappa_and_auc_equal_scikit_learns(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    other = np.where(rng.random(60) < 0.8, y, 1 - y)
    assert cohen_kappa(y, other) == pytest.approx(cohen_kappa_score(y, other))
    p = np.round(rng.random(60) * 0.5 + 0.4 * y, 1)  # rounded: many ties
    assert rank_auc(y, p) == pytest.approx(roc_auc_score(y, p))


def test_undefined_figures_are_none_not_nan():
    assert rank_auc(np.ones(5, int), np.linspace(0, 1, 5)) is None
    assert cohen_kappa(np.ones(4, int), np.ones(4, int)) is None
    assert cohen_kappa(np.array([], int), np.array([], int)) is None


def test_bootstrap_interval_holds_the_auc_and_repeats_with_its_seed():
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(40, int), np.ones(40, int)]
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.15), 0, 1)
    low, high = bootstrap_auc(y, p, 300, seed=0)
    assert low < rank_auc(y, p) < high
    assert bootstrap_auc(y, p, 300, seed=0) == (low, high)


def test_psi_and_ks_are_zero_for_the_same_distribution_and_grow_with_a_shift():
    rng = np.random.default_rng(2)
    reference = rng.beta(2, 5, 2000)
    assert psi(reference, reference) == pytest.approx(0.0)
    assert ks_distance(reference, reference) == pytest.approx(0.0)
    same, shifted = rng.beta(2, 5, 500), rng.beta(5, 2, 500)
    assert psi(reference, same) < 0.1 < 0.25 < psi(reference, shifted)
    assert ks_distance(reference, same) < 0.1 < ks_distance(reference, shifted)


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.15])
def test_ks_distance_and_p_value_equal_scipys(shift):
    from scipy.stats import ks_2samp, kstwobign

    rng = np.random.default_rng(3)
    reference, current = rng.beta(2, 5, 300), np.clip(rng.beta(2, 5, 100) + shift, 0, 1)
    distance = ks_distance(reference, current)
    assert distance == pytest.approx(ks_2samp(reference, current).statistic)
    # The Kolmogorov limiting distribution of sqrt(n m / (n + m)) D.
    expected = kstwobign.sf(distance * np.sqrt(300 * 100 / 400))
    assert ks_pvalue(distance, 300, 100) == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_bootstrap_reweighting_equals_resampling_with_rank_auc():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 50)
    p = np.round(rng.random(50), 1)  # ties
    draws = np.random.default_rng(9)
    resampled = []
    for _ in range(200):
        pick = draws.integers(0, 50, 50)
        value = rank_auc(y[pick], p[pick])
        if value is not None:
            resampled.append(value)
    assert bootstrap_auc(y, p, 200, seed=9) == pytest.approx(tuple(np.percentile(resampled, [2.5, 97.5])))
