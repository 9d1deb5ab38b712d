"""The model as inference and export see it: one forward returns the logits, the pooled features the gate
uses, (with a gate) the Mahalanobis distance and (with a gate that has a far boundary) the linear non-X-ray
score, so PyTorch and the exported ONNX graph compute the same things the same way.

Gate features are global statistics of intermediate feature maps: per channel, the spatial mean (and the
spatial standard deviation, a texture statistic) of a few backbone blocks at about 1/3, 2/3 and 9/10 of the
depth. Mid-level blocks separate radiographs from photographs, documents and synthetic images far better
than the penultimate layer, which the classifier has trained to keep only what tells normal from pneumonia:
on mobilenet_v3_small, 99.8% of non-X-rays flagged versus 80% for the head's input, at the same <= 1% of
held-out X-rays (``bench/bench_gate.py``).
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from torch import nn

from pneumo.gate.mahalanobis import GateParams
from pneumo.inference.backend import ModelOutputs
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
    the total stays <= MAX_STD_DIM, else mean only, dropping the deepest block while over MAX_DIM."""
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


def _pool(output: torch.Tensor, pooling: str) -> torch.Tensor:
    if output.dim() != 4:
        return output.flatten(1)
    mean = output.mean(dim=(2, 3), keepdim=True)
    if pooling == "mean":
        return mean.flatten(1)
    # Population std written out (not torch.std): defined for a 1x1 map and exported to ONNX as plain ops.
    std = ((output - mean) ** 2).mean(dim=(2, 3)).sqrt()
    return torch.cat([mean.flatten(1), std], dim=1)


class InferenceNetwork(nn.Module):
    """Wrap a registry model; ``forward(x)`` returns ``(logits, features)`` or, with a gate,
    ``(logits, features, distance)``, or with a two-boundary gate ``(logits, features, distance, nonxray)``.

    Features are pooled inside forward hooks (before any in-place activation that follows can change the
    map) into thread-local storage, so concurrent forwards from several threads never see each other's.
    """

    def __init__(self, model: nn.Module, feature_layers: list[str], pooling: str = "mean+std",
                 gate: GateParams | None = None) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {list(POOLINGS)}")
        if not feature_layers:
            raise ValueError("at least one feature layer is needed")
        self.model = model
        self.feature_layers = list(feature_layers)
        self.pooling = pooling
        self._captured = threading.local()
        for name in self.feature_layers:
            try:
                layer = model.get_submodule(name)
            except AttributeError as exc:
                raise ValueError(f"feature layer {name!r} does not exist in {type(model).__name__}") from exc
            layer.register_forward_hook(lambda m, a, output, name=name: self._keep(name, output))
        self.has_gate = gate is not None
        if gate is not None:
            if gate.feature_layers != self.feature_layers or gate.pooling != pooling:
                raise ValueError(f"gate fitted on {gate.feature_layers} ({gate.pooling}) cannot run on "
                                 f"{self.feature_layers} ({pooling})")
            self.register_buffer("gate_mean", torch.from_numpy(np.asarray(gate.mean, dtype=np.float32)))
            self.register_buffer("gate_whitener", torch.from_numpy(np.asarray(gate.whitener(), dtype=np.float32)))
        self.has_nonxray = gate is not None and gate.nonxray_weight is not None
        if self.has_nonxray:
            self.register_buffer("gate_nonxray_weight",
                                 torch.from_numpy(np.asarray(gate.nonxray_weight, dtype=np.float32)))
            self.register_buffer("gate_nonxray_bias", torch.tensor([gate.nonxray_bias], dtype=torch.float32))

    def _keep(self, name: str, output: torch.Tensor) -> None:
        store = getattr(self._captured, "features", None)
        if store is not None:  # only during this network's own forward in this thread
            store[name] = _pool(output, self.pooling)

    def forward(self, x: torch.Tensor):
        self._captured.features = {}
        try:
            logits = self.model(x)
            pooled = self._captured.features
        finally:
            self._captured.features = None
        features = torch.cat([pooled[name] for name in self.feature_layers], dim=1)
        if not self.has_gate:
            return logits, features
        projected = (features - self.gate_mean) @ self.gate_whitener
        distance = torch.sqrt((projected * projected).sum(dim=1))
        if not self.has_nonxray:
            return logits, features, distance
        return logits, features, distance, features @ self.gate_nonxray_weight + self.gate_nonxray_bias


class TorchBackend:
    """Runs an :class:`InferenceNetwork` in eval mode without autograd. Safe to call from several threads."""

    name = "torch"

    def __init__(self, network: InferenceNetwork, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()

    def run(self, batch: np.ndarray) -> ModelOutputs:
        with torch.inference_mode():
            outputs = self.network(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device))
        arrays = [o.float().cpu().numpy() for o in outputs]
        return ModelOutputs(arrays[0], arrays[1], arrays[2] if len(arrays) > 2 else None,
                            arrays[3] if len(arrays) > 3 else None)
