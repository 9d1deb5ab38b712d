"""Score one split of a dataset with a model bundle: logits, P(pneumonia), the gate's verdict, targets and
patient ids.

Images go through the Predictor (:meth:`pneumo.inference.predictor.Predictor.score_many`), the very object
``pneumo predict`` and the service answer with: same decoding, cheap checks, preprocessing, backend (ONNX
Runtime or PyTorch), test-time views and probability code. A threshold chosen on these scores is therefore
applied at prediction to the same numbers. Unreadable images are skipped and listed, not fatal.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from pneumo.bundle import BundleError, BundleMeta
from pneumo.config import DataConfig, from_dict, stored_data_dict
from pneumo.data.records import ImageRecord, load_records
from pneumo.data.selection import SPLIT_CHOICES, fingerprint, select_split, training_splits
from pneumo.data.shifted import write_shifted_block
from pneumo.evaluation.seen import SeenImages, seen_by_bundle
from pneumo.gate.verdict import GateVerdict, Reading
from pneumo.inference.decision import Decision, DecisionRule
from pneumo.inference.predictor import Predictor
from pneumo.inference.probability import OutputHead

log = logging.getLogger("pneumo.evaluation")


@dataclass
class Selection:
    """The records of one split, and what is known about how they relate to the model's training data."""

    split: str
    records: list[ImageRecord]
    data: DataConfig
    warnings: list[str] = field(default_factory=list)
    seen: SeenImages | None = None  # how many of them the bundle was trained or adapted on

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.records)


def training_data_config(meta: BundleMeta) -> DataConfig | None:
    """The DataConfig the bundle was trained with, or None for a bundle saved without its training config."""
    raw = (meta.training or {}).get("config", {}).get("data")
    return from_dict(DataConfig, stored_data_dict(raw)) if raw else None


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
    if split in ("train", "val", "shifted-val"):
        if stored is None:
            raise BundleError(f"split {split!r} is carved from train with the seed the model was trained with, "
                              "but this bundle holds no training config; use --split official-val or test")
        cfg = dataclasses.replace(stored, root=root, manifest=manifest, cache_dir="")
    else:
        cfg = DataConfig(root=root, manifest=manifest, classes=meta.classes)
    records = load_records(cfg.root, cfg.manifest)
    chosen = select_split(records, split, cfg)
    if split in ("train", "val", "shifted-val") and meta.data_fingerprint:
        train, val = training_splits(records, cfg)
        if fingerprint(train + val) != meta.data_fingerprint:
            warnings.append(
                f"this dataset's train folder differs from the one the model was trained on (fingerprint "
                f"{fingerprint(train + val)} vs {meta.data_fingerprint}): the carved {split!r} split may not be "
                "the one used in training and may even hold training images")
    seen = seen_by_bundle(meta, records, chosen, stored)
    warnings += seen.warnings()
    if split == "shifted-val":
        chosen = write_shifted_block(chosen, cfg.split_seed)
    return Selection(split, chosen, cfg, warnings, seen)


@dataclass(frozen=True)
class SkippedImage:
    path: str
    reason: str


@dataclass
class SplitScores:
    """Model outputs over the readable images of a split, in record order."""

    records: list[ImageRecord]
    logits: np.ndarray  # (N, V, width) before temperature; V test-time views (1 without TTA)
    targets: np.ndarray  # (N,) 0 normal / 1 pneumonia
    class_targets: np.ndarray | None  # (N,) class index for a multi-class model when every subtype is known
    head: OutputHead
    verdicts: list[GateVerdict]  # the gate's verdict per image (cheap checks, then feature distance)
    temperature: float = 1.0
    skipped: list[SkippedImage] = field(default_factory=list)

    @property
    def unknown(self) -> np.ndarray:
        """(N,) bool: the gate answered UNKNOWN."""
        return np.array([v.reading is Reading.UNKNOWN for v in self.verdicts], dtype=bool)

    def decisions(self, threshold: float) -> list[Decision]:
        """What `pneumo predict` answers on each image with ``threshold``: the one decision rule on these
        probabilities and verdicts."""
        return DecisionRule(threshold).decide_many(self.probabilities, self.verdicts)

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.records]

    @property
    def patient_ids(self) -> list[str]:
        """Patient ids; an image without one counts as its own patient."""
        return [r.patient_id or r.path for r in self.records]

    @property
    def probabilities(self) -> np.ndarray:
        """Calibrated P(pneumonia) (logits divided by the temperature, views averaged), as predicted."""
        return self.head.score(self.logits, self.temperature)[0]

    @property
    def class_probabilities(self) -> np.ndarray | None:
        """(N, K) calibrated class probabilities of a multi-class model, else None."""
        return self.head.score(self.logits, self.temperature)[1]

    def with_temperature(self, temperature: float) -> "SplitScores":
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        return dataclasses.replace(self, temperature=float(temperature))


def score_records(predictor: Predictor, records: list[ImageRecord], *, batch_size: int = 32,
                  progress: bool = False) -> SplitScores:
    """Run ``predictor`` over ``records`` (the model runs on images the cheap checks refuse too, so that the
    model's own figures cover every readable image; the gate's verdict is kept in ``unknown``)."""
    if not records:
        raise ValueError("no images to score")
    paths = tqdm([r.path for r in records], desc="scoring", unit="image", disable=not progress, leave=False,
                 dynamic_ncols=True)
    results = predictor.score_many(paths, batch_size=batch_size, score_refused=True)
    skipped = [SkippedImage(r.path, s.prediction.error or "not scored") for r, s in zip(records, results)
               if s.logits is None]
    for failure in skipped:
        log.warning("skipped unreadable image %s: %s", failure.path, failure.reason)
    keep = [i for i, s in enumerate(results) if s.logits is not None]
    if not keep:
        raise ValueError(f"none of the {len(records)} images could be read (first: {skipped[0].path}: "
                         f"{skipped[0].reason})")
    kept = [records[i] for i in keep]
    head = predictor.head
    # Subtype targets only when every pneumonia image has one: a binary-labelled set still gets binary figures.
    names = [n.lower() for n in head.class_names]
    three_class = head.subtypes and all(r.label == "NORMAL" or (r.subtype or "") in names for r in kept)
    targets = np.array([r.label != "NORMAL" for r in kept], dtype=int)
    class_targets = None
    if three_class:
        class_targets = np.array([head.normal_index if r.label == "NORMAL" else names.index(r.subtype)
                                  for r in kept], dtype=int)
    return SplitScores(records=kept, logits=np.stack([results[i].logits for i in keep]).astype(np.float64),
                       targets=targets, class_targets=class_targets, head=head,
                       verdicts=[results[i].verdict for i in keep],
                       temperature=float(predictor.meta.temperature), skipped=skipped)
