"""Which backbone blocks feed the gate, and how they are pooled: the gate's layer policy.

Gate features are global statistics of intermediate feature maps: per channel, the spatial mean (and the
spatial standard deviation, a texture statistic) of a few backbone blocks at about 1/3, 2/3 and 9/10 of the
depth. Mid-level blocks separate radiographs from photographs, documents and synthetic images far better
than the penultimate layer, which the classifier has trained to keep only what tells normal from pneumonia:
on mobilenet_v3_small, 99.8% of non-X-rays flagged versus 80% for the head's input, at the same <= 1% of
held-out X-rays (``bench/bench_gate.py``). The pooling itself runs in :mod:`pneumo.inference.network`.
"""

from __future__ import annotations

import torch
from torch import nn

from pneumo.models.parts import Block, ModelParts, parts_of

POOLINGS = ("mean", "mean+std")
DEPTHS = (1 / 3, 2 / 3, 0.9)  # relative depth of the blocks whose outputs feed the gate
# Ledoit-Wolf on a few thousand X-rays stays well conditioned up to about this many features; the gate file
# (a DxD precision matrix) stays a few MB.
MAX_STD_DIM, MAX_DIM = 1024, 2048


def _channels(parts: ModelParts, blocks: list[Block], size: int = 64) -> list[int]:
    was_training = parts.model.training
    device = next(parts.model.parameters()).device
    try:
        with torch.no_grad():
            parts.model.eval()
            _, outputs = parts.forward_intermediates(torch.zeros(1, 1, size, size, device=device), blocks)
    finally:
        parts.model.train(was_training)
    return [int(output.shape[1]) for output in outputs]


def default_gate_layers(model: nn.Module, arch: str) -> tuple[list[str], str]:
    """Blocks at :data:`DEPTHS` of the backbone and the pooling, within the dimension budget: mean+std while
    the total stays <= MAX_STD_DIM, else mean only, dropping the deepest block while over MAX_DIM.

    An ensemble's gate reads its first member's blocks: every member sees the same input, and one network's
    features tell a chest X-ray from anything else as well as several (at a fraction of the gate's size)."""
    parts = parts_of(model, arch)[0]
    blocks = parts.blocks
    picked = sorted({round(depth * (len(blocks) - 1)) for depth in DEPTHS})
    chosen = [blocks[i] for i in picked]
    channels = _channels(parts, chosen)
    if 2 * sum(channels) <= MAX_STD_DIM:
        return [block.name for block in chosen], "mean+std"
    while len(chosen) > 1 and sum(channels) > MAX_DIM:
        chosen, channels = chosen[:-1], channels[:-1]
    return [block.name for block in chosen], "mean"
