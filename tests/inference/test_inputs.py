"""Every input type decodes to the same gray pixels; colour is measured on the original."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from conftest import synthetic_xray
from inference.bundles import png
from pneumo.data.decode import decode_image
from pneumo.data.errors import ImageDecodeError
from pneumo.inference.inputs import STRONG_CHROMA, colour_fraction_rgb, load_input


@pytest.fixture
def gray() -> np.ndarray:
    return synthetic_xray(1, size=(40, 48))


def _dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2") -> Dataset:
    ds = Dataset()
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    return ds


def test_path_bytes_pil_and_arrays_agree(tmp_path, gray):
    path = tmp_path / "x.png"
    path.write_bytes(png(gray))
    expected = gray.astype(np.float32) / 255.0
    sources = [path, str(path), png(gray), Image.fromarray(gray), gray, gray.astype(np.float32) / 255.0,
               np.repeat(gray[..., None], 3, axis=2), gray.astype(np.uint16) * 257]
    for source in sources:
        image = load_input(source)
        assert image.pixels.dtype == np.float32 and image.pixels.shape == gray.shape
        np.testing.assert_allclose(image.pixels, expected, atol=1.01 / 255)
        assert image.colour_fraction == 0.0
    assert load_input(path).name == str(path) and load_input(png(gray)).name is None


def test_colour_is_measured_before_the_gray_conversion(tmp_path):
    rng = np.random.default_rng(0)
    colourful = np.zeros((64, 64, 3), np.uint8)
    colourful[..., 0] = 230  # saturated red/magenta everywhere
    colourful[..., 2] = rng.integers(0, 255, (64, 64))
    buffer = io.BytesIO()
    Image.fromarray(colourful).save(buffer, format="JPEG", quality=90)
    for source in (buffer.getvalue(), Image.fromarray(colourful), colourful):
        assert load_input(source).colour_fraction > 0.5
    # A gray X-ray saved as an RGB JPEG only carries compression chroma noise.
    gray_rgb = np.repeat(synthetic_xray(2, size=(64, 64))[..., None], 3, axis=2)
    buffer = io.BytesIO()
    Image.fromarray(gray_rgb).save(buffer, format="JPEG", quality=75)
    assert load_input(buffer.getvalue()).colour_fraction < 0.01


def test_colour_fraction_threshold():
    rgb = np.full((10, 10, 3), 100, np.uint8)
    rgb[:5, :, 0] = 100 + STRONG_CHROMA + 1
    assert colour_fraction_rgb(rgb) == pytest.approx(0.5)
    assert colour_fraction_rgb(np.full((4, 4, 3), 7, np.uint8)) == 0.0


def test_dicom_dataset_matches_file_decoding_and_is_not_modified(gray):
    pixels = gray.astype(np.uint16) * 200
    for photometric in ("MONOCHROME2", "MONOCHROME1"):
        ds = _dataset(pixels, photometric)
        image = load_input(ds)
        assert not hasattr(ds, "file_meta") or "TransferSyntaxUID" not in ds.file_meta
        buffer = io.BytesIO()
        copy = _dataset(pixels, photometric)
        copy.file_meta = pydicom.dataset.FileMetaDataset()
        copy.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        copy.preamble = b"\0" * 128
        pydicom.filewriter.dcmwrite(buffer, copy, enforce_file_format=False)
        np.testing.assert_array_equal(image.pixels, decode_image(buffer.getvalue()))
    mono1 = load_input(_dataset(pixels, "MONOCHROME1")).pixels
    mono2 = load_input(_dataset(pixels, "MONOCHROME2")).pixels
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)


def test_colour_dicom_is_measured():
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 1] = 200
    ds = Dataset()
    ds.Rows, ds.Columns = 32, 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = rgb.tobytes()
    assert load_input(ds).colour_fraction == pytest.approx(1.0)


def test_colour_dicom_whose_colour_cannot_be_measured_is_refused(monkeypatch):
    """Not passed as gray (colour 0): that would let a colour image through the colour check."""
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 200
    ds = Dataset()
    ds.Rows, ds.Columns = 32, 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = rgb.tobytes()

    def broken(dataset):
        raise NotImplementedError("this colour encoding")

    monkeypatch.setattr("pneumo.inference.inputs._colour_of_dataset", broken)
    with pytest.raises(ImageDecodeError, match="colour DICOM .*cannot be measured"):
        load_input(ds)


@pytest.mark.parametrize("bad, match", [
    (np.full((8, 8), 1.5, np.float32), r"\[0, 1\]"),
    (np.full((8, 8), np.nan, np.float32), "NaN"),
    (np.zeros((2, 3, 4, 5), np.uint8), "shape"),
    (np.zeros((8, 8), np.int64), "dtype"),
    (b"not an image at all" * 10, "not a recognised image"),
    (12345, "unsupported input type"),
])
def test_bad_inputs_raise_decode_errors(bad, match):
    with pytest.raises(ImageDecodeError, match=match):
        load_input(bad)


def test_missing_file_error_names_it(tmp_path):
    with pytest.raises(ImageDecodeError, match="nope.png"):
        load_input(tmp_path / "nope.png")
