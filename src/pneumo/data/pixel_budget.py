"""The memory budget of decoding: what an image's header says its pixels will take, checked before a single
pixel is decompressed, so a small hostile file cannot make the decoder reserve gigabytes.

The budget is ``frames x rows x columns x bytes per sample x samples per pixel`` (what pydicom or Pillow
allocate for the stored pixels) against :attr:`DecodeLimits.max_pixel_bytes`, and ``rows x columns`` of the
one frame decoded against :attr:`DecodeLimits.max_pixels` (which bounds the float arrays made from it).
Multi-frame DICOMs are refused: a chest radiograph is one frame, and reading "a representative frame" of
a 128-frame object is how a 40 KB file once reserved a gigabyte.

:func:`check_dicom_budget` takes a pydicom header alone, so the DICOM node can refuse an instance with it
before decoding anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pneumo.data.errors import ImageDecodeError, ImageTooLargeError

# 40 megapixels is twice the largest chest detector (43x43 cm at 0.1 mm is ~18 MP). Decoding and preprocessing
# take about 9 bytes per pixel at their peak (float32 copies), so at this limit a served upload stays within
# ~350 MB on top of the model; at the former 60 MP an RGB JPEG took a server from 134 MB to 690 MB.
DEFAULT_MAX_PIXELS = 40_000_000
# 40 MP of 16-bit gray is 80 MB and of 8-bit RGB 120 MB; 256 MiB holds either, a 128-frame bomb does not.
DEFAULT_MAX_PIXEL_BYTES = 256 * 1024 * 1024
# Room for a DICOM's other elements (overlays, icons, private tags) on top of its pixels when a deflated
# dataset is inflated.
NON_PIXEL_ROOM = 16 * 1024 * 1024
MAX_FRAMES = 1


@dataclass(frozen=True)
class DecodeLimits:
    """``max_pixels``: rows x columns of the frame decoded; ``max_bytes``: size of a file read from disk;
    ``max_pixel_bytes``: frames x rows x columns x bytes per sample x samples, before decoding."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = 512 * 1024 * 1024
    max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES

    @property
    def max_inflated_bytes(self) -> int:
        """The most a deflated DICOM dataset may inflate to: its pixels' budget plus its other elements."""
        return self.max_pixel_bytes + NON_PIXEL_ROOM


def check_pixel_budget(label: str, limits: DecodeLimits, *, rows: int, columns: int, frames: int = 1,
                       bytes_per_sample: int = 1, samples: int = 1) -> None:
    """Refuse, with :class:`ImageTooLargeError` naming ``label`` and the limit, pixels over the budget."""
    if rows * columns > limits.max_pixels:
        raise ImageTooLargeError(label, f"image is {columns}x{rows} pixels, over the {limits.max_pixels}-pixel limit")
    total = frames * rows * columns * bytes_per_sample * samples
    if total > limits.max_pixel_bytes:
        raise ImageTooLargeError(
            label, f"its pixels would take {total} bytes ({frames} frame(s) x {rows} x {columns} x "
                   f"{bytes_per_sample} byte(s) x {samples} sample(s)), over the {limits.max_pixel_bytes}-byte "
                   "decoding budget")
    if frames > MAX_FRAMES:
        raise ImageTooLargeError(label, f"DICOM holds {frames} frames, over the limit of {MAX_FRAMES} frame per "
                                        "image; pneumo reads single-frame radiographs")


def _int_tag(dataset: Any, keyword: str, default: int, label: str) -> int:
    value = dataset.get(keyword, default)
    try:
        return int(value if value not in (None, "") else default)
    except (TypeError, ValueError) as exc:
        raise ImageDecodeError(label, f"DICOM header: {keyword} {str(value)[:40]!r} is not a number") from exc


def check_dicom_budget(dataset: Any, label: str, limits: DecodeLimits = DecodeLimits()) -> tuple[int, int]:
    """Check a DICOM header (a pydicom Dataset; pixels need not be read) against the budget; return
    ``(rows, columns)``. Raises :class:`ImageDecodeError` for a header without pixels and
    :class:`ImageTooLargeError` naming the limit for one over the budget."""
    rows, columns = _int_tag(dataset, "Rows", 0, label), _int_tag(dataset, "Columns", 0, label)
    frames = max(_int_tag(dataset, "NumberOfFrames", 1, label), 1)
    bits = _int_tag(dataset, "BitsAllocated", 16, label)
    samples = max(_int_tag(dataset, "SamplesPerPixel", 1, label), 1)
    if rows < 1 or columns < 1:
        raise ImageDecodeError(label, f"DICOM declares no pixels ({rows}x{columns})")
    if "PALETTE" in str(dataset.get("PhotometricInterpretation", "")).upper():
        samples = max(samples, 3)  # the colour lookup turns each stored value into three
    check_pixel_budget(label, limits, rows=rows, columns=columns, frames=frames,
                       bytes_per_sample=max((bits + 7) // 8, 1), samples=samples)
    return rows, columns
