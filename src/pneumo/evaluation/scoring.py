"""Score one split of a dataset with a model bundle: logits, P(pneumonia), targets and patient ids.

Images go through exactly the training pipeline's evaluation path (``ImageCache`` -> ``XrayDataset`` ->
``BatchPreprocess`` -> ``pneumo.training.loop.evaluate``) with the preprocessing stored in the bundle, so
the figures describe the model as it was trained. Unreadable images are skipped and listed, not fatal.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from pneumo.bundle import BundleError, BundleMeta
from pneumo.config import DataConfig, from_dict
from pneumo.data.augment import BatchPreprocess
from pneumo.data.cache import CacheFailure, ImageCache
from pneumo.data.dataset import XrayDataset
from pneumo.data.records import ImageRecord, load_records
from pneumo.data.selection import SPLIT_CHOICES, fingerprint, select_split, training_splits
from pneumo.evaluation.calibration import class_probabilities, pneumonia_probability
from pneumo.training.loop import evaluate

log = logging.getLogger("pneumo.evaluation")


@dataclass
class Selection:
    """The records of one split, and what is known about how they relate to the model's training data."""

    split: str
    records: list[ImageRecord]
    data: DataConfig
    warnings: list[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.records)


def training_data_config(meta: BundleMeta) -> DataConfig | None:
    """The DataConfig the bundle was trained with, or None for a bundle saved without its training config."""
    raw = (meta.training or {}).get("config", {}).get("data")
    return from_dict(DataConfig, raw) if raw else None


def select_records(meta: BundleMeta, split: str, root: str = "", manifest: str = "") -> Selection:
    """Records of ``split`` of the dataset at ``root``/``manifest``.

    ``train`` and ``val`` are carved from the train folder exactly as during training (the DataConfig stored
    in the bundle, with its fraction and seed), so ``val`` is the patient-level validation the checkpoint
    was chosen on. The bundle's cache directory is not reused: it names a path on the training machine.
    """
    if split not in SPLIT_CHOICES:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLIT_CHOICES)}")
    if not root and not manifest:
        raise ValueError("give a dataset root (--data) or a CSV manifest (--manifest)")
    stored = training_data_config(meta)
    warnings: list[str] = []
    if split in ("train", "val"):
        if stored is None:
            raise BundleError(f"split {split!r} is carved from train with the seed the model was trained with, "
                              "but this bundle holds no training config; use --split official-val or test")
        cfg = dataclasses.replace(stored, root=root, manifest=manifest, cache_dir="")
    else:
        cfg = DataConfig(root=root, manifest=manifest, classes=meta.classes)
    records = load_records(cfg.root, cfg.manifest)
    chosen = select_split(records, split, cfg)
    if split in ("train", "val") and meta.data_fingerprint:
        train, val = training_splits(records, cfg)
        if fingerprint(train + val) != meta.data_fingerprint:
            warnings.append(
                f"this dataset's train folder differs from the one the model was trained on (fingerprint "
                f"{fingerprint(train + val)} vs {meta.data_fingerprint}): the carved {split!r} split may not be "
                "the one used in training and may even hold training images")
    return Selection(split, chosen, cfg, warnings)


@dataclass
class Scores:
    """Model outputs over the readable images of a split, in record order."""

    records: list[ImageRecord]
    logits: np.ndarray  # (N, 1) or (N, 3), before temperature
    targets: np.ndarray  # (N,) 0 normal / 1 pneumonia
    class_targets: np.ndarray | None  # (N,) 0/1/2 for a 3-class model when every subtype is known
    temperature: float = 1.0
    skipped: list[CacheFailure] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.records]

    @property
    def patient_ids(self) -> list[str]:
        """Patient ids; an image without one counts as its own patient."""
        return [r.patient_id or r.path for r in self.records]

    @property
    def probabilities(self) -> np.ndarray:
        """Calibrated P(pneumonia) (logits divided by the temperature)."""
        return pneumonia_probability(self.logits, self.temperature)

    @property
    def class_probabilities(self) -> np.ndarray | None:
        """(N, 3) calibrated normal/bacterial/viral probabilities of a 3-class model, else None."""
        if self.logits.ndim != 2 or self.logits.shape[1] == 1:
            return None
        return class_probabilities(self.logits, self.temperature)

    def with_temperature(self, temperature: float) -> "Scores":
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        return dataclasses.replace(self, temperature=float(temperature))


def score_records(model: torch.nn.Module, meta: BundleMeta, records: list[ImageRecord], *,
                  device: torch.device | str = "cpu", batch_size: int = 32, cache_dir: str | Path | None = None,
                  workers: int = 2, progress: bool = False) -> Scores:
    """Run ``model`` over ``records`` with the bundle's preprocessing; temperature from the bundle."""
    if not records:
        raise ValueError("no images to score")
    device = torch.device(device)
    cache = ImageCache([r.path for r in records], meta.preprocess, cache_dir)
    failures = cache.warm(workers=workers, progress=progress)
    for failure in failures:
        log.warning("skipped unreadable image %s: %s", failure.path, failure.reason)
    bad = {f.path for f in failures}
    keep = [i for i, r in enumerate(records) if r.path not in bad]
    if not keep:
        raise ValueError(f"none of the {len(records)} images could be read (first: {failures[0].path}: "
                         f"{failures[0].reason})")
    kept = [records[i] for i in keep]
    # Subtype targets only when every pneumonia image has one: a binary-labelled set still gets binary figures.
    three_class = meta.classes == 3 and all(r.label == "NORMAL" or r.subtype in ("bacterial", "viral")
                                            for r in kept)
    # The full dataset over the full cache, read through a Subset: the cache is not rebuilt for the readable ones.
    dataset = XrayDataset(records, cache, None, classes=3 if three_class else 2)
    loader = DataLoader(Subset(dataset, keep), batch_size=batch_size, shuffle=False, num_workers=0)
    prep = BatchPreprocess(meta.preprocess).to(device)
    logits, targets = evaluate(model.to(device), loader, prep, device, progress=progress, desc="scoring")
    targets = targets.astype(int)
    return Scores(records=kept, logits=logits.astype(np.float64), targets=(targets > 0).astype(int),
                  class_targets=targets if three_class else None, temperature=float(meta.temperature),
                  skipped=list(failures))
