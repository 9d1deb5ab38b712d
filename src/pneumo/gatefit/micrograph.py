"""Procedural microscopy images: stained tissue (H&E, immunohistochemistry), fluorescence, and blood smears.

On a bench draw that held scikit-image's immunohistochemistry photograph out of the fit, a grey crop of it was
read as a chest X-ray, PNEUMONIA without a warning (issue 23): a fine, even, mid-grey texture lies near X-ray
features, and the sample photographs give the non-X-ray score only a few such images. A pathology slide is
also something a hospital user may well upload. Each image comes from its own generator; ``index`` picks the
kind, and every other group of kinds is grey, so that the colour check is not what refuses them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

KINDS = ("he", "ihc", "fluorescence", "smear")
# Background, nuclei and cytoplasm colours of each brightfield stain; "positive" is immunohistochemistry's
# brown (DAB) on hematoxylin-blue nuclei.
_STAINS = {
    "he": {"background": (242, 222, 232), "nucleus": (72, 42, 120), "cytoplasm": (226, 140, 182)},
    "ihc": {"background": (236, 232, 226), "nucleus": (70, 86, 150), "cytoplasm": (200, 190, 200),
            "positive": (140, 84, 34)},
}


def _jitter(rng: np.random.Generator, colour: tuple[int, ...], spread: float) -> tuple[int, ...]:
    return tuple(int(np.clip(c + rng.normal(0, spread), 0, 255)) for c in colour)


def _blobs(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: tuple[int, int], count: int,
           radius: tuple[float, float], colour: tuple[int, ...], spread: float = 12.0,
           outline: int = 0) -> None:
    """``count`` ellipses of radii drawn from ``radius``, scattered over the image; hollow with ``outline``."""
    width, height = size
    for _ in range(count):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(*radius), rng.uniform(*radius)
        box = (x - rx, y - ry, x + rx, y + ry)
        if outline:
            draw.ellipse(box, outline=_jitter(rng, colour, spread), width=outline)
        else:
            draw.ellipse(box, fill=_jitter(rng, colour, spread))


def _smooth_field(rng: np.random.Generator, size: tuple[int, int], cells: int = 4) -> np.ndarray:
    """A low-frequency field in [0, 1] of shape (H, W): coarse noise, enlarged smoothly."""
    coarse = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8))
    return np.asarray(coarse.resize(size, Image.BICUBIC), dtype=np.float32) / 255.0


def _stroma(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: tuple[int, int], count: int,
            colour: tuple[int, ...], scale: float) -> None:
    """Fibres: short strokes that follow a smoothly turning direction, as connective tissue does."""
    direction = _smooth_field(rng, size) * 2 * np.pi
    width, height = size
    for _ in range(count):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        points = [(x, y)]
        for _ in range(int(rng.integers(4, 12))):
            angle = direction[int(min(y, height - 1)), int(min(x, width - 1))] + rng.normal(0, 0.15)
            x, y = x + 6 * scale * np.cos(angle), y + 6 * scale * np.sin(angle)
            points.append((x, y))
        draw.line(points, fill=_jitter(rng, colour, 14), width=max(1, round(scale * rng.uniform(0.6, 1.6))))


def _glands(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: tuple[int, int], count: int,
            colours: dict[str, tuple[int, int, int]], scale: float) -> None:
    """Glands: a pale lumen ringed by cytoplasm and a palisade of nuclei."""
    width, height = size
    for _ in range(count):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(25, 60) * scale, rng.uniform(20, 50) * scale
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=_jitter(rng, colours["cytoplasm"], 14))
        inner = rng.uniform(0.3, 0.6)
        draw.ellipse((cx - rx * inner, cy - ry * inner, cx + rx * inner, cy + ry * inner),
                     fill=_jitter(rng, colours["background"], 6))
        for angle in np.linspace(0, 2 * np.pi, int(rng.integers(20, 48)), endpoint=False):
            r = rng.uniform(inner + 0.1, 0.95)
            x, y = cx + rx * r * np.cos(angle), cy + ry * r * np.sin(angle)
            n = rng.uniform(2, 4) * scale
            draw.ellipse((x - n, y - n * 1.6, x + n, y + n * 1.6), fill=_jitter(rng, colours["nucleus"], 14))


def _lobes(image: Image.Image, rng: np.random.Generator, colours: dict[str, tuple[int, int, int]],
           scale: float) -> Image.Image:
    """Epithelium at low magnification: a few large lobes over the stroma, each either packed cells with dark
    membranes or columnar cells radiating from a pale lumen (scikit-image's ``immunohistochemistry`` photograph
    shows both). Lobes give the image the large light and dark regions that a field of scattered cells lacks."""
    size = image.size
    width, height = size
    mask = Image.new("L", size, 0)
    mask_draw = ImageDraw.Draw(mask)
    membrane = colours.get("positive", colours["nucleus"])
    epithelium = Image.new("RGB", size, _jitter(rng, colours["cytoplasm"], 10))
    draw = ImageDraw.Draw(epithelium)
    cell = rng.uniform(7, 14) * scale
    for _ in range(int(rng.integers(2, 6))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.1, 0.3) * width, rng.uniform(0.1, 0.3) * height
        mask_draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
        if rng.random() < 0.5:  # columnar: cell borders run from the lumen to the lobe's edge, nuclei at the base
            for angle in np.linspace(0, 2 * np.pi, int(2 * np.pi * max(rx, ry) / (cell * 0.4)), endpoint=False):
                angle += rng.normal(0, 0.02)
                inner, outer = rng.uniform(0.05, 0.25), rng.uniform(0.9, 1.05)
                draw.line([(cx + rx * inner * np.cos(angle), cy + ry * inner * np.sin(angle)),
                           (cx + rx * outer * np.cos(angle), cy + ry * outer * np.sin(angle))],
                          fill=_jitter(rng, membrane, 20), width=max(1, round(cell / 5)))
                r = rng.uniform(0.7, 0.9)
                x, y, n = cx + rx * r * np.cos(angle), cy + ry * r * np.sin(angle), cell * 0.3
                draw.ellipse((x - n, y - n, x + n, y + n), fill=_jitter(rng, colours["nucleus"], 16))
            lumen = rng.uniform(0.03, 0.12)
            draw.ellipse((cx - rx * lumen, cy - ry * lumen * 4, cx + rx * lumen, cy + ry * lumen * 4),
                         fill=_jitter(rng, colours["background"], 6))
        else:  # packed cells, each with its membrane and a nucleus
            box = (int(cx - rx), int(cy - ry), int(cx + rx), int(cy + ry))
            cells = int(4 * rx * ry / cell**2)
            for _ in range(cells):
                x, y = rng.uniform(box[0], box[2]), rng.uniform(box[1], box[3])
                a, b = cell * rng.uniform(0.8, 1.2), cell * rng.uniform(1.0, 1.5)
                draw.ellipse((x - a, y - b, x + a, y + b), outline=_jitter(rng, membrane, 20),
                             width=max(1, round(cell / 4)))
                n = cell * 0.35
                draw.ellipse((x - n, y - n, x + n, y + n), fill=_jitter(rng, colours["nucleus"], 16))
    mask = mask.filter(ImageFilter.GaussianBlur(4)).point(lambda v: 255 if v > 128 else 0)
    return Image.composite(epithelium, image, mask)


def _tissue(rng: np.random.Generator, size: tuple[int, int], stain: str) -> Image.Image:
    colours = _STAINS[stain]
    image = Image.new("RGB", size, _jitter(rng, colours["background"], 6))
    draw = ImageDraw.Draw(image)
    area = size[0] * size[1]
    scale = rng.uniform(0.6, 1.6)  # the objective's magnification
    _stroma(draw, rng, size, int(area / (120 * scale**2)), colours["cytoplasm"], scale)
    _blobs(draw, rng, size, int(area / (2500 * scale**2)), (8 * scale, 22 * scale), colours["cytoplasm"], 18)
    _glands(draw, rng, size, int(rng.integers(0, 2 + area // int(40000 * scale**2))), colours, scale)
    if "positive" in colours:
        _blobs(draw, rng, size, int(area / (2500 * scale**2)), (5 * scale, 14 * scale), colours["positive"], 20)
    _blobs(draw, rng, size, int(area / (rng.uniform(260, 1500) * scale**2)), (2.5 * scale, 6 * scale),
           colours["nucleus"], 16)
    if rng.random() < 0.5:
        image = _lobes(image, rng, colours, scale)
    # Uneven staining and section thickness: a slow field darkens some regions.
    shade = 1.0 - rng.uniform(0.1, 0.35) * _smooth_field(rng, size)[..., None]
    array = np.asarray(image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.4, 1.4)))), np.float32) * shade
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def _fluorescence(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    image = Image.new("RGB", size, (int(rng.integers(0, 12)),) * 3)
    draw = ImageDraw.Draw(image)
    area = size[0] * size[1]
    scale = rng.uniform(0.6, 1.8)
    channel = [(40, 60, 230), (40, 220, 70), (230, 50, 50)]
    _blobs(draw, rng, size, int(area / (700 * scale**2)), (4 * scale, 10 * scale), channel[0], 30)
    for colour in channel[1:]:
        if rng.random() < 0.6:
            _blobs(draw, rng, size, int(area / (3000 * scale**2)), (3 * scale, 7 * scale), colour, 30)
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.0, 3.0))))


def _smear(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    image = Image.new("RGB", size, _jitter(rng, (238, 232, 228), 6))
    draw = ImageDraw.Draw(image)
    area = size[0] * size[1]
    scale = rng.uniform(0.7, 1.5)
    radius = (6 * scale, 9 * scale)
    _blobs(draw, rng, size, int(area / (320 * scale**2)), radius, (214, 150, 160), 14)  # red cells ...
    _blobs(draw, rng, size, int(area / (320 * scale**2)), radius, (190, 110, 130), 14,
           outline=max(1, round(2 * scale)))  # ... with their darker rims
    _blobs(draw, rng, size, int(area / (12000 * scale**2)), (8 * scale, 12 * scale), (96, 60, 150), 16)
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.2))))


def micrograph(rng: np.random.Generator, index: int) -> np.ndarray:
    """One microscopy image of kind ``KINDS[index % 4]``, grey for every other group of four: uint8, (H, W, 3)
    in colour or (H, W) in grey, with camera noise."""
    kind = KINDS[index % len(KINDS)]
    size = (int(rng.integers(256, 640)), int(rng.integers(256, 640)))
    if kind in _STAINS:
        image = _tissue(rng, size, kind)
    elif kind == "fluorescence":
        image = _fluorescence(rng, size)
    else:
        image = _smear(rng, size)
    array = np.asarray(image, dtype=np.float32) + rng.normal(0, rng.uniform(1, 6), (size[1], size[0], 1))
    array = np.clip(array, 0, 255).astype(np.uint8)
    if (index // len(KINDS)) % 2:
        return np.asarray(Image.fromarray(array).convert("L"))
    return array
