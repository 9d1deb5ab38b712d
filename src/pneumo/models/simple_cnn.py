"""The classic small CNN from the seeds: three conv blocks (32/64/128) with max-pooling, dense 512, dropout."""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.MaxPool2d(2))


class SimpleCNN(nn.Module):
    def __init__(self, num_outputs: int = 1, in_chans: int = 1, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(_block(in_chans, 32), _block(32, 64), _block(64, 128))
        self.pool = nn.AdaptiveAvgPool2d(4)  # fixed head size whatever the input resolution
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(128 * 16, 512), nn.ReLU(inplace=True),
                                        nn.Dropout(dropout), nn.Linear(512, num_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))
