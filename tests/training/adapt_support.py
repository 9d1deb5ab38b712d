"""Tiny local sites for the adaptation tests: synthetic X-rays written as PNG files with a manifest."""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image

from conftest import synthetic_xray


def write_site(folder: Path, normal_patients: int, pneumonia_patients: int, *, images_per_patient: int = 2,
               seed: int = 1000, prefix: str = "site") -> Path:
    """PNG X-rays (new names, never Kermany's) and ``manifest.csv`` with path,label,patient_id."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, patients in (("NORMAL", normal_patients), ("PNEUMONIA", pneumonia_patients)):
        for patient in range(patients):
            for image in range(images_per_patient):
                seed += 1
                name = f"{prefix}-{label.lower()}-{patient:03d}-{image}.png"
                Image.fromarray(synthetic_xray(seed, pneumonia=label == "PNEUMONIA")).save(folder / name)
                rows.append({"path": name, "label": label, "patient_id": f"{label[0]}{patient:03d}"})
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "patient_id"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest
