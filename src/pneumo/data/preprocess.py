"""Deterministic preprocessing shared by training, evaluation and inference (NumPy and Pillow only,
so the light ONNX deployment can use it without torch).

decoded float [0, 1] array -> :func:`preprocess_array` -> uint8 square (what the cache stores)
-> :func:`normalize_uint8` -> float32 ``(x / 255 - mean) / std`` (what the network sees).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from pneumo.config import PreprocessConfig
from pneumo.data.thorax import crop_to_thorax
from pneumo.optional import require


_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def resize_square(image: np.ndarray, size: int, mode: str, interpolation: str = "bilinear") -> np.ndarray:
    """Resize a float [0, 1] array to ``size`` x ``size`` by stretching or by letterboxing (black bars)."""
    if mode not in ("stretch", "letterbox"):
        raise ValueError(f"unknown resize mode {mode!r}; choose stretch or letterbox")
    height, width = image.shape
    if height == width == size:  # Pillow's resize to the same size is a copy; skip the round trip
        return image.astype(np.float32, copy=True)
    if interpolation not in _RESAMPLE:
        raise ValueError(f"unknown interpolation {interpolation!r}; choose one of {sorted(_RESAMPLE)}")
    resample = _RESAMPLE[interpolation]
    # No astype copy: Image.fromarray copies the pixels itself, and a 40 MP image is 160 MB per copy.
    pil = Image.fromarray(np.asarray(image, dtype=np.float32), mode="F")
    if mode == "stretch":
        return np.asarray(pil.resize((size, size), resample), dtype=np.float32)
    scale = size / max(height, width)  # letterbox
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = np.asarray(pil.resize((new_w, new_h), resample), dtype=np.float32)
    canvas = np.zeros((size, size), dtype=np.float32)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = resized
    return canvas


def percentile_stretch(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Map the [low, high] percentile range to [0, 1]: removes exposure and window offsets between
    scanners, a common reason X-ray models fail on other hospitals' images."""
    lo, hi = percentiles(image, low, high)
    if hi - lo < 1e-6:
        return np.zeros_like(image)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


def percentiles(image: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """``np.percentile(image, [low, high])`` (linear interpolation), exactly, from two single-rank partial
    sorts: NumPy's multi-rank ``np.partition`` is several times slower than two single-rank ones, and this
    runs twice per image on every prediction and every cache build."""
    flat = image.ravel()
    if flat.size == 0:
        raise ValueError("empty image")
    n = flat.size
    values = []
    for q in (low, high):
        position = q / 100.0 * (n - 1)
        below = int(np.floor(position))
        lower, upper = _ranked_pair(flat, below)
        values.append(lower + (np.float64(upper) - lower) * (position - below))
    return float(values[0]), float(values[1])


def _ranked_pair(flat: np.ndarray, rank: int) -> tuple[float, float]:
    """The values of rank ``rank`` and ``rank + 1`` (clamped to the last) in ascending order."""
    ordered = np.partition(flat, rank)
    # Everything after position ``rank`` is >= ordered[rank], so the next rank is their minimum.
    following = ordered[rank + 1:]
    return ordered[rank], (following.min() if following.size else ordered[rank])


def preprocess_array(image: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Decoded float [0, 1] array -> uint8 ``image_size`` square. Deterministic; this is what is cached."""
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale array, got shape {image.shape}")
    if cfg.thorax_crop:
        image = crop_to_thorax(image)
    # Decoded images already lie in [0, 1]: clip (a full copy) only those that do not.
    inside = image.size > 0 and image.min() >= 0.0 and image.max() <= 1.0
    out = resize_square(image if inside else np.clip(image, 0.0, 1.0), cfg.image_size, cfg.resize_mode,
                        cfg.interpolation)
    if cfg.intensity == "percentile":
        out = percentile_stretch(out, cfg.percentile_low, cfg.percentile_high)
    pixels = np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)
    if cfg.clahe:
        cv2 = require("cv2", extra="opencv", needed_for="CLAHE preprocessing (the bundle's preprocess.clahe)")
        pixels = cv2.createCLAHE(clipLimit=cfg.clahe_clip, tileGridSize=(cfg.clahe_tiles, cfg.clahe_tiles)).apply(pixels)
    return pixels


def normalize_uint8(pixels: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """uint8 image(s) -> float32 ``(x / 255 - mean) / std``; NumPy twin of the torch version."""
    return ((pixels.astype(np.float32) / 255.0 - cfg.mean) / cfg.std).astype(np.float32)
