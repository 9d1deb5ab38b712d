"""Reviewed history rows as local labels for ``pneumo adapt --from-history``: the latest review of each analysis
(NOT_ASSESSABLE left out) as a manifest label and subtype, grouped so that one patient's images stay in one fold
as far as the history can tell (it keeps no patient id)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# Review label -> (manifest label, subtype); NOT_ASSESSABLE is no label at all.
MANIFEST_LABELS = {"NORMAL": ("NORMAL", ""), "PNEUMONIA": ("PNEUMONIA", ""),
                   "PNEUMONIA_BACTERIAL": ("PNEUMONIA", "bacterial"), "PNEUMONIA_VIRAL": ("PNEUMONIA", "viral")}


@dataclass(frozen=True)
class ReviewedImage:
    sha256: str  # of the image bytes, as the history stores it
    label: str  # NORMAL or PNEUMONIA
    subtype: str  # "", bacterial or viral
    group: str  # the fold group: the DICOM study (hashed) or, for an upload, the image itself


def reviewed_image(sha256: str, review: str, study_instance_uid: str | None) -> ReviewedImage | None:
    """The label a review gives an image, or None for NOT_ASSESSABLE."""
    if review not in MANIFEST_LABELS:
        return None
    label, subtype = MANIFEST_LABELS[review]
    # A study is one patient's: its images share a fold. An upload carries no patient or study, so each image is its
    # own group (a patient's repeat uploads may fall in different folds: the cross-validated figures are optimistic).
    key = f"study:{study_instance_uid}" if study_instance_uid else f"image:{sha256}"
    return ReviewedImage(sha256, label, subtype, hashlib.sha256(key.encode()).hexdigest()[:16])
