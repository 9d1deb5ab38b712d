"""Class-imbalance handling: inverse-frequency class weights or a weighted sampler."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Sampler, WeightedRandomSampler


def class_weights(targets: list[int], num_classes: int) -> torch.Tensor:
    """Weights ``n / (k * count_c)`` so every class contributes equally to the loss (mean weight 1)."""
    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=num_classes).astype(np.float64)
    if (counts == 0).any():
        missing = [i for i, c in enumerate(counts) if c == 0]
        raise ValueError(f"classes {missing} have no training images; cannot weight them")
    return torch.tensor(counts.sum() / (num_classes * counts), dtype=torch.float32)


def balanced_sampler(targets: list[int], num_classes: int, seed: int) -> WeightedRandomSampler:
    weights = class_weights(targets, num_classes)[torch.tensor(targets)]
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(weights.double(), num_samples=len(targets), replacement=True, generator=generator)


class DistributedWeightedSampler(Sampler[int]):
    """The weighted sampler for DDP: every rank draws the same class-balanced sequence for the epoch
    (same seed) and takes every ``num_replicas``-th index of it, so ranks see disjoint draws."""

    def __init__(self, targets: list[int], num_classes: int, num_replicas: int, rank: int, seed: int) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.weights = class_weights(targets, num_classes)[torch.tensor(targets)].double()
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0
        self.num_samples = math.ceil(len(targets) / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        total = self.num_samples * self.num_replicas
        drawn = torch.multinomial(self.weights, total, replacement=True, generator=generator)
        return iter(drawn[self.rank::self.num_replicas].tolist())
