"""Which of the images about to be scored the bundle has already seen, from what the bundle records rather than
from the split's name: its training images (recognised when the dataset given holds the training data the
bundle's ``data_fingerprint`` names) and, for a site bundle, the local X-rays it was adapted and calibrated on
(``meta.adaptation``'s image digests)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pneumo.bundle import BundleMeta
from pneumo.config import DataConfig
from pneumo.data.records import ImageRecord
from pneumo.data.selection import fingerprint, image_digest, training_splits


@dataclass(frozen=True)
class SeenImages:
    scored: int
    training: int  # trained on (weights)
    local: int  # a site bundle's own local X-rays (adapted and calibrated on)
    validation_unknown: bool = False  # the bundle records no split: training counts its validation images too

    def to_dict(self) -> dict[str, int]:
        return {"training": self.training, "local": self.local}

    def warnings(self) -> list[str]:
        said = []
        if self.training:
            what = "training or validation" if self.validation_unknown else "training"
            said.append(f"{self.training} of the {self.scored} images are the model's {what} images (the bundle's "
                        "data fingerprint names this data set); figures on them say nothing about new patients.")
        if self.local:
            said.append(f"{self.local} of the {self.scored} images are this site bundle's own local X-rays: it was "
                        "adapted and calibrated on them (meta.adaptation), so these figures are not held-out; "
                        "evaluate on X-rays it never saw.")
        return said


def _training_images(meta: BundleMeta, records: list[ImageRecord], stored: DataConfig | None) -> tuple[set[str], bool]:
    """Paths of ``records`` (the whole data set given) that the bundle trained on, and whether its validation
    images could not be told apart. Empty unless the data set's training pool is the bundle's training data."""
    pool = [r for r in records if r.split in ("train", "")]
    if stored is not None and stored.val_source == "folder":
        pool += [r for r in records if r.split == "val"]
    if not meta.data_fingerprint or not pool or fingerprint(pool) != meta.data_fingerprint:
        return set(), False
    if stored is None:
        return {r.path for r in pool}, True
    train, _ = training_splits(records, dataclasses.replace(stored, root="", manifest="", cache_dir=""))
    return {r.path for r in train}, False


def seen_by_bundle(meta: BundleMeta, records: list[ImageRecord], chosen: list[ImageRecord],
                   stored: DataConfig | None) -> SeenImages:
    """How many of ``chosen`` (selected from ``records``) the bundle was trained or adapted on."""
    trained, unknown = _training_images(meta, records, stored)
    local = set((meta.adaptation or {}).get("local", {}).get("image_digests") or [])
    digests = [image_digest(r) for r in chosen] if local else []
    return SeenImages(len(chosen), sum(r.path in trained for r in chosen), sum(d in local for d in digests),
                      unknown and bool(trained))
