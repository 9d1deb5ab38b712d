"""Pictures that hold a chest X-ray or a CT slice without being one: figures, slides and viewer screenshots.

A figure of a paper or a report shows an X-ray or a CT panel beside plots and text; a slide puts one beside a
title and bullet points; a viewer screenshot shows dark user-interface chrome, a series list, and a CT or an
X-ray in a viewport with overlay text. The network sees chest anatomy in all of them, and a figure with CT
panels got a reading (issue 23). The X-rays inset are real training X-rays (passed in, decoded float [0, 1]);
the CT slices come from :mod:`pneumo.gatefit.phantom`. Each maker draws from the generator it is given only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from pneumo.data.acquisition import default_font, to_pil
from pneumo.gatefit import phantom

_WORDS = ("patient chest axial coronal scan lung window level series image study figure results method "
          "cohort model sensitivity specificity baseline follow-up contrast findings opacity consolidation "
          "nodule effusion normal case report review protocol slice reconstruction dose").split()
_OVERLAY = ("W 1500 L -600", "W 400 L 40", "120 kV", "Se 3", "Im 45/120", "Zoom 1.4", "512 x 512", "HFS",
            "Thk 1.25 mm", "DOE^JANE", "ID 000123", "CHEST", "Ax", "Cor", "R", "L", "A", "P")


def _text(rng: np.random.Generator, words: int) -> str:
    return " ".join(rng.choice(_WORDS, size=words))


def ct_picture(rng: np.random.Generator) -> Image.Image:
    """A phantom CT slice, axial or coronal, in a lung or soft-tissue window."""
    make = phantom.axial_slice if rng.random() < 0.6 else phantom.coronal_slice
    window = phantom.WINDOWS[int(rng.integers(0, len(phantom.WINDOWS)))]
    return Image.fromarray(phantom.render(make(rng, int(rng.integers(192, 385))), window))


def xray_picture(rng: np.random.Generator, xrays: Sequence[np.ndarray]) -> Image.Image:
    return to_pil(xrays[int(rng.integers(0, len(xrays)))])


def _medical_picture(rng: np.random.Generator, xrays: Sequence[np.ndarray], xray_share: float = 0.5) -> Image.Image:
    return xray_picture(rng, xrays) if rng.random() < xray_share else ct_picture(rng)


def paste_fit(canvas: Image.Image, picture: Image.Image, box: tuple[int, int, int, int]) -> None:
    """``picture`` scaled to fit ``box`` (left, top, right, bottom), aspect kept, centred."""
    left, top, right, bottom = box
    scale = min((right - left) / picture.width, (bottom - top) / picture.height)
    size = (max(1, int(picture.width * scale)), max(1, int(picture.height * scale)))
    fitted = picture.resize(size, Image.BILINEAR).convert(canvas.mode)
    canvas.paste(fitted, (left + (right - left - size[0]) // 2, top + (bottom - top - size[1]) // 2))


def _plot(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], rng: np.random.Generator, ink, colour: bool
          ) -> None:
    """Axes with ticks and one to three curves (an ROC curve or a random series), labelled."""
    left, top, right, bottom = box
    x0, y0, x1, y1 = left + 30, top + 10, right - 10, bottom - 25
    draw.line((x0, y1, x1, y1), fill=ink, width=2)
    draw.line((x0, y0, x0, y1), fill=ink, width=2)
    for k in range(6):
        x, y = x0 + (x1 - x0) * k // 5, y1 - (y1 - y0) * k // 5
        draw.line((x, y1, x, y1 + 4), fill=ink)
        draw.line((x0 - 4, y, x0, y), fill=ink)
    font = default_font(11)
    draw.text((x0, y1 + 8), _text(rng, 2), fill=ink, font=font)
    t = np.linspace(0.0, 1.0, 40)
    for curve in range(int(rng.integers(1, 4))):
        if rng.random() < 0.5:
            values = t ** rng.uniform(0.1, 0.6)  # an ROC-like curve
        else:
            values = np.cumsum(rng.normal(0.0, 1.0, len(t)))
            values = (values - values.min()) / max(1e-6, float(np.ptp(values)))
        hue = tuple(int(v) for v in rng.integers(0, 256, 3)) if colour else (60 * curve,) * 3
        points = [(x0 + (x1 - x0) * a, y1 - (y1 - y0) * b) for a, b in zip(t, values)]
        draw.line(points, fill=hue, width=2)


def figure(rng: np.random.Generator, index: int, xrays: Sequence[np.ndarray]) -> np.ndarray:
    """A multi-panel figure: 2 to 6 panels of X-rays, CT slices and plots, letters, and a caption."""
    rows, cols = int(rng.integers(1, 3)), int(rng.integers(2, 4))
    cell = int(rng.integers(180, 320))
    dark = index % 6 == 5
    paper, ink = ((0, 0, 0), (230, 230, 230)) if dark else ((255, 255, 255), (20, 20, 20))
    caption_h = int(rng.integers(30, 80))
    canvas = Image.new("RGB", (cols * cell + 20, rows * cell + caption_h + 20), paper)
    draw = ImageDraw.Draw(canvas)
    kinds = rng.choice(["xray", "ct", "plot"], size=rows * cols, p=[0.35, 0.4, 0.25])
    kinds[int(rng.integers(0, len(kinds)))] = "ct" if index % 2 else "xray"  # at least one medical image
    for k, kind in enumerate(kinds):
        r, c = divmod(k, cols)
        box = (10 + c * cell + 4, 10 + r * cell + 4, 10 + (c + 1) * cell - 4, 10 + (r + 1) * cell - 4)
        if kind == "plot":
            _plot(draw, box, rng, ink, colour=index % 3 == 0)
        else:
            picture = xray_picture(rng, xrays) if kind == "xray" else ct_picture(rng)
            paste_fit(canvas, picture, box)
            if kind == "ct" and rng.random() < 0.3:  # a CT panel with an X-ray (scout) thumbnail inset
                side = (box[2] - box[0]) // 4
                paste_fit(canvas, xray_picture(rng, xrays), (box[2] - side - 4, box[1] + 4, box[2] - 4, box[1] + side))
        draw.text((box[0] + 4, box[1] + 2), "ABCDEF"[k], fill=(255, 255, 0) if index % 4 == 0 else ink,
                  font=default_font(18))
    y = rows * cell + 14
    for line in range(max(1, caption_h // 22)):
        prefix = f"Figure {int(rng.integers(1, 9))}. " if line == 0 else ""
        draw.text((12, y + 20 * line), prefix + _text(rng, int(rng.integers(6, 14))), fill=ink, font=default_font(13))
    return _maybe_gray(canvas, index)


def _maybe_gray(canvas: Image.Image, index: int) -> np.ndarray:
    """Most pictures as grayscale, so that the colour check cannot be what refuses them."""
    return np.asarray(canvas.convert("L") if index % 3 != 0 else canvas)


def slide(rng: np.random.Generator, index: int, xrays: Sequence[np.ndarray]) -> np.ndarray:
    """A presentation slide: a title, bullet points and one or two X-ray or CT pictures, a footer."""
    width = int(rng.integers(800, 1281))
    height = int(width * (9 / 16 if rng.random() < 0.7 else 3 / 4))
    schemes = (((255, 255, 255), (25, 25, 25)), ((235, 235, 235), (40, 40, 40)), ((20, 20, 20), (235, 235, 235)),
               ((22, 38, 70), (240, 240, 240)))
    paper, ink = schemes[index % len(schemes)]
    canvas = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(canvas)
    draw.text((int(width * 0.05), int(height * 0.05)), _text(rng, int(rng.integers(2, 6))).title(), fill=ink,
              font=default_font(int(height * 0.07)))
    image_left = rng.random() < 0.5
    text_x = int(width * (0.55 if image_left else 0.05))
    for k in range(int(rng.integers(3, 7))):
        draw.text((text_x, int(height * (0.22 + 0.09 * k))), "- " + _text(rng, int(rng.integers(3, 7))), fill=ink,
                  font=default_font(int(height * 0.035)))
    area = (int(width * (0.04 if image_left else 0.52)), int(height * 0.2), int(width * (0.48 if image_left else 0.96)),
            int(height * 0.88))
    pictures = 1 if rng.random() < 0.6 else 2
    step = (area[2] - area[0]) // pictures
    for k in range(pictures):
        paste_fit(canvas, _medical_picture(rng, xrays), (area[0] + k * step + 4, area[1], area[0] + (k + 1) * step - 4,
                                                         area[3]))
    draw.text((int(width * 0.05), int(height * 0.93)), f"{_text(rng, 3)}    {index % 40 + 1}", fill=ink,
              font=default_font(int(height * 0.025)))
    return _maybe_gray(canvas, index)


def _overlay_text(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], rng: np.random.Generator) -> None:
    """Viewer overlay: a few lines in each corner of a viewport."""
    left, top, right, bottom = box
    font = default_font(12)
    tint = (230, 230, 230) if rng.random() < 0.7 else (235, 220, 120)
    for corner in range(4):
        lines = list(rng.choice(_OVERLAY, size=int(rng.integers(1, 4))))
        for k, line in enumerate(lines):
            width = draw.textlength(line, font=font)
            x = left + 6 if corner % 2 == 0 else int(right - 6 - width)
            y = top + 6 + 15 * k if corner < 2 else bottom - 6 - 15 * (len(lines) - k)
            draw.text((x, y), line, fill=tint, font=font)


def _chrome(draw: ImageDraw.ImageDraw, width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int]:
    """A toolbar of icon buttons, a menu line and a status bar; returns the series panel's right edge, the
    viewports' top and bottom."""
    ui = int(rng.integers(25, 55))
    draw.rectangle((0, 0, width, 24), fill=(ui + 15,) * 3)
    font = default_font(13)
    for k, word in enumerate(rng.choice(_WORDS, size=6)):
        draw.text((10 + 80 * k, 5), str(word).title(), fill=(200, 200, 200), font=font)
    draw.rectangle((0, 24, width, 64), fill=(ui + 25,) * 3)
    for k in range(int(rng.integers(8, 20))):
        x = 10 + 40 * k
        draw.rounded_rectangle((x, 30, x + 30, 58), radius=4, fill=(ui + 60,) * 3, outline=(ui + 90,) * 3)
        draw.line((x + 8, 44, x + 22, 44), fill=(210, 210, 210), width=2)
    draw.rectangle((0, height - 22, width, height), fill=(ui + 15,) * 3)
    draw.text((10, height - 18), _text(rng, 6), fill=(190, 190, 190), font=font)
    return int(width * rng.uniform(0.12, 0.2)), 70, height - 28


def viewer(rng: np.random.Generator, index: int, xrays: Sequence[np.ndarray]) -> np.ndarray:
    """A viewer screenshot: dark chrome, a series list with thumbnails, 1, 2 or 4 viewports with overlays."""
    width, height = int(rng.integers(1024, 1601)), int(rng.integers(640, 1001))
    canvas = Image.new("RGB", (width, height), (int(rng.integers(15, 40)),) * 3)
    draw = ImageDraw.Draw(canvas)
    panel, top, bottom = _chrome(draw, width, height, rng)
    thumb = panel - 20
    for k in range(min(6, (bottom - top) // (thumb + 24))):
        y = top + 6 + k * (thumb + 24)
        paste_fit(canvas, _medical_picture(rng, xrays, 0.3), (10, y, 10 + thumb, y + thumb))
        draw.text((10, y + thumb + 4), f"Se {k + 1}: {_text(rng, 2)}", fill=(200, 200, 200), font=default_font(11))
    layout = (1, 1) if index % 3 == 0 else ((1, 2) if index % 3 == 1 else (2, 2))
    cell_w, cell_h = (width - panel - 8) // layout[1], (bottom - top) // layout[0]
    for r in range(layout[0]):
        for c in range(layout[1]):
            box = (panel + 4 + c * cell_w, top + r * cell_h, panel + (c + 1) * cell_w, top + (r + 1) * cell_h - 4)
            draw.rectangle(box, fill=(0, 0, 0), outline=(90, 90, 90) if r + c else (220, 170, 40))
            main = _medical_picture(rng, xrays, 0.35)
            paste_fit(canvas, main, (box[0] + 2, box[1] + 2, box[2] - 2, box[3] - 2))
            if rng.random() < 0.3:  # the scout (an X-ray-like topogram) as an inset
                side = (box[2] - box[0]) // 5
                paste_fit(canvas, xray_picture(rng, xrays), (box[2] - side - 8, box[3] - side - 24, box[2] - 8,
                                                             box[3] - 24))
            _overlay_text(draw, box, rng)
    return _maybe_gray(canvas, index)
