"""Which images make up the train, validation and test splits for a given data configuration."""

from __future__ import annotations

import hashlib

from pneumo.config import DataConfig
from pneumo.data.records import ImageRecord
from pneumo.data.splits import split_by_patient, split_temporal

SPLIT_CHOICES = ("train", "val", "shifted-val", "test", "official-val", "all")


def training_splits(records: list[ImageRecord], cfg: DataConfig) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """(train, validation) for training. By default validation is carved from train by patient."""
    train_pool = [r for r in records if r.split in ("train", "")]
    if not train_pool:
        raise ValueError("the dataset has no train split (expected ROOT/train/NORMAL and ROOT/train/PNEUMONIA)")
    if cfg.val_source == "folder":
        val = [r for r in records if r.split == "val"]
        if not val:
            raise ValueError("val_source='folder' but the dataset has no val split")
        return train_pool, val
    if cfg.split_by == "temporal":
        return split_temporal(train_pool, cfg.val_fraction, cfg.temporal_end)
    return split_by_patient(train_pool, cfg.val_fraction, cfg.split_seed, cfg.patient_split)


def split_settings(cfg: DataConfig) -> dict[str, object]:
    """The settings that decide :func:`training_splits`'s validation on a given dataset, and only those: two
    configs with equal settings carve the same validation from the same data."""
    if cfg.val_source == "folder":
        return {"val_source": "folder"}
    if cfg.split_by == "temporal":
        return {"val_source": "carve", "split_by": "temporal", "val_fraction": cfg.val_fraction,
                "temporal_end": cfg.temporal_end}
    return {"val_source": "carve", "split_by": "patient", "val_fraction": cfg.val_fraction,
            "split_seed": cfg.split_seed, "patient_split": cfg.patient_split}


def select_split(records: list[ImageRecord], split: str, cfg: DataConfig) -> list[ImageRecord]:
    """Records of one named split: ``val`` is the validation the model was trained against (carved from
    train with the same seed and fraction), ``official-val`` the dataset's own val folder."""
    if split not in SPLIT_CHOICES:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLIT_CHOICES)}")
    if split == "all":
        return list(records)
    if split == "test":
        chosen = [r for r in records if r.split == "test"]
    elif split == "official-val":
        chosen = [r for r in records if r.split == "val"]
    else:  # shifted-val selects val's X-rays; pneumo.data.shifted renders them
        train, val = training_splits(records, cfg)
        chosen = train if split == "train" else val
    if not chosen:
        raise ValueError(f"the dataset has no images in split {split!r}")
    return chosen


def fingerprint(records: list[ImageRecord]) -> str:
    """A short hash of the file names and labels a model was trained on (not the pixels: cheap to check)."""
    digest = hashlib.sha256()
    for r in sorted(records, key=lambda r: r.path):
        digest.update(f"{r.path.rsplit('/', 1)[-1]}|{r.label}|{r.subtype}\n".encode())
    return digest.hexdigest()[:16]


def image_digest(record: ImageRecord) -> str:
    """A short hash of one image's file name and label: what a bundle stores to recognise the images it was
    fitted on without storing their names (a site's file names may carry accession numbers)."""
    return hashlib.sha256(f"{record.path.rsplit('/', 1)[-1]}|{record.label}".encode()).hexdigest()[:12]


def image_digests(records: list[ImageRecord]) -> list[str]:
    """The distinct :func:`image_digest` of ``records``, sorted."""
    return sorted({image_digest(r) for r in records})
