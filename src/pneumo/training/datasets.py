"""The data a training run reads: the patient-level split, the filled caches, and the loaders over them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from pneumo.config import RunConfig
from pneumo.data.augment import geometric_transform
from pneumo.data.balance import DistributedWeightedSampler, balanced_sampler
from pneumo.data.cache import ImageCache
from pneumo.data.dataset import PixelDataset, XrayDataset
from pneumo.data.records import ImageRecord, load_records
from pneumo.data.selection import training_splits
from pneumo.data.shifted import render_shifted_block
from pneumo.data.site_augment import SiteAugment
from pneumo.training.runtime import DistInfo, barrier


@dataclass
class TrainingSplits:
    train: XrayDataset
    val: XrayDataset
    skipped: list[tuple[str, str]]
    shifted: PixelDataset | None = None  # the acquisition-shifted validation block (data.shifted_val)


def prepare_datasets(cfg: RunConfig, dist_info: DistInfo = DistInfo()) -> TrainingSplits:
    """Split by patient, fill the caches (rank 0 first), and drop files that cannot be decoded."""
    records = load_records(cfg.data.root, cfg.data.manifest)
    train_records, val_records = training_splits(records, cfg.data)
    skipped: list[tuple[str, str]] = []
    prepared = TrainingSplits(_dataset(cfg, train_records, True, dist_info, skipped),
                        _dataset(cfg, val_records, False, dist_info, skipped), skipped)
    if cfg.data.shifted_val:
        block = render_shifted_block(prepared.val.records, cfg.preprocess, cfg.data.split_seed)
        prepared.shifted = PixelDataset(block.records, block.pixels, cfg.data.classes)
    return prepared


def _dataset(cfg: RunConfig, recs: list[ImageRecord], augment: bool, dist_info: DistInfo,
             skipped: list[tuple[str, str]]) -> XrayDataset:
    """The records' dataset over a filled cache, without the files that cannot be decoded (added to ``skipped``)."""
    cache, recs = _filled_cache(cfg, recs, dist_info, skipped)
    if not augment:
        return XrayDataset(recs, cache, None, cfg.data.classes)
    paired = cfg.train.consistency_weight > 0
    sites = SiteAugment(cfg.augment.site_variant) if paired or cfg.augment.site_variant > 0 else None
    return XrayDataset(recs, cache, geometric_transform(cfg.augment), cfg.data.classes, sites, paired)


def _filled_cache(cfg: RunConfig, recs: list[ImageRecord], dist_info: DistInfo,
                  skipped: list[tuple[str, str]]) -> tuple[ImageCache, list[ImageRecord]]:
    paths = [r.path for r in recs]
    # Rank 0 creates and fills the cache while the others wait, so no two processes build one file.
    if dist_info.is_main:
        cache = ImageCache(paths, cfg.preprocess, cfg.data.cache_dir or None)
        # The loader's process count decodes the cache too (0, loading in this process, decodes here).
        failures = cache.warm(workers=max(1, cfg.data.num_workers), progress=cfg.train.progress)
    barrier(dist_info)
    if not dist_info.is_main:
        cache = ImageCache(paths, cfg.preprocess, cfg.data.cache_dir or None)
        failures = cache.warm(workers=1)  # retries only what rank 0 could not decode
    bad = {f.path: f.reason for f in failures}
    skipped.extend(bad.items())
    if bad:
        keep = [i for i, r in enumerate(recs) if r.path not in bad]
        recs = [recs[i] for i in keep]
        if dist_info.is_main:
            cache = cache.subset(keep)
        barrier(dist_info)
        if not dist_info.is_main:
            cache = ImageCache([r.path for r in recs], cfg.preprocess, cfg.data.cache_dir or None)
    return cache, recs


@dataclass
class Loaders:
    train: DataLoader
    val: list[DataLoader]  # the validation block, then the shifted block when there is one
    sampler: Any  # the training sampler (None: plain shuffling); a distributed one is told each epoch

    def set_epoch(self, epoch: int) -> None:
        if isinstance(self.sampler, (DistributedSampler, DistributedWeightedSampler)):
            self.sampler.set_epoch(epoch)


def make_loaders(cfg: RunConfig, data: TrainingSplits, device: torch.device, dist_info: DistInfo) -> Loaders:
    """The training loader (balanced or distributed sampling as configured) and the validation loaders."""
    tc = cfg.train
    num_classes = cfg.data.classes
    sampler = None
    if dist_info.enabled and cfg.data.balance == "sampler":
        sampler = DistributedWeightedSampler(data.train.targets, num_classes, dist_info.world_size, dist_info.rank,
                                             tc.seed)
    elif dist_info.enabled:
        sampler = DistributedSampler(data.train, num_replicas=dist_info.world_size, rank=dist_info.rank,
                                     shuffle=True, seed=tc.seed)
    elif cfg.data.balance == "sampler":
        sampler = balanced_sampler(data.train.targets, num_classes, tc.seed)
    workers = cfg.data.num_workers
    loader_args = dict(batch_size=cfg.data.batch_size, num_workers=workers, pin_memory=device.type == "cuda",
                       persistent_workers=workers > 0)
    # Drop a ragged last batch (a batch of one breaks BatchNorm) unless that would leave none at all;
    # count what this process actually sees, which under DDP is 1/world of the data.
    per_process = len(sampler) if sampler is not None else len(data.train)
    train_loader = DataLoader(data.train, shuffle=sampler is None, sampler=sampler,
                              drop_last=per_process > cfg.data.batch_size,
                              generator=torch.Generator().manual_seed(tc.seed), **loader_args)
    val_loaders = [DataLoader(data.val, shuffle=False, **loader_args)]
    if data.shifted is not None:
        val_loaders.append(DataLoader(data.shifted, shuffle=False, batch_size=cfg.data.batch_size))
    return Loaders(train_loader, val_loaders, sampler)
