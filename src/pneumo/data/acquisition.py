"""Acquisition variants of training X-rays: the gate is fitted on them and training can augment with them.

The training folder's X-rays come from one hospital and look alike; X-rays from elsewhere differ in
exposure, detector noise and sharpness, collimation and black borders (letterboxing, PACS exports). Fitted on
the originals alone, the gate called most X-rays with a 5% black border UNKNOWN although the classifier
scored them as well as the originals (``bench/bench_robustness.py``). Fitting it on originals plus such
variants widens what counts as a chest X-ray along those directions only. Inverted images are never
produced: an unread MONOCHROME1 image must stay UNKNOWN.

:func:`site_variant` goes further, to what differs between hospitals rather than between exposures of one
detector: field of view (zoomed in, or zoomed out so that shoulders and upper abdomen would show), scale and
resolution, aspect ratio, adult-like thorax proportions (wider than tall), collimation (black or white
borders, rectangular and rounded masks), exposure and gamma, burned-in markers and text ("L", "R",
"AP PORTABLE"), and detector noise. The gate's far boundary is fitted on such copies, so that a chest X-ray
from another site gets a result with an out-of-distribution warning instead of UNKNOWN. Every site variant
is still the same chest, upright and never inverted.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont


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
    h, w = out.shape  # the borders below are sized on the image before any crop
    if rng.random() < 0.4:  # tighter collimation
        out = zoom_in(out, rng.uniform(0.8, 1.0))
    if rng.random() < 0.5:  # black borders
        out = add_borders(out, h, w, rng)
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


def add_borders(image: np.ndarray, h: int, w: int, rng: np.random.Generator, fill: float = 0.0) -> np.ndarray:
    """``image`` with a band of ``fill`` added on each side on its own (7 in 10 sides get one), up to 15% of the
    film's height ``h`` or width ``w``."""
    top, bottom, left, right = (int(n * rng.uniform(0.0, 0.15)) if rng.random() < 0.7 else 0 for n in (h, h, w, w))
    return np.pad(image, ((top, bottom), (left, right)), constant_values=fill)


def black_frame(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` inside a plain black frame on all four sides, as a PACS export or a screenshot of the film alone
    shows it: each side 2-15% of the film's height or width, the four within 30% of each other. Not a step of
    :func:`acquisition_variant` or :func:`site_variant` (whose bands are partial, and which training augments
    with): the gate fit adds framed acquisition variants to the non-X-ray score's X-rays, because its viewer
    screenshots otherwise teach it that a black frame means a screenshot (``bench/bench_robustness.py``'s 5%
    border)."""
    h, w = image.shape
    share = rng.uniform(0.02, 0.15)
    top, bottom = (int(h * share * rng.uniform(0.7, 1.3)) for _ in range(2))
    left, right = (int(w * share * rng.uniform(0.7, 1.3)) for _ in range(2))
    return np.pad(image, ((top, bottom), (left, right)), constant_values=0.0)


# Burned-in text seen on radiographs from other sites: side markers, projection and position, dates.
MARKERS = ("L", "R", "AP", "PA", "AP PORTABLE", "PORTABLE", "UPRIGHT", "SUPINE", "ERECT", "SEMI-ERECT", "LT", "RT")


@lru_cache(maxsize=None)
def default_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font at ``size`` pixels (for burned-in markers and rendered documents)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def zoom_out(image: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """A wider field of view: ``share`` of each side added around the image. What lies beyond the film is
    unknown, so the added band mirrors the edge (soft tissue, shoulders, abdomen continue outwards), blurred
    and darkened away from the chest as body parts thin out."""
    h, w = image.shape
    top, bottom = (int(h * share * rng.uniform(0.5, 1.5)) for _ in range(2))
    left, right = (int(w * share * rng.uniform(0.5, 1.5)) for _ in range(2))
    top, bottom, left, right = (min(n, m - 1) for n, m in ((top, h), (bottom, h), (left, w), (right, w)))
    wide = np.pad(image, ((top, bottom), (left, right)), mode="reflect")
    blurred = from_pil(to_pil(wide).filter(ImageFilter.GaussianBlur(max(1.0, 0.01 * max(h, w)))))
    inside = np.zeros(wide.shape, dtype=bool)
    inside[top:top + h, left:left + w] = True
    yy, xx = np.mgrid[0:wide.shape[0], 0:wide.shape[1]].astype(np.float32)
    dy = np.maximum(np.maximum(top - yy, yy - (top + h - 1)), 0) / max(1, h)
    dx = np.maximum(np.maximum(left - xx, xx - (left + w - 1)), 0) / max(1, w)
    fade = np.exp(-np.hypot(dy, dx) * rng.uniform(2.0, 8.0)).astype(np.float32)
    return np.where(inside, wide, blurred * fade).astype(np.float32)


def zoom_in(image: np.ndarray, keep: float) -> np.ndarray:
    """A tighter field of view: the central ``keep`` of each side."""
    h, w = image.shape
    dh, dw = int(h * (1 - keep) / 2), int(w * (1 - keep) / 2)
    return image[dh:h - dh, dw:w - dw]


def resize(image: np.ndarray, width_factor: float, height_factor: float) -> np.ndarray:
    """Scale (both factors alike) or an aspect-ratio change (different factors)."""
    pil = to_pil(image)
    size = (max(32, round(pil.width * width_factor)), max(32, round(pil.height * height_factor)))
    return from_pil(pil.resize(size, Image.BILINEAR))


def collimate(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Collimation as other sites show it: black or white borders, or a rectangular or rounded mask."""
    h, w = image.shape
    fill = 0.0 if rng.random() < 0.7 else 1.0
    kind = rng.random()
    if kind < 0.4:  # borders added around the film
        return add_borders(image, h, w, rng, fill)
    mask = Image.new("L", (w, h), 0)
    box = (int(w * rng.uniform(0.0, 0.12)), int(h * rng.uniform(0.0, 0.12)),
           int(w * (1 - rng.uniform(0.0, 0.12))), int(h * (1 - rng.uniform(0.0, 0.12))))
    draw = ImageDraw.Draw(mask)
    if kind < 0.7:
        draw.rectangle(box, fill=255)
    else:  # rounded: the corners of a circular or rounded collimator
        draw.rounded_rectangle(box, radius=int(min(w, h) * rng.uniform(0.1, 0.5)), fill=255)
    inside = np.asarray(mask) > 0
    return np.where(inside, image, np.float32(fill)).astype(np.float32)


def burn_in_text(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One to three markers ("L", "R", "AP PORTABLE", a date) burned into the corners, white or black."""
    pil = to_pil(image)
    draw = ImageDraw.Draw(pil)
    h, w = image.shape
    for _ in range(int(rng.integers(1, 4))):
        text = (str(rng.choice(MARKERS)) if rng.random() < 0.8
                else f"{int(rng.integers(1, 29)):02d}/{int(rng.integers(1, 13)):02d}/{int(rng.integers(2000, 2027))}")
        size = max(8, int(min(h, w) * rng.uniform(0.03, 0.09)))
        marker = default_font(size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=marker)
        tw, th = right - left, bottom - top
        x = int(rng.uniform(0.02, 0.2) * w) if rng.random() < 0.5 else max(0, int(w * rng.uniform(0.8, 0.98)) - tw)
        y = int(rng.uniform(0.02, 0.2) * h) if rng.random() < 0.5 else max(0, int(h * rng.uniform(0.8, 0.98)) - th)
        draw.text((x, y), text, fill=255 if rng.random() < 0.85 else 0, font=marker)
    return from_pil(pil)


def exposure(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma and a window (black and white points) as another site's look-up table would set them: mostly a
    harder or softer window, sometimes a flat one (an export with little processing, down to half the contrast).
    Without flat windows the non-X-ray score refused 7% of X-rays with their contrast halved."""
    out = image ** np.float32(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    low, high = rng.uniform(-0.15, 0.15), rng.uniform(0.8, 1.15)
    if rng.random() < 0.3:
        low, high = rng.uniform(-0.6, -0.05), rng.uniform(1.05, 1.6)
    return np.clip((out - low) / (high - low), 0.0, 1.0).astype(np.float32)


def site_variant(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of a decoded float [0, 1] X-ray (HxW) as another hospital might have acquired and exported it:
    a random mix of the site differences listed in this module's docstring, at least two of them."""
    out = np.clip(image, 0.0, 1.0).astype(np.float32)
    #                  exposure, fov, adult, aspect, collimation, markers, scale, noise
    chances = np.array((0.7, 0.5, 0.3, 0.3, 0.4, 0.5, 0.5, 0.5))
    steps = rng.random(len(chances)) < chances
    if steps.sum() < 2:
        steps[rng.choice(len(chances), size=2, replace=False)] = True
    relit, fov, adult, aspect, collimation, markers, scale, noisy = (bool(s) for s in steps)
    if relit:
        out = exposure(out, rng)
    if fov:
        zoom_wider = rng.random() < 0.6
        out = zoom_out(out, rng.uniform(0.05, 0.25), rng) if zoom_wider else zoom_in(out, rng.uniform(0.7, 0.95))
    if adult:  # adult thorax: wider than a child's relative to its height, seen with more around it
        out = resize(zoom_out(out, rng.uniform(0.05, 0.15), rng), rng.uniform(1.1, 1.35), 1.0)
    elif aspect:
        stretch = float(np.exp(rng.uniform(np.log(0.75), np.log(1.35))))
        out = resize(out, stretch, 1.0) if rng.random() < 0.5 else resize(out, 1.0, 1.0 / stretch)
    if rng.random() < 0.3:
        out = from_pil(to_pil(out).rotate(rng.uniform(-12, 12), resample=Image.BILINEAR))
    if collimation:
        out = collimate(out, rng)
    if markers:
        out = burn_in_text(out, rng)
    if scale:  # a smaller export (or a lower-resolution detector), scaled back up by a viewer or not
        factor = rng.uniform(0.2, 0.7)
        small = resize(out, factor, factor)
        if rng.random() < 0.5:
            small = resize(small, out.shape[1] / small.shape[1], out.shape[0] / small.shape[0])
        out = small
    if noisy:
        if rng.random() < 0.4:
            out = from_pil(to_pil(out).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0))))
        out = out + rng.normal(0.0, rng.uniform(0.005, 0.06), out.shape).astype(np.float32)
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


def stretch_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` resized to ``height`` x ``width`` (how the model's stretch preprocessing sees a film)."""
    return from_pil(to_pil(image).resize((width, height), Image.BILINEAR))


def taller_field(image: np.ndarray, keep: float) -> np.ndarray:
    """Tighter collimation above and below: the central ``keep`` of the rows, stretched back to the original
    height. On a film stretched to a square this makes the lungs longer and the film wider than tall, as
    tightly collimated X-rays look to the model."""
    h, w = image.shape
    cut = int(h * (1 - keep) / 2)
    return stretch_to(image[cut:h - cut], h, w)


def shorter_field(image: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """A wider field above and below (neck and abdomen, faded as :func:`zoom_out` does), squeezed back to
    the original height: the reverse of :func:`taller_field`."""
    h, w = image.shape
    grown = zoom_out(image, share, rng)
    extra_w = (grown.shape[1] - w) // 2
    return stretch_to(grown[:, extra_w:extra_w + w], h, w)


def window(image: np.ndarray, gamma: float, low: float, high: float) -> np.ndarray:
    """Gamma, then black point ``low`` and white point ``high`` (a look-up table)."""
    out = np.clip(image, 0.0, 1.0) ** np.float32(gamma)
    return np.clip((out - low) / (high - low), 0.0, 1.0).astype(np.float32)


def confound_swap(image: np.ndarray, pneumonia: bool, rng: np.random.Generator) -> np.ndarray:
    """The X-ray with the acquisition style that goes with the *other* label in Kermany's training folder, for
    a validation block that a shortcut fails (``pneumo data audit`` measures these attributes).

    In the originals pneumonia films are wider than tall (median width/height 1.5 against 1.2 for normal),
    so once stretched to a square their lungs look longer; they hold less black background and less
    contrast (5th percentile and pixel spread each separate the labels with AUC 0.73), and more often a
    bright corner marker. A normal X-ray is therefore given a taller-looking field, a flatter window and
    sometimes a marker; a pneumonia X-ray a wider field with dark surroundings and a harder window. The
    lungs themselves are left as they are."""
    h, w = image.shape
    out = np.clip(image, 0.0, 1.0).astype(np.float32)
    if not pneumonia:
        out = taller_field(out, rng.uniform(0.72, 0.85))
        out = window(out, rng.uniform(0.85, 1.1), rng.uniform(-0.25, -0.1), rng.uniform(1.0, 1.15))
        if rng.random() < 0.5:
            out = burn_in_text(out, rng)
    else:
        out = shorter_field(out, rng.uniform(0.1, 0.2), rng)
        out = window(out, rng.uniform(0.9, 1.2), rng.uniform(0.02, 0.1), rng.uniform(0.85, 0.95))
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)
