"""One input made ready for the model without the model: decode (:mod:`pneumo.inference.inputs`), the gate's
cheap checks, the bundle's preprocessing. Errors become an entry, never an exception, so a batch goes on.

The batch engines prepare inputs in one set of workers and score them in another
(:meth:`pneumo.inference.predictor.Predictor.score`), so this needs only the bundle's preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import numpy as np

from pneumo.config import PreprocessConfig
from pneumo.data.errors import ImageDecodeError
from pneumo.data.preprocess import preprocess_array
from pneumo.gate.checks import CheckConfig, cheap_reason
from pneumo.inference.inputs import InputImage, describe, load_input
from pneumo.inference.results import ErrorKind, error_kind


def elapsed_ms(start: float) -> float:
    """Milliseconds since ``start`` (a ``perf_counter`` reading), as the timings report them."""
    return round((perf_counter() - start) * 1000.0, 3)


@dataclass
class PreparedInput:
    """One input decoded, checked and preprocessed, ready for :meth:`Predictor.score`."""

    name: str | None
    pixels: np.ndarray | None = None  # uint8 SxS, set when the cheap checks pass (or with ``score_refused``)
    reason: str | None = None  # the cheap checks' refusal
    error: str | None = None
    error_kind: ErrorKind | None = None
    timing: dict[str, float] = field(default_factory=dict)


def prepare_input(source: Any, preprocess: PreprocessConfig, checks: CheckConfig = CheckConfig(),
                  score_refused: bool = False) -> PreparedInput:
    """Decode, check and preprocess one input with a bundle's ``preprocess``. What :meth:`Predictor.predict` does
    before the model, without needing the model."""
    name = describe(source)
    started = perf_counter()
    try:
        image = load_input(source)
    except ImageDecodeError as exc:
        return PreparedInput(name, error=str(exc), error_kind=error_kind(exc), timing={"decode": elapsed_ms(started)})
    except Exception as exc:  # a decoder bug must not take down a whole batch
        return PreparedInput(name, error=f"{name or '<input>'}: unexpected error while reading "
                                         f"({type(exc).__name__}: {exc})", error_kind="internal",
                             timing={"decode": elapsed_ms(started)})
    return check_input(name, image, {"decode": elapsed_ms(started)}, preprocess, checks, score_refused)


def check_input(name: str | None, image: InputImage, timing: dict[str, float], preprocess: PreprocessConfig,
                checks: CheckConfig = CheckConfig(), score_refused: bool = False) -> PreparedInput:
    """Cheap gate checks, then the bundle's preprocessing for inputs that pass them (or for all, with
    ``score_refused``)."""
    started = perf_counter()
    prepared = PreparedInput(name, timing=timing)
    prepared.reason = cheap_reason(image.pixels, image.colour_fraction, checks)
    if prepared.reason is None or score_refused:
        prepared.pixels = preprocess_array(image.pixels, preprocess)
    timing["preprocess"] = elapsed_ms(started)
    return prepared
