"""What the DICOM header says before any pixel is read: the instance's UIDs (the only identifiers pneumo keeps),
whether it is a view the model can read at all, and whether its pixels fit the node's memory budget.

The budget here is the node's own check of the header (frames x rows x columns x samples x bytes) at C-STORE;
``pneumo.data.decode`` has its own for every other input (the two can become one)."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from pneumo.dicom.status import CANNOT_UNDERSTAND, DATASET_DOES_NOT_MATCH, OUT_OF_RESOURCES, Refusal

# Lateral projections (PS3.3 C.8.11.5.1.1 ViewPosition): the models are trained on frontal PA/AP films only.
LATERAL_VIEWS = {"LL": "left lateral", "RL": "right lateral"}
# BodyPartExamined values that mean the chest (PS3.16 CID 4031 defined terms, plus what modalities send).
CHEST_BODY_PARTS = {"CHEST", "THORAX", "LUNG", "CHEST_ABDOMEN", "CHESTABDOMEN", "CHEST_TO_PELVIS"}

# The identifiers a history row keeps: UIDs only, never a name, patient id, date of birth or accession number.
UID_TAGS = {"study_instance_uid": "StudyInstanceUID", "series_instance_uid": "SeriesInstanceUID",
            "sop_instance_uid": "SOPInstanceUID", "sop_class_uid": "SOPClassUID"}


def instance_uids(dataset: Dataset) -> dict[str, str | None]:
    """Study, series and SOP instance UIDs and the SOP class UID (None where the dataset lacks one)."""
    out: dict[str, str | None] = {}
    for key, keyword in UID_TAGS.items():
        value = dataset.get(keyword)
        out[key] = str(value) if value else None
    return out


def _text(dataset: Dataset, keyword: str) -> str:
    value: Any = dataset.get(keyword, "")
    return str(value or "").strip().upper()


def header_reason(dataset: Dataset) -> str | None:
    """Why this instance is not one the model reads (a lateral view, not a chest), or None.

    A missing ViewPosition or BodyPartExamined is no reason: many modalities leave them empty, and the image
    gate still looks at the pixels."""
    view = _text(dataset, "ViewPosition")
    if view in LATERAL_VIEWS:
        return (f"lateral view (ViewPosition {view}, {LATERAL_VIEWS[view]}); the model reads frontal "
                "PA/AP chest films only")
    part = _text(dataset, "BodyPartExamined")
    if part and part not in CHEST_BODY_PARTS:
        return f"not a chest image (BodyPartExamined {part}); the model reads chest X-rays only"
    return None


def _declared_integer(header: Dataset, keyword: str, default: int | None) -> int | None:
    value = header.get(keyword, default)
    if value in (None, ""):
        return default
    return int(value)


def image_refusal(header: Dataset, max_image_bytes: int) -> Refusal | None:
    """Why the pixels this header declares are not read (multi-frame, over the budget, unusable numbers), as a
    DIMSE failure; None when they may be. Checked before anything decodes them."""
    try:
        frames = _declared_integer(header, "NumberOfFrames", 1)
        rows, columns = _declared_integer(header, "Rows", None), _declared_integer(header, "Columns", None)
        bits = _declared_integer(header, "BitsAllocated", None)
        samples = _declared_integer(header, "SamplesPerPixel", 1)
    except (TypeError, ValueError, OverflowError) as exc:
        return Refusal(CANNOT_UNDERSTAND, f"image header unusable ({type(exc).__name__})")
    if rows is None or columns is None or bits is None:
        return Refusal(DATASET_DOES_NOT_MATCH, "Rows, Columns or BitsAllocated missing")
    if min(frames, rows, columns, bits, samples) < 1:
        return Refusal(CANNOT_UNDERSTAND, "Rows, Columns, BitsAllocated, frames or samples below 1")
    if frames > 1:
        return Refusal(DATASET_DOES_NOT_MATCH, f"multi-frame ({frames} frames); pneumo reads one frame")
    size = rows * columns * samples * -(-bits // 8)
    if size > max_image_bytes:
        return Refusal(OUT_OF_RESOURCES, f"image of {size} bytes, over the {max_image_bytes}-byte limit")
    return None


def native_pixel_bytes(header: Dataset) -> int | None:
    """Bytes the header says native pixel data holds (None for packed 1-bit data: left to the decoder)."""
    bits = int(header.BitsAllocated)
    if bits % 8:
        return None
    return (int(header.Rows) * int(header.Columns) * int(header.get("SamplesPerPixel", 1) or 1)
            * int(header.get("NumberOfFrames", 1) or 1) * bits // 8)
