"""Test-time augmentation: a few small deterministic shifts and zooms of the preprocessed image whose
probabilities are averaged. No flips: a mirrored chest (heart on the right) is not a normal chest."""

from __future__ import annotations

import numpy as np
from PIL import Image

# (name, horizontal shift, vertical shift, zoom) as fractions of the image size; small enough to keep the
# whole chest in view, like the training augmentation's translate/zoom but a fraction of its range.
VIEWS: tuple[tuple[str, float, float, float], ...] = (
    ("identity", 0.0, 0.0, 1.0),
    ("left", -0.03, 0.0, 1.0),
    ("right", 0.03, 0.0, 1.0),
    ("up", 0.0, -0.03, 1.0),
    ("zoom-in", 0.0, 0.0, 1.06),
)


def _shift(pixels: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Shift with edge replication, so no artificial black border appears."""
    pad = max(abs(dx), abs(dy))
    if pad == 0:
        return pixels
    padded = np.pad(pixels, pad, mode="edge")
    size_y, size_x = pixels.shape
    top, left = pad - dy, pad - dx
    return padded[top:top + size_y, left:left + size_x]


def _zoom(pixels: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1.0:
        return pixels
    size_y, size_x = pixels.shape
    crop_y, crop_x = round(size_y / factor), round(size_x / factor)
    top, left = (size_y - crop_y) // 2, (size_x - crop_x) // 2
    crop = Image.fromarray(pixels[top:top + crop_y, left:left + crop_x])
    return np.asarray(crop.resize((size_x, size_y), Image.BILINEAR))


def views(pixels: np.ndarray, enabled: bool = True) -> np.ndarray:
    """(V, S, S) uint8 views of one preprocessed uint8 image; the first view is always the image itself."""
    if not enabled:
        return pixels[None]
    size_y, size_x = pixels.shape
    out = [_zoom(_shift(pixels, round(dx * size_x), round(dy * size_y)), zoom) for _, dx, dy, zoom in VIEWS]
    return np.stack(out)
