"""The acquisition-shifted validation block: validation X-rays given the other label's acquisition style.

A model that reads the lungs scores this block about as well as the plain one; a model that learned the
acquisition style as a cue (Kermany's pneumonia films are framed, exposed and marked differently from its
normal ones) ranks it worse. The temporal block alone no longer separates such models (AUC 0.999 for all).
Each image's rendering is seeded by its file name, so the block is the same in every run and process.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pneumo.config import PreprocessConfig
from pneumo.data.acquisition import confound_swap
from pneumo.data.decode import decode_image
from pneumo.data.errors import ImageDecodeError
from pneumo.data.preprocess import preprocess_array
from pneumo.data.records import ImageRecord


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
    for record in records:
        try:
            image = decode_image(record.path)
        except ImageDecodeError as exc:
            skipped.append((record.path, str(exc)))
            continue
        kept.append(record)
        images.append(preprocess_array(shifted_image(image, record, seed), cfg))
    size = cfg.image_size
    pixels = np.stack(images) if images else np.zeros((0, size, size), np.uint8)
    return ShiftedBlock(kept, pixels, skipped)
