"""Calibrated probabilities from logits in NumPy: the twin of ``pneumo.training.losses.pneumonia_probability``
for the torch-free ONNX path (the evaluation twin pulls in SciPy)."""

from __future__ import annotations

import numpy as np


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def class_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray | None:
    """(N, K) softmax of ``logits / temperature`` for multi-class heads; None for the one-logit head."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] == 1:
        return None
    return _softmax(logits / temperature)


def pneumonia_probability(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """P(pneumonia): sigmoid of the one logit, or 1 - P(normal) for a (normal, bacterial, viral) head."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 1 or logits.shape[1] == 1:
        z = logits.reshape(-1) / temperature
        # Two branches keep exp() from overflowing for large |z|.
        return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))
    return 1.0 - _softmax(logits / temperature)[:, 0]
