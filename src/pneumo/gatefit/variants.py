"""Acquisition variants of training X-rays for fitting the chest-X-ray gate.

The training folder's X-rays come from one hospital and look alike; X-rays from elsewhere differ in
exposure, detector noise and sharpness, collimation and black borders (letterboxing, PACS exports). Fitted on
the originals alone, the gate called most X-rays with a 5% black border UNKNOWN although the classifier
scored them as well as the originals (``bench/bench_robustness.py``). Fitting it on originals plus such
variants widens what counts as a chest X-ray along those directions only. Inverted images are never
produced: an unread MONOCHROME1 image must stay UNKNOWN.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def to_pil(image: np.ndarray) -> Image.Image:
    """Float [0, 1] HxW -> 8-bit grayscale image (for Pillow's filters and geometry)."""
    return Image.fromarray(np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8))


def from_pil(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) / 255.0


def acquisition_variant(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A randomly re-acquired copy of a decoded float [0, 1] X-ray (HxW float32)."""
    out = np.clip(image, 0.0, 1.0).astype(np.float32) ** np.float32(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
    if rng.random() < 0.3:
        out = from_pil(to_pil(out).rotate(rng.uniform(-10, 10), resample=Image.BILINEAR))
    if rng.random() < 0.3:
        out = from_pil(to_pil(out).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0))))
    if rng.random() < 0.5:
        out = out + rng.normal(0.0, rng.uniform(0.005, 0.05), out.shape).astype(np.float32)
    h, w = out.shape
    if rng.random() < 0.4:  # tighter collimation
        keep = rng.uniform(0.8, 1.0)
        dh, dw = int(h * (1 - keep) / 2), int(w * (1 - keep) / 2)
        out = out[dh:h - dh, dw:w - dw]
    if rng.random() < 0.5:  # black borders, each side on its own
        top, bottom, left, right = (int(n * rng.uniform(0.0, 0.15)) if rng.random() < 0.7 else 0
                                    for n in (h, h, w, w))
        out = np.pad(out, ((top, bottom), (left, right)))
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)
