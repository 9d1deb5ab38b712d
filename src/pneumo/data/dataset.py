"""Torch datasets over image records, fed from the preprocessed-image cache."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from pneumo.data.augment import RandomAffine, apply_geometry
from pneumo.data.cache import ImageCache
from pneumo.data.records import ImageRecord
from pneumo.data.site_augment import SiteAugment


class XrayDataset(Dataset):
    """Returns dicts ``{"image": uint8 (1, S, S) tensor, "target": int, "index": int}``.

    Images stay uint8 until :class:`pneumo.data.augment.BatchPreprocess` normalises the whole batch. With
    ``sites``, a share of images is rendered as another hospital's; with ``paired`` as well, every item also
    holds ``"variant"``, a site variant of the same image (its own geometry), for a consistency loss, and
    ``"image"`` stays the original.
    """

    def __init__(self, records: list[ImageRecord], cache: ImageCache, geometry: RandomAffine | None = None,
                 classes: int = 2, sites: SiteAugment | None = None, paired: bool = False) -> None:
        if [r.path for r in records] != cache.paths:
            raise ValueError("records and cache must list the same files in the same order")
        if paired and sites is None:
            raise ValueError("a paired dataset needs site variants to pair each image with")
        self.records = records
        self.cache = cache
        self.geometry = geometry
        self.classes = classes
        self.sites = sites
        self.paired = paired
        self.targets = [r.target(classes) for r in records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pixels = self.cache.get(index)
        item: dict[str, Any] = {"target": self.targets[index], "index": index}
        if self.paired:
            item["variant"] = apply_geometry(self.sites.render(pixels), self.geometry)
        elif self.sites is not None:
            pixels = self.sites.maybe(pixels)
        item["image"] = apply_geometry(pixels, self.geometry)
        return item


class PixelDataset(Dataset):
    """Ready uint8 squares held in memory (a rendered validation block), in the items' form of XrayDataset."""

    def __init__(self, records: list[ImageRecord], pixels: np.ndarray, classes: int = 2) -> None:
        if len(records) != len(pixels):
            raise ValueError(f"{len(records)} records but {len(pixels)} images")
        self.records = records
        self.pixels = pixels
        self.targets = [r.target(classes) for r in records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": torch.from_numpy(np.ascontiguousarray(self.pixels[index])).unsqueeze(0),
                "target": self.targets[index], "index": index}
