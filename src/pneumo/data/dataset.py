"""Torch dataset over image records, fed from the preprocessed-image cache."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from pneumo.data.augment import RandomAffine, apply_geometry
from pneumo.data.cache import ImageCache
from pneumo.data.records import ImageRecord


class XrayDataset(Dataset):
    """Returns dicts ``{"image": uint8 (1, S, S) tensor, "target": int, "index": int}``.

    Images stay uint8 until :class:`pneumo.data.augment.BatchPreprocess` normalises the whole batch.
    """

    def __init__(self, records: list[ImageRecord], cache: ImageCache, geometry: RandomAffine | None = None,
                 classes: int = 2) -> None:
        if [r.path for r in records] != cache.paths:
            raise ValueError("records and cache must list the same files in the same order")
        self.records = records
        self.cache = cache
        self.geometry = geometry
        self.classes = classes
        self.targets = [r.target(classes) for r in records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": apply_geometry(self.cache.get(index), self.geometry), "target": self.targets[index],
                "index": index}
