"""Cheap checks that need no model: each returns a sentence a user can act on, or None."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pneumo.data.preprocess import percentiles


@dataclass(frozen=True)
class CheckConfig:
    """Limits for the cheap checks. A radiograph is grayscale, has content, is not tiny, and is roughly as
    wide as tall (detectors are 35x43 cm or square; Kermany holds tightly cropped chests up to 3.2:1)."""

    max_colour_fraction: float = 0.05  # a small coloured annotation or arrow is tolerated
    min_spread: float = 0.04  # 1st-99th percentile intensity range below this is blank
    min_side: int = 32
    max_aspect: float = 4.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_colour_fraction <= 1.0:
            raise ValueError(f"max_colour_fraction must be in [0, 1], got {self.max_colour_fraction}")
        if self.min_side < 1:
            raise ValueError(f"min_side must be at least 1, got {self.min_side}")
        if self.max_aspect < 1.0:
            raise ValueError(f"max_aspect must be at least 1, got {self.max_aspect}")


def intensity_spread(pixels: np.ndarray) -> float:
    """1st-99th percentile range of a float [0, 1] image, on a subsample (a few thousand pixels suffice)."""
    step = max(1, int(np.sqrt(pixels.size / 4096)))
    lo, hi = percentiles(pixels[::step, ::step], 1.0, 99.0)
    return float(hi - lo)


def cheap_reason(pixels: np.ndarray, colour_fraction: float, cfg: CheckConfig = CheckConfig()) -> str | None:
    """Why ``pixels`` (decoded float HxW) cannot be a chest radiograph, or None when the checks pass."""
    height, width = pixels.shape
    if min(height, width) < cfg.min_side:
        return f"image too small ({width}x{height} pixels; at least {cfg.min_side} on each side expected)"
    aspect = max(height, width) / min(height, width)
    if aspect > cfg.max_aspect:
        return (f"extreme aspect ratio {aspect:.1f}:1 ({width}x{height}); a chest radiograph is at most "
                f"{cfg.max_aspect:g}:1")
    if colour_fraction > cfg.max_colour_fraction:
        return (f"colour image ({100 * colour_fraction:.0f}% of pixels strongly coloured); radiographs are "
                "grayscale")
    spread = intensity_spread(pixels)
    if spread < cfg.min_spread:
        return f"blank or nearly constant image (intensity range {spread:.3f} of full scale)"
    return None
