"""Crop a frontal chest film to its thorax, found by a classical method (no network, no weights).

Framing differs between sites: how much neck, shoulders, arms and abdomen a film holds, and how much black
background or collimation surrounds it. A crop to the lung fields plus a margin removes most of that before
the network sees it. The method: on a 128 px copy, dark regions below Otsu's threshold that do not touch the
film's edge (outside air and collimation do) are candidate lung fields; the box around the two largest,
grown by a margin, is the thorax. When no plausible pair is found (a film that is not a frontal chest X-ray,
or one dark all over), the whole film is kept: the crop is a refinement, and the gate judges what the film is.

NumPy only, so that a bundle trained with the crop predicts on the torch-free install (no OpenCV): area
averaging, a 5-tap binomial blur, Otsu's threshold, a disk opening and 4-connected components, each the same
computation as the OpenCV call it replaces (``tests/data/test_thorax.py`` checks each against OpenCV, and
``bench/thorax_agreement.py`` the boxes over a whole dataset).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pneumo.data.disjoint_sets import DisjointSets

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


_BLUR = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / 16.0  # OpenCV's 5-tap Gaussian at its own sigma
_DISK = np.array([[0, 0, 0, 1, 0, 0, 0], [0, 1, 1, 1, 1, 1, 0], [1] * 7, [1] * 7, [1] * 7, [0, 1, 1, 1, 1, 1, 0],
                  [0, 0, 0, 1, 0, 0, 0]], dtype=bool)  # a 7 px disk: cuts bridges thinner than that


def _shrink_rows(values: np.ndarray, target: int) -> np.ndarray:
    """``target`` rows, each the mean of the span of ``values``' rows it covers, the rows at its ends weighted
    by the share of them it covers (area averaging), from the running sum: linear in the film's size."""
    source = values.shape[0]
    edges = np.arange(target + 1, dtype=np.float64) * source / target
    below = np.minimum(np.floor(edges).astype(np.int64), source - 1)
    running = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
    integral = running[below] + (edges - below)[:, None] * values[below]
    return (integral[1:] - integral[:-1]) * (target / source)


def _work_copy(image: np.ndarray) -> np.ndarray:
    """The film shrunk to WORK_SIZE by area averaging, blurred (reflected edges), as uint8."""
    film = np.clip(image, 0.0, 1.0).astype(np.float64)
    small = _shrink_rows(_shrink_rows(film, WORK_SIZE).T, WORK_SIZE).T.astype(np.float32)
    padded = np.pad(small, 2, mode="reflect")
    rows = sum(_BLUR[k] * padded[:, k:k + WORK_SIZE] for k in range(5))
    blurred = sum(_BLUR[k] * rows[k:k + WORK_SIZE, :] for k in range(5))
    return np.round(blurred * 255).astype(np.uint8)


def otsu_threshold(values: np.ndarray) -> int:
    """Otsu's threshold of uint8 values: the level that maximises the between-class variance of the values
    at or below it against those above (the first such level)."""
    counts = np.bincount(values.ravel(), minlength=256).astype(np.float64) / values.size
    levels = np.arange(256, dtype=np.float64)
    below = np.cumsum(counts)
    mean_below = np.cumsum(counts * levels)
    above = 1.0 - below
    valid = (np.minimum(below, above) >= np.finfo(np.float32).eps) & (np.maximum(below, above)
                                                                         <= 1.0 - np.finfo(np.float32).eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu1 = mean_below / below
        mu2 = (mean_below[-1] - mean_below) / above
        between = np.where(valid, below * above * (mu1 - mu2) ** 2, 0.0)
    return int(np.argmax(between)) if between.max() > 0.0 else 0


def _opened(mask: np.ndarray) -> np.ndarray:
    """Erosion then dilation by the disk; outside the film counts as neither eroding nor growing."""
    def shifts(values: np.ndarray, outside: bool) -> list[np.ndarray]:
        padded = np.pad(values, 3, constant_values=outside)
        h, w = values.shape
        return [padded[dy:dy + h, dx:dx + w] for dy, dx in zip(*np.nonzero(_DISK))]

    return np.logical_or.reduce(shifts(np.logical_and.reduce(shifts(mask, True)), False))


def components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """4-connected components of a boolean mask: ``(labels, stats, count)`` with label 0 the background and
    ``stats[i]`` = left, top, width, height, area (the background's box is the whole mask). Runs of each row
    are joined to the overlapping runs of the row above (union-find), so the cost is bounded by the number of
    runs whatever the shapes."""
    h, w = mask.shape
    edges = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    rows, starts = np.nonzero(edges == 1)
    stops = np.nonzero(edges == -1)[1]
    sets = DisjointSets(len(rows))
    begin, end = starts.tolist(), stops.tolist()  # Python ints: this loop is the function's cost
    row_start = np.searchsorted(rows, np.arange(h + 1)).tolist()
    for r in range(1, h):
        a, b = row_start[r - 1], row_start[r]
        while a < row_start[r] and b < row_start[r + 1]:
            if begin[a] < end[b] and begin[b] < end[a]:
                sets.join(a, b)
            if end[a] < end[b]:
                a += 1
            else:
                b += 1
    roots = np.array([sets.root(i) for i in range(len(rows))], dtype=np.int64)
    _, first, numbered = np.unique(roots, return_index=True, return_inverse=True)
    run_label = np.argsort(np.argsort(first))[numbered] + 1  # numbered in raster order, as OpenCV does
    count = len(first) + 1
    # Each run painted at once: its label added where it starts and taken away where it ends, then summed.
    painted = np.zeros(h * w + 1, dtype=np.int64)
    np.add.at(painted, rows * w + starts, run_label)
    np.add.at(painted, rows * w + stops, -run_label)
    labels = np.cumsum(painted[:-1]).reshape(h, w).astype(np.int32)
    stats = np.zeros((count, 5), dtype=np.int64)
    stats[:, 0], stats[:, 1] = w, h
    right, bottom = np.zeros(count, dtype=np.int64), np.zeros(count, dtype=np.int64)
    np.minimum.at(stats[:, 0], run_label, starts)
    np.minimum.at(stats[:, 1], run_label, rows)
    np.maximum.at(right, run_label, stops)
    np.maximum.at(bottom, run_label, rows + 1)
    np.add.at(stats[:, 4], run_label, stops - starts)
    stats[:, 2], stats[:, 3] = right - stats[:, 0], bottom - stats[:, 1]
    stats[0] = [0, 0, w, h, h * w - stats[1:, 4].sum()]
    return labels, stats, count


def _dark_regions(pixels: np.ndarray, within: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Components darker than Otsu's threshold of the pixels ``within``; opening first cuts the thin dark
    bridges (armpits, gaps between arm and chest wall) that join a lung field to the outside air."""
    threshold = otsu_threshold(pixels[within])
    return components(_opened((pixels < threshold) & within))


def _touches_edge(labels: np.ndarray, index: int, stats_row: np.ndarray) -> bool:
    """Outside air and collimation run along the film's edge; a lung field at most grazes it."""
    on_edge = np.count_nonzero(labels[[0, -1], :] == index) + np.count_nonzero(labels[:, [0, -1]] == index)
    return on_edge > 0.1 * (stats_row[2] + stats_row[3])


def find_thorax(image: np.ndarray) -> Box | None:
    """The thorax's box in a decoded float [0, 1] film, or None when no pair of lung fields is found.

    Two passes: the darkest regions that run along the edge are outside air; within the rest (the body),
    the regions darker than the body's own threshold are the lung fields."""
    pixels = _work_copy(image)
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
