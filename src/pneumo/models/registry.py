"""Build models by name. All take one-channel input; a pretrained first conv is adapted by summing its
RGB weights (the same response to a gray image as the RGB net had to that gray image tripled)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pneumo.models.simple_cnn import SimpleCNN


@dataclass(frozen=True)
class ArchSpec:
    """Where things are in one torchvision (or pneumo) architecture; read through
    :class:`pneumo.models.parts.ModelParts`, never walked by its consumers."""

    builder: str  # torchvision.models constructor name, "" for simple_cnn (imported on use: startup stays light)
    weights: str  # torchvision weights enum name for --pretrained
    first_conv: str  # the first convolution, made one-channel at creation
    head: str  # the final Linear layer, replaced at creation by dropout + a Linear of the right width
    features: tuple[str, ...]  # run in order, input -> last feature map; a single container's children are blocks
    pool: str  # the pooling between the feature map and the classifier; "": global average pooling (a function)
    classifier: str  # what reads the pooled, flattened features
    gradcam: str  # the layer Grad-CAM weighs
    relu_before_pool: bool = False  # densenet applies ReLU to its last feature map (after norm5) before pooling


_RESNET = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
ARCHITECTURES: dict[str, ArchSpec] = {
    "simple_cnn": ArchSpec("", "", "features.0.0", "classifier.4", ("features",), "pool", "classifier",
                           "features.2.0"),
    "vgg16": ArchSpec("vgg16", "VGG16_Weights", "features.0", "classifier.6", ("features",), "avgpool", "classifier",
                      "features.28"),
    "resnet18": ArchSpec("resnet18", "ResNet18_Weights", "conv1", "fc", _RESNET, "avgpool", "fc", "layer4"),
    "resnet50": ArchSpec("resnet50", "ResNet50_Weights", "conv1", "fc", _RESNET, "avgpool", "fc", "layer4"),
    "densenet121": ArchSpec("densenet121", "DenseNet121_Weights", "features.conv0", "classifier", ("features",), "",
                            "classifier", "features.norm5", relu_before_pool=True),
    "efficientnet_b0": ArchSpec("efficientnet_b0", "EfficientNet_B0_Weights", "features.0.0", "classifier.1",
                                ("features",), "avgpool", "classifier", "features.8"),
    "mobilenet_v3_small": ArchSpec("mobilenet_v3_small", "MobileNet_V3_Small_Weights", "features.0.0",
                                   "classifier.3", ("features",), "avgpool", "classifier", "features.12"),
    "mobilenet_v3_large": ArchSpec("mobilenet_v3_large", "MobileNet_V3_Large_Weights", "features.0.0",
                                   "classifier.3", ("features",), "avgpool", "classifier", "features.16"),
}


def get_module(module: nn.Module, path: str) -> nn.Module:
    """The submodule at dotted ``path`` ("": the module itself)."""
    return module.get_submodule(path) if path else module


def _set(module: nn.Module, path: str, value: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(get_module(module, parent), name, value)


def arch_spec(name: str) -> ArchSpec:
    """The spec of architecture ``name``, or a ValueError naming the choices."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown arch {name!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def num_outputs(classes: int) -> int:
    """Binary models have one logit (pneumonia); 3-class models one per class."""
    return 1 if classes == 2 else classes


def create_model(name: str, *, classes: int = 2, pretrained: bool = False, weights_file: str | Path = "",
                 dropout: float = 0.3) -> nn.Module:
    """Build ``name`` for one-channel input with ``classes`` (2 or 3) outputs.

    ``pretrained`` loads torchvision's ImageNet weights (needs internet); ``weights_file`` loads a local
    torchvision-format state dict instead (``torch.load(weights_only=True)``, never a pickle of code).
    """
    spec = arch_spec(name)
    outputs = num_outputs(classes)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if not spec.builder:
        if pretrained or weights_file:
            raise ValueError("simple_cnn has no pretrained weights; drop --pretrained")
        return SimpleCNN(outputs, in_chans=1, dropout=dropout)
    from torchvision import models as tvm

    weights = None
    if pretrained and not weights_file:
        weights = getattr(tvm, spec.weights).DEFAULT
    model = getattr(tvm, spec.builder)(weights=weights)
    if weights_file:
        path = Path(weights_file)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights file {path} does not exist")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches: weights of another architecture or variant
            raise ValueError(f"{path} does not hold {name} weights ({str(exc).splitlines()[-1].strip()})") from exc
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if unexpected or missing:
            raise ValueError(f"{path} does not hold {name} weights (missing keys: {missing[:5]}, "
                             f"unexpected keys: {unexpected[:5]})")
    _to_one_channel(model, spec.first_conv)
    head = get_module(model, spec.head)
    if not isinstance(head, nn.Linear):
        raise TypeError(f"{name}: expected a Linear head at {spec.head}, found {type(head).__name__}")
    _set(model, spec.head, nn.Sequential(nn.Dropout(dropout), nn.Linear(head.in_features, outputs)))
    return model


def _to_one_channel(model: nn.Module, path: str) -> None:
    conv = get_module(model, path)
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"expected a Conv2d at {path}, found {type(conv).__name__}")
    new = nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups,
                    conv.bias is not None, padding_mode=conv.padding_mode)
    with torch.no_grad():
        new.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    _set(model, path, new)
