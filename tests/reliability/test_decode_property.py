"""Property: ``decode_image`` on any bytes returns a finite 2-D float32 array in [0, 1] or raises
``ImageDecodeError`` naming the input. Nothing else: no foreign exception, no NaN, no hang.

Examples are bounded (and derandomized, so CI is reproducible); ``PNEUMO_FUZZ_EXAMPLES`` raises the count
and draws fresh examples for a longer local run, e.g.
``PNEUMO_FUZZ_EXAMPLES=20000 pytest tests/reliability/test_decode_property.py``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pneumo.data.decode import decode_image
from pneumo.data.errors import ImageDecodeError

from pneumo_testsupport.corpus import dicom_bytes, encode, xray_like

EXAMPLES = int(os.environ.get("PNEUMO_FUZZ_EXAMPLES", "150"))
# CI replays the same examples; a long local run explores new ones each time.
FUZZ = settings(max_examples=EXAMPLES, deadline=2000, derandomize="PNEUMO_FUZZ_EXAMPLES" not in os.environ,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

MAGICS = [b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"\0" * 128 + b"DICM", b"GIF89a", b"BM", b"II*\x00",
          b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBP", b"\x08\x00\x05\x00", b"\x02\x00\x00\x00"]


def _valid_images() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    gray = xray_like(rng, 24, 20)
    ramp16 = (gray.astype(np.uint16) * 257)
    return {
        "jpeg": encode(Image.fromarray(gray), "JPEG", quality=90),
        "jpeg_progressive": encode(Image.fromarray(gray), "JPEG", progressive=True),
        "png": encode(Image.fromarray(gray), "PNG"),
        "png16": encode(Image.fromarray(ramp16), "PNG"),
        "png_palette": encode(Image.fromarray(gray).convert("P", palette=Image.Palette.ADAPTIVE, colors=8), "PNG"),
        "gif": encode(Image.fromarray(gray), "GIF"),
        "bmp": encode(Image.fromarray(gray), "BMP"),
        "tiff": encode(Image.fromarray(gray), "TIFF"),
        "tiff16": encode(Image.fromarray(ramp16), "TIFF"),
        "webp": encode(Image.fromarray(gray), "WEBP", lossless=True),
        "dicom": dicom_bytes(ramp16 >> 4, BitsStored=12, HighBit=11, WindowCenter=2000, WindowWidth=3000),
        "dicom_mono1": dicom_bytes(gray, PhotometricInterpretation="MONOCHROME1", RescaleSlope=2, RescaleIntercept=-5),
    }


VALID = _valid_images()


def check_contract(data: bytes) -> None:
    try:
        image = decode_image(data, name="fuzz-input")
    except ImageDecodeError as exc:
        assert exc.path == "fuzz-input" and exc.reason, f"error without a name or reason: {exc!r}"
        return
    assert isinstance(image, np.ndarray), type(image)
    assert image.ndim == 2 and image.size > 0, image.shape
    assert image.dtype == np.float32, image.dtype
    assert np.isfinite(image).all(), "NaN or infinity in a decoded image"
    assert image.min() >= 0.0 and image.max() <= 1.0, (image.min(), image.max())


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data: bytes) -> None:
    check_contract(data)


@FUZZ
@given(st.sampled_from(MAGICS), st.binary(max_size=2048))
def test_random_bytes_behind_a_real_magic(magic: bytes, tail: bytes) -> None:
    check_contract(magic + tail)


@st.composite
def mutated(draw) -> bytes:
    """A valid image with a few bytes changed, a span deleted or duplicated, and/or the end cut off."""
    data = bytearray(VALID[draw(st.sampled_from(sorted(VALID)))])
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        start = draw(st.integers(0, len(data) - 1))
        span = draw(st.integers(1, 64))
        if draw(st.booleans()):
            del data[start:start + span]
        else:
            data[start:start] = data[start:start + span]
    if draw(st.booleans()):
        data = data[:draw(st.integers(1, len(data)))]
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_valid_images(data: bytes) -> None:
    check_contract(data)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_unmutated_seeds_decode(kind: str) -> None:
    """The mutation seeds are themselves valid, so the mutation test starts from readable images."""
    image = decode_image(VALID[kind])
    assert image.shape in ((24, 20), (20, 24)) and np.isfinite(image).all() and image.max() > image.min()
