"""Fixtures for the DICOM tests: DX instances built with pydicom from the real X-rays in tests/assets, and a
pneumo app with its DICOM node on a free loopback port (tiny model bundle, SQLite history in tmp)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pynetdicom", reason="the DICOM node needs the dicom extra: pip install 'pneumo[dicom]'")

from pydicom.dataset import Dataset, FileDataset, FileMetaDataset  # noqa: E402
from pydicom.uid import (ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation,  # noqa: E402
                         ExplicitVRLittleEndian, generate_uid)

from conftest import ASSETS, node_starter  # noqa: E402  the shared tests/conftest.py

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PID-SECRET-4711"


def dx_instance(jpeg: Path, *, study_uid: str | None = None, series_uid: str | None = None,
                sop_class: str = DigitalXRayImageStorageForPresentation, view: str = "PA",
                body_part: str = "CHEST", size: int | None = 256, **tags) -> FileDataset:
    """A MONOCHROME2 12-bit DX (or another class) instance whose pixels are a real chest X-ray from tests/assets,
    with patient identifiers that must never reach the history or the logs."""
    image = Image.open(jpeg).convert("L")
    if size:
        image.thumbnail((size, size))
    pixels = (np.asarray(image).astype(np.uint16) * 16)  # 12 bits stored
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(jpeg.name, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "20200101"
    ds.PatientSex = "F"
    ds.AccessionNumber = "ACC-0001"
    ds.StudyID = "1"
    ds.StudyDate, ds.StudyTime = "20261201", "101500"
    ds.ReferringPhysicianName = ""
    ds.Modality = "DX" if "1.1.1" in sop_class else "CR"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.BodyPartExamined = body_part
    ds.ViewPosition = view
    ds.PatientOrientation = ["L", "F"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


def encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture
def xray_files() -> list[Path]:
    return sorted(ASSETS.glob("*.jpeg"))


@pytest.fixture
def make_node(tmp_path, tiny_bundle) -> Iterator[Callable[..., tuple]]:
    """Start pneumo (app + DICOM node on a free port); returns (client, node)."""
    with node_starter(tiny_bundle, tmp_path / "data", host="127.0.0.1") as start:
        yield start
