"""Heatmap over the X-ray: the radiograph in gray, the heatmap in matplotlib's ``turbo`` (the perceptually
ordered successor of the familiar rainbow "jet": blue = low, red = high) blended in proportion to its
strength, so cold regions show the untouched image, plus a labelled colour scale under the image. The colour
map's 256 colours ship as ``turbo.csv`` beside this module (copied from matplotlib, which the prediction install
does not need); a heat value picks its colour as matplotlib's colour maps do."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pneumo.config import PreprocessConfig

COLORMAP_FILE = Path(__file__).with_name("turbo.csv")
# Heat below this stays invisible; above it the colour's opacity rises to MAX_ALPHA.
FLOOR, MAX_ALPHA = 0.2, 0.6
MAX_SIDE = 1024  # the overlay is for reading on screen; larger originals are scaled down
LEGEND_HEIGHT = 18


def heatmap_to_original(heatmap: np.ndarray, height: int, width: int, cfg: PreprocessConfig) -> np.ndarray:
    """Map a model-input-sized heatmap back onto the original image geometry (undo stretch or letterbox)."""
    size = heatmap.shape[0]
    if cfg.resize_mode == "letterbox":
        scale = size / max(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        top, left = (size - new_h) // 2, (size - new_w) // 2
        heatmap = heatmap[top:top + new_h, left:left + new_w]
    resized = Image.fromarray(heatmap.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


@lru_cache(maxsize=1)
def _colour_table() -> np.ndarray:
    table = np.loadtxt(COLORMAP_FILE, delimiter=",", comments="#", dtype=np.float64)
    if table.shape != (256, 3):
        raise ValueError(f"{COLORMAP_FILE}: expected 256 rows of R,G,B, got shape {table.shape}")
    return table


def colour(values: np.ndarray) -> np.ndarray:
    """float32 RGB in [0, 1] for heat ``values`` in [0, 1]: entry floor(256 v) of the table, the last one for
    v = 1, as matplotlib's ``colormaps["turbo"](values)`` picks it."""
    table = _colour_table()
    index = np.clip(np.asarray(values, dtype=np.float32) * len(table), 0, len(table) - 1).astype(np.intp)
    return table[index].astype(np.float32)


def overlay_rgb(image: np.ndarray, heatmap: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """uint8 RGB: ``image`` (float [0, 1] HxW, any size) with ``heatmap`` (model input size) blended on top."""
    height, width = image.shape
    scale = min(1.0, MAX_SIDE / max(height, width))
    out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
    gray = np.asarray(Image.fromarray(image.astype(np.float32), mode="F").resize((out_w, out_h), Image.BILINEAR))
    heat = heatmap_to_original(heatmap, out_h, out_w, cfg)
    alpha = (MAX_ALPHA * np.clip((heat - FLOOR) / (1.0 - FLOOR), 0.0, 1.0))[..., None]
    base = np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=2)
    blended = (1.0 - alpha) * base + alpha * colour(heat)
    return np.round(np.clip(blended, 0.0, 1.0) * 255.0).astype(np.uint8)


def with_legend(rgb: np.ndarray) -> np.ndarray:
    """Append a colour scale strip labelled 'low' and 'high' under the image."""
    width = rgb.shape[1]
    ramp = colour(np.linspace(0.0, 1.0, width, dtype=np.float32))
    strip = np.repeat(np.round(ramp * 255).astype(np.uint8)[None], LEGEND_HEIGHT, axis=0)
    legend = Image.fromarray(strip)
    if width >= 80:
        draw = ImageDraw.Draw(legend)
        draw.text((3, 3), "low", fill=(255, 255, 255))
        draw.text((width - 30, 3), "high", fill=(255, 255, 255))
    return np.concatenate([rgb, np.asarray(legend)], axis=0)


def overlay_png(image: np.ndarray, heatmap: np.ndarray, cfg: PreprocessConfig, *, legend: bool = True) -> bytes:
    """PNG bytes of :func:`overlay_rgb` (with the colour scale unless ``legend=False``)."""
    rgb = overlay_rgb(image, heatmap, cfg)
    if legend:
        rgb = with_legend(rgb)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
