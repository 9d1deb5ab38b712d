"""What the Predictor hands back: typed values, never tuples read by position.

- :class:`Prediction`: the answer on one input, as the CLI, the service, the DICOM node and Ray report it;
- :class:`ImageOutputs`: the model's numbers for one input (logits, probability, gate scores);
- :class:`PredictionDetail`: a Prediction with the numbers and the gate's verdict behind it, what evaluation
  and calibration read;
- :class:`Explanation` (Grad-CAM) and :class:`Embedding` (pooled features, for fitting the gate).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from pneumo.data.errors import ImageDecodeError, ImageTooLargeError, UnsupportedFormatError
from pneumo.gate.verdict import GateVerdict

# Why an input got no answer: "too_large" (a decompression-bomb guard), "unsupported" (not an image pneumo
# reads), "undecodable" (a damaged file of a known format), "internal" (a decoder bug; the batch goes on).
ErrorKind = Literal["too_large", "unsupported", "undecodable", "internal"]


def error_kind(exc: ImageDecodeError) -> ErrorKind:
    if isinstance(exc, ImageTooLargeError):
        return "too_large"
    if isinstance(exc, UnsupportedFormatError):
        return "unsupported"
    return "undecodable"


@dataclass
class Prediction:
    path: str | None
    label: str | None
    probability: float | None
    threshold: float
    subtype_probabilities: dict[str, float] | None
    unknown_reason: str | None
    error: str | None
    timing_ms: dict[str, float]
    model_version: str
    error_kind: ErrorKind | None = None  # set with ``error``: what kind of failure, for callers that map it
    # True: a chest X-ray beyond the gate's in-distribution boundary (label and probability given, to be read
    # with caution); False: within it; None: not scored (UNKNOWN, error) or the model has no feature gate.
    out_of_distribution: bool | None = None
    ood_reason: str | None = None  # the warning sentence when out_of_distribution is True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def reading(self) -> dict[str, Any]:
        """The fields a history row and an API response keep (:data:`READING_FIELDS`): not the path, which
        may name a patient, nor an error, which is never stored."""
        document = self.to_dict()
        return {key: document[key] for key in READING_FIELDS}


# What one reading stores, for uploads and DICOM arrivals alike.
READING_FIELDS = ("label", "probability", "threshold", "subtype_probabilities", "unknown_reason", "model_version",
                  "timing_ms", "out_of_distribution", "ood_reason")


@dataclass(frozen=True)
class ImageOutputs:
    """The model's numbers for one input: ``logits`` (V, width) before temperature, one row per test-time view;
    the calibrated P(pneumonia) and class probabilities (a multi-class head) averaged over the views; the gate's
    feature distance and non-X-ray score of the first view (None: the model computes none)."""

    logits: np.ndarray
    probability: float
    subtypes: dict[str, float] | None
    distance: float | None
    nonxray: float | None


@dataclass
class PredictionDetail:
    """One input as evaluation sees it: the Prediction, the model's numbers behind it (None when the model did
    not run on the input) and the gate's verdict (None for an unreadable input)."""

    prediction: Prediction
    outputs: ImageOutputs | None = None
    verdict: GateVerdict | None = None

    @property
    def logits(self) -> np.ndarray | None:
        return None if self.outputs is None else self.outputs.logits

    @property
    def distance(self) -> float | None:
        return None if self.outputs is None else self.outputs.distance


@dataclass
class Explanation:
    heatmap: np.ndarray | None  # float32 SxS in [0, 1] at the model's input size; None: skipped for UNKNOWN
    overlay_png: bytes | None
    prediction: Prediction


@dataclass
class Embedding:
    """Pooled features of one input (for fitting the gate); ``features`` is None when refused or unreadable."""

    path: str | None
    features: np.ndarray | None
    unknown_reason: str | None = None
    error: str | None = None
