"""Training images rendered as other hospitals would have acquired them, on the cached uint8 squares.

The variants (:mod:`pneumo.data.acquisition`) run after the deterministic preprocessing that the cache holds,
so a variant's exposure change is not undone by CLAHE or a percentile stretch the way an original's would be;
the field-of-view, collimation, marker, scale and noise changes are the same either way.
"""

from __future__ import annotations

import numpy as np

from pneumo.data.acquisition import site_variant, stretch_to
from pneumo.data.augment import WorkerGenerator


class SiteAugment:
    """Renders a cached uint8 square as another site would have (with probability ``share`` in :meth:`maybe`,
    always in :meth:`render`), back at the square's size."""

    def __init__(self, share: float) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"site variant share must be in [0, 1], got {share}")
        self.share = share
        self._generator = WorkerGenerator()

    def render(self, pixels: np.ndarray) -> np.ndarray:
        rng = self._generator()
        varied = site_variant(pixels.astype(np.float32) / 255.0, rng)
        if varied.shape != pixels.shape:
            varied = stretch_to(varied, *pixels.shape)
        return np.round(varied * 255.0).astype(np.uint8)

    def maybe(self, pixels: np.ndarray) -> np.ndarray:
        return self.render(pixels) if self._generator().random() < self.share else pixels
