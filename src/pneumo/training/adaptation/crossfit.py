"""Cross-fitting the operating point: every local label is used once for choosing and once for measuring.

For each patient-grouped fold, temperature and threshold are fitted on the other folds' scores and applied
to that fold, so no fold's decisions depend on its own labels; the pooled out-of-fold decisions give the
sensitivity and specificity a site can expect from the same rule fitted on all its labels (the rule then
shipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pneumo.evaluation.calibration import ThresholdRule, choose_threshold, fit_temperature
from pneumo.evaluation.metrics import auc_or_none, bootstrap_ci, confusion, sensitivity_specificity
from pneumo.inference.decision import is_pneumonia
from pneumo.inference.probability import OutputHead


@dataclass(frozen=True)
class OperatingPoint:
    temperature: float
    threshold: float


@dataclass
class CrossFit:
    probabilities: np.ndarray  # (N,) out-of-fold P(pneumonia), each at its fold's temperature
    flagged: np.ndarray  # (N,) bool: at or above its fold's threshold
    points: list[OperatingPoint]  # one per fold, fitted without that fold


def fit_operating_point(logits: np.ndarray, targets: np.ndarray, rule: ThresholdRule,
                        head: OutputHead) -> OperatingPoint:
    """Temperature (NLL) and then the rule's threshold on the temperature-scaled probabilities, as
    ``pneumo calibrate`` fits them."""
    temperature = fit_temperature(logits, targets, head)
    probabilities = head.score(logits, temperature)[0]
    return OperatingPoint(temperature, choose_threshold(rule, targets, probabilities))


def matched_threshold(reference: np.ndarray, threshold: float, scores: np.ndarray) -> float:
    """The threshold on ``scores`` that flags as many of the same X-rays as ``threshold`` flags on ``reference``
    (quantile matching): the k-th highest score, k the count ``reference >= threshold`` flags.

    The operating point of a fine-tuned site bundle is fitted on the fold models' out-of-fold scores, but the
    network shipped is trained on every local label, longer, and scores pneumonia higher than they did: at the
    same threshold it flags more. Matched on the share of local X-rays flagged (its own scores on its training
    images: their normals lower and pneumonias higher than on new X-rays, which largely cancels in the share),
    the shipped network flags on new X-rays about the share the cross-fitting measured."""
    reference, scores = np.asarray(reference, dtype=float), np.asarray(scores, dtype=float)
    if reference.shape != scores.shape or reference.size == 0:
        raise ValueError(f"matching needs the same X-rays scored twice, got {reference.shape} and {scores.shape}")
    flagged = int(np.sum(is_pneumonia(reference, threshold)))
    if flagged == 0:  # the rule flags nothing: no share to match
        return float(threshold)
    return float(np.sort(scores)[::-1][flagged - 1])


def cross_fit(logits: np.ndarray, targets: np.ndarray, folds: np.ndarray, rule: ThresholdRule,
              head: OutputHead) -> CrossFit:
    """Each fold scored with the operating point fitted on all the other folds."""
    targets = np.asarray(targets).astype(int)
    probabilities = np.zeros(len(targets))
    flagged = np.zeros(len(targets), dtype=bool)
    points = []
    for fold in range(int(folds.max()) + 1):
        held_out = folds == fold
        point = fit_operating_point(logits[~held_out], targets[~held_out], rule, head)
        probabilities[held_out] = head.score(logits[held_out], point.temperature)[0]
        flagged[held_out] = is_pneumonia(probabilities[held_out], point.threshold)
        points.append(point)
    return CrossFit(probabilities, flagged, points)


def local_figures(targets: np.ndarray, probabilities: np.ndarray, flagged: np.ndarray, patients: list[str], *,
                  n_boot: int, seed: int) -> dict[str, Any]:
    """AUC of the probabilities, sensitivity and specificity of the decisions, with 95% intervals from one
    patient-level bootstrap (the same resamples for all three)."""
    y = np.asarray(targets).astype(int)
    decisions = np.asarray(flagged, dtype=int)
    sensitivity, specificity = sensitivity_specificity(y, decisions)
    # The decisions come from per-fold thresholds: scored as 0/1 at 0.5 they give the decisions' intervals,
    # and the probabilities give the AUC's; the seed makes both draw the same patients.
    ranked = bootstrap_ci(y, probabilities, 0.5, patients, n_boot=n_boot, seed=seed)
    decided = bootstrap_ci(y, decisions.astype(float), 0.5, patients, n_boot=n_boot, seed=seed)
    return {"n": int(y.size), "n_pneumonia": int(y.sum()), "n_normal": int((y == 0).sum()),
            "auc": auc_or_none(y, probabilities), "sensitivity": sensitivity, "specificity": specificity,
            "confusion_matrix": confusion(y, decisions),
            "ci95": {"auc": ranked["auc"], "sensitivity": decided["sensitivity"],
                     "specificity": decided["specificity"], "resampled": ranked["resampled"],
                     "n_groups": ranked["n_groups"], "n_boot": n_boot}}


def summarise_points(points: list[OperatingPoint]) -> list[dict[str, float]]:
    return [{"fold": i, "temperature": p.temperature, "threshold": p.threshold} for i, p in enumerate(points)]
