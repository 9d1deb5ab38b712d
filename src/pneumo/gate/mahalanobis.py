"""Mahalanobis distance on the classifier's pooled features, the learned half of the chest-X-ray gate.

The training X-rays' features are summarised by their mean and a Ledoit-Wolf shrunk covariance (a plain
sample covariance of a few hundred dimensions from a few thousand images is badly conditioned), fitted on
standardised features so that the shrinkage target (a scaled identity) treats every feature alike. An input
whose distance to that distribution exceeds a high percentile of held-out training X-rays' distances is
refused (Lee et al., 2018, "A Simple Unified Framework for Detecting Out-of-Distribution Samples", which also
found intermediate layers' features to be the informative ones).

Parameters live in ``gate.safetensors`` inside the bundle; ``meta.gate`` holds a summary and the file's
SHA-256, checked on load. NumPy only at import: the light deployment reads gates without torch or sklearn.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pneumo.bundle import file_sha256

GATE_FILE = "gate.safetensors"
METHOD = "mahalanobis-ledoit-wolf"


class GateError(ValueError):
    """A gate file is missing, altered, or does not fit the model."""


@dataclass
class GateParams:
    mean: np.ndarray  # (D,)
    precision: np.ndarray  # (D, D), the inverse of the shrunk covariance, in the features' own units
    threshold: float  # distances above this are refused
    percentile: float  # the percentile of held-out training X-ray distances the threshold sits at
    feature_layers: list[str]  # modules whose pooled outputs, concatenated in this order, are the features
    pooling: str = "mean+std"  # per-channel spatial statistics (see pneumo.inference.network)
    shrinkage: float = 0.0  # Ledoit-Wolf's covariance shrinkage, for the record

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
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{GATE_FILE}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"method": METHOD, "feature_layers": json.dumps(params.feature_layers),
                                          "pooling": params.pooling})
        os.chmod(tmp, 0o644)  # mkstemp is owner-only; bundles are shared
        os.replace(tmp, directory / GATE_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"method": METHOD, "file": GATE_FILE, "sha256": file_sha256(directory / GATE_FILE),
            "feature_layers": params.feature_layers, "pooling": params.pooling, "feature_dim": params.dim,
            "percentile": params.percentile,
            "threshold": params.threshold, "shrinkage": params.shrinkage}


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
                            shrinkage=float(summary.get("shrinkage", 0.0)))
    except Exception as exc:  # safetensors raises its own types for corrupt headers; KeyError for missing keys
        raise GateError(f"{path}: unreadable gate ({type(exc).__name__}: {exc})") from exc
    if metadata.get("method") != METHOD:
        raise GateError(f"{path}: unknown gate method {metadata.get('method')!r}; expected {METHOD!r}")
    if params.precision.shape != (params.dim, params.dim):
        raise GateError(f"{path}: precision of shape {params.precision.shape} does not fit mean of "
                        f"dimension {params.dim}")
    return params
