"""The model interface: every network, whatever its architecture, as its features, its head and its named blocks.

The gate (which blocks it pools), Grad-CAM (which map it weighs, and for the ONNX graph what follows that map),
ensembles (each member's parts) and freezing (``--finetune-last`` counts blocks) ask a :class:`ModelParts` for
these, as timm's models answer ``forward_features``, ``forward_head`` and ``forward_intermediates``. Where they sit
inside each architecture is written once, in the registry's :class:`~pneumo.models.registry.ArchSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pneumo.models.capture import LayerCapture
from pneumo.models.logit_ensemble import ENSEMBLE, LogitEnsemble
from pneumo.models.registry import ArchSpec, arch_spec, get_module

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


@dataclass(frozen=True)
class Block:
    """One block of a backbone: ``name`` is the path (in the model the parts were asked of) of ``output``, the
    module whose output is the block's; ``modules`` are all of the block's modules (a trailing norm included)."""

    name: str
    output: nn.Module
    modules: tuple[nn.Module, ...]

    def parameters(self) -> list[nn.Parameter]:
        return [p for module in self.modules for p in module.parameters()]


@dataclass(frozen=True)
class ModelParts:
    """One network of architecture ``arch``. ``prefix`` is its path inside the module the parts were asked of
    (``"members.0."`` for an ensemble's first member), so block names address that module."""

    model: nn.Module
    arch: str
    prefix: str = ""

    @property
    def spec(self) -> ArchSpec:
        return arch_spec(self.arch)

    @property
    def blocks(self) -> list[Block]:
        """The backbone's blocks from input to output: the feature modules holding parameters (activations and
        pooling are not blocks); a normalisation layer joins the block before it (resnet's ``bn1`` belongs to
        ``conv1``, densenet's ``norm5`` to ``denseblock4``)."""
        grouped: list[list[tuple[str, nn.Module]]] = []
        for name, module in self._feature_modules():
            if not any(True for _ in module.parameters()):
                continue
            if grouped and isinstance(module, _NORMS):
                grouped[-1].append((name, module))
            else:
                grouped.append([(name, module)])
        return [Block(self.prefix + group[-1][0], group[-1][1], tuple(m for _, m in group)) for group in grouped]

    def _feature_modules(self) -> list[tuple[str, nn.Module]]:
        paths = self.spec.features
        if len(paths) == 1:  # one container: its children are the blocks
            container = get_module(self.model, paths[0])
            return [(f"{paths[0]}.{name}", child) for name, child in container.named_children()]
        return [(path, get_module(self.model, path)) for path in paths]

    @property
    def gradcam_layer(self) -> nn.Module:
        """The layer whose activations Grad-CAM weighs: the architecture's last spatial feature map."""
        return get_module(self.model, self.spec.gradcam)

    @property
    def classifier(self) -> nn.Module:
        """What reads the pooled, flattened features (the head without its pooling)."""
        return get_module(self.model, self.spec.classifier)

    @property
    def pools_globally(self) -> bool:
        """Whether the head is global average pooling of the Grad-CAM layer's map then the classifier, so that
        Grad-CAM's weights follow from the classifier alone (:mod:`pneumo.explain.cam_graph`)."""
        spec = self.spec
        last_feature = self._feature_modules()[-1][0]
        pool = get_module(self.model, spec.pool) if spec.pool else None
        is_global = pool is None or (isinstance(pool, nn.AdaptiveAvgPool2d) and pool.output_size in (1, (1, 1)))
        return is_global and spec.gradcam == last_feature

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (N, C, h, w), before pooling."""
        for path in self.spec.features:
            x = get_module(self.model, path)(x)
        return x

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """The logits from :meth:`forward_features`' map: pooling, flattening, the classifier."""
        spec = self.spec
        if spec.relu_before_pool:
            features = F.relu(features)
        pooled = get_module(self.model, spec.pool)(features) if spec.pool else F.adaptive_avg_pool2d(features, 1)
        return self.classifier(torch.flatten(pooled, 1))

    def forward_intermediates(self, x: torch.Tensor, blocks: list[Block]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The logits and the outputs of ``blocks`` (copied as they leave the block, before any in-place
        activation after it) from one forward pass."""
        capture = LayerCapture([block.output for block in blocks], transform=torch.Tensor.clone)
        try:
            with capture.capturing() as kept:
                logits = self.model(x)
            return logits, kept.all()
        finally:
            capture.remove()


def parts_of(model: nn.Module, arch: str) -> list[ModelParts]:
    """The networks inside ``model``: itself, or for an ensemble each member (addressed as ``members.i.``)."""
    if arch != ENSEMBLE:
        arch_spec(arch)  # an unknown name fails here, naming the choices
        return [ModelParts(model, arch)]
    if not isinstance(model, LogitEnsemble):
        raise TypeError(f"arch {ENSEMBLE!r} needs a LogitEnsemble, got {type(model).__name__}")
    return [ModelParts(member, name, f"members.{i}.") for i, (member, name) in enumerate(zip(model.members,
                                                                                              model.archs))]


def gradcam_layers(model: nn.Module, arch: str) -> list[nn.Module]:
    """The layers Grad-CAM weighs: the architecture's one, or each member's for an ensemble (the explainer
    averages their maps)."""
    return [parts.gradcam_layer for parts in parts_of(model, arch)]


def set_trainable_blocks(model: nn.Module, name: str, *, freeze_backbone: bool = False, finetune_last: int = 0) -> None:
    """Freeze the backbone's blocks (``freeze_backbone``) or all but its top ``finetune_last`` blocks.

    Everything above the blocks (pooling, any dense layers, the new head) always trains, as in the classic
    recipe of a frozen convolutional base under a trained top. BatchNorm statistics of frozen blocks stay as
    loaded because the trainer keeps frozen BatchNorm layers in eval mode.
    """
    if finetune_last < 0:
        raise ValueError(f"finetune_last must be >= 0, got {finetune_last}")
    for p in model.parameters():
        p.requires_grad = True
    if not freeze_backbone and finetune_last == 0:
        return
    backbone = ModelParts(model, name).blocks
    keep = 0 if freeze_backbone else min(finetune_last, len(backbone))
    for block in backbone[: len(backbone) - keep]:
        for p in block.parameters():
            p.requires_grad = False
