"""Replay of the parent's own training images during fine-tuning: a fixed share of every batch, so that a few
hundred local X-rays pull the network towards the site without it forgetting what it learnt."""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator

import torch
from torch.utils.data import Sampler

from pneumo.bundle import BundleMeta
from pneumo.config import DataConfig, RunConfig
from pneumo.data.records import ImageRecord, load_records
from pneumo.data.selection import fingerprint, training_splits


def parent_run_config(meta: BundleMeta, directory: str) -> RunConfig:
    """The configuration the parent was trained with (its augmentation, loss and data split)."""
    stored = (meta.training or {}).get("config")
    if not stored:
        raise ValueError(f"{directory}: the bundle records no training configuration, so neither its training "
                         "images (for replay) nor its augmentation are known; adapt with --no-finetune")
    return RunConfig.from_stored(stored)


def replay_records(meta: BundleMeta, directory: str, root: str) -> list[ImageRecord]:
    """The parent's training images (its validation block left out) found under ``root``; refused when the data
    there is not the data the parent records (its fingerprint)."""
    data: DataConfig = dataclasses.replace(parent_run_config(meta, directory).data, root=root, manifest="",
                                           cache_dir="")
    train, val = training_splits(load_records(root), data)
    found = fingerprint(train + val)
    if meta.data_fingerprint and found != meta.data_fingerprint:
        raise ValueError(f"--replay-data {root}: not the data {directory} was trained on (fingerprint {found}, "
                         f"the bundle records {meta.data_fingerprint}); give the parent's training data root")
    return train


class ReplayBatches(Sampler[list[int]]):
    """Batches over ``local`` images followed by ``replay`` images in one concatenated dataset: every local image
    once per epoch in a new order, each batch topped up with ``share`` of its size drawn from the replay images."""

    def __init__(self, n_local: int, n_replay: int, batch_size: int, share: float, seed: int) -> None:
        self.n_local, self.n_replay = n_local, n_replay
        self.replayed = round(batch_size * share) if n_replay else 0
        self.local_per_batch = batch_size - self.replayed
        if self.local_per_batch < 1:
            raise ValueError(f"batch of {batch_size} with replay share {share} leaves no local image")
        self.generator = torch.Generator().manual_seed(seed)  # advances every epoch: new orders, new draws

    def __len__(self) -> int:
        return math.ceil(self.n_local / self.local_per_batch)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.n_local, generator=self.generator).tolist()
        for start in range(0, self.n_local, self.local_per_batch):
            batch = order[start:start + self.local_per_batch]
            if self.replayed:
                drawn = torch.randint(self.n_replay, (self.replayed,), generator=self.generator)
                batch += (drawn + self.n_local).tolist()
            if len(batch) > 1:  # a batch of one breaks BatchNorm
                yield batch
