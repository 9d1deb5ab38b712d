"""Decode JPEG, PNG (8/16 bit, palette, RGBA, CMYK), other Pillow rasters and DICOM into one
grayscale float32 array in [0, 1].

Formats are sniffed from the bytes, never trusted from the extension. Every failure is an
:class:`ImageDecodeError` naming the file and the reason. What the pixels will take is checked against
:class:`DecodeLimits` before any of them is decompressed (:mod:`pneumo.data.pixel_budget`,
:mod:`pneumo.data.dicom_streams`).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Iterable, Iterator, Protocol, TypeVar, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pneumo.data.dicom_streams import check_encapsulated_frame, inflate_deflated_dicom
from pneumo.data.errors import ImageDecodeError, ImageTooLargeError, UnsupportedFormatError
from pneumo.data.pixel_budget import DEFAULT_MAX_PIXELS, DecodeLimits, check_dicom_budget, check_pixel_budget

__all__ = ["DEFAULT_MAX_PIXELS", "DecodeLimits", "check_dicom_budget", "decode_image", "read_image_bytes",
           "sniff_format"]

Source = Union[str, Path, bytes]
# Bytes per sample of the Pillow modes that hold more than one byte per band.
_PIL_SAMPLE_BYTES = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 4, "F": 4}
_DEEP_MODES = tuple(_PIL_SAMPLE_BYTES)


def sniff_format(head: bytes) -> str:
    """Name the container format from the first bytes: 'jpeg', 'png', 'dicom', 'gif', 'bmp', 'tiff',
    'webp' or 'unknown'."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return "unknown"


def read_image_bytes(source: Source, limits: DecodeLimits = DecodeLimits()) -> tuple[str, bytes]:
    """(label, bytes) of a path or raw bytes, refusing missing, non-regular and over-size files by name."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>", bytes(source)
    path = Path(source)
    name = str(path)
    if not path.exists():
        raise ImageDecodeError(name, "file does not exist")
    if path.is_dir():
        raise ImageDecodeError(name, "is a directory, not an image file")
    if not path.is_file():  # a FIFO or device would block read_bytes() or never end
        raise ImageDecodeError(name, "is not a regular file (FIFO, device or socket)")
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ImageTooLargeError(name, f"file is {size} bytes, over the {limits.max_bytes}-byte limit")
        data = path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(name, f"cannot be read ({exc.strerror or exc})") from exc
    return name, data


def decode_image(source: Source, *, limits: DecodeLimits = DecodeLimits(), name: str | None = None) -> np.ndarray:
    """Decode a file path or raw bytes into a 2-D float32 array in [0, 1] (white = dense)."""
    label, data = read_image_bytes(source, limits)
    label = name or label
    if len(data) == 0:
        raise ImageDecodeError(label, "file is empty (0 bytes)")
    kind = sniff_format(data[:256])
    if kind == "dicom":
        return decode_dicom_bytes(data, label, limits)
    if kind == "unknown":
        if _looks_like_headerless_dicom(data):
            return decode_dicom_bytes(data, label, limits)
        raise UnsupportedFormatError(label, "not a recognised image (expected JPEG, PNG or DICOM content)")
    return decode_raster_bytes(data, label, limits)


class _HasPath(Protocol):
    path: str


Item = TypeVar("Item", bound=_HasPath)


def decoded_each(records: Iterable[Item], skipped: list[tuple[str, str]]) -> Iterator[tuple[Item, np.ndarray]]:
    """Each record with its decoded image; a file that cannot be decoded is appended to ``skipped`` (its path and
    why) and passed over, so one corrupt file in a folder of thousands costs only itself."""
    for record in records:
        try:
            image = decode_image(record.path)
        except ImageDecodeError as exc:
            skipped.append((record.path, str(exc)))
            continue
        yield record, image


def decode_raster_bytes(data: bytes, label: str, limits: DecodeLimits) -> np.ndarray:
    """Decode a Pillow-readable raster; only the first frame of an animation is used."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width < 1 or height < 1:
                raise ImageDecodeError(label, f"image has no pixels ({width}x{height})")
            # The header's size is all Pillow will allocate for the first frame: checked before it decodes.
            check_pixel_budget(label, limits, rows=height, columns=width, samples=len(image.getbands()),
                               bytes_per_sample=_PIL_SAMPLE_BYTES.get(image.mode, 1))
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # no copy when there is nothing to turn
            image = _single_channel(image)  # the colour original is released before the float copy is made
            return _pil_to_gray01(image, label)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(label, f"refused as a decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedFormatError(label, "not a readable image") from exc
    except Exception as exc:  # Pillow plugins raise struct.error, zlib.error, KeyError... on hostile bytes
        raise ImageDecodeError(label, f"corrupt or truncated image ({type(exc).__name__}: {exc})") from exc


def _single_channel(image: Image.Image) -> Image.Image:
    """The image as one channel: 16-bit, integer and float modes as they are, everything else as 8-bit
    luma (``L``), transparent pixels black (the background of a radiograph)."""
    mode = image.mode
    if mode in _DEEP_MODES or mode == "L":
        return image
    if mode == "CMYK":
        image = image.convert("RGB")
    elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("L")


def _pil_to_gray01(image: Image.Image, label: str) -> np.ndarray:
    """A one-channel image (see :func:`_single_channel`) as float32 in [0, 1]. Each integer mode is divided
    into float32 in one step: at the 40 MP limit every extra copy is 160 MB."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        array = np.divide(np.asarray(image, dtype=np.uint16), np.float32(65535.0), dtype=np.float32)
    elif mode in ("I", "F"):
        array = _minmax(np.asarray(image, dtype=np.float32))
    else:
        array = np.divide(np.asarray(image), np.float32(255.0), dtype=np.float32)
    if array.ndim != 2:
        raise ImageDecodeError(label, f"unexpected decoded shape {array.shape}")
    if not np.isfinite(array).all():
        raise ImageDecodeError(label, "decoded pixels contain NaN or infinity")
    return np.ascontiguousarray(array, dtype=np.float32)


def _minmax(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.float32)
    finite = np.isfinite(array)
    if not finite.all():  # NaN/inf pixels: the caller refuses the file rather than guess their value
        return np.full_like(array, np.nan)
    low, high = float(array.min()), float(array.max())
    if high <= low:
        return np.zeros_like(array)
    return np.clip((array - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _looks_like_headerless_dicom(data: bytes) -> bool:
    # Old DICOM files lack the 128-byte preamble and start with a group 0x0008 or 0x0002 tag.
    return len(data) > 8 and data[:2] in (b"\x08\x00", b"\x02\x00") and data[2:4] in (
        b"\x05\x00", b"\x08\x00", b"\x16\x00", b"\x00\x00", b"\x01\x00", b"\x12\x00")


def decode_dicom_bytes(data: bytes, label: str, limits: DecodeLimits) -> np.ndarray:
    """Decode DICOM pixels, turning any failure into an ImageDecodeError naming the file."""
    try:
        return _decode_dicom(data, label, limits)
    except ImageDecodeError:
        raise
    except Exception as exc:  # pydicom parses elements lazily: any tag access can raise on a malformed one
        raise ImageDecodeError(label, f"malformed DICOM ({type(exc).__name__}: {exc})") from exc


def _decode_dicom(data: bytes, label: str, limits: DecodeLimits) -> np.ndarray:
    """Decode DICOM pixels: modality LUT (slope/intercept), VOI LUT or window, MONOCHROME1 inverted.

    The budget is checked on the header (and on any compressed frame's own header) before pydicom
    decodes a pixel. Only pixels leave this function; no tag (and so no patient identifier) is kept.
    """
    dataset = _read_dicom_dataset(data, label, limits)
    rows, cols = check_dicom_budget(dataset, label, limits)
    check_encapsulated_frame(dataset, label, rows, cols)
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    try:
        pixels = dataset.pixel_array
    except Exception as exc:
        raise ImageDecodeError(label, f"DICOM pixel data cannot be decoded ({exc})") from exc
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if samples > 1 or photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR"):
        return _finish(_minmax(_colour_to_grey(pixels, dataset, photometric)), label)
    array = _grey_values(pixels, dataset, label)
    if photometric == "MONOCHROME1":
        array = 1.0 - array  # MONOCHROME1 stores dense tissue dark; pneumo wants it bright
    return _finish(array, label)


def _read_dicom_dataset(data: bytes, label: str, limits: DecodeLimits):
    """The parsed dataset (deflate inflated under the budget), with a transfer syntax and pixel data."""
    import pydicom

    data = inflate_deflated_dicom(data, label, limits)
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # pydicom raises many types for malformed files
        raise ImageDecodeError(label, f"unreadable DICOM ({exc})") from exc
    if "TransferSyntaxUID" not in dataset.file_meta:  # headerless (ACR-NEMA style): use the encoding read
        from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

        implicit, little = dataset.original_encoding
        dataset.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                               ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    if "PixelData" not in dataset and "FloatPixelData" not in dataset and "DoubleFloatPixelData" not in dataset:
        raise ImageDecodeError(label, "DICOM file has no pixel data")
    return dataset


def _colour_to_grey(pixels: np.ndarray, dataset, photometric: str) -> np.ndarray:
    """RGB, YBR or palette pixels as luminance (not yet scaled)."""
    if photometric.startswith("YBR"):
        from pydicom.pixels import convert_color_space

        pixels = convert_color_space(pixels, photometric, "RGB")
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        pixels = apply_color_lut(pixels, dataset)
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        pixels = pixels[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return pixels


def _grey_values(pixels: np.ndarray, dataset, label: str) -> np.ndarray:
    """Greyscale stored values in [0, 1]: as an 8-bit PNG would read, or through the modality LUT and window."""
    from pydicom.pixels import apply_modality_lut

    if _reads_as_8bit_png(dataset):
        return pixels.astype(np.float32) / 255.0
    try:
        # Hostile slope, intercept or window values overflow to inf/NaN here: _finish refuses those files
        # with a message naming them, so numpy's RuntimeWarnings would only add noise without the file name.
        with np.errstate(all="ignore"):
            values = np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float64)
            return _apply_voi(values, dataset)
    except ImageDecodeError:
        raise
    except Exception as exc:
        raise ImageDecodeError(label, f"DICOM LUT/window cannot be applied ({exc})") from exc


def _reads_as_8bit_png(dataset) -> bool:
    """8-bit unsigned stored values with no window, VOI LUT or rescale are read as a PNG of them would be
    (value / 255), not stretched to their own min and max: the same X-ray as PNG and as DICOM must give the
    model the same pixels."""
    if int(dataset.get("BitsAllocated", 0) or 0) != 8 or int(dataset.get("PixelRepresentation", 0) or 0) != 0:
        return False
    if any(dataset.get(k) is not None for k in ("WindowCenter", "WindowWidth", "VOILUTSequence",
                                                 "ModalityLUTSequence")):
        return False
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    return (slope is None or float(slope) == 1.0) and (intercept is None or float(intercept) == 0.0)


def _first(value) -> float:
    """Window tags may hold several alternative views; the first is the modality's default."""
    from pydicom.multival import MultiValue

    if isinstance(value, (list, tuple, MultiValue)):
        value = value[0]
    return float(value)


def _apply_voi(values: np.ndarray, dataset) -> np.ndarray:
    """VOI LUT or window (DICOM PS3.3 C.11.2) mapped onto [0, 1] by the window itself.

    The window's own range is the scale, not the pixels' min/max: a film whose pixels all sit inside the
    window must keep its grey levels rather than be stretched to full contrast.
    """
    voi = dataset.get("VOILUTSequence")
    if voi and voi[0].get("LUTDescriptor") is not None and voi[0].get("LUTData") is not None:
        from pydicom.pixels import apply_voi

        bits = int(voi[0].LUTDescriptor[2]) or 16
        out = np.asarray(apply_voi(values, dataset), dtype=np.float64) / float(2**bits - 1)
        return np.clip(out, 0.0, 1.0).astype(np.float32)
    if dataset.get("WindowCenter") is None or dataset.get("WindowWidth") is None:
        return _minmax(values)
    centre, width = _first(dataset.WindowCenter), _first(dataset.WindowWidth)
    function = str(dataset.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if function == "SIGMOID":
        if width <= 0:
            return _minmax(values)
        out = 1.0 / (1.0 + np.exp(np.clip(-4.0 * (values - centre) / width, -60, 60)))
    elif function == "LINEAR_EXACT":
        if width <= 0:
            return _minmax(values)
        out = (values - centre) / width + 0.5
    else:  # LINEAR, the default; the standard requires width >= 1
        if width < 1:
            return _minmax(values)
        if width == 1:  # the standard's rule is then a step at c - 0.5; the formula below would divide by zero
            out = np.sign(values - (centre - 0.5))
        else:
            out = (values - (centre - 0.5)) / (width - 1.0) + 0.5
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _finish(array: np.ndarray, label: str) -> np.ndarray:
    if array.ndim != 2:
        raise ImageDecodeError(label, f"DICOM pixels have unsupported shape {array.shape}")
    if not np.isfinite(array).all():
        raise ImageDecodeError(label, "DICOM pixel values are NaN or infinite (in the pixel data, or after "
                                      "RescaleSlope/RescaleIntercept or WindowCenter/WindowWidth)")
    return np.ascontiguousarray(array, dtype=np.float32)
