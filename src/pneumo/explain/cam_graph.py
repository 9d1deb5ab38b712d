"""Grad-CAM as plain tensor operations, so that it traces into the ONNX graph and runs without torch.

In the architectures whose Grad-CAM layer is followed by global average pooling and a head of Linear layers
and element-wise activations (mobilenet_v3, resnet, efficientnet, densenet), the gradient of the score with
respect to the layer's map A (C, h, w) is the head's gradient g with respect to the pooled vector, spread
evenly over the map: dS/dA[c, i, j] = g[c] / (h w), and Grad-CAM's weights, the spatial mean of that gradient,
are g / (h w). (densenet121 applies an in-place ReLU to its Grad-CAM layer's output before pooling, so the map
autograd Grad-CAM reads, and differentiates, is ReLU(A); the graph does the same.) The head's backward pass is
written out below for the few layer types such heads hold, so no autograd is needed and the whole heatmap,
:func:`pneumo.explain.gradcam.mean_of_maps` included, is a forward graph. vgg16 and simple_cnn pool other than
globally before their head (``ModelParts.pools_globally`` is False); they have no graph Grad-CAM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pneumo.explain.gradcam import mean_of_maps
from pneumo.models.parts import ModelParts, parts_of

# Eval-mode identities: dropout is off, a flatten of an (N, C) vector changes nothing.
_PASS_THROUGH = (nn.Dropout, nn.Identity, nn.Flatten)
_ACTIVATIONS = (nn.ReLU, nn.Hardswish, nn.SiLU)


def supports_graph_cam(arch: str, model: nn.Module) -> bool:
    """Whether :class:`GraphGradCAM` can explain this network (every member pools globally into its head)."""
    return all(parts.pools_globally for parts in parts_of(model, arch))


def _leaves(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _leaves(child)]
    return [module]


def _activation_slope(layer: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """d layer(z) / dz, element-wise, as PyTorch's own backward kernels define it (also at the kinks)."""
    if isinstance(layer, nn.ReLU):
        return (z > 0).to(z.dtype)
    if isinstance(layer, nn.Hardswish):
        return torch.where(z < -3.0, torch.zeros_like(z), torch.where(z <= 3.0, z / 3.0 + 0.5, torch.ones_like(z)))
    sigmoid = torch.sigmoid(z)  # SiLU
    return sigmoid * (1.0 + z * (1.0 - sigmoid))


class HeadGradient(nn.Module):
    """The head's forward pass keeping each layer's input, and its backward pass written out, for heads of
    Linear layers and ReLU/Hardswish/SiLU activations (Dropout and Flatten pass through in eval mode)."""

    def __init__(self, head: nn.Module, where: str) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_leaves(head))
        for layer in self.layers:
            if not isinstance(layer, (nn.Linear, *_ACTIVATIONS, *_PASS_THROUGH)):
                raise ValueError(f"{where}: the head holds a {type(layer).__name__}, whose gradient the Grad-CAM "
                                 "graph does not write out (Linear, ReLU, Hardswish, SiLU, Dropout, Flatten)")

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(logits, the input of every layer) for the pooled vector."""
        inputs = []
        x = pooled
        for layer in self.layers:
            inputs.append(x)
            if isinstance(layer, nn.Linear):
                x = F.linear(x, layer.weight, layer.bias)
            elif isinstance(layer, _ACTIVATIONS):
                x = {nn.ReLU: F.relu, nn.Hardswish: F.hardswish, nn.SiLU: F.silu}[type(layer)](x)
        return x, inputs

    def backward(self, inputs: list[torch.Tensor], gradient: torch.Tensor) -> torch.Tensor:
        """d score / d pooled from d score / d logits, through the layers in reverse."""
        for layer, z in zip(reversed(self.layers), reversed(inputs)):
            if isinstance(layer, nn.Linear):
                gradient = gradient @ layer.weight
            elif isinstance(layer, _ACTIVATIONS):
                gradient = gradient * _activation_slope(layer, z)
        return gradient


def log_odds_gradient(normal_index: int):
    """d score / d logits for :func:`pneumo.explain.gradcam.pneumonia_log_odds`: 1 for a one-logit head; for a
    softmax head, the softmax over the other classes for each of them and -1 for NORMAL."""

    def gradient(logits: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] == 1:
            return torch.ones_like(logits)
        is_normal = torch.arange(logits.shape[1], device=logits.device) == normal_index
        others = torch.softmax(logits.masked_fill(is_normal, float("-inf")), dim=1)
        return others - is_normal.to(logits.dtype)

    return gradient


class GraphGradCAM(nn.Module):
    """``forward(activations, size)`` -> (N, *size) heatmaps equal to :class:`pneumo.explain.gradcam.GradCAM`'s
    for the same network and score, from the Grad-CAM layers' maps (one per member, as ``layers`` lists them)."""

    def __init__(self, model: nn.Module, arch: str, normal_index: int) -> None:
        super().__init__()
        members: list[ModelParts] = parts_of(model, arch)
        unsupported = sorted({parts.arch for parts in members if not parts.pools_globally})
        if unsupported:
            raise ValueError(f"no Grad-CAM graph for {unsupported}: their Grad-CAM layer is not followed by global "
                             "average pooling and a dense head")
        self.layers = [parts.gradcam_layer for parts in members]
        self.heads = nn.ModuleList(HeadGradient(parts.classifier, parts.arch) for parts in members)
        self.relu_before_pool = [parts.spec.relu_before_pool for parts in members]
        self.score_gradient = log_odds_gradient(normal_index)

    def forward(self, activations: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        # ReLU is idempotent: whether the map arrives before or after the in-place ReLU, this is the map pooled.
        activations = [F.relu(a) if relu else a for a, relu in zip(activations, self.relu_before_pool)]
        pooled = [a.mean(dim=(2, 3)) for a in activations]
        passes = [head(p) for head, p in zip(self.heads, pooled)]
        logits = torch.stack([member_logits for member_logits, _ in passes]).mean(dim=0)
        # An ensemble's score reads the mean of its members' logits: each member gets 1/count of the gradient.
        share = self.score_gradient(logits) / len(passes)
        weights = []
        for head, (_, inputs), a in zip(self.heads, passes, activations):
            weights.append(head.backward(inputs, share) / float(a.shape[2] * a.shape[3]))
        return mean_of_maps(activations, weights, size)
