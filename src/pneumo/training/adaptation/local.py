"""The site's labelled X-rays: read, counted (refused when too few), decoded once into the cache, and dealt
into patient-grouped folds."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from pneumo.config import PreprocessConfig
from pneumo.data.cache import ImageCache
from pneumo.data.records import ImageRecord, read_manifest
from pneumo.data.selection import fingerprint, image_digests

log = logging.getLogger("pneumo.adapt")


class TooFewLabels(ValueError):
    """The local data cannot support adaptation (a class, or its patients, too few)."""


@dataclass
class LocalData:
    source: str
    records: list[ImageRecord]
    cache: ImageCache  # the records' preprocessed pixels, in record order
    folds: np.ndarray  # (N,) fold of each record; a patient's images share one
    skipped: list[tuple[str, str]]

    @property
    def targets(self) -> np.ndarray:
        """0 normal / 1 pneumonia."""
        return np.array([r.label != "NORMAL" for r in self.records], dtype=int)

    @property
    def patients(self) -> list[str]:
        return [r.patient_id or r.path for r in self.records]

    def describe(self) -> dict:
        """What the site bundle records about its local data (file names only as digests)."""
        y = self.targets
        return {"source": self.source, "fingerprint": fingerprint(self.records), "n_images": len(self.records),
                "n_normal": int((y == 0).sum()), "n_pneumonia": int(y.sum()),
                "n_patients": len(set(self.patients)), "n_skipped": len(self.skipped),
                "image_digests": image_digests(self.records)}


def class_counts(records: list[ImageRecord]) -> dict[str, dict[str, int]]:
    """Images and patients per label."""
    counts: dict[str, dict[str, int]] = {}
    for label in ("NORMAL", "PNEUMONIA"):
        chosen = [r for r in records if r.label == label]
        counts[label] = {"images": len(chosen), "patients": len({r.patient_id or r.path for r in chosen})}
    return counts


def check_counts(records: list[ImageRecord], min_per_class: int, folds: int, source: str) -> None:
    """Refuse, naming the counts, when a class has fewer than ``min_per_class`` images or fewer patients than
    folds (each fold must hold both classes)."""
    counts = class_counts(records)
    said = ", ".join(f"{c['images']} {label} ({c['patients']} patients)" for label, c in counts.items())
    short = [label for label, c in counts.items() if c["images"] < min_per_class]
    if short:
        raise TooFewLabels(f"{source}: too few labelled X-rays to adapt on: {said}; at least {min_per_class} "
                           f"of each class are needed ({', '.join(short)} short). Label more local X-rays, or "
                           "lower --min-per-class knowing the figures will be too uncertain to act on")
    thin = [label for label, c in counts.items() if c["patients"] < folds]
    if thin:
        raise TooFewLabels(f"{source}: {said}: {', '.join(thin)} has fewer patients than the {folds} folds; "
                           "every fold needs both classes (use fewer --folds)")


def patient_folds(records: list[ImageRecord], folds: int, seed: int) -> np.ndarray:
    """Fold of each record: stratified on the label, a patient's images always in one fold."""
    y = np.array([r.label != "NORMAL" for r in records], dtype=int)
    groups = np.array([r.patient_id or r.path for r in records])
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    assignment = np.full(len(records), -1, dtype=int)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(records)), y, groups)):
        assignment[held_out] = fold
    return assignment


def load_local(manifest: str, preprocess: PreprocessConfig, *, folds: int, min_per_class: int, seed: int,
               cache_dir: str = "", progress: bool = False) -> LocalData:
    """Read the manifest, refuse too few labels, decode every image once (unreadable ones are skipped and
    named), and deal the rest into folds."""
    records = read_manifest(manifest)
    check_counts(records, min_per_class, folds, manifest)
    cache = ImageCache([r.path for r in records], preprocess, cache_dir or None)
    failures = {f.path: f.reason for f in cache.warm(workers=1, progress=progress)}
    for path, reason in failures.items():
        log.warning("skipped unreadable image %s: %s", path, reason)
    if failures:
        keep = [i for i, r in enumerate(records) if r.path not in failures]
        records, cache = [records[i] for i in keep], cache.subset(keep)
        check_counts(records, min_per_class, folds, f"{manifest} (readable images)")
    return LocalData(manifest, records, cache, patient_folds(records, folds, seed), sorted(failures.items()))
