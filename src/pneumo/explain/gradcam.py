"""Grad-CAM (Selvaraju et al., 2017) for any module of any model, picked by layer name.

The heatmap weighs the layer's activation maps by the spatial mean of the gradient of the pneumonia score
with respect to them, keeps the positive evidence (ReLU), and min-max scales to [0, 1] at the input size. Hooks
store activations in thread-local storage and gradients come from ``torch.autograd.grad``, so no parameter
``.grad`` is touched and concurrent calls from several threads do not mix.
"""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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
    """``GradCAM(model, "layer4")(x)`` -> (N, H, W) float32 heatmaps in [0, 1]. ``remove()`` drops the hook."""

    def __init__(self, model: nn.Module, layer: str | nn.Module) -> None:
        self.model = model
        if isinstance(layer, str):
            try:
                layer = model.get_submodule(layer)
            except AttributeError as exc:
                names = [name for name, _ in model.named_modules() if name][-5:]
                raise ValueError(f"layer {layer!r} not found in {type(model).__name__}; its last layers are "
                                 f"{names}") from exc
        self.layer = layer
        self._local = threading.local()
        self._handle = layer.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if getattr(self._local, "active", False):
            self._local.activation = output

    def remove(self) -> None:
        self._handle.remove()

    def __call__(self, x: torch.Tensor, score: ScoreFn = pneumonia_score) -> tuple[np.ndarray, torch.Tensor]:
        """Heatmaps for a batch ``x`` (N, C, H, W) and the logits of the same forward pass."""
        if self.model.training:
            raise ValueError("Grad-CAM needs the model in eval mode (dropout and batch statistics off)")
        # The input requires grad so the graph exists even when every parameter is frozen.
        x = x.detach().clone().requires_grad_(True)
        self._local.active = True
        try:
            with torch.enable_grad():
                logits = self.model(x)
                if isinstance(logits, (tuple, list)):
                    logits = logits[0]
                activation = self._local.activation
                gradient, = torch.autograd.grad(score(logits).sum(), activation)
        finally:
            self._local.active = False
            self._local.activation = None
        with torch.no_grad():
            if activation.dim() != 4:
                raise ValueError(f"Grad-CAM needs a spatial layer (N, C, H, W); {type(self.layer).__name__} "
                                 f"gives shape {tuple(activation.shape)}")
            weights = gradient.mean(dim=(2, 3), keepdim=True)
            cam = F.relu((weights * activation).sum(dim=1, keepdim=True))
            cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            # Min-max per image: the map shows where the evidence is relative to the rest of this image.
            flat = cam.flatten(1)
            low = flat.min(dim=1).values[:, None, None]
            span = (flat.max(dim=1).values[:, None, None] - low)
            cam = torch.where(span > 1e-8 * (1.0 + low.abs()), (cam - low) / span.clamp_min(1e-12),
                              torch.zeros_like(cam))
            cam = torch.nan_to_num(cam, nan=0.0).clamp(0.0, 1.0)
        return cam.float().cpu().numpy(), logits.detach()
