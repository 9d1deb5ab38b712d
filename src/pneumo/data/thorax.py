"""Crop a frontal chest film to its thorax, found by a classical method (no network, no weights).

Framing differs between sites: how much neck, shoulders, arms and abdomen a film holds, and how much black
background or collimation surrounds it. A crop to the lung fields plus a margin removes most of that before
the network sees it. The method: on a 128 px copy, dark regions below Otsu's threshold that do not touch the
film's edge (outside air and collimation do) are candidate lung fields; the box around the two largest,
grown by a margin, is the thorax. When no plausible pair is found (a film that is not a frontal chest X-ray,
or one dark all over), the whole film is kept: the crop is a refinement, and the gate judges what the film is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pneumo.optional import require

WORK_SIZE = 128
MARGIN = 0.12  # of the box's height and width, added on each side: the lung edges and costophrenic angles
MIN_LUNG_AREA = 0.01  # of the film, per lung field candidate
MIN_BOX_AREA = 0.15  # of the film; a smaller box is taken as a failed find


@dataclass(frozen=True)
class Box:
    top: float  # fractions of the film's height and width
    bottom: float
    left: float
    right: float


def _opencv():
    return require("cv2", extra="opencv", needed_for="a bundle preprocessed with thorax_crop")


def _dark_regions(pixels: np.ndarray, within: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Components darker than Otsu's threshold of the pixels ``within``; opening first cuts the thin dark
    bridges (armpits, gaps between arm and chest wall) that join a lung field to the outside air."""
    cv2 = _opencv()
    threshold, _ = cv2.threshold(pixels[within].reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark = ((pixels < threshold) & within).astype(np.uint8)
    dark = cv2.morphologyEx(dark, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=4)
    return labels, stats, count


def _touches_edge(labels: np.ndarray, index: int, stats_row: np.ndarray) -> bool:
    """Outside air and collimation run along the film's edge; a lung field at most grazes it."""
    on_edge = np.count_nonzero(labels[[0, -1], :] == index) + np.count_nonzero(labels[:, [0, -1]] == index)
    return on_edge > 0.1 * (stats_row[2] + stats_row[3])


def find_thorax(image: np.ndarray) -> Box | None:
    """The thorax's box in a decoded float [0, 1] film, or None when no pair of lung fields is found.

    Two passes: the darkest regions that run along the edge are outside air; within the rest (the body),
    the regions darker than the body's own threshold are the lung fields."""
    cv2 = _opencv()
    small = cv2.resize(np.clip(image, 0.0, 1.0).astype(np.float32), (WORK_SIZE, WORK_SIZE),
                       interpolation=cv2.INTER_AREA)
    pixels = np.round(cv2.GaussianBlur(small, (5, 5), 0) * 255).astype(np.uint8)
    labels, stats, count = _dark_regions(pixels, np.ones(pixels.shape, dtype=bool))
    body = np.ones(pixels.shape, dtype=bool)
    for index in range(1, count):
        if _touches_edge(labels, index, stats[index]):
            body &= labels != index
    if body.mean() < 0.3:
        return None
    labels, stats, count = _dark_regions(pixels, body)
    candidates = [(stats[i][4], *stats[i][:4]) for i in range(1, count)
                  if stats[i][4] >= MIN_LUNG_AREA * WORK_SIZE ** 2 and not _touches_edge(labels, i, stats[i])]
    if len(candidates) < 2:
        return None
    lungs = sorted(candidates, reverse=True)[:2]
    left, top = min(c[1] for c in lungs), min(c[2] for c in lungs)
    right, bottom = max(c[1] + c[3] for c in lungs), max(c[2] + c[4] for c in lungs)
    grow_h, grow_w = (bottom - top) * MARGIN, (right - left) * MARGIN
    box = Box(max(0.0, (top - grow_h) / WORK_SIZE), min(1.0, (bottom + grow_h) / WORK_SIZE),
              max(0.0, (left - grow_w) / WORK_SIZE), min(1.0, (right + grow_w) / WORK_SIZE))
    if (box.bottom - box.top) * (box.right - box.left) < MIN_BOX_AREA:
        return None
    return box


def crop_to_thorax(image: np.ndarray) -> np.ndarray:
    """The film cropped to :func:`find_thorax`'s box, or the whole film when none is found."""
    box = find_thorax(image)
    if box is None:
        return image
    h, w = image.shape
    return image[int(box.top * h):max(int(box.top * h) + 1, int(round(box.bottom * h))),
                 int(box.left * w):max(int(box.left * w) + 1, int(round(box.right * w)))]
