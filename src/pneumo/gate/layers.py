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

from pneumo.models.ensemble import ENSEMBLE, LogitEnsemble
from pneumo.models.registry import ARCHITECTURES, blocks

POOLINGS = ("mean", "mean+std")
DEPTHS = (1 / 3, 2 / 3, 0.9)  # relative depth of the blocks whose outputs feed the gate
# Ledoit-Wolf on a few thousand X-rays stays well conditioned up to about this many features; the gate file
# (a DxD precision matrix) stays a few MB.
MAX_STD_DIM, MAX_DIM = 1024, 2048


def _block_names(model: nn.Module, arch: str) -> list[str]:
    names = {id(module): name for name, module in model.named_modules()}
    out = []
    for block in blocks(model, arch):
        if isinstance(block, nn.ModuleList):  # a block with its trailing norm: the norm's output is the block's
            block = block[-1]
        out.append(names[id(block)])
    return out


def _channels(model: nn.Module, layers: list[str], size: int = 64) -> list[int]:
    shapes: dict[str, int] = {}
    handles = [model.get_submodule(name).register_forward_hook(
        lambda m, a, o, name=name: shapes.__setitem__(name, int(o.shape[1]))) for name in layers]
    was_training = model.training
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 1, size, size, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return [shapes[name] for name in layers]


def default_gate_layers(model: nn.Module, arch: str) -> tuple[list[str], str]:
    """Blocks at :data:`DEPTHS` of the backbone and the pooling, within the dimension budget: mean+std while
    the total stays <= MAX_STD_DIM, else mean only, dropping the deepest block while over MAX_DIM.

    An ensemble's gate reads its first member's blocks: every member sees the same input, and one network's
    features tell a chest X-ray from anything else as well as several (at a fraction of the gate's size)."""
    if arch == ENSEMBLE:
        if not isinstance(model, LogitEnsemble):
            raise TypeError(f"arch {ENSEMBLE!r} needs a LogitEnsemble, got {type(model).__name__}")
        layers, pooling = default_gate_layers(model.members[0], model.archs[0])
        return [f"members.0.{name}" for name in layers], pooling
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    names = _block_names(model, arch)
    picked = sorted({round(depth * (len(names) - 1)) for depth in DEPTHS})
    layers = [names[i] for i in picked]
    channels = _channels(model, layers)
    if 2 * sum(channels) <= MAX_STD_DIM:
        return layers, "mean+std"
    while len(layers) > 1 and sum(channels) > MAX_DIM:
        layers, channels = layers[:-1], channels[:-1]
    return layers, "mean"
