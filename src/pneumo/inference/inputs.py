"""Turn any supported input into one grayscale float [0, 1] array plus what the gate needs to know about
the original: its size and how strongly coloured it was before the conversion to gray.

Accepted: a path, raw bytes (JPEG/PNG/DICOM sniffed by content through :func:`pneumo.data.decode.decode_image`),
a PIL image, a NumPy array (uint8, uint16 or float in [0, 1]; 2-D, or RGB/RGBA in the last axis) and a pydicom
``Dataset``. NumPy, Pillow and pydicom only: the light ONNX deployment uses this module without torch.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from pneumo.data.decode import decode_image, read_image_bytes, sniff_format
from pneumo.data.errors import ImageDecodeError

# A pixel counts as strongly coloured when its channels differ by more than this (of 255): JPEG chroma noise
# on a gray radiograph stays far below it, and so does a sepia tint.
STRONG_CHROMA = 48
# Colour is measured on a thumbnail: the fraction of coloured pixels does not need full resolution.
_COLOUR_THUMB = 128
# ITU-R 601 luma, the weights Pillow's convert("L") uses, so arrays and files turn gray the same way.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass
class InputImage:
    """One decoded input: ``pixels`` is float32 HxW in [0, 1]; ``colour_fraction`` the share of strongly
    coloured pixels in the original (0 for grayscale sources)."""

    name: str | None
    pixels: np.ndarray
    colour_fraction: float


def describe(source: Any) -> str | None:
    """The name a Prediction reports for ``source``: the path for files, None for in-memory input."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return None


def load_input(source: Any) -> InputImage:
    """Decode ``source`` (see module docstring); raises :class:`ImageDecodeError` naming the input."""
    if isinstance(source, (str, os.PathLike)):
        # Read once: the colour check looks at the same bytes the decoder saw.
        label, data = read_image_bytes(source)
        pixels = decode_image(data, name=label)
        return InputImage(label, pixels, _colour_of_bytes(data, label))
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        pixels = decode_image(data, name="<bytes>")
        return InputImage(None, pixels, _colour_of_bytes(data, "<bytes>"))
    if isinstance(source, Image.Image):
        return _from_pil(source)
    if isinstance(source, np.ndarray):
        return _from_array(source, "<array>")
    if _is_dicom_dataset(source):
        return _from_dataset(source)
    raise ImageDecodeError(f"<{type(source).__name__}>", "unsupported input type; give a path, bytes, a PIL "
                                                         "image, a NumPy array or a pydicom Dataset")


def colour_fraction_rgb(rgb: np.ndarray) -> float:
    """Share of pixels whose channels differ by more than :data:`STRONG_CHROMA` (uint8 HxWx3)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] < 3 or rgb.size == 0:
        return 0.0
    rgb = rgb[..., :3].astype(np.int16)
    chroma = rgb.max(axis=-1) - rgb.min(axis=-1)
    return float(np.mean(chroma > STRONG_CHROMA))


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    step = max(1, max(rgb.shape[:2]) // _COLOUR_THUMB)
    return rgb[::step, ::step]


_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _colour_of_pil(image: Image.Image) -> float:
    if image.mode in _GRAY_MODES:
        return 0.0
    if image.mode == "P":
        palette = image.getpalette() or []
        triples = np.asarray(palette[: len(palette) // 3 * 3], dtype=np.int16).reshape(-1, 3)
        if triples.size == 0 or int((triples.max(axis=1) - triples.min(axis=1)).max()) <= STRONG_CHROMA:
            return 0.0  # a gray palette
    image = image.copy()
    image.thumbnail((_COLOUR_THUMB, _COLOUR_THUMB))
    return colour_fraction_rgb(np.asarray(image.convert("RGB")))


def _colour_of_bytes(data: bytes, label: str) -> float:
    kind = sniff_format(data[:256])
    if kind == "dicom" or kind == "unknown":  # decode_image accepted it, so "unknown" is headerless DICOM
        return _colour_of_dicom_bytes(data, label)
    try:
        image = Image.open(io.BytesIO(data))
        if image.mode in _GRAY_MODES:
            return 0.0
        if image.format == "JPEG":
            image.draft("RGB", (_COLOUR_THUMB, _COLOUR_THUMB))  # DCT-domain downscale: a fraction of a full decode
        image.load()
        return _colour_of_pil(image)
    except Exception as exc:  # decode_image read these bytes already; failing here is an internal mismatch
        raise ImageDecodeError(label, f"cannot measure colour ({type(exc).__name__}: {exc})") from exc


def _colour_of_dicom_bytes(data: bytes, label: str) -> float:
    """Colour fraction of a DICOM that ``decode_image`` already read. A colour DICOM (several samples per
    pixel, or a palette) whose colour cannot be measured is refused: passing it as gray would let a colour
    photograph through the colour check."""
    import pydicom

    try:
        header = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        samples = int(header.get("SamplesPerPixel", 1) or 1)
        photometric = str(header.get("PhotometricInterpretation", "")).upper()
    except Exception as exc:  # decode_image read this header already: failing here is an internal mismatch
        raise ImageDecodeError(label, f"cannot read the DICOM header to measure colour ({type(exc).__name__}: "
                                      f"{exc})") from exc
    if samples == 1 and "PALETTE" not in photometric:
        return 0.0
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
        return _colour_of_dataset(dataset)
    except Exception as exc:  # pydicom raises many types for odd colour encodings
        raise ImageDecodeError(label, f"colour DICOM ({samples} samples per pixel, {photometric or 'no'} "
                                      f"photometric interpretation) whose colour cannot be measured "
                                      f"({type(exc).__name__}: {exc}); only grayscale radiographs are accepted") from exc


def _colour_of_dataset(dataset: Any) -> float:
    from pydicom.pixels import apply_color_lut, convert_color_space

    photometric = str(dataset.get("PhotometricInterpretation", "")).upper()
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if samples == 1 and photometric != "PALETTE COLOR":
        return 0.0
    pixels = dataset.pixel_array
    if int(dataset.get("NumberOfFrames", 1) or 1) > 1 and pixels.ndim == 4:
        pixels = pixels[pixels.shape[0] // 2]
    if photometric.startswith("YBR"):
        pixels = convert_color_space(pixels, photometric, "RGB")
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, dataset)
    if pixels.ndim != 3:
        return 0.0
    pixels = pixels.astype(np.float32)
    top = float(pixels.max()) or 1.0
    return colour_fraction_rgb(_thumbnail(np.round(pixels / top * 255.0).astype(np.uint8)))


def _from_pil(image: Image.Image) -> InputImage:
    colour = _colour_of_pil(image)
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        array: np.ndarray = np.asarray(image, dtype=np.uint16)
    elif mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float32)
        low, high = float(array.min()), float(array.max())
        array = (array - low) / (high - low) if high > low else np.zeros_like(array)
    elif mode in ("L", "1"):
        array = np.asarray(image.convert("L"))
    else:
        if mode in ("RGBA", "LA", "PA", "P"):
            # Transparent pixels become black, as decode_image does for files.
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
        array = np.asarray(image.convert("L"))
    gray = _from_array(array, "<PIL image>")
    return InputImage(None, gray.pixels, colour)


def _from_array(array: np.ndarray, label: str) -> InputImage:
    colour = 0.0
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        rgb = array[..., :3]
        rgb8 = rgb if rgb.dtype == np.uint8 else np.round(_to_unit(rgb, label) * 255.0).astype(np.uint8)
        colour = colour_fraction_rgb(_thumbnail(rgb8))
        array = _to_unit(rgb, label) @ _LUMA
    elif array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ImageDecodeError(label, f"expected a 2-D grayscale or HxWx3 RGB array, got shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageDecodeError(label, f"array has no pixels (shape {array.shape})")
    pixels = _to_unit(array, label)
    return InputImage(None, np.ascontiguousarray(pixels, dtype=np.float32), colour)


def _to_unit(array: np.ndarray, label: str) -> np.ndarray:
    """uint8 / uint16 scaled by their range; floats must already lie in [0, 1]."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if not np.isfinite(values).all():
            raise ImageDecodeError(label, "array contains NaN or infinity")
        low, high = float(values.min()), float(values.max())
        if low < -1e-6 or high > 1.0 + 1e-6:
            raise ImageDecodeError(label, f"float pixels must lie in [0, 1], got [{low:.3g}, {high:.3g}]; "
                                          "scale the array or pass uint8/uint16")
        return np.clip(values, 0.0, 1.0)
    raise ImageDecodeError(label, f"unsupported array dtype {array.dtype}; use uint8, uint16 or float in [0, 1]")


def _is_dicom_dataset(source: Any) -> bool:
    try:
        from pydicom.dataset import Dataset
    except ImportError:
        return False
    return isinstance(source, Dataset)


def _from_dataset(dataset: Any) -> InputImage:
    """Serialise the dataset and decode it like a file, so LUTs, windows and MONOCHROME1 are handled once."""
    import copy

    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import ExplicitVRLittleEndian

    label = "<DICOM dataset>"
    buffer = io.BytesIO()
    try:
        shallow = copy.copy(dataset)  # the caller's dataset is not modified
        file_meta = FileMetaDataset(getattr(dataset, "file_meta", None) or FileMetaDataset())
        if "TransferSyntaxUID" not in file_meta:
            file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # an in-memory dataset holds raw pixels
        shallow.file_meta = file_meta
        shallow.preamble = b"\0" * 128
        dcmwrite(buffer, shallow, enforce_file_format=False)
    except Exception as exc:  # pydicom raises several types for incomplete datasets
        raise ImageDecodeError(label, f"cannot be serialised ({type(exc).__name__}: {exc})") from exc
    data = buffer.getvalue()
    pixels = decode_image(data, name=label)
    return InputImage(None, pixels, _colour_of_dicom_bytes(data, label))
