"""What the model's outputs mean, decided once from the bundle's class names, and the calibrated
probabilities computed from them in NumPy (no torch, no SciPy: the light ONNX path uses this too).

Every consumer (the Predictor, evaluation, calibration, Grad-CAM's target) asks an :class:`OutputHead`
rather than reading meaning into an output's index or the head's width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

NORMAL = "NORMAL"
PNEUMONIA = "PNEUMONIA"


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # Two branches keep exp() from overflowing for large |z|.
    return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))


@dataclass(frozen=True)
class OutputHead:
    """The meaning of a network's outputs. ``class_names`` as stored in the bundle: ``[NORMAL, PNEUMONIA]``
    for a one-logit head (the logit is P(PNEUMONIA)), or one name per logit for a softmax head, where
    P(pneumonia) is 1 - P(NORMAL)."""

    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        names = [n.upper() for n in self.class_names]
        if NORMAL not in names:
            raise ValueError(f"class names {list(self.class_names)} have no {NORMAL!r} class; P(pneumonia) is "
                             f"1 - P(NORMAL), so one class must be {NORMAL!r}")
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"class names {list(self.class_names)}: at least two distinct names are needed")
        if len(names) == 2 and names != [NORMAL, PNEUMONIA]:
            raise ValueError(f"a 2-class head is [{NORMAL!r}, {PNEUMONIA!r}], got {list(self.class_names)}")

    @classmethod
    def of(cls, class_names: Sequence[str]) -> "OutputHead":
        return cls(tuple(class_names))

    @property
    def width(self) -> int:
        """Number of logits: 1 for the binary head, else one per class."""
        return 1 if len(self.class_names) == 2 else len(self.class_names)

    @property
    def normal_index(self) -> int:
        return [n.upper() for n in self.class_names].index(NORMAL)

    @property
    def subtypes(self) -> bool:
        """True for a softmax head whose class probabilities are reported (normal / bacterial / viral)."""
        return self.width > 1

    def _check(self, logits: np.ndarray) -> np.ndarray:
        logits = np.asarray(logits, dtype=np.float64)
        if logits.ndim == 1:
            logits = logits[:, None]
        if logits.shape[-1] != self.width:
            raise ValueError(f"logits of shape {logits.shape} do not fit classes {list(self.class_names)} "
                             f"({self.width} output(s) expected)")
        return logits

    def pneumonia_probability(self, logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """P(pneumonia) of (..., width) logits divided by ``temperature``; shape (...)."""
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        logits = self._check(logits)
        if self.width == 1:
            return _sigmoid(logits[..., 0] / temperature)
        return 1.0 - _softmax(logits / temperature)[..., self.normal_index]

    def class_probabilities(self, logits: np.ndarray, temperature: float = 1.0) -> np.ndarray | None:
        """(..., K) softmax of a multi-class head; None for the one-logit head."""
        if not self.subtypes:
            return None
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        return _softmax(self._check(logits) / temperature)

    def score(self, view_logits: np.ndarray, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, V, width) logits of V test-time views -> P(pneumonia) (N,) and class probabilities (N, K) or
        None, each the mean over the views of the per-view probabilities. The one place a probability is
        made: prediction, evaluation and calibration all call it."""
        view_logits = self._check(view_logits)
        if view_logits.ndim == 2:
            view_logits = view_logits[:, None, :]
        probability = self.pneumonia_probability(view_logits, temperature).mean(axis=1)
        classes = self.class_probabilities(view_logits, temperature)
        return probability, None if classes is None else classes.mean(axis=1)
