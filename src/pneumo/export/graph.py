"""The network pneumo exports: the inference network's outputs (logits, gate features, distance, non-X-ray
score) and, where the architecture allows it (:mod:`pneumo.explain.cam_graph`), the Grad-CAM heatmap of the
same forward pass, so that ONNX Runtime explains predictions without PyTorch."""

from __future__ import annotations

import threading

import torch
from torch import nn

from pneumo.bundle import BundleMeta
from pneumo.explain.cam_graph import GraphGradCAM, supports_graph_cam
from pneumo.inference.backend import GRADCAM_OUTPUT
from pneumo.inference.network import InferenceNetwork
from pneumo.inference.probability import OutputHead

__all__ = ["GRADCAM_OUTPUT", "ExportedNetwork"]


class ExportedNetwork(nn.Module):
    """``forward(x)`` -> the :class:`InferenceNetwork`'s outputs, then the (N, S, S) Grad-CAM heatmaps when
    ``has_gradcam``. The Grad-CAM layers' maps are kept by forward hooks during this module's own forward."""

    def __init__(self, network: InferenceNetwork, meta: BundleMeta) -> None:
        super().__init__()
        self.network = network
        self.has_gradcam = supports_graph_cam(meta.arch, network.model)
        self.cam = (GraphGradCAM(network.model, meta.arch, OutputHead.of(meta.class_names).normal_index)
                    if self.has_gradcam else None)
        self._maps = threading.local()
        if self.cam is not None:
            for index, layer in enumerate(self.cam.layers):
                layer.register_forward_hook(lambda m, a, output, index=index: self._keep(index, output))

    def _keep(self, index: int, output: torch.Tensor) -> None:
        store = getattr(self._maps, "store", None)
        if store is not None:
            store[index] = output

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.cam is None:
            return tuple(self.network(x))
        self._maps.store = {}
        try:
            outputs = tuple(self.network(x))
            maps = [self._maps.store[i] for i in range(len(self.cam.layers))]
        finally:
            self._maps.store = None
        return (*outputs, self.cam(maps, (x.shape[-2], x.shape[-1])))
