"""decode_image: every supported format ends as one-channel float32 in [0, 1]; bad input is a typed
error naming the file."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_xray
from pneumo.data.decode import decode_image
from pneumo.data.errors import ImageDecodeError, ImageTooLargeError, UnsupportedFormatError

from .helpers import PATIENT_ID, PATIENT_NAME, png_header_only, write_dicom


def _check_array(image: np.ndarray, shape: tuple[int, int]) -> None:
    assert type(image) is np.ndarray  # only pixels come back: no dataset, no tags
    assert image.dtype == np.float32 and image.shape == shape
    assert np.isfinite(image).all() and image.min() >= 0.0 and image.max() <= 1.0


@pytest.fixture
def gray() -> np.ndarray:
    return synthetic_xray(3, size=(48, 40))


# --- rasters -------------------------------------------------------------------------------------------

def test_jpeg_gray(tmp_path: Path, gray: np.ndarray) -> None:
    path = tmp_path / "a.jpeg"
    Image.fromarray(gray).save(path, quality=95)
    image = decode_image(path)
    _check_array(image, gray.shape)
    assert np.abs(image * 255 - gray).mean() < 4  # lossy, but the same picture


def test_jpeg_rgb_becomes_one_channel(tmp_path: Path, gray: np.ndarray) -> None:
    path = tmp_path / "rgb.jpg"
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(path, quality=95)
    image = decode_image(path)
    _check_array(image, gray.shape)
    assert np.abs(image * 255 - gray).mean() < 4


def test_png_8bit_is_exact(tmp_path: Path, gray: np.ndarray) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(gray).save(path)
    image = decode_image(path)
    _check_array(image, gray.shape)
    np.testing.assert_allclose(image, gray / 255.0, atol=1e-6)


def test_png_16bit_keeps_full_depth(tmp_path: Path) -> None:
    values = (np.arange(48 * 40, dtype=np.uint32).reshape(48, 40) * 34).astype(np.uint16)  # up to 65246
    path = tmp_path / "a16.png"
    Image.fromarray(values).save(path)
    image = decode_image(path)
    _check_array(image, values.shape)
    np.testing.assert_allclose(image, values / 65535.0, atol=1e-6)
    # Neighbouring 16-bit levels stay distinct: nothing went through 8 bits.
    assert len(np.unique(image)) == values.size


def test_png_palette(tmp_path: Path, gray: np.ndarray) -> None:
    pal = Image.fromarray(gray).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    path = tmp_path / "pal.png"
    pal.save(path)
    assert Image.open(path).mode == "P"
    image = decode_image(path)
    _check_array(image, gray.shape)
    expected = np.asarray(pal.convert("L"), dtype=np.float32) / 255.0
    np.testing.assert_allclose(image, expected, atol=1e-6)


def test_png_rgba_transparent_pixels_become_black(tmp_path: Path, gray: np.ndarray) -> None:
    alpha = np.full(gray.shape, 255, np.uint8)
    alpha[:, :10] = 0  # a transparent left margin
    rgba = np.dstack([gray, gray, gray, alpha])
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    image = decode_image(path)
    _check_array(image, gray.shape)
    assert image[:, :10].max() == 0.0
    np.testing.assert_allclose(image[:, 10:], gray[:, 10:] / 255.0, atol=1 / 255 + 1e-6)


def test_cmyk_jpeg(tmp_path: Path, gray: np.ndarray) -> None:
    path = tmp_path / "cmyk.jpeg"
    Image.fromarray(gray).convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    image = decode_image(path)
    _check_array(image, gray.shape)
    assert np.abs(image * 255 - gray).mean() < 4  # not inverted, not garbled


@pytest.mark.parametrize("orientation, undo", [(6, lambda a: np.rot90(a, -1)), (8, lambda a: np.rot90(a, 1)),
                                               (3, lambda a: np.rot90(a, 2))])
def test_exif_orientation_is_honoured(tmp_path: Path, orientation: int, undo) -> None:
    stored = np.full((32, 48), 30, np.uint8)
    stored[:8, :8] = 230  # a bright marker in the stored top-left corner
    path = tmp_path / "rotated.jpeg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, quality=100, exif=exif)
    image = decode_image(path)
    expected = undo(stored) / 255.0
    _check_array(image, expected.shape)
    assert np.abs(image - expected).mean() < 0.02
    if orientation != 3:
        assert image.shape == (48, 32)  # a portrait film stays portrait


def test_bytes_input(gray: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(gray).save(path)
    np.testing.assert_array_equal(decode_image(path.read_bytes()), decode_image(path))


# --- DICOM ---------------------------------------------------------------------------------------------

RAMP = np.tile(np.arange(0, 4000, 100, dtype=np.uint16), (6, 1))  # 6 x 40, values 0..3900


def test_dicom_monochrome2(tmp_path: Path) -> None:
    image = decode_image(write_dicom(tmp_path / "m2.dcm", RAMP, bits_stored=12))
    _check_array(image, RAMP.shape)
    np.testing.assert_allclose(image, RAMP / 3900.0, atol=1e-5)


def test_dicom_monochrome1_is_inverted(tmp_path: Path) -> None:
    m2 = decode_image(write_dicom(tmp_path / "m2.dcm", RAMP, bits_stored=12))
    m1 = decode_image(write_dicom(tmp_path / "m1.dcm", RAMP, bits_stored=12, photometric="MONOCHROME1"))
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
    assert m1[0, 0] == 1.0  # stored 0 is white in MONOCHROME1


def test_dicom_rescale_slope_and_intercept(tmp_path: Path) -> None:
    # A negative slope flips the modality values: proof the rescale ran before the [0, 1] mapping.
    flipped = decode_image(write_dicom(tmp_path / "neg.dcm", RAMP, bits_stored=12, RescaleSlope=-1,
                                       RescaleIntercept=4000))
    np.testing.assert_allclose(flipped, 1.0 - RAMP / 3900.0, atol=1e-5)
    # With a window the rescaled values are what is windowed: 2 * raw - 1000 in [750, 1250].
    windowed = decode_image(write_dicom(tmp_path / "win.dcm", RAMP, bits_stored=12, RescaleSlope=2,
                                        RescaleIntercept=-1000, WindowCenter=1000, WindowWidth=501))
    hu = 2.0 * RAMP - 1000.0
    expected = np.clip((hu - 999.5) / 500.0 + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(windowed, expected, atol=1e-5)


def test_dicom_window_is_the_scale(tmp_path: Path) -> None:
    """Values inside the window keep their grey level; the window is not re-stretched to the data."""
    inside = np.tile(np.array([800, 900, 1000, 1100], np.uint16), (4, 1))
    image = decode_image(write_dicom(tmp_path / "inside.dcm", inside, bits_stored=12, WindowCenter=1000,
                                     WindowWidth=1001))
    np.testing.assert_allclose(image[0], [0.3, 0.4, 0.5, 0.6], atol=1e-3)
    clipped = decode_image(write_dicom(tmp_path / "clip.dcm", RAMP, bits_stored=12, WindowCenter=2000,
                                       WindowWidth=1001))
    assert clipped[0, RAMP[0] < 1400].max() == 0.0 and clipped[0, RAMP[0] > 2600].min() == 1.0


def test_dicom_16bit_and_signed(tmp_path: Path) -> None:
    wide = (np.arange(64, dtype=np.uint32).reshape(4, 16) * 1040).astype(np.uint16)  # up to 65520
    image = decode_image(write_dicom(tmp_path / "u16.dcm", wide, bits_stored=16))
    np.testing.assert_allclose(image, wide / 65520.0, atol=1e-5)
    signed = (np.arange(64, dtype=np.int32).reshape(4, 16) * 100 - 3000).astype(np.int16)
    image = decode_image(write_dicom(tmp_path / "s16.dcm", signed, bits_stored=16))
    np.testing.assert_allclose(image, (signed + 3000) / 6300.0, atol=1e-5)


def test_dicom_returns_only_pixels(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "phi.dcm", RAMP, bits_stored=12)
    assert PATIENT_ID.encode() in path.read_bytes()
    image = decode_image(path)
    assert type(image) is np.ndarray
    assert not hasattr(image, "PatientID") and not hasattr(image, "dataset")
    assert PATIENT_ID.encode() not in image.tobytes() and PATIENT_NAME.encode() not in image.tobytes()


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "empty.dcm", RAMP, with_pixels=False)
    with pytest.raises(ImageDecodeError, match="no pixel data") as info:
        decode_image(path)
    assert str(path) in str(info.value)


# --- bad input -----------------------------------------------------------------------------------------

def _expect_error(path: Path, kind: type[ImageDecodeError] = ImageDecodeError,
                  reason: str | None = None) -> ImageDecodeError:
    with pytest.raises(kind, match=reason) as info:
        decode_image(path)
    assert info.value.path == str(path) and str(path) in str(info.value)
    return info.value


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpeg"
    path.write_bytes(b"")
    _expect_error(path, reason="empty")


@pytest.mark.parametrize("fmt, suffix", [("JPEG", "jpeg"), ("PNG", "png")])
def test_truncated_file(tmp_path: Path, gray: np.ndarray, fmt: str, suffix: str) -> None:
    whole = tmp_path / f"whole.{suffix}"
    Image.fromarray(gray).save(whole, fmt)
    path = tmp_path / f"cut.{suffix}"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    _expect_error(path, reason="truncated|corrupt")


def test_text_named_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpeg"
    path.write_text("patient notes, not an image\n" * 20)
    _expect_error(path, UnsupportedFormatError, "not a recognised image")


def test_wrong_extension_is_sniffed(tmp_path: Path, gray: np.ndarray) -> None:
    path = tmp_path / "actually_png.dcm"
    Image.fromarray(gray).save(path, "PNG")
    np.testing.assert_allclose(decode_image(path), gray / 255.0, atol=1e-6)


def test_decompression_bomb_is_refused_without_allocating(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(30_000, 30_000))
    tracemalloc.start()
    started = time.perf_counter()
    try:
        _expect_error(path, ImageTooLargeError, "decompression bomb|pixel limit")
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 20 * 1024 * 1024  # the declared image would be 900 MB


def test_over_our_limit_but_under_pillows(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(png_header_only(9_000, 8_000))  # 72 MP: over pneumo's 40 MP limit, under Pillow's
    _expect_error(path, ImageTooLargeError, "pixel limit")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "scan.jpeg"
    folder.mkdir()
    _expect_error(folder, reason="directory")


def test_missing_file(tmp_path: Path) -> None:
    _expect_error(tmp_path / "nowhere.jpeg", reason="does not exist")
