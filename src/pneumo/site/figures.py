"""The statistics of the site report, on NumPy alone: Wilson intervals, Cohen's kappa, the rank AUC with a
bootstrap interval, and the population stability index and Kolmogorov-Smirnov distance for drift.

Not :mod:`pneumo.evaluation`: that needs scikit-learn, which the service (``pip install pneumo``) does not have,
and the service shows these figures on its page. Each function is checked against scikit-learn's in the tests.
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal: 95 % two-sided
PSI_BINS = np.linspace(0.0, 1.0, 11)  # ten equal-width bins of P(pneumonia)
PSI_PRIOR = 0.5  # added to every bin's count (Jeffreys): an empty bin keeps a finite log ratio, and a sparse
# week's one stray image in an empty bin does not raise an alarm by itself


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (sound at 0 %, 100 % and small n, unlike the normal one)."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # At 0 % and 100 % the bound is exactly 0 or 1; computed, it comes out as rounding noise (6.9e-18).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float | None:
    """Agreement of two binary raters beyond chance; None when undefined (no pairs, or chance agreement is 1)."""
    a, b = np.asarray(a, dtype=int), np.asarray(b, dtype=int)
    if a.size == 0:
        return None
    observed = float(np.mean(a == b))
    pa, pb = float(a.mean()), float(b.mean())
    chance = pa * pb + (1 - pa) * (1 - pb)
    if chance >= 1.0:
        return None
    return (observed - chance) / (1.0 - chance)


def rank_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Area under the ROC curve as the Mann-Whitney statistic (ties count half); None without both classes."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    # Average ranks over ties: each run of equal values gets the mean of its 1-based positions.
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2.0)[inverse]
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def bootstrap_auc(y: np.ndarray, p: np.ndarray, n_boot: int, seed: int) -> tuple[float, float] | None:
    """95 % percentile interval of the AUC over ``n_boot`` resamples of the images (resamples lacking a class
    are skipped); None when fewer than half the resamples give an AUC."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    rng = np.random.default_rng(seed)
    # Sorted once: a resample only reweights the distinct values, so its AUC is a weighted Mann-Whitney sum
    # over them (the same number rank_auc gives on the resampled arrays, without sorting them again).
    _, group = np.unique(p, return_inverse=True)
    values = []
    for _ in range(n_boot):
        weight = np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y)).astype(float)
        pos = np.bincount(group, weights=weight * y)
        neg = np.bincount(group, weights=weight * (1 - y))
        if pos.sum() > 0 and neg.sum() > 0:
            below = np.cumsum(neg) - neg
            values.append(float(np.sum(pos * (below + 0.5 * neg)) / (pos.sum() * neg.sum())))
    if len(values) < max(1, n_boot // 2):
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def shares(p: np.ndarray, bins: np.ndarray = PSI_BINS, prior: float = 0.0) -> np.ndarray:
    """The share of ``p`` in each bin (the last bin closed at 1), each count raised by ``prior`` first."""
    counts, _ = np.histogram(np.clip(np.asarray(p, dtype=float), bins[0], bins[-1]), bins=bins)
    counts = counts + prior
    return counts / max(1e-12, counts.sum())


def psi(reference: np.ndarray, current: np.ndarray, bins: np.ndarray = PSI_BINS) -> float:
    """Population stability index of ``current`` against ``reference``: sum (c - r) ln(c / r) over the bins, on
    shares smoothed by :data:`PSI_PRIOR`."""
    r, c = shares(reference, bins, PSI_PRIOR), shares(current, bins, PSI_PRIOR)
    return float(np.sum((c - r) * np.log(c / r)))


def ks_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """Kolmogorov-Smirnov statistic: the largest gap between the two empirical distribution functions."""
    reference, current = np.sort(np.asarray(reference, float)), np.sort(np.asarray(current, float))
    grid = np.concatenate([reference, current])
    gap = (np.searchsorted(reference, grid, side="right") / len(reference)
           - np.searchsorted(current, grid, side="right") / len(current))
    return float(np.max(np.abs(gap)))


def ks_pvalue(distance: float, n: int, m: int) -> float:
    """Two-sample Kolmogorov-Smirnov p-value of ``distance`` between samples of ``n`` and ``m``: the Kolmogorov
    limiting distribution of sqrt(n m / (n + m)) D (scipy's ``kstwobign``)."""
    lam = distance * math.sqrt(n * m / (n + m))
    if lam < 1e-3:
        return 1.0
    k = np.arange(1, 101)
    return float(min(1.0, max(0.0, 2.0 * np.sum((-1.0) ** (k - 1) * np.exp(-2.0 * k * k * lam * lam)))))
