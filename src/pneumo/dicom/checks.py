"""What the DICOM header says before any pixel is read: the instance's UIDs (the only identifiers pneumo keeps)
and whether it is a view the model can read at all."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

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
