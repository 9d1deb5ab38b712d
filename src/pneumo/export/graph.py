"""The network pneumo exports: the inference network's outputs (logits, gate features, distance, non-X-ray
score) and, where the architecture allows it (:mod:`pneumo.explain.cam_graph`), the Grad-CAM heatmap of the
same forward pass, so that ONNX Runtime explains predictions without PyTorch."""

from __future__ import annotations

import torch
from torch import nn

from pneumo.bundle import BundleMeta
from pneumo.explain.cam_graph import GraphGradCAM, supports_graph_cam
from pneumo.inference.backend import GRADCAM_OUTPUT
from pneumo.inference.network import InferenceNetwork
from pneumo.inference.probability import OutputHead
from pneumo.models.capture import LayerCapture

__all__ = ["GRADCAM_OUTPUT", "ExportedNetwork"]


class ExportedNetwork(nn.Module):
    """``forward(x)`` -> the :class:`InferenceNetwork`'s outputs, then the (N, S, S) Grad-CAM heatmaps when
    ``has_gradcam``. The Grad-CAM layers' maps are kept (:class:`~pneumo.models.capture.LayerCapture`) during this
    module's own forward."""

    def __init__(self, network: InferenceNetwork, meta: BundleMeta) -> None:
        super().__init__()
        self.network = network
        self.has_gradcam = supports_graph_cam(meta.arch, network.model)
        self.cam = (GraphGradCAM(network.model, meta.arch, OutputHead.of(meta.class_names).normal_index)
                    if self.has_gradcam else None)
        self._maps = LayerCapture(self.cam.layers) if self.cam is not None else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.cam is None:
            return tuple(self.network(x))
        with self._maps.capturing() as maps:
            outputs = tuple(self.network(x))
        return (*outputs, self.cam(maps.all(), (x.shape[-2], x.shape[-1])))
