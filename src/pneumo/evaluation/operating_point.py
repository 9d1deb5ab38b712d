"""Fit a bundle's temperature and decision threshold on one split and write them into the bundle.

The threshold is chosen on the temperature-scaled probabilities, because those are what prediction
compares it against. The record kept in ``meta.calibration`` names the split and a fingerprint of its
images, so a later evaluation on the same images can say that its figures are not held-out ones.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pneumo import __version__
from pneumo.bundle import write_meta
from pneumo.evaluation.calibration import (ThresholdRule, choose_threshold, fit_temperature, negative_log_likelihood,
                                           temperature_at_bound)
from pneumo.evaluation.metrics import binary_metrics
from pneumo.evaluation.pipeline import EvaluationOptions, ScoredSplit, score_split


def fit_operating_point(scored: ScoredSplit, rule: ThresholdRule, fit_temp: bool = True,
                        n_bins: int = 10) -> dict[str, Any]:
    """The calibration record for ``scored`` (temperature, threshold, what they achieve there)."""
    raw = scored.scores.with_temperature(1.0)
    class_targets = raw.class_targets is not None
    targets = raw.class_targets if class_targets else raw.targets
    temperature = fit_temperature(raw.logits, targets, raw.head, class_targets) if fit_temp else 1.0
    calibrated = raw.with_temperature(temperature)
    threshold = choose_threshold(rule, calibrated.targets, calibrated.probabilities)
    before = binary_metrics(raw.targets, raw.probabilities, threshold, n_bins)
    after = binary_metrics(calibrated.targets, calibrated.probabilities, threshold, n_bins)
    selection = scored.selection
    warnings = list(selection.warnings)
    if fit_temp and temperature_at_bound(temperature):
        warnings.append(f"the fitted temperature ({temperature:.3g}) reached the edge of its search range: the "
                        "model's scores barely separate the classes on this split (or separate them perfectly); "
                        "check the model before trusting its probabilities")
    return {
        "split": selection.split,
        "source": selection.data.manifest or selection.data.root,
        "fingerprint": selection.fingerprint,
        "n": after["n"],
        "rule": rule.to_dict(),
        "temperature": temperature,
        "temperature_fitted": fit_temp,
        "threshold": threshold,
        "ece_before": before["ece"],
        "ece_after": after["ece"],
        "nll_before": negative_log_likelihood(raw.logits, targets, 1.0, raw.head, class_targets),
        "nll_after": negative_log_likelihood(raw.logits, targets, temperature, raw.head, class_targets),
        "achieved": {k: after[k] for k in ("sensitivity", "specificity", "precision", "auc", "confusion_matrix")},
        "previous": {"threshold": scored.meta.threshold, "temperature": scored.meta.temperature},
        "skipped": len(scored.scores.skipped),
        "backend": scored.backend,
        "tta": scored.tta,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "pneumo_version": __version__,
        "warnings": warnings,
    }


def calibrate_bundle(model_ref: str, root: str, manifest: str, rule: ThresholdRule, options: EvaluationOptions,
                     fit_temp: bool = True) -> dict[str, Any]:
    """Score ``options.split``, fit temperature and threshold there, and rewrite the bundle's metadata."""
    scored = score_split(model_ref, root, manifest, options)
    record = fit_operating_point(scored, rule, fit_temp, options.n_bins)
    meta = scored.meta
    meta.temperature = record["temperature"]
    meta.threshold = record["threshold"]
    meta.calibration = record
    if scored.bundle_dir is None:
        raise ValueError(f"{model_ref} is a bare ONNX file; calibrate the bundle directory it was exported from")
    write_meta(scored.bundle_dir, meta)
    return {**record, "bundle": str(scored.bundle_dir)}
