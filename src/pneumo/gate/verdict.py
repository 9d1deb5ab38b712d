"""The gate's verdict on one input from its two scores: read it, read it with a warning, or UNKNOWN.

The rule lives here once; the Predictor (and so evaluation, the service and batch runs) only asks for it.

- within ``threshold`` of feature distance: read (the input looks like the training X-rays), unless the
  non-X-ray score is above 0;
- beyond ``far_threshold``, or a non-X-ray score above 0: UNKNOWN;
- in between (the warning zone): read with an out-of-distribution warning, but only when the non-X-ray score
  is at or below ``warn_nonxray``, a stricter limit than 0. CT slices and figures with chest anatomy landed
  in the warning zone with scores just below 0 and got warned readings (issue 23); chest X-rays from other
  sites that land there score lower. ``warn_nonxray`` is fitted on held-out site variants in the zone
  (:func:`pneumo.gate.mahalanobis.fit_warning_limit`); a gate fitted before it existed has none, and its
  warning zone keeps the limit of 0.

A one-boundary gate (no ``far_threshold``, fitted before the warning existed) answers UNKNOWN beyond
``threshold`` and reads everything within it.

:func:`verdict_for` is the gate's whole answer on one input, the cheap checks' refusal first; what the answer
means for the label is :class:`pneumo.inference.decision.DecisionRule`'s to say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class Reading(str, Enum):
    """What the gate lets happen to an input: ``READ`` (a result), ``WARNED`` (a result with an
    out-of-distribution warning), ``UNKNOWN`` (no result)."""

    READ = "read"
    WARNED = "warned"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class GateVerdict:
    reading: Reading
    reason: str | None = None  # UNKNOWN: why (unknown_reason); WARNED: the warning (ood_reason); READ: None
    by_features: bool = True  # False: no feature gate judged the input (none fitted, or the cheap checks refused)

    @property
    def out_of_distribution(self) -> bool:
        return self.reading is Reading.WARNED


@dataclass(frozen=True)
class GateRule:
    """The gate's boundaries: ``threshold`` (in distribution within it), ``far_threshold`` (UNKNOWN beyond it;
    None: a one-boundary gate) and ``warn_nonxray`` (the highest non-X-ray score the warning zone reads;
    None: 0, as gates fitted before it)."""

    threshold: float
    far_threshold: float | None = None
    warn_nonxray: float | None = None

    def __post_init__(self) -> None:
        if self.far_threshold is not None and not self.far_threshold >= self.threshold:
            raise ValueError(f"far_threshold {self.far_threshold} is below threshold {self.threshold}; the far "
                             "(UNKNOWN) boundary must lie at or beyond the in-distribution one")
        if self.warn_nonxray is not None and (self.far_threshold is None or not self.warn_nonxray <= 0.0):
            raise ValueError(f"warn_nonxray {self.warn_nonxray} needs a far_threshold and must be <= 0 (stricter "
                             "than the non-X-ray score's own limit of 0)")

    @property
    def warning_limit(self) -> float:
        """The highest non-X-ray score read with a warning between the boundaries."""
        return 0.0 if self.warn_nonxray is None else self.warn_nonxray

    def judge(self, distance: float, nonxray: float | None) -> GateVerdict:
        """The verdict for an input at feature ``distance`` with non-X-ray score ``nonxray`` (None: the model
        computes none). A NaN distance or score is never read."""
        if self.far_threshold is None:
            if distance <= self.threshold:
                return GateVerdict(Reading.READ)
            return GateVerdict(Reading.UNKNOWN, f"does not look like the chest X-rays this model was trained on "
                               f"(feature distance {distance:.1f} above the gate's threshold {self.threshold:.1f})")
        if not distance <= self.far_threshold:
            return _unknown(f"feature distance {distance:.1f} beyond the gate's far threshold "
                            f"{self.far_threshold:.1f}, past even X-rays from other sites")
        if nonxray is None or math.isnan(nonxray) or not nonxray <= 0.0:
            return _unknown(f"the gate's non-X-ray score {_shown(nonxray)} is above 0")
        if distance <= self.threshold:
            return GateVerdict(Reading.READ)
        if not nonxray <= self.warning_limit:
            return _unknown(f"feature distance {distance:.1f} beyond the in-distribution threshold "
                            f"{self.threshold:.1f}, and a non-X-ray score {nonxray:.2f} above "
                            f"{self.warning_limit:.2f}, where CT slices and figures lie")
        return GateVerdict(Reading.WARNED, (
            f"a chest X-ray unlike the training population (feature distance {distance:.1f} beyond the "
            f"in-distribution threshold {self.threshold:.1f}): read the result with extra caution; X-rays from "
            "other hospitals, age groups or equipment can look like this"))


def _shown(score: float | None) -> str:
    return "missing" if score is None else f"{score:.2f}"


def _unknown(why: str) -> GateVerdict:
    return GateVerdict(Reading.UNKNOWN, f"does not look like a chest X-ray ({why})")


def verdict_for(cheap_reason: str | None, rule: GateRule | None, distance: float | None,
                nonxray: float | None) -> GateVerdict:
    """The gate's answer on one input: UNKNOWN with the cheap checks' ``cheap_reason`` when they refused it, else
    ``rule``'s verdict on its scores; a plain reading, not judged by features, without a rule or a distance."""
    if cheap_reason is not None:
        return GateVerdict(Reading.UNKNOWN, cheap_reason, by_features=False)
    if rule is None or distance is None:
        return GateVerdict(Reading.READ, by_features=False)
    return rule.judge(distance, nonxray)
