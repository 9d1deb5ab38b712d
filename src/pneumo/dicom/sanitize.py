"""The part of a received header that goes into the report, each value checked against its VR first.

highdicom copies the patient and study modules of the source into the SR, and pydicom raises (and logs the value,
so the patient's data) on a value its VR does not allow: ``PatientBirthDate`` ``1980-01-01`` was enough to lose a
reading. Only the attributes a PACS needs to file the report are copied, from their raw bytes, and an invalid
optional one is left empty (Type 2 allows it) instead of failing the report.
"""

from __future__ import annotations

import datetime
import re
from typing import Callable

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.datadict import tag_for_keyword

# Identify the report: needed as they are (no report without them).
REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
_UID = re.compile(rb"^[0-9.]{1,64}$")
_TIME = re.compile(rb"^([01]\d|2[0-3])([0-5]\d([0-5]\d(\.\d{1,6})?)?)?$")
_CODE = re.compile(rb"^[A-Z0-9 _]{0,16}$")
_CHARSETS = re.compile(rb"^[A-Z0-9 _\\-]{0,128}$")
_CONTROL = re.compile(rb"[\x00-\x1a\x1c-\x1f\x7f\\]")  # ESC (0x1b) stays: ISO 2022 code extensions use it


def _date(raw: bytes) -> bool:
    if not re.fullmatch(rb"\d{8}", raw):
        return False
    try:
        datetime.date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
    except ValueError:
        return False
    return True


def _text(limit: int) -> Callable[[bytes], bool]:
    return lambda raw: len(raw) <= limit and not _CONTROL.search(raw)


def _person_name(raw: bytes) -> bool:
    groups = raw.split(b"=")
    return (len(groups) <= 3 and not _CONTROL.search(raw)
            and all(len(group) <= 64 and group.count(b"^") <= 4 for group in groups))


# Optional attributes copied into the report (and the overlay), with the check of their VR.
OPTIONAL: dict[str, Callable[[bytes], bool]] = {
    "SpecificCharacterSet": lambda raw: bool(_CHARSETS.match(raw)),
    "PatientName": _person_name, "PatientID": _text(64), "IssuerOfPatientID": _text(64),
    "PatientBirthDate": _date, "PatientSex": lambda raw: bool(_CODE.match(raw)),
    "StudyDate": _date, "StudyTime": lambda raw: bool(_TIME.match(raw)), "StudyID": _text(16),
    "AccessionNumber": _text(16), "ReferringPhysicianName": _person_name,
    "PatientOrientation": lambda raw: all(_CODE.match(part) for part in raw.split(b"\\")),
}


def _raw_bytes(element: RawDataElement | DataElement) -> bytes | None:
    if isinstance(element, RawDataElement):
        value = element.value
        return bytes(value).rstrip(b" \x00") if value is not None else None
    value = element.value
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(item) for item in value).encode("utf-8", "replace")
    return str(value if value is not None else "").encode("utf-8", "replace")


def report_source(header: Dataset) -> tuple[Dataset, list[str]]:
    """A new dataset with the identifying UIDs and the optional attributes whose values their VR allows, and the
    keywords of those left out as invalid (for a log line that names the tag, never its value)."""
    source = Dataset()
    dropped: list[str] = []
    for keyword in REQUIRED:
        element = header.get_item(keyword, keep_deferred=True) if keyword in header else None
        raw = _raw_bytes(element) if element is not None else None
        if not raw or not _UID.match(raw):
            raise ValueError(f"the instance has no valid {keyword}")
        setattr(source, keyword, raw.decode("ascii"))
    for keyword, valid in OPTIONAL.items():
        if keyword not in header:
            continue
        element = header.get_item(keyword, keep_deferred=True)
        raw = _raw_bytes(element)
        if raw is None or not valid(raw):
            dropped.append(keyword)
            continue
        source[tag_for_keyword(keyword)] = element  # still raw: pydicom converts it when highdicom reads it
    return source, dropped
