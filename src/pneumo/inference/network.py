"""The model as inference and export see it: one forward returns the logits, the pooled features the gate
uses, and (with a gate) the Mahalanobis distance and, for a gate with a far boundary, its non-X-ray score, so
PyTorch and the exported ONNX graph compute the same things the same way. Which blocks are pooled is the
gate's policy (:mod:`pneumo.gate.layers`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pneumo.gate.layers import POOLINGS
from pneumo.gate.mahalanobis import GateParams
from pneumo.inference.backend import ModelOutputs
from pneumo.models.capture import LayerCapture


def _pool(output: torch.Tensor, pooling: str) -> torch.Tensor:
    if output.dim() != 4:
        return output.flatten(1)
    mean = output.mean(dim=(2, 3), keepdim=True)
    if pooling == "mean":
        return mean.flatten(1)
    # Population std written out (not torch.std): defined for a 1x1 map and exported to ONNX as plain ops.
    std = ((output - mean) ** 2).mean(dim=(2, 3)).sqrt()
    return torch.cat([mean.flatten(1), std], dim=1)


def _layer(model: nn.Module, name: str) -> nn.Module:
    """A gate file names its layers by path, as the model parts named them when it was fitted."""
    try:
        return model.get_submodule(name)
    except AttributeError as exc:
        raise ValueError(f"feature layer {name!r} does not exist in {type(model).__name__}") from exc


class InferenceNetwork(nn.Module):
    """Wrap a registry model; ``forward(x)`` returns ``(logits, features)`` or, with a gate,
    ``(logits, features, distance)``, or with a two-boundary gate ``(logits, features, distance, nonxray)``.

    Features are pooled as each layer's output leaves it (:class:`~pneumo.models.capture.LayerCapture`, before any
    in-place activation that follows can change the map), in thread-local storage, so concurrent forwards from
    several threads never see each other's.
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
        self._features = LayerCapture([_layer(model, name) for name in self.feature_layers],
                                      transform=lambda output: _pool(output, self.pooling))
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

    def forward(self, x: torch.Tensor):
        with self._features.capturing() as pooled:
            logits = self.model(x)
        features = torch.cat(pooled.all(), dim=1)
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
    lanes = 1  # PyTorch parallelises inside one forward; batches run one after another

    def __init__(self, network: InferenceNetwork, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()

    def run_in_lane(self, batch: np.ndarray) -> ModelOutputs:
        return self.run(batch)

    def run(self, batch: np.ndarray) -> ModelOutputs:
        with torch.inference_mode():
            outputs = self.network(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device))
        arrays = [o.float().cpu().numpy() for o in outputs]
        return ModelOutputs(arrays[0], arrays[1], arrays[2] if len(arrays) > 2 else None,
                            arrays[3] if len(arrays) > 3 else None)
