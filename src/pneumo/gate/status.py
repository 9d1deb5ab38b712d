"""One line on what the chest-X-ray gate checks with a given model, for `pneumo predict`, the service and batch
summaries: the wording of the gate's state sits beside the gate, not in the Predictor."""

from __future__ import annotations

from typing import Any

from pneumo.gate.verdict import GateRule

CHEAP = "cheap checks (colour, blank, size, aspect ratio)"


def gate_status(stored: dict[str, Any] | None, rule: GateRule | None) -> str:
    """``stored``: the bundle's ``meta.gate`` (its fit figures; empty without a fitted gate); ``rule``: the
    boundaries the loaded model applies (None: no feature gate runs, though one may be stored)."""
    if rule is None:
        if stored:
            return (f"chest-X-ray gate: this ONNX export has no gate output; only {CHEAP} run. Re-export with "
                    "`pneumo export` after `pneumo gate fit`")
        return (f"chest-X-ray gate: none fitted for this model; only {CHEAP} run (non-X-ray images may get a "
                "probability). Fit one with `pneumo gate fit`")
    gate = stored or {}
    figures = ""
    if "xray_flagged_pct" in gate and "nonxray_flagged_pct" in gate:
        figures = (f"; when fitted it flagged {gate['xray_flagged_pct']:.1f}% of held-out X-rays and "
                   f"{gate['nonxray_flagged_pct']:.1f}% of non-X-ray images")
    layers = ", ".join(gate.get("feature_layers", []))
    return (f"chest-X-ray gate: {CHEAP} + Mahalanobis distance on pooled features of {layers} "
            f"({_boundaries(rule, gate.get('percentile', '?'))}){figures}")


def _boundaries(rule: GateRule, percentile: Any) -> str:
    if rule.far_threshold is None:
        return (f"threshold {rule.threshold:.2f}, {percentile}th percentile of training X-rays; beyond it UNKNOWN. "
                "This gate has no out-of-distribution band: refit it with `pneumo gate fit` to warn rather than "
                "refuse on X-rays from other sites")
    return (f"out-of-distribution warning beyond {rule.threshold:.2f}, the {percentile}th percentile of training "
            f"X-rays; UNKNOWN beyond {rule.far_threshold:.2f} or when the non-X-ray score is above 0 (above "
            f"{rule.warning_limit:.2f} between the two)")
