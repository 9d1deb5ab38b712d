"""Mahalanobis distance on the classifier's pooled features, the learned half of the chest-X-ray gate.

The training X-rays' features are summarised by their mean and a Ledoit-Wolf shrunk covariance (a plain
sample covariance of a few hundred dimensions from a few thousand images is badly conditioned), fitted on
standardised features so that the shrinkage target (a scaled identity) treats every feature alike. An input
whose distance to that distribution exceeds a high percentile of held-out training X-rays' distances is
unlike the training population (Lee et al., 2018, "A Simple Unified Framework for Detecting Out-of-Distribution
Samples", which also found intermediate layers' features to be the informative ones).

Unlike the training population is not the same as "not a chest X-ray": site variants of the training X-rays
(:func:`pneumo.data.acquisition.site_variant`, the stand-in for other hospitals) and grey photographs or
faces lie at overlapping distances. A gate with a far boundary therefore decides with two scores:

- the distance: within ``threshold`` the input looks like the training X-rays; between ``threshold`` and
  ``far_threshold`` (a high percentile of held-out site variants' distances) it is a chest X-ray unlike the
  training population, answered with an out-of-distribution warning; beyond ``far_threshold``, UNKNOWN;
- a linear non-X-ray score on the same features (logistic regression of the training X-rays and their
  variants against the non-X-ray images of :mod:`pneumo.gatefit.negatives`, its logit plus a margin): above
  0, UNKNOWN at any distance. With the margin of 2 the gate refuses what the regression gives a 12% chance
  or more of not being a chest X-ray: on held-out images that caught 98% of non-X-rays for 0.1% of X-rays,
  against 92-96% of non-X-rays at the regression's own 50%. The fit now defaults to 3 (from 4.7%): within
  ``threshold`` only this score can refuse, and at 2 it read viewer screenshots showing an X-ray (issue 23).

Between the boundaries a stricter limit on the non-X-ray score applies, ``warn_nonxray`` (fitted by
:func:`fit_warning_limit`): CT slices and figures reached that zone with scores just below 0. The rule that
reads the two scores is :class:`pneumo.gate.verdict.GateRule`.

A gate file without ``far_threshold`` (fitted before it existed) has one boundary: beyond ``threshold`` is
UNKNOWN, and nothing is marked out of distribution.

Parameters live in ``gate.safetensors`` inside the bundle; ``meta.gate`` holds a summary and the file's
SHA-256, checked on load. NumPy only at import: the light deployment reads gates without torch or sklearn.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pneumo.atomic import replacing
from pneumo.bundle import file_sha256
from pneumo.gate.verdict import GateRule

GATE_FILE = "gate.safetensors"
METHOD = "mahalanobis-ledoit-wolf"


class GateError(ValueError):
    """A gate file is missing, altered, or does not fit the model."""


@dataclass
class GateParams:
    mean: np.ndarray  # (D,)
    precision: np.ndarray  # (D, D), the inverse of the shrunk covariance, in the features' own units
    threshold: float  # the in-distribution boundary: beyond it a warning, or UNKNOWN when far_threshold is None
    percentile: float  # the percentile of held-out training X-ray distances the threshold sits at
    feature_layers: list[str]  # modules whose pooled outputs, concatenated in this order, are the features
    pooling: str = "mean+std"  # per-channel spatial statistics (see pneumo.inference.network)
    shrinkage: float = 0.0  # Ledoit-Wolf's covariance shrinkage, for the record
    far_threshold: float | None = None  # distances beyond it are UNKNOWN; None: a one-boundary (older) gate
    nonxray_weight: np.ndarray | None = None  # (D,) the non-X-ray score's weights on raw features (with far)
    nonxray_bias: float = 0.0  # score = features @ weight + bias; above 0: not a chest X-ray
    warn_nonxray: float | None = None  # between the boundaries, UNKNOWN above this score; None: 0 (older gates)

    def rule(self) -> GateRule:
        """The rule that reads this gate's two scores (raises ValueError on inconsistent boundaries)."""
        return GateRule(self.threshold, self.far_threshold, self.warn_nonxray)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def whitener(self) -> np.ndarray:
        """L with precision = L L^T, so distance = ||(f - mean) L||: a sum of squares, never negative, and
        stable in float32 where the quadratic form would cancel."""
        sym = (self.precision + self.precision.T) / 2.0
        try:
            return np.linalg.cholesky(sym.astype(np.float64))
        except np.linalg.LinAlgError:  # not positive definite by rounding: use the symmetric square root
            values, vectors = np.linalg.eigh(sym.astype(np.float64))
            return vectors * np.sqrt(np.clip(values, 0.0, None))


def mahalanobis(features: np.ndarray, params: GateParams) -> np.ndarray:
    """(N, D) features -> (N,) Mahalanobis distances."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[1] != params.dim:
        raise GateError(f"features of shape {features.shape} do not fit a gate of dimension {params.dim}")
    projected = (features - params.mean) @ params.whitener()
    return np.sqrt((projected**2).sum(axis=1))


def nonxray_score(features: np.ndarray, params: GateParams) -> np.ndarray:
    """(N, D) features -> (N,) the linear non-X-ray score (a logit: above 0 means not a chest X-ray)."""
    if params.nonxray_weight is None:
        raise GateError("this gate has no non-X-ray score (a one-boundary gate); refit it with `pneumo gate fit`")
    return np.asarray(features, dtype=np.float64) @ params.nonxray_weight + params.nonxray_bias


def fit_far_boundary(params: GateParams, xray_features: np.ndarray, nonxray_features: np.ndarray,
                     site_calibration_features: np.ndarray, *, far_percentile: float = 99.0,
                     regularisation: float = 0.1, margin: float = 2.0) -> GateParams:
    """Add the far boundary to a fitted gate (in place, and returned): ``far_threshold`` at ``far_percentile``
    of the distances of held-out site variants (never below ``threshold``), and the non-X-ray score, a
    logistic regression of ``xray_features`` (X-rays and their variants: class 0) against ``nonxray_features``
    (class 1), classes weighted alike, on whitened features so that ``regularisation`` (sklearn's C) treats
    every direction alike; ``margin`` is added to its logit, so that the score is above 0 from a probability
    of 1 / (1 + e^margin) of not being a chest X-ray."""
    from sklearn.linear_model import LogisticRegression

    if not 50.0 < far_percentile < 100.0:
        raise ValueError(f"far_percentile must be in (50, 100), got {far_percentile}")
    if len(nonxray_features) < 2 or len(xray_features) < 2 or len(site_calibration_features) < 1:
        raise ValueError(f"the far boundary needs X-rays ({len(xray_features)}), non-X-rays "
                         f"({len(nonxray_features)}) and held-out site variants ({len(site_calibration_features)})")
    whitener = params.whitener()
    features = np.concatenate([np.asarray(xray_features, np.float64), np.asarray(nonxray_features, np.float64)])
    target = np.r_[np.zeros(len(xray_features)), np.ones(len(nonxray_features))]
    model = LogisticRegression(C=regularisation, class_weight="balanced", max_iter=5000)
    model.fit((features - params.mean) @ whitener, target)
    weight_white, bias_white = model.coef_[0], float(model.intercept_[0])
    # Folded back onto raw features: ((f - mean) @ L) @ w + b = f @ (L @ w) + (b - mean @ L @ w).
    params.nonxray_weight = whitener @ weight_white
    params.nonxray_bias = bias_white - float(params.mean @ params.nonxray_weight) + margin
    site = mahalanobis(site_calibration_features, params)
    params.far_threshold = max(params.threshold, float(np.percentile(site, far_percentile)))
    return params


def fit_warning_limit(params: GateParams, site_calibration_features: np.ndarray, *, percentile: float = 90.0
                      ) -> int:
    """Set ``warn_nonxray`` (in place) at ``percentile`` of the non-X-ray scores of the held-out site variants
    that lie between the two boundaries, never above 0: the warning zone then reads that share of other
    sites' X-rays and refuses what scores higher. Returns how many site variants were in the zone; with none,
    nothing can be fitted and the limit stays 0 (the score's own), which the caller reports."""
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"warning-zone percentile must be in (0, 100], got {percentile}")
    if params.far_threshold is None:
        raise GateError("the warning-zone limit needs a far boundary; fit it with fit_far_boundary first")
    site = np.asarray(site_calibration_features, dtype=np.float64)
    distances = mahalanobis(site, params)
    scores = nonxray_score(site, params)
    zone = (distances > params.threshold) & (distances <= params.far_threshold) & (scores <= 0.0)
    params.warn_nonxray = min(0.0, float(np.percentile(scores[zone], percentile))) if zone.any() else 0.0
    return int(zone.sum())


def fit_gate(fit_features: np.ndarray, calibration_features: np.ndarray | None, *, feature_layers: list[str],
             pooling: str = "mean+std", percentile: float = 99.5) -> tuple[GateParams, np.ndarray]:
    """Fit mean and shrunk covariance on ``fit_features`` and set the threshold at ``percentile`` of the
    distances of ``calibration_features`` (held-out X-rays: in-sample distances are optimistically small).
    Returns the parameters and the calibration distances."""
    from sklearn.covariance import LedoitWolf

    if not 50.0 < percentile < 100.0:
        raise ValueError(f"percentile must be in (50, 100), got {percentile}")
    fit_features = np.asarray(fit_features, dtype=np.float64)
    if fit_features.ndim != 2 or len(fit_features) < 2:
        raise ValueError(f"need at least 2 feature vectors to fit a gate, got shape {fit_features.shape}")
    centre = fit_features.mean(axis=0)
    scale = fit_features.std(axis=0)
    # A floor for (nearly) constant features: dividing by ~0 would make the distance explode on rounding.
    scale = np.maximum(scale, 1e-2 * float(np.median(scale)) + 1e-12)
    estimator = LedoitWolf(store_precision=True).fit((fit_features - centre) / scale)
    params = GateParams(mean=centre + scale * estimator.location_,
                        precision=np.asarray(estimator.precision_, dtype=np.float64) / np.outer(scale, scale),
                        threshold=np.inf, percentile=float(percentile), feature_layers=list(feature_layers),
                        pooling=pooling, shrinkage=float(estimator.shrinkage_))
    held_out = fit_features if calibration_features is None or len(calibration_features) == 0 else (
        np.asarray(calibration_features, dtype=np.float64))
    distances = mahalanobis(held_out, params)
    params.threshold = float(np.percentile(distances, percentile))
    return params, distances


def save_gate(directory: str | os.PathLike[str], params: GateParams) -> dict[str, Any]:
    """Write ``gate.safetensors`` atomically and return the summary for ``meta.gate``."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    tensors = {
        "mean": np.ascontiguousarray(params.mean, dtype=np.float64),
        "precision": np.ascontiguousarray(params.precision, dtype=np.float64),
        "threshold": np.asarray([params.threshold], dtype=np.float64),
        "percentile": np.asarray([params.percentile], dtype=np.float64),
    }
    if params.far_threshold is not None:
        if not params.far_threshold >= params.threshold:
            raise GateError(f"far_threshold {params.far_threshold} is below threshold {params.threshold}; the "
                            "UNKNOWN boundary must lie at or beyond the in-distribution one")
        if params.nonxray_weight is None or params.nonxray_weight.shape != params.mean.shape:
            raise GateError("a gate with a far_threshold needs its non-X-ray score (nonxray_weight of dimension "
                            f"{params.dim}); fit it with fit_far_boundary")
        params.rule()  # the boundaries and the warning-zone limit are consistent
        tensors["far_threshold"] = np.asarray([params.far_threshold], dtype=np.float64)
        tensors["nonxray_weight"] = np.ascontiguousarray(params.nonxray_weight, dtype=np.float64)
        tensors["nonxray_bias"] = np.asarray([params.nonxray_bias], dtype=np.float64)
        if params.warn_nonxray is not None:
            tensors["warn_nonxray"] = np.asarray([params.warn_nonxray], dtype=np.float64)
    with replacing(directory / GATE_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"method": METHOD, "feature_layers": json.dumps(params.feature_layers),
                                               "pooling": params.pooling})
    return {"method": METHOD, "file": GATE_FILE, "sha256": file_sha256(directory / GATE_FILE),
            "feature_layers": params.feature_layers, "pooling": params.pooling, "feature_dim": params.dim,
            "percentile": params.percentile,
            "threshold": params.threshold, "far_threshold": params.far_threshold,
            "warn_nonxray": params.warn_nonxray, "shrinkage": params.shrinkage}


def load_gate(directory: str | os.PathLike[str], summary: dict[str, Any]) -> GateParams | None:
    """The gate described by ``meta.gate`` (None when the bundle has none), after checking its SHA-256."""
    if not summary or not summary.get("file"):
        return None
    from safetensors import safe_open

    path = Path(directory) / str(summary["file"])
    if not path.is_file():
        raise GateError(f"{path}: gate file named in bundle.json is missing; refit it with `pneumo gate fit`")
    expected = summary.get("sha256")
    if not expected:
        raise GateError(f"{path}: bundle.json records no sha256 for the gate; cannot verify it")
    if file_sha256(path) != expected:
        raise GateError(f"{path}: checksum mismatch; the gate was modified or truncated")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        params = GateParams(mean=tensors["mean"], precision=tensors["precision"],
                            threshold=float(tensors["threshold"][0]), percentile=float(tensors["percentile"][0]),
                            feature_layers=json.loads(metadata["feature_layers"]), pooling=metadata["pooling"],
                            shrinkage=float(summary.get("shrinkage", 0.0)),
                            far_threshold=float(tensors["far_threshold"][0]) if "far_threshold" in tensors else None,
                            nonxray_weight=tensors.get("nonxray_weight"),
                            nonxray_bias=float(tensors["nonxray_bias"][0]) if "nonxray_bias" in tensors else 0.0,
                            warn_nonxray=float(tensors["warn_nonxray"][0]) if "warn_nonxray" in tensors else None)
    except Exception as exc:  # safetensors raises its own types for corrupt headers; KeyError for missing keys
        raise GateError(f"{path}: unreadable gate ({type(exc).__name__}: {exc})") from exc
    if metadata.get("method") != METHOD:
        raise GateError(f"{path}: unknown gate method {metadata.get('method')!r}; expected {METHOD!r}")
    # The file holds the boundaries; bundle.json repeats them for ONNX exports, which carry no gate file.
    for key in ("threshold", "far_threshold", "warn_nonxray"):
        stored, recorded = getattr(params, key), summary.get(key)
        if (recorded is None) != (stored is None) or (stored is not None and not np.isclose(recorded, stored)):
            raise GateError(f"{path}: {key} {stored} in the gate file differs from {recorded} in bundle.json; "
                            "refit the gate with `pneumo gate fit`")
    try:
        params.rule()
    except ValueError as exc:
        raise GateError(f"{path}: {exc}") from exc
    if (params.far_threshold is None) != (params.nonxray_weight is None) or (
            params.nonxray_weight is not None and params.nonxray_weight.shape != params.mean.shape):
        raise GateError(f"{path}: far_threshold and nonxray_weight (dimension {params.dim}) go together; found "
                        f"{sorted(tensors)}")
    if params.precision.shape != (params.dim, params.dim):
        raise GateError(f"{path}: precision of shape {params.precision.shape} does not fit mean of "
                        f"dimension {params.dim}")
    return params
