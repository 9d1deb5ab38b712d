"""Dataset records: one row per image, read from the Kermany folder layout or a CSV manifest."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".dcm", ".dicom", ".tif", ".tiff", ".bmp"}
BINARY_CLASSES = ("NORMAL", "PNEUMONIA")
SUBTYPE_CLASSES = ("NORMAL", "BACTERIAL", "VIRAL")
SPLITS = ("train", "val", "test")

_PERSON = re.compile(r"^(person\d+)_(bacteria|virus)_", re.IGNORECASE)
_NORMAL = re.compile(r"^((?:[A-Za-z0-9]+-)*?IM-\d+)-", re.IGNORECASE)


@dataclass(frozen=True)
class ImageRecord:
    path: str
    label: str  # NORMAL or PNEUMONIA
    split: str = ""
    patient_id: str = ""
    subtype: str = ""  # "", "bacterial" or "viral"
    order: str = ""  # manifests only: acquisition order (a number or an ISO date) for temporal splits

    def target(self, classes: int) -> int:
        """Integer target: 0 normal / 1 pneumonia, or 0 normal / 1 bacterial / 2 viral."""
        if classes == 2:
            return BINARY_CLASSES.index(self.label)
        if self.label == "NORMAL":
            return 0
        if self.subtype not in ("bacterial", "viral"):
            raise ValueError(f"{self.path}: pneumonia image without a bacterial/viral subtype cannot be used "
                             "for 3-class training")
        return 1 if self.subtype == "bacterial" else 2


def class_names(classes: int) -> tuple[str, ...]:
    if classes not in (2, 3):
        raise ValueError(f"classes must be 2 or 3, got {classes}")
    return BINARY_CLASSES if classes == 2 else SUBTYPE_CLASSES


def parse_kermany_name(filename: str) -> tuple[str, str]:
    """Patient key and subtype from a Kermany file name.

    ``person1946_bacteria_4875.jpeg`` -> (``person1946_bacteria``, ``bacterial``): bacterial and viral
    cases are numbered separately, so the subtype is part of the key. ``NORMAL2-IM-1427-0001.jpeg`` ->
    (``NORMAL2-IM-1427``, ``""``). Unknown patterns fall back to the file stem, one patient per image.
    """
    stem = Path(filename).stem
    match = _PERSON.match(stem)
    if match:
        kind = match.group(2).lower()
        return f"{match.group(1).lower()}_{kind}", "bacterial" if kind == "bacteria" else "viral"
    match = _NORMAL.match(stem)
    if match:
        return match.group(1), ""
    return stem, ""


def _child_dirs(folder: Path) -> dict[str, Path]:
    return {child.name.lower(): child for child in folder.iterdir() if child.is_dir()} if folder.is_dir() else {}


def scan_kermany(root: str | Path) -> list[ImageRecord]:
    """Read ``ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/*``; names are matched case-insensitively and
    missing splits are allowed. A root that directly holds NORMAL/PNEUMONIA is read as one split ''."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} is not a directory")
    splits = _child_dirs(root)
    layout: list[tuple[str, Path]] = [(name, splits[name]) for name in SPLITS if name in splits]
    if not layout and {"normal", "pneumonia"} & set(splits):
        layout = [("", root)]
    if not layout:
        raise ValueError(f"{root} has none of the folders {list(SPLITS)} nor NORMAL/PNEUMONIA; "
                         "expected ROOT/train/NORMAL/*.jpeg (Kermany layout) or use a CSV manifest")
    records: list[ImageRecord] = []
    for split, split_dir in layout:
        classes = _child_dirs(split_dir)
        for label in BINARY_CLASSES:
            class_dir = classes.get(label.lower())
            if class_dir is None:
                continue
            for path in sorted(class_dir.iterdir()):
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
                    patient, subtype = parse_kermany_name(path.name)
                    records.append(ImageRecord(str(path), label, split, patient, subtype if label == "PNEUMONIA" else ""))
    return records


def read_manifest(manifest: str | Path) -> list[ImageRecord]:
    """Read ``path,label[,split][,patient_id][,subtype][,order]``; relative paths are relative to the CSV."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest {manifest} does not exist")
    records: list[ImageRecord] = []
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"path", "label"} <= {f.strip().lower() for f in reader.fieldnames}:
            raise ValueError(f"{manifest}: header must include 'path' and 'label', got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            label = row["label"].upper()
            subtype = row.get("subtype", "").lower()
            if label in ("BACTERIAL", "VIRAL"):
                label, subtype = "PNEUMONIA", label.lower()
            if label not in BINARY_CLASSES:
                raise ValueError(f"{manifest}:{line}: label {row['label']!r} is not one of "
                                 f"{list(BINARY_CLASSES) + ['BACTERIAL', 'VIRAL']}")
            if subtype in ("bacteria", "virus"):
                subtype = "bacterial" if subtype == "bacteria" else "viral"
            if subtype not in ("", "bacterial", "viral"):
                raise ValueError(f"{manifest}:{line}: subtype {subtype!r} is not bacterial or viral")
            path = Path(row["path"])
            if not path.is_absolute():
                path = manifest.parent / path
            split = row.get("split", "").lower()
            if split and split not in SPLITS:
                raise ValueError(f"{manifest}:{line}: split {split!r} is not one of {list(SPLITS)}")
            patient = row.get("patient_id", "")
            if not patient:
                patient, parsed_subtype = parse_kermany_name(path.name)
                subtype = subtype or (parsed_subtype if label == "PNEUMONIA" else "")
            records.append(ImageRecord(str(path), label, split, patient, subtype, row.get("order", "")))
    return records


def load_records(root: str = "", manifest: str = "") -> list[ImageRecord]:
    if manifest:
        return read_manifest(manifest)
    if root:
        return scan_kermany(root)
    raise ValueError("give a dataset root (Kermany layout) or a CSV manifest")
