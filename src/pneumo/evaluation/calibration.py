"""Temperature scaling and decision-threshold rules, fitted on validation data and never on the split reported.

Temperature scaling divides the logits by one scalar T fitted by minimising the negative log-likelihood
(Guo et al., 2017): it changes how confident the probabilities are, not their order, so AUC is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import roc_curve

from pneumo.inference.probability import OutputHead

RULES = ("sensitivity", "youden", "fixed")
# T is searched on a log scale in this range: wider than any sane network's over/under-confidence.
TEMPERATURE_BOUNDS = (0.02, 50.0)
_LOG_T_BOUNDS = (np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1]))
# A stored threshold sits this far below the validation score it was chosen at (never past the next lower
# score). Calibration scores through the Predictor, the same code as prediction, but in batches of another
# size: float32 reductions inside the network then round differently, and a probability can land a hair
# (about 1e-7) below the one calibration saw.
_THRESHOLD_MARGIN = 1e-6


def negative_log_likelihood(logits: np.ndarray, targets: np.ndarray, temperature: float, head: OutputHead,
                            class_targets: bool = False) -> float:
    """Mean NLL of ``targets`` under logits / T, with the probabilities prediction computes
    (:meth:`OutputHead.score`: (N, width) logits, or (N, V, width) for V test-time views averaged).

    With ``class_targets`` the targets index the classes of a multi-class head (categorical likelihood);
    otherwise they are 0 normal / 1 pneumonia and the Bernoulli likelihood of P(pneumonia) is used, which
    also serves a 3-class head scored on a dataset without bacterial/viral subtypes.
    """
    y = np.asarray(targets).astype(int).ravel()
    probability, classes = head.score(logits, temperature)
    if class_targets:
        if classes is None or y.max(initial=0) >= classes.shape[1]:
            raise ValueError(f"class targets up to {y.max(initial=0)} do not fit classes {list(head.class_names)}")
        return float(-np.log(np.clip(classes[np.arange(y.size), y], 1e-300, None)).mean())
    p = np.clip(probability, 1e-12, 1 - 1e-12)
    return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray, head: OutputHead, class_targets: bool = False) -> float:
    """The temperature T > 0 minimising validation NLL (bounded 1-D search over log T)."""
    if len(targets) == 0:
        raise ValueError("cannot fit a temperature on an empty split")
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, targets, float(np.exp(log_t)), head, class_targets),
        bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def temperature_at_bound(temperature: float) -> bool:
    """True when the fit ran into the search range's edge: the scores barely separate the classes (or
    separate them perfectly), and the temperature is not a measurement of calibration."""
    low, high = TEMPERATURE_BOUNDS
    return temperature <= low * 1.01 or temperature >= high * 0.99


@dataclass(frozen=True)
class ThresholdRule:
    """How the operating point is chosen: ``sensitivity`` (value = target), ``youden`` or ``fixed`` (value)."""

    kind: Literal["sensitivity", "youden", "fixed"]
    value: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in RULES:
            raise ValueError(f"unknown threshold rule {self.kind!r}; choose one of {list(RULES)}")
        if self.kind == "sensitivity" and not 0.0 < self.value <= 1.0:
            raise ValueError(f"target sensitivity must be in (0, 1], got {self.value}")
        if self.kind == "fixed" and not 0.0 <= self.value <= 1.0:
            raise ValueError(f"fixed threshold must be in [0, 1], got {self.value}")

    def describe(self) -> str:
        if self.kind == "sensitivity":
            return f"highest threshold with sensitivity >= {self.value:g}"
        if self.kind == "youden":
            return "Youden's J (maximum sensitivity + specificity - 1)"
        return f"fixed threshold {self.value:g}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "value": self.value if self.kind != "youden" else None,
                "description": self.describe()}


def _roc(y_true: np.ndarray, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(int).ravel()
    if not 0 < y.sum() < y.size:
        raise ValueError("choosing a threshold needs both normal and pneumonia images in the split")
    fpr, tpr, thresholds = roc_curve(y, prob, drop_intermediate=False)
    finite = np.isfinite(thresholds)  # roc_curve's first threshold is +inf (nothing flagged)
    return fpr[finite], tpr[finite], thresholds[finite]


def _with_margin(chosen: float, prob: np.ndarray) -> float:
    """``chosen`` lowered by a float-precision margin, staying above the next lower score so that every
    validation decision is unchanged."""
    lower = np.asarray(prob, dtype=float)
    lower = lower[lower < chosen]
    floor = (chosen + lower.max()) / 2.0 if lower.size else chosen - _THRESHOLD_MARGIN
    return float(min(1.0, max(chosen - _THRESHOLD_MARGIN, floor, 0.0)))


def threshold_for_sensitivity(y_true: np.ndarray, prob: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity still meets ``target``: the most specific such operating point."""
    _, tpr, thresholds = _roc(y_true, prob)
    return _with_margin(float(thresholds[tpr >= target - 1e-12].max()), prob)


def threshold_youden(y_true: np.ndarray, prob: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 (the highest one among ties)."""
    fpr, tpr, thresholds = _roc(y_true, prob)
    j = tpr - fpr
    return _with_margin(float(thresholds[j >= j.max() - 1e-12].max()), prob)


def choose_threshold(rule: ThresholdRule, y_true: np.ndarray, prob: np.ndarray) -> float:
    if rule.kind == "fixed":
        return float(rule.value)
    if rule.kind == "youden":
        return threshold_youden(y_true, prob)
    return threshold_for_sensitivity(y_true, prob, rule.value)
