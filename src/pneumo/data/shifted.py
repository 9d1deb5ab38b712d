"""The acquisition-shifted validation block: validation X-rays given the other label's acquisition style.

A model that reads the lungs scores this block about as well as the plain one; a model that learned the
acquisition style as a cue (Kermany's pneumonia films are framed, exposed and marked differently from its
normal ones) ranks it worse. The temporal block alone no longer separates such models (AUC 0.999 for all).
Each image's rendering is seeded by its file name, so the block is the same in every run and process.
"""

from __future__ import annotations

import csv
import io
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pneumo.atomic import replacing, write_text
from pneumo.config import PreprocessConfig
from pneumo.data.acquisition import confound_swap, to_pil
from pneumo.data.cache import default_cache_dir
from pneumo.data.decode import decode_image, decoded_each
from pneumo.data.errors import ImageDecodeError
from pneumo.data.preprocess import preprocess_array
from pneumo.data.records import ImageRecord
from pneumo.data.selection import fingerprint


@dataclass
class ShiftedBlock:
    records: list[ImageRecord]
    pixels: np.ndarray  # uint8 (N, S, S), preprocessed as the model's inputs are
    skipped: list[tuple[str, str]]


def shifted_image(image: np.ndarray, record: ImageRecord, seed: int = 0) -> np.ndarray:
    """One decoded float [0, 1] X-ray with the other label's acquisition style, the same on every call."""
    rng = np.random.default_rng([seed, zlib.crc32(Path(record.path).name.encode())])
    return confound_swap(image, record.label != "NORMAL", rng)


def render_shifted_block(records: list[ImageRecord], cfg: PreprocessConfig, seed: int = 0) -> ShiftedBlock:
    """Decode, shift and preprocess every record; files that cannot be decoded are skipped and named."""
    kept, images, skipped = [], [], []
    for record, image in decoded_each(records, skipped):
        kept.append(record)
        images.append(preprocess_array(shifted_image(image, record, seed), cfg))
    size = cfg.image_size
    pixels = np.stack(images) if images else np.zeros((0, size, size), np.uint8)
    return ShiftedBlock(kept, pixels, skipped)


def write_shifted_block(records: list[ImageRecord], seed: int = 0, folder: Path | None = None) -> list[ImageRecord]:
    """The shifted block as lossless PNG files (in ``folder``, by default a cache folder named by the records'
    fingerprint and the seed), so that evaluation and calibration read it through the path prediction uses.
    Returns records of the PNGs (label, patient and subtype kept) and writes ``manifest.csv`` beside them;
    files already written are reused. Unreadable originals are left out (evaluation names them)."""
    folder = folder or default_cache_dir() / f"shifted-{fingerprint(records)}-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    shifted = []
    for record in records:
        target = folder / record.label / f"{Path(record.path).stem}.png"
        if not target.is_file():
            try:
                image = shifted_image(decode_image(record.path), record, seed)
            except ImageDecodeError:
                continue
            target.parent.mkdir(exist_ok=True)
            with replacing(target) as partial:  # a killed run leaves no half-written image behind
                to_pil(image).save(partial, format="PNG")
        shifted.append(replace(record, path=str(target)))
    manifest = io.StringIO(newline="")
    writer = csv.writer(manifest)
    writer.writerow(["path", "label", "patient_id", "subtype"])
    writer.writerows([r.path, r.label, r.patient_id, r.subtype] for r in shifted)
    write_text(folder / "manifest.csv", manifest.getvalue())
    return shifted
