"""``pneumo adapt --from-history``: the history's reviewed analyses as a manifest of local labels.

The history keeps the SHA-256 of each image, never the image or its file name, so the images come from a folder
the site gives (``--images``: where its PACS export or upload archive lies): every file there is hashed and
matched to the reviewed rows. The manifest (path, label, patient_id, subtype; patient_id being the fold group of
:mod:`pneumo.site.reviewed`) is written beside the site bundle and handed to :func:`adapt` as ``--manifest`` is.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from pneumo.site.reviewed import ReviewedImage

log = logging.getLogger("pneumo.adapt")


@dataclass(frozen=True)
class HistoryManifest:
    path: Path
    written: int  # reviewed images found in the folder
    missing: int  # reviewed images whose file is not in the folder


def file_digests(folder: Path) -> dict[str, Path]:
    """SHA-256 of every file under ``folder`` -> its path (the first of identical files)."""
    found: dict[str, Path] = {}
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        found.setdefault(digest.hexdigest(), path)
    return found


def write_history_manifest(reviewed: list[ReviewedImage], images: Path, out: Path) -> HistoryManifest:
    """Match ``reviewed`` to the files under ``images`` and write the manifest to ``out``; refuses when the
    folder holds none of them."""
    if not Path(images).is_dir():
        raise FileNotFoundError(f"--images {images}: no such folder")
    files = file_digests(Path(images))
    matched = [(files[r.sha256], r) for r in reviewed if r.sha256 in files]
    if reviewed and not matched:
        raise ValueError(f"--images {images}: none of the {len(reviewed)} reviewed images of the history is in this "
                         "folder (matched by the SHA-256 of the file's bytes, as the history stores it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "label", "patient_id", "subtype"])
        for path, image in matched:
            writer.writerow([str(path.resolve()), image.label, image.group, image.subtype])
    if len(matched) < len(reviewed):
        log.warning("%d reviewed images are not in %s and are left out", len(reviewed) - len(matched), images)
    return HistoryManifest(out, len(matched), len(reviewed) - len(matched))
