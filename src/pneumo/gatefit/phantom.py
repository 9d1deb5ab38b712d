"""A procedural thorax CT phantom: axial and coronal slices in Hounsfield units, and the windows to show them.

CT slices are what passed the two-boundary gate (issue 23): a round field of view, the body outline on black,
dark lungs, the table below. They share a chest X-ray's anatomy, so the network's features place them near
X-rays from other sites. Rendering them from a phantom gives the gate many such negatives without any data:
every slice is drawn from its own generator (body size, lung shape, heart, spine, ribs, table, noise), so a
seed gives the same slice and different seeds give different patients.

Coordinates are fractions of the image side; in an axial slice the patient's front is up, the table below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

AIR, FAT, SOFT, LUNG, BONE = -1000.0, -100.0, 45.0, -850.0, 700.0
PADDING = -2048.0  # outside the reconstructed field of view: scanners store a value below air


@dataclass(frozen=True)
class Window:
    """A display window: ``level`` (centre) and ``width`` in HU."""

    name: str
    level: float
    width: float

    def apply(self, hu: np.ndarray) -> np.ndarray:
        """HU -> uint8, black below the window and white above it."""
        scaled = (hu - (self.level - self.width / 2.0)) / self.width
        return np.round(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


LUNG_WINDOW = Window("lung", -600.0, 1500.0)
SOFT_TISSUE_WINDOW = Window("soft-tissue", 40.0, 400.0)
WINDOWS = (LUNG_WINDOW, SOFT_TISSUE_WINDOW)


class _Canvas:
    """An HU image with shapes painted in order (later shapes cover earlier ones)."""

    def __init__(self, height: int, width: int, fill: float = AIR) -> None:
        self.hu = np.full((height, width), fill, dtype=np.float32)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        self.y, self.x = yy / height, xx / width

    def ellipse(self, cy: float, cx: float, ry: float, rx: float, angle: float = 0.0) -> np.ndarray:
        cos, sin = np.cos(angle), np.sin(angle)
        dy, dx = self.y - cy, self.x - cx
        u, v = dx * cos + dy * sin, -dx * sin + dy * cos
        return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0

    def paint(self, mask: np.ndarray, value: float) -> None:
        self.hu[mask] = value


def _texture(rng: np.random.Generator, shape: tuple[int, int], blur: float, amplitude: float) -> np.ndarray:
    """Smooth random texture (blurred white noise), zero mean, about ``amplitude`` HU."""
    field = Image.fromarray(rng.normal(128.0, 40.0, shape).clip(0, 255).astype(np.uint8))
    smooth = np.asarray(field.filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32)
    return (smooth - smooth.mean()) / max(1e-3, float(smooth.std())) * amplitude


def _vessels(canvas: _Canvas, lungs: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Vessels cut across: small soft-tissue dots inside the lungs."""
    for _ in range(count):
        cy, cx = rng.uniform(0.2, 0.8), rng.uniform(0.15, 0.85)
        radius = rng.uniform(0.003, 0.012)
        canvas.paint(canvas.ellipse(cy, cx, radius, radius * rng.uniform(0.6, 1.6)) & lungs, rng.uniform(-50, 60))


def _finish(canvas: _Canvas, body: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Tissue texture inside the body, quantum noise everywhere, and the slight blur of a reconstruction kernel."""
    hu = canvas.hu + np.where(body, _texture(rng, canvas.hu.shape, rng.uniform(2.0, 6.0), rng.uniform(5, 25)), 0)
    hu = hu + rng.normal(0.0, rng.uniform(8.0, 35.0), hu.shape).astype(np.float32)
    return hu.astype(np.float32)


def axial_slice(rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    """An axial chest CT slice (HU, size x size): round field of view, body, lungs, heart, aorta, spine,
    ribs, sternum, arms now and then, and the table below."""
    size = size or int(rng.integers(256, 513))
    c = _Canvas(size, size)
    fov = rng.uniform(0.46, 0.5)
    c.paint(~c.ellipse(0.5, 0.5, fov, fov), PADDING)
    cy, ry, rx = rng.uniform(0.46, 0.54), rng.uniform(0.24, 0.31), rng.uniform(0.34, 0.43)
    tilt = rng.uniform(-0.05, 0.05)
    body = c.ellipse(cy, 0.5, ry, rx, tilt) & c.ellipse(0.5, 0.5, fov, fov)
    c.paint(body, FAT)
    c.paint(c.ellipse(cy, 0.5, ry * 0.9, rx * 0.92, tilt), SOFT)
    if rng.random() < 0.4:  # arms down beside the chest
        for side in (-1, 1):
            c.paint(c.ellipse(cy, 0.5 + side * rx * 1.18, ry * 0.45, rx * 0.16), SOFT)
            c.paint(c.ellipse(cy, 0.5 + side * rx * 1.18, ry * 0.1, rx * 0.04), BONE)
    lungs = np.zeros_like(body)
    for side in (-1, 1):
        lungs |= c.ellipse(cy - ry * 0.05, 0.5 + side * rx * rng.uniform(0.4, 0.5), ry * rng.uniform(0.68, 0.8),
                           rx * rng.uniform(0.3, 0.38), side * rng.uniform(0.0, 0.3))
    c.paint(lungs, LUNG)
    c.hu[lungs] += _texture(rng, c.hu.shape, 3.0, 25.0)[lungs]
    _vessels(c, lungs, rng, int(rng.integers(20, 60)))
    contrast = rng.uniform(0, 250) if rng.random() < 0.5 else 0.0
    c.paint(c.ellipse(cy - ry * 0.15, 0.5 + rx * 0.08, ry * rng.uniform(0.35, 0.45), rx * rng.uniform(0.25, 0.32),
                      rng.uniform(-0.6, -0.2)), SOFT + contrast * 0.6)
    c.paint(c.ellipse(cy + ry * 0.35, 0.5 - rx * 0.09, ry * 0.1, ry * 0.1), SOFT + contrast)  # aorta
    spine_y = cy + ry * 0.62
    c.paint(c.ellipse(spine_y, 0.5, ry * 0.17, rx * 0.13), BONE * rng.uniform(0.5, 0.8))  # vertebral body
    c.paint(c.ellipse(spine_y + ry * 0.24, 0.5, ry * 0.07, rx * 0.06), SOFT * 0.3)  # spinal canal
    c.paint(c.ellipse(spine_y + ry * 0.42, 0.5, ry * 0.12, rx * 0.025), BONE)  # spinous process
    c.paint(c.ellipse(cy - ry * 0.86, 0.5, ry * 0.06, rx * 0.06), BONE * 0.7)  # sternum
    for angle in np.linspace(-np.pi / 2 + 0.4, np.pi / 2 - 0.3, int(rng.integers(5, 9))):  # ribs along the wall
        for side in (-1, 1):
            y, x = cy + np.sin(angle) * ry * 0.87, 0.5 + side * np.cos(angle) * rx * 0.89
            c.paint(c.ellipse(y, x, ry * 0.05, rx * 0.035, side * angle), BONE * rng.uniform(0.8, 1.3))
    _table(c, cy + ry + rng.uniform(0.02, 0.06), fov, rng)
    return _finish(c, body, rng)


def _table(c: _Canvas, top: float, fov: float, rng: np.random.Generator) -> None:
    """The patient table: a curved board (a dense shell around foam) below the body, clipped to the FOV."""
    inside = c.ellipse(0.5, 0.5, fov, fov)
    curve = top + rng.uniform(0.0, 0.25) * (c.x - 0.5) ** 2
    thickness = rng.uniform(0.03, 0.06)
    board = (c.y >= curve) & (c.y <= curve + thickness) & (np.abs(c.x - 0.5) < rng.uniform(0.3, 0.45)) & inside
    c.paint(board, rng.uniform(-600.0, -200.0))
    shell = board & ((c.y <= curve + 0.006) | (c.y >= curve + thickness - 0.006))
    c.paint(shell, rng.uniform(150.0, 600.0))


def coronal_slice(rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    """A coronal chest CT reformat (HU, about size x size): neck, shoulders, lungs above a domed diaphragm,
    heart, trachea, liver, ribs cut along the chest wall, and the spine in posterior slices."""
    size = size or int(rng.integers(256, 513))
    c = _Canvas(int(size * rng.uniform(0.8, 1.15)), size)
    body = c.ellipse(0.62, 0.5, 0.55, rng.uniform(0.34, 0.42)) | (
        (np.abs(c.x - 0.5) < 0.07) & (c.y < 0.2)) | c.ellipse(0.16, 0.5, 0.08, 0.4)
    c.paint(body, FAT)
    c.paint(c.ellipse(0.62, 0.5, 0.52, 0.36) & body, SOFT)
    dome = 0.62 + rng.uniform(-0.04, 0.04) + 0.3 * (c.x - 0.5) ** 2
    lungs = np.zeros_like(body)
    for side in (-1, 1):
        lungs |= c.ellipse(0.4, 0.5 + side * rng.uniform(0.15, 0.2), rng.uniform(0.24, 0.3), rng.uniform(0.11, 0.15))
    lungs &= c.y < dome
    c.paint(lungs, LUNG)
    c.hu[lungs] += _texture(rng, c.hu.shape, 3.0, 25.0)[lungs]
    _vessels(c, lungs, rng, int(rng.integers(20, 60)))
    c.paint((c.y >= dome) & (c.x < 0.52) & c.ellipse(0.62, 0.5, 0.52, 0.36), 60.0)  # liver under the right dome
    posterior = rng.random() < 0.4
    if posterior:  # a slice through the spine: vertebral bodies and discs down the middle
        for k in range(12):
            top = 0.05 + k * 0.075
            c.paint((np.abs(c.x - 0.5) < 0.045) & (c.y > top) & (c.y < top + 0.06), BONE * rng.uniform(0.5, 0.8))
    else:
        c.paint(c.ellipse(0.6, 0.54, rng.uniform(0.09, 0.13), rng.uniform(0.12, 0.16)), SOFT + rng.uniform(0, 150))
        c.paint((np.abs(c.x - 0.5) < 0.018) & (c.y > 0.06) & (c.y < 0.32), AIR)  # trachea
    for side in (-1, 1):
        for k in range(int(rng.integers(6, 10))):
            y = 0.2 + k * 0.055
            c.paint(c.ellipse(y, 0.5 + side * rng.uniform(0.3, 0.34), 0.012, 0.02), BONE * rng.uniform(0.8, 1.3))
    return _finish(c, body, rng)


def render(hu: np.ndarray, window: Window) -> np.ndarray:
    """A slice as a viewer shows it: windowed to uint8 (HxW)."""
    return window.apply(hu)
