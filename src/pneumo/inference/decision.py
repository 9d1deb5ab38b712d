"""The decision, written once: from a calibrated P(pneumonia) and the gate's verdict to the answer a user sees.

- the threshold rule: P(pneumonia) at or above the threshold is PNEUMONIA, below it NORMAL (the convention of
  ``sklearn.metrics.roc_curve``, so a threshold read off a ROC curve means the same here);
- the subtype of a multi-class head: NORMAL below the threshold, else the more probable of the other classes;
- the gate: UNKNOWN (no label, no probability) when its verdict refuses the input, a label with the
  out-of-distribution warning when it warns (:mod:`pneumo.gate.verdict` decides which).

`pneumo predict` (:class:`pneumo.inference.predictor.Predictor`) and `pneumo evaluate`
(:mod:`pneumo.evaluation`) both ask a :class:`DecisionRule`, so the two give the same label on the same image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pneumo.gate.verdict import GateVerdict, Reading
from pneumo.inference.probability import NORMAL, PNEUMONIA

UNKNOWN = "UNKNOWN"
LABELS = (NORMAL, PNEUMONIA, UNKNOWN)


def is_pneumonia(probability: float | np.ndarray, threshold: float) -> np.ndarray:
    """The threshold rule (bool per probability); every label and every evaluation figure comes from it."""
    return np.asarray(probability, dtype=float) >= threshold


def predicted_classes(class_prob: np.ndarray, threshold: float, normal_index: int = 0) -> np.ndarray:
    """Class indices of (N, K) class probabilities: ``normal_index`` unless P(pneumonia) = 1 - P(NORMAL) passes
    the threshold rule, else the most probable of the other classes (bacterial or viral)."""
    prob = np.asarray(class_prob, dtype=float)
    others = prob.copy()
    others[:, normal_index] = -np.inf
    return np.where(is_pneumonia(1.0 - prob[:, normal_index], threshold), others.argmax(axis=1), normal_index)


@dataclass(frozen=True)
class Decision:
    """One input's answer: ``label`` NORMAL, PNEUMONIA or UNKNOWN (``unknown_reason`` says why);
    ``out_of_distribution`` True with ``ood_reason`` for a warned reading, False for a reading the feature gate
    judged in distribution, None when no feature gate judged it or it is UNKNOWN."""

    label: str
    unknown_reason: str | None = None
    out_of_distribution: bool | None = None
    ood_reason: str | None = None

    @property
    def answered(self) -> bool:
        """Whether the input got a label (and a probability) at all."""
        return self.label != UNKNOWN


@dataclass(frozen=True)
class DecisionRule:
    """The bundle's decision threshold (or one set for an evaluation), applied with the gate's verdict."""

    threshold: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"decision threshold must be in [0, 1], got {self.threshold}")

    def label(self, probability: float) -> str:
        """PNEUMONIA or NORMAL for a probability the gate let through."""
        return PNEUMONIA if bool(is_pneumonia(probability, self.threshold)) else NORMAL

    def decide(self, probability: float | None, verdict: GateVerdict) -> Decision:
        """The answer for an input of ``probability`` (None: the model did not run on it) and gate ``verdict``."""
        if verdict.reading is Reading.UNKNOWN:
            return Decision(UNKNOWN, unknown_reason=verdict.reason)
        if probability is None:
            return Decision(UNKNOWN, unknown_reason="not scored")
        if not verdict.by_features:
            return Decision(self.label(probability))
        warned = verdict.out_of_distribution
        return Decision(self.label(probability), out_of_distribution=warned,
                        ood_reason=verdict.reason if warned else None)

    def decide_many(self, probabilities: Sequence[float] | np.ndarray,
                    verdicts: Sequence[GateVerdict]) -> list[Decision]:
        if len(probabilities) != len(verdicts):
            raise ValueError(f"{len(probabilities)} probabilities but {len(verdicts)} gate verdicts")
        return [self.decide(float(p), v) for p, v in zip(probabilities, verdicts)]

    def subtype(self, class_prob: np.ndarray, class_names: Sequence[str]) -> str:
        """The predicted class name of one input's class probabilities (a multi-class head)."""
        normal = [n.upper() for n in class_names].index(NORMAL)
        return class_names[int(predicted_classes(np.asarray(class_prob)[None], self.threshold, normal)[0])]
