"""The reading sent back to the PACS: a Comprehensive SR in the source study that references the source image,
and (optionally) the Grad-CAM overlay as a Secondary Capture marked as derived.

Content tree of the SR (codes: DCM and SCT where the standard has one, else the private scheme ``99PNEUMO``)::

    CONTAINER  (LN 18748-4, "Diagnostic Imaging Report")
      CONTAINS CODE  Finding (DCM 121071) = Pneumonia (SCT 233604007) | No pneumonia | Not assessed (99PNEUMO)
        INFERRED FROM IMAGE  Source image (DCM 121324) -> the received instance
      CONTAINS TEXT  Reason not assessed (99PNEUMO)            only when not assessed (UNKNOWN)
      CONTAINS NUM   Probability of pneumonia (99PNEUMO), {ratio}   only when assessed
      CONTAINS TEXT  Out-of-distribution warning (99PNEUMO)   only for a chest X-ray unlike the training population
      CONTAINS NUM   Decision threshold (99PNEUMO), {ratio}
      CONTAINS NUM   Probability of <class> (99PNEUMO), {ratio}     one per class of a 3-class model
      CONTAINS TEXT  Algorithm Name (DCM 111001), Algorithm Version (DCM 111003)
      CONTAINS TEXT  Comment (DCM 121106) = assistive reading, not a diagnosis
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Mapping

import highdicom as hd
import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from pneumo import DISCLAIMER
from pneumo.site.identity import identify_predictor

SCHEME = "99PNEUMO"
MANUFACTURER = "pneumo"
ASSISTIVE = ("Assistive reading by software, not a diagnosis: a radiologist must read the image. " + DISCLAIMER)

TITLE = Code("18748-4", "LN", "Diagnostic Imaging Report")
PNEUMONIA = Code("233604007", "SCT", "Pneumonia")
NO_PNEUMONIA = Code("NO-PNEUMONIA", SCHEME, "No pneumonia")
NOT_ASSESSED = Code("NOT-ASSESSED", SCHEME, "Not assessed")
REASON = Code("REASON-NA", SCHEME, "Reason not assessed")
P_PNEUMONIA = Code("P-PNEUMONIA", SCHEME, "Probability of pneumonia")
THRESHOLD = Code("THRESHOLD", SCHEME, "Decision threshold")
OOD_WARNING = Code("OOD-WARNING", SCHEME, "Out-of-distribution warning")
RATIO = codes.UCUM.Ratio
FINDINGS = {"PNEUMONIA": PNEUMONIA, "NORMAL": NO_PNEUMONIA, "UNKNOWN": NOT_ASSESSED}

SR_SERIES_NUMBER = 9901
SC_SERIES_NUMBER = 9902
SR_SERIES_DESCRIPTION = "pneumo reading (assistive, not a diagnosis)"
SC_SERIES_DESCRIPTION = "pneumo Grad-CAM overlay (DERIVED, not for diagnosis)"


@dataclass(frozen=True)
class ModelInfo:
    """What the report says about the model that read the image: Algorithm Name, and as Algorithm Version the
    bundle's version, ``name@hash`` and, for a site bundle, its parent (pneumo.site.identity)."""

    name: str
    version: str

    @classmethod
    def of(cls, predictor: Any) -> "ModelInfo":
        identity = identify_predictor(predictor)
        version = f"{identity.version} {identity.label}"
        if identity.parent:
            version += f" from {identity.parent}"
        return cls(name=f"pneumo {predictor.meta.arch}", version=version)


# Type 2 attributes of the source that highdicom copies into the report (and the overlay): present, if empty, in
# a DX or CR image, often missing from a Secondary Capture. A missing one is written empty, as Type 2 allows.
COPIED_TYPE2 = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                "StudyDate", "StudyTime", "ReferringPhysicianName")


def _with_type2(source: Dataset) -> Dataset:
    missing = [keyword for keyword in COPIED_TYPE2 if keyword not in source]
    if not missing:
        return source
    filled = Dataset(dict(source))  # a new element dict: the caller's dataset is left as it was
    for keyword in missing:
        setattr(filled, keyword, "")
    return filled


def _class_code(name: str) -> Code:
    return Code(f"P-{name.upper()}"[:16], SCHEME, f"Probability of {name.lower()}")


def _uid(*parts: str) -> str:
    # Derived from the source instance and the model: the same reading sent twice carries the same UID, so the
    # PACS keeps one copy instead of two.
    return generate_uid(entropy_srcs=[*parts])


def build_report(source: Dataset, result: Mapping[str, Any], model: ModelInfo) -> Dataset:
    """A Comprehensive SR for one received instance. ``result``: the history row's result (label, probability,
    threshold, unknown_reason, subtype_probabilities, out_of_distribution, ood_reason). ``source`` needs its header
    only (no pixels)."""
    label = result.get("label")
    if label not in FINDINGS:
        raise ValueError(f"cannot report label {label!r}; expected one of {sorted(FINDINGS)}")
    source = _with_type2(source)
    image = hd.sr.ImageContentItem(name=codes.DCM.SourceImage, referenced_sop_class_uid=source.SOPClassUID,
                                   referenced_sop_instance_uid=source.SOPInstanceUID,
                                   relationship_type=hd.sr.RelationshipTypeValues.INFERRED_FROM)
    finding = hd.sr.CodeContentItem(name=codes.DCM.Finding, value=FINDINGS[label],
                                    relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    finding.ContentSequence = [image]
    items: list[Dataset] = [finding]

    def num(name: Code, value: float) -> None:
        items.append(hd.sr.NumContentItem(name=name, value=round(float(value), 6), unit=RATIO,
                                          relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))

    def text(name: Code, value: str) -> None:
        items.append(hd.sr.TextContentItem(name=name, value=value[:1024],
                                           relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))

    if label == "UNKNOWN":
        text(REASON, str(result.get("unknown_reason") or "not assessed"))
    elif result.get("probability") is not None:
        num(P_PNEUMONIA, result["probability"])
        if result.get("out_of_distribution"):
            text(OOD_WARNING, str(result.get("ood_reason") or "a chest X-ray unlike the training population"))
    num(THRESHOLD, result["threshold"])
    for name, value in (result.get("subtype_probabilities") or {}).items():
        num(_class_code(name), value)
    text(codes.DCM.AlgorithmName, model.name)
    text(codes.DCM.AlgorithmVersion, model.version)
    text(codes.DCM.Comment, ASSISTIVE)
    root = hd.sr.ContainerContentItem(name=TITLE)
    root.ContentSequence = items
    series = _uid(source.SeriesInstanceUID, model.version, "sr-series")
    report = hd.sr.ComprehensiveSR(
        evidence=[source], content=root, series_instance_uid=series, series_number=SR_SERIES_NUMBER,
        sop_instance_uid=_uid(source.SOPInstanceUID, model.version, "sr"), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
        series_description=SR_SERIES_DESCRIPTION)
    return report


def build_overlay(source: Dataset, overlay_png: bytes, model: ModelInfo) -> Dataset:
    """The Grad-CAM overlay as an RGB Secondary Capture in the source study, marked DERIVED \\ SECONDARY with
    burned-in annotation, in its own series that says it is not for diagnosis."""
    rgb = np.asarray(Image.open(io.BytesIO(overlay_png)).convert("RGB"))
    source = _with_type2(source)
    orientation = tuple(source.get("PatientOrientation") or ())
    if len(orientation) != 2:
        orientation = ("L", "F")  # how a frontal chest film is displayed: rows to the patient's left, columns down
    image = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=rgb, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", series_instance_uid=_uid(source.SeriesInstanceUID, model.version, "sc-series"),
        series_number=SC_SERIES_NUMBER, sop_instance_uid=_uid(source.SOPInstanceUID, model.version, "sc"),
        instance_number=1, manufacturer=MANUFACTURER, patient_orientation=orientation,
        transfer_syntax_uid="1.2.840.10008.1.2.1")
    image.ImageType = ["DERIVED", "SECONDARY"]
    image.BurnedInAnnotation = "YES"
    image.SeriesDescription = SC_SERIES_DESCRIPTION
    image.DerivationDescription = f"Grad-CAM heatmap of {model.name} {model.version} over the source image"[:1024]
    source_ref = Dataset()
    source_ref.ReferencedSOPClassUID = source.SOPClassUID
    source_ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    image.SourceImageSequence = [source_ref]
    return image


def read_report(report: Dataset) -> dict[str, Any]:
    """The values of a report made by :func:`build_report` (what a PACS shows), for tests and tools:
    finding (code meaning), reason, probability, out-of-distribution warning, threshold, per-class probabilities,
    algorithm, comment, and the referenced source SOP Instance UID."""
    out: dict[str, Any] = {"subtypes": {}}
    for item in report.ContentSequence:
        concept = item.ConceptNameCodeSequence[0]
        key = (str(concept.get("CodeValue", concept.get("LongCodeValue", ""))), concept.CodingSchemeDesignator)
        if item.ValueType == "CODE" and key == ("121071", "DCM"):
            out["finding"] = item.ConceptCodeSequence[0].CodeMeaning
            for child in item.get("ContentSequence", []):
                if child.ValueType == "IMAGE":
                    out["source_sop_instance_uid"] = child.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        elif item.ValueType == "NUM":
            value = float(item.MeasuredValueSequence[0].NumericValue)
            if key == (P_PNEUMONIA.value, SCHEME):
                out["probability"] = value
            elif key == (THRESHOLD.value, SCHEME):
                out["threshold"] = value
            else:
                out["subtypes"][concept.CodeMeaning.removeprefix("Probability of ")] = value
        elif item.ValueType == "TEXT":
            name = {REASON.value: "reason", OOD_WARNING.value: "ood_warning", "111001": "algorithm_name",
                    "111003": "algorithm_version", "121106": "comment"}.get(key[0])
            if name:
                out[name] = str(item.TextValue)
    return out
