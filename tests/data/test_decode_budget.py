"""The decoding budget: issue 28's bombs are refused from their headers, naming the limit, with almost no
memory traced; ordinary compressed and deflated files still decode."""

from __future__ import annotations

import importlib.util
import io
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from pneumo.data.decode import DecodeLimits, decode_image
from pneumo.data.dicom_streams import inflate_capped, rle_segment_length
from pneumo.data.errors import ImageDecodeError, ImageTooLargeError
from pneumo_testsupport import bombs

MB = 1024 * 1024
# pyjpegls (installed with the dicom extra) encodes the JPEG-LS bombs and decodes JPEG-LS for pydicom.
needs_jpegls = pytest.mark.skipif(importlib.util.find_spec("jpeg_ls") is None, reason="pyjpegls is not installed")


def _refused_peak(data: bytes, match: str) -> int:
    """Decode ``data``, expect ImageTooLargeError matching ``match``; return the traced peak in bytes."""
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError, match=match) as info:
            decode_image(data, name="bomb.dcm")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(info.value).startswith("bomb.dcm: ")
    return peak


@needs_jpegls
def test_jpegls_multiframe_bomb_is_refused_from_its_header() -> None:
    data = bombs.jpegls_multiframe_bomb()
    assert len(data) < 60_000  # ~40 KB that would decode to 1 GB
    peak = _refused_peak(data, rf"1024000000 bytes \(128 frame\(s\).*over the {256 * MB}-byte decoding budget")
    assert peak < 50 * MB


def test_rle_multiframe_bomb_is_refused_from_its_header() -> None:
    data = bombs.rle_multiframe_bomb()
    peak = _refused_peak(data, rf"512000000 bytes \(128 frame\(s\).*over the {256 * MB}-byte decoding budget")
    assert peak < 50 * MB + len(data)


def test_deflated_bomb_is_inflated_with_a_cap() -> None:
    data = bombs.deflated_bomb()
    assert len(data) < 700_000  # ~0.5 MB that inflates to ~500 MB
    # Its header declares 16 x 16 pixels, so the stream may hold those plus the room for other elements.
    peak = _refused_peak(data, r"deflated DICOM inflates to more than \d+ bytes, over the \d+-byte limit")
    assert peak < 50 * MB


def test_deflated_header_over_the_budget_is_refused_from_the_first_inflated_bytes() -> None:
    peak = _refused_peak(bombs.deflated_bomb(side=16_000), "over the 40000000-pixel limit")
    assert peak < 50 * MB


@needs_jpegls
def test_codestream_larger_than_its_header_is_refused() -> None:
    peak = _refused_peak(bombs.jpegls_lying_frame(declared=16, actual=4000), "declares 4000x4000 pixels but the "
                                                                            "DICOM header 16x16")
    assert peak < 20 * MB


def test_rle_segment_that_expands_past_its_frame_is_refused() -> None:
    data = bombs.rle_segment_bomb(side=16, expanded=64 * MB)
    peak = _refused_peak(data, "RLE segment expands past the 256-byte limit")
    assert peak < 20 * MB  # pydicom's decoder would have built the 64 MB segment first


def test_small_multiframe_dicom_is_refused_naming_the_frame_limit() -> None:
    with pytest.raises(ImageTooLargeError, match="holds 2 frames, over the limit of 1 frame"):
        decode_image(bombs.multiframe_dicom(frames=2), name="two.dcm")


def test_raster_byte_budget_counts_bands_and_sample_size() -> None:
    rgb = io.BytesIO()
    Image.new("RGB", (100, 100)).save(rgb, format="PNG")
    gray = io.BytesIO()
    Image.new("L", (100, 100)).save(gray, format="PNG")
    limits = DecodeLimits(max_pixel_bytes=20_000)  # 100 x 100 x 3 = 30000 over it; x 1 = 10000 under it
    with pytest.raises(ImageTooLargeError, match="30000 bytes .* over the 20000-byte decoding budget"):
        decode_image(rgb.getvalue(), limits=limits, name="rgb.png")
    assert decode_image(gray.getvalue(), limits=limits).shape == (100, 100)


def test_ordinary_deflated_dicom_still_decodes() -> None:
    pixels = (np.arange(32 * 24, dtype=np.uint16).reshape(32, 24) * 5)
    image = decode_image(bombs.deflated_dicom(pixels))
    expected = (pixels - pixels.min()) / float(pixels.max() - pixels.min())
    np.testing.assert_allclose(image, expected, atol=1e-6)


@needs_jpegls
def test_ordinary_jpegls_dicom_still_decodes() -> None:
    image = decode_image(bombs.jpegls_lying_frame(declared=64, actual=64))  # header and codestream agree
    assert image.shape == (64, 64) and np.isfinite(image).all()


def test_inflate_capped_stops_at_the_cap() -> None:
    import zlib

    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = compressor.compress(bytes(10 * MB)) + compressor.flush()
    assert len(inflate_capped(stream, "x", 10 * MB)) == 10 * MB
    with pytest.raises(ImageTooLargeError, match="more than 1048576 bytes"):
        inflate_capped(stream, "x", 1 * MB)


def test_truncated_deflated_dicom_is_an_error_naming_the_file() -> None:
    data = bombs.deflated_dicom(np.zeros((32, 32), np.uint16))
    with pytest.raises(ImageDecodeError, match="^cut.dcm: deflated DICOM data is truncated"):
        decode_image(data[:-20], name="cut.dcm")


def test_rle_segment_length_counts_runs() -> None:
    # literal run of 3 (header 2), replicate 5 times (header 256 - 4 = 252), a no-op (128), literal of 1
    segment = bytes([2, 9, 9, 9, 252, 7, 128, 0, 1])
    assert rle_segment_length(segment, 1000) == 3 + 5 + 1
    assert rle_segment_length(b"\x81\x00" * 1000, 500) <= 500 + 128  # stops soon after the bound
