"""Grad-CAM (Selvaraju et al., 2017) for any module of any model, picked by layer name.

The heatmap weighs the layer's activation maps by the spatial mean of the gradient of the pneumonia score
with respect to them, keeps the positive evidence (ReLU), and min-max scales to [0, 1] at the input size.
Given several layers (an ensemble's members' last feature maps), the heatmap is the mean of their maps, each
scaled first, from one forward and one backward pass. Activations are kept by
:class:`~pneumo.models.capture.LayerCapture` (thread-local) and gradients come from ``torch.autograd.grad``, so no
parameter ``.grad`` is touched and concurrent calls from several threads do not mix.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pneumo.models.capture import LayerCapture

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def pneumonia_log_odds(normal_index: int) -> ScoreFn:
    """The score explained: the pneumonia logit of a one-logit head, or for a softmax head the log-odds of
    pneumonia, log(sum of the other classes' P) - log P(normal). ``normal_index``: the NORMAL output, as the
    bundle's class names say (``OutputHead.normal_index``)."""

    def score(logits: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] == 1:
            return logits[:, 0]
        others = torch.cat([logits[:, :normal_index], logits[:, normal_index + 1:]], dim=1)
        return torch.logsumexp(others, dim=1) - logits[:, normal_index]

    return score


pneumonia_score = pneumonia_log_odds(0)  # the (normal, bacterial, viral) order every pneumo bundle has


class GradCAM:
    """``GradCAM(model, "layer4")(x)`` -> (N, H, W) float32 heatmaps in [0, 1]; ``layer`` may be a list of
    layers, whose maps are averaged. ``remove()`` drops the hooks."""

    def __init__(self, model: nn.Module, layer: str | nn.Module | list[str | nn.Module]) -> None:
        self.model = model
        self.layers = [self._find(layer) for layer in (layer if isinstance(layer, list) else [layer])]
        if not self.layers:
            raise ValueError("Grad-CAM needs at least one layer")
        self._capture = LayerCapture(self.layers)

    def _find(self, layer: str | nn.Module) -> nn.Module:
        if not isinstance(layer, str):
            return layer
        try:
            return self.model.get_submodule(layer)
        except AttributeError as exc:
            names = [name for name, _ in self.model.named_modules() if name][-5:]
            raise ValueError(f"layer {layer!r} not found in {type(self.model).__name__}; its last layers are "
                             f"{names}") from exc

    def remove(self) -> None:
        self._capture.remove()

    def __call__(self, x: torch.Tensor, score: ScoreFn = pneumonia_score) -> tuple[np.ndarray, torch.Tensor]:
        """Heatmaps for a batch ``x`` (N, C, H, W) and the logits of the same forward pass."""
        if self.model.training:
            raise ValueError("Grad-CAM needs the model in eval mode (dropout and batch statistics off)")
        # The input requires grad so the graph exists even when every parameter is frozen.
        x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            with self._capture.capturing() as kept:
                logits = self.model(x)
            if isinstance(logits, (tuple, list)):
                logits = logits[0]
            activations = kept.all()
            gradients = torch.autograd.grad(score(logits).sum(), activations)
        with torch.no_grad():
            for layer, activation in zip(self.layers, activations):
                if activation.dim() != 4:
                    raise ValueError(f"Grad-CAM needs a spatial layer (N, C, H, W); {type(layer).__name__} "
                                     f"gives shape {tuple(activation.shape)}")
            weights = [gradient.mean(dim=(2, 3)) for gradient in gradients]
            cam = mean_of_maps(activations, weights, x.shape[-2:])
        return cam.float().cpu().numpy(), logits.detach()


def scaled_map(activation: torch.Tensor, weights: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """One layer's Grad-CAM: ``activation`` (N, C, h, w) weighed by ``weights`` (N, C), positive evidence only,
    upsampled bilinearly to ``size`` and min-max scaled to [0, 1] per image. Plain tensor operations, so the
    ONNX export (:mod:`pneumo.explain.cam_graph`) traces the very same steps."""
    cam = F.relu((weights[:, :, None, None] * activation).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0]
    # Min-max per image: the map shows where the evidence is relative to the rest of this image.
    flat = cam.flatten(1)
    low = flat.min(dim=1).values[:, None, None]
    span = (flat.max(dim=1).values[:, None, None] - low)
    cam = torch.where(span > 1e-8 * (1.0 + low.abs()), (cam - low) / span.clamp_min(1e-12), torch.zeros_like(cam))
    return torch.nan_to_num(cam, nan=0.0).clamp(0.0, 1.0)


def mean_of_maps(activations: list[torch.Tensor], weights: list[torch.Tensor],
                 size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """The heatmap of one or several layers (an ensemble's members): each layer's map scaled, then averaged."""
    maps = [scaled_map(a, w, size) for a, w in zip(activations, weights)]
    return maps[0] if len(maps) == 1 else torch.stack(maps).mean(dim=0)
