"""Issue 23, item 3: one rule for DICOM pixels without a window. The same real X-ray as a PNG and as
8-bit MONOCHROME2, 8-bit MONOCHROME1 (inverted pixels) and 16-bit windowed DICOMs gets the same probability
from the shipped ``default`` model (within 0.005)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from conftest import ASSETS
from pneumo.data.decode import decode_image
from pneumo.inference.predictor import Predictor

TOLERANCE = 0.005
XRAYS = sorted(ASSETS.glob("*.jpeg"))  # four real X-rays (tests/assets/README.md)


def _dicom(pixels: np.ndarray, photometric: str, **tags) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = pixels.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    for name, value in tags.items():
        setattr(ds, name, value)
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _forms(path: Path) -> dict[str, bytes]:
    """The X-ray as a PNG and as the three DICOMs of issue 23."""
    # The assets span 0..255, where a min-max stretch changes nothing; many exported films do not: keep them in
    # 16..235 (video range) so that the rule matters.
    full = np.asarray(Image.open(path).convert("L")).astype(np.uint16)
    gray = (16 + full * 219 // 255).astype(np.uint8)
    png = io.BytesIO()
    Image.fromarray(gray).save(png, format="PNG")
    # 16 bits: value x 257 spans 0..65535; a window over the whole range maps it back to value / 255.
    wide = gray.astype(np.uint16) * 257
    return {"png": png.getvalue(),
            "8-bit MONOCHROME2": _dicom(gray, "MONOCHROME2"),
            "8-bit MONOCHROME1": _dicom((255 - gray).astype(np.uint8), "MONOCHROME1"),
            "16-bit windowed": _dicom(wide, "MONOCHROME2", WindowCenter=32768, WindowWidth=65536)}


def test_8bit_dicom_is_read_as_its_png() -> None:
    forms = _forms(XRAYS[0])
    png = decode_image(forms["png"])
    # Stretching to min/max (the old rule) moves every pixel of an image that does not span 0..255.
    assert png.min() >= 16 / 255 - 1e-6 and png.max() <= 235 / 255 + 1e-6
    np.testing.assert_array_equal(decode_image(forms["8-bit MONOCHROME2"]), png)
    np.testing.assert_allclose(decode_image(forms["8-bit MONOCHROME1"]), png, atol=1e-6)
    np.testing.assert_allclose(decode_image(forms["16-bit windowed"]), png, atol=1e-6)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load("default")


@pytest.mark.parametrize("path", XRAYS, ids=lambda p: p.stem)
def test_dicom_forms_get_the_pngs_probability(predictor: Predictor, path: Path) -> None:
    forms = _forms(path)
    reference = predictor.predict(forms["png"])
    assert reference.error is None and reference.probability is not None, reference.unknown_reason
    for name, data in forms.items():
        prediction = predictor.predict(data)
        assert prediction.error is None, f"{name}: {prediction.error}"
        assert prediction.label == reference.label, name
        assert abs(prediction.probability - reference.probability) <= TOLERANCE, (
            f"{path.name} as {name}: {prediction.probability:.4f} vs the PNG's {reference.probability:.4f}")
