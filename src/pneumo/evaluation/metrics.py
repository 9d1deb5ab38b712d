"""Evaluation metrics as pure functions returning plain dicts (JSON-ready).

Every figure comes from scikit-learn; the only arithmetic here is how bins and bootstrap replicates are put
together. Pneumonia is the positive class (label 1). Which images are called pneumonia, and which class a
3-class model picks, is the decision prediction makes (:mod:`pneumo.inference.decision`): the figures count
the very labels `pneumo predict` gives. Undefined figures (an AUC on a one-class set) are ``None``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import (accuracy_score, average_precision_score, brier_score_loss, confusion_matrix, f1_score,
                             precision_score, recall_score, roc_auc_score)

from pneumo.inference.decision import is_pneumonia, predicted_classes

CI_METRICS = ("auc", "sensitivity", "specificity")


def _binary(y_true: Sequence[int] | np.ndarray) -> np.ndarray:
    y = np.asarray(y_true).astype(int).ravel()
    if y.size and not set(np.unique(y)) <= {0, 1}:
        raise ValueError(f"binary labels must be 0 (normal) or 1 (pneumonia), got {sorted(set(np.unique(y)))}")
    return y


def _both_classes(y: np.ndarray) -> bool:
    return y.size > 0 and 0 < int(y.sum()) < y.size


def predict_labels(prob: np.ndarray, threshold: float) -> np.ndarray:
    """1 (pneumonia) or 0 per probability, by the decision's threshold rule."""
    return is_pneumonia(prob, threshold).astype(int)


def confusion(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, int]:
    """``{"tn", "fp", "fn", "tp"}`` counts of a binary decision."""
    tn, fp, fn, tp = confusion_matrix(_binary(y_true), _binary(y_pred), labels=[0, 1]).ravel()
    return {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}


def sensitivity_specificity(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float | None, float | None]:
    """Recall of pneumonia and recall of normal; ``None`` when the class is absent."""
    y_true, y_pred = _binary(y_true), _binary(y_pred)
    sens = float(recall_score(y_true, y_pred, pos_label=1, zero_division=0)) if y_true.any() else None
    spec = float(recall_score(y_true, y_pred, pos_label=0, zero_division=0)) if (y_true == 0).any() else None
    return sens, spec


def auc_or_none(y_true: np.ndarray, prob: np.ndarray) -> float | None:
    y = _binary(y_true)
    return float(roc_auc_score(y, prob)) if _both_classes(y) else None


def reliability_bins(y_true: Sequence[int], prob: Sequence[float], n_bins: int = 10) -> dict[str, list[float]]:
    """Per non-empty uniform bin: mean predicted probability, observed pneumonia rate, and count.

    ``calibration_curve`` does not return counts; they are recomputed with its own binning rule.
    """
    y, p = _binary(y_true), np.asarray(prob, dtype=float).ravel()
    if y.size == 0:
        return {"confidence": [], "observed": [], "count": []}
    observed, confidence = calibration_curve(y, p, n_bins=n_bins, strategy="uniform", pos_label=1)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=n_bins)
    return {"confidence": confidence.tolist(), "observed": observed.tolist(),
            "count": counts[counts > 0].astype(int).tolist()}


def expected_calibration_error(y_true: Sequence[int], prob: Sequence[float], n_bins: int = 10) -> float | None:
    """Count-weighted mean gap between predicted probability and observed rate over uniform bins."""
    bins = reliability_bins(y_true, prob, n_bins)
    counts = np.asarray(bins["count"], dtype=float)
    if counts.sum() == 0:
        return None
    gaps = np.abs(np.asarray(bins["observed"]) - np.asarray(bins["confidence"]))
    return float((counts * gaps).sum() / counts.sum())


def binary_metrics(y_true: Sequence[int], prob: Sequence[float], threshold: float, n_bins: int = 10) -> dict[str, Any]:
    """Ranking, decision and calibration figures of P(pneumonia) against binary labels."""
    y, p = _binary(y_true), np.asarray(prob, dtype=float).ravel()
    if y.size != p.size:
        raise ValueError(f"{y.size} labels but {p.size} probabilities")
    if y.size == 0:
        raise ValueError("no predictions to score")
    pred = predict_labels(p, threshold)
    sens, spec = sensitivity_specificity(y, pred)
    return {
        "n": int(y.size),
        "n_pneumonia": int(y.sum()),
        "n_normal": int((y == 0).sum()),
        "auc": auc_or_none(y, p),
        "pr_auc": float(average_precision_score(y, p)) if y.any() else None,
        "accuracy": float(accuracy_score(y, pred)),
        "sensitivity": sens,
        "specificity": spec,
        "precision": float(precision_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "threshold": float(threshold),
        "confusion_matrix": confusion(y, pred),
        "ece": expected_calibration_error(y, p, n_bins),
        "brier": float(brier_score_loss(y, p, pos_label=1)),
    }


def bootstrap_weights(groups: Sequence[str], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, N) image weights of a patient-level bootstrap: each replicate draws as many patients as there
    are, with replacement, and an image counts as often as its patient was drawn."""
    _, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    n_groups = int(inverse.max()) + 1 if inverse.size else 0
    counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / max(n_groups, 1)), size=n_boot)
    return counts[:, inverse].astype(np.float64)


def weighted_auc(y_true: np.ndarray, prob: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC per row of ``weights`` (B, N), ties counted half: the Mann-Whitney form of what
    ``roc_auc_score(y, prob, sample_weight=w)`` returns, for all replicates in one pass. NaN where a row
    has no positive or no negative weight."""
    y = _binary(y_true)
    order = np.argsort(prob, kind="stable")
    sorted_prob = np.asarray(prob, dtype=float)[order]
    w = np.atleast_2d(weights)[:, order]
    starts = np.flatnonzero(np.r_[True, np.diff(sorted_prob) != 0])  # one block per distinct score
    pos = np.add.reduceat(w * (y[order] == 1), starts, axis=1)
    neg = np.add.reduceat(w * (y[order] == 0), starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (pos * (neg_below + 0.5 * neg)).sum(axis=1) / pairs, np.nan)


def bootstrap_ci(y_true: Sequence[int], prob: Sequence[float], threshold: float,
                 groups: Sequence[str] | None = None, *, n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0) -> dict[str, Any]:
    """Percentile bootstrap intervals for AUC, sensitivity and specificity.

    Whole patients are resampled (``groups``): images of one patient are correlated, and resampling them
    one by one would make the intervals too narrow. Without groups every image is its own group.
    Replicates in which a figure is undefined (no pneumonia drawn, say) are left out for that figure.
    Replicates are evaluated as weighted sums in one vectorised pass (the weighted forms of the sklearn
    figures, checked against sklearn in the tests): calling sklearn 3000 times takes tens of seconds.
    """
    y, p = _binary(y_true), np.asarray(prob, dtype=float).ravel()
    keys = np.asarray(groups if groups is not None else np.arange(y.size)).astype(str)
    if keys.size != y.size:
        raise ValueError(f"{keys.size} group ids for {y.size} predictions")
    n_groups = len(np.unique(keys))
    out: dict[str, Any] = {name: None for name in CI_METRICS}
    out.update({"level": level, "n_boot": n_boot, "resampled": "patients" if groups is not None else "images",
                "n_groups": n_groups})
    if y.size == 0 or n_boot == 0:
        return out
    weights = bootstrap_weights(keys, n_boot, np.random.default_rng(seed))
    pred = predict_labels(p, threshold)
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = {
            "auc": weighted_auc(y, p, weights),
            "sensitivity": (weights @ ((y == 1) & (pred == 1))) / (weights @ (y == 1)),
            "specificity": (weights @ ((y == 0) & (pred == 0))) / (weights @ (y == 0)),
        }
    for name, values in draws.items():
        out[name] = _percentile_interval(values, level, n_boot)
    return out


def _percentile_interval(draws: np.ndarray, level: float, n_boot: int) -> list[float] | None:
    """The central ``level`` of the finite bootstrap draws. Replicates where a figure is undefined are left out;
    too few valid ones give an interval that means nothing, said with None."""
    values = draws[np.isfinite(draws)]
    if values.size < max(10, n_boot // 10):
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100.0 - tail))]


def paired_auc_difference(y_true: Sequence[int], prob_a: Sequence[float], prob_b: Sequence[float],
                          groups: Sequence[str] | None = None, *, n_boot: int = 1000, level: float = 0.95,
                          seed: int = 0) -> dict[str, Any]:
    """AUC of ``prob_b`` minus AUC of ``prob_a`` on the same images, with a paired bootstrap interval: every
    replicate scores both models on the same resampled patients, so what the images share cancels, and the
    interval is that of the difference (narrower than the two models' own intervals side by side, which
    overlap even when one model ranks better on nearly every resample)."""
    y = _binary(y_true)
    a, b = (np.asarray(p, dtype=float).ravel() for p in (prob_a, prob_b))
    if not a.size == b.size == y.size:
        raise ValueError(f"{a.size} and {b.size} probabilities for {y.size} images")
    auc_a, auc_b = auc_or_none(y, a), auc_or_none(y, b)
    out: dict[str, Any] = {"difference": None if auc_a is None or auc_b is None else auc_b - auc_a,
                           "ci95": None, "n_boot": n_boot, "level": level, "n": int(y.size),
                           "resampled": "patients" if groups is not None else "images"}
    if out["difference"] is None or n_boot == 0:
        return out
    keys = np.asarray(groups if groups is not None else np.arange(y.size)).astype(str)
    weights = bootstrap_weights(keys, n_boot, np.random.default_rng(seed))
    out["ci95"] = _percentile_interval(weighted_auc(y, b, weights) - weighted_auc(y, a, weights), level, n_boot)
    return out


def multiclass_metrics(y_class: Sequence[int], class_prob: np.ndarray, threshold: float,
                       class_names: Sequence[str] = ("NORMAL", "BACTERIAL", "VIRAL")) -> dict[str, Any]:
    """Per-class recall and the bacterial-vs-viral AUC of a normal/bacterial/viral model.

    The classes are the decision's (:func:`pneumo.inference.decision.predicted_classes`: normal below the
    threshold, else the more probable of bacterial and viral). The bacterial-vs-viral AUC ranks pneumonia
    images only, by P(viral) / (P(bacterial) + P(viral)).
    """
    y = np.asarray(y_class).astype(int).ravel()
    prob = np.asarray(class_prob, dtype=float)
    if prob.ndim != 2 or prob.shape != (y.size, 3):
        raise ValueError(f"class probabilities must be (N, 3) for N={y.size} labels, got {prob.shape}")
    pred = predicted_classes(prob, threshold)
    recall = recall_score(y, pred, labels=[0, 1, 2], average=None, zero_division=0)
    present = [int((y == k).sum()) for k in range(3)]
    sick = y > 0
    viral_share = prob[sick, 2] / np.clip(prob[sick, 1] + prob[sick, 2], 1e-12, None)
    y_viral = (y[sick] == 2).astype(int)
    return {
        "per_class_recall": {name: (float(r) if count else None)
                             for name, r, count in zip(class_names, recall, present)},
        "bacterial_vs_viral_auc": auc_or_none(y_viral, viral_share),
        "class_counts": dict(zip(class_names, present)),
        "confusion_matrix_3class": confusion_matrix(y, pred, labels=[0, 1, 2]).astype(int).tolist(),
    }


def deployed_metrics(y_true: np.ndarray, prob: np.ndarray, threshold: float, unknown: np.ndarray) -> dict[str, Any]:
    """Sensitivity and specificity as deployed: an image the gate refused (``unknown``) got no answer, so a
    refused pneumonia counts as missed and a refused normal as not cleared."""
    y = np.asarray(y_true).astype(int).ravel()
    refused = np.asarray(unknown, dtype=bool).ravel()
    called = predict_labels(prob, threshold).astype(bool)
    flagged, cleared = called & ~refused, ~called & ~refused
    positives, negatives = int((y == 1).sum()), int((y == 0).sum())
    return {
        "n_unknown": int(refused.sum()),
        "n_unknown_pneumonia": int((refused & (y == 1)).sum()),
        "n_unknown_normal": int((refused & (y == 0)).sum()),
        "coverage": float(1.0 - refused.mean()) if y.size else float("nan"),
        "sensitivity": float((flagged & (y == 1)).sum() / positives) if positives else float("nan"),
        "specificity": float((cleared & (y == 0)).sum() / negatives) if negatives else float("nan"),
    }
