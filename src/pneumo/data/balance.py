"""Class-imbalance handling: inverse-frequency class weights or a weighted sampler."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler


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
