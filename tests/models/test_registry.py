"""The model registry: every architecture takes one channel, has the right head, loads local pretrained
weights by summing RGB filters, and freezes what it is asked to."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision import models as tvm

from pneumo.models import ARCHITECTURES, ModelParts, create_model, set_trainable_blocks
from pneumo.models.registry import num_outputs
from pneumo.models.simple_cnn import SimpleCNN


# Building these allocates and initialises 25-140 M parameters (seconds each on a busy 2-core machine);
# on the meta device the same module code runs and computes every shape without touching memory.
BIG = {"vgg16", "resnet50", "densenet121"}


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_arch_builds_for_one_channel(arch: str, classes: int) -> None:
    torch.manual_seed(0)
    device = torch.device("meta" if arch in BIG else "cpu")
    with device:
        model = create_model(arch, classes=classes).eval()
        x = torch.randn(2, 1, 32, 32)
    first = model.get_submodule(ARCHITECTURES[arch].first_conv)
    assert isinstance(first, nn.Conv2d) and first.in_channels == 1
    captured = {}
    hook = ModelParts(model, arch).gradcam_layer.register_forward_hook(lambda m, i, o: captured.update(shape=o.shape))
    with torch.no_grad():
        out = model(x)
    hook.remove()
    assert out.shape == (2, num_outputs(classes)) == (2, 1 if classes == 2 else 3)
    if device.type == "cpu":
        assert torch.isfinite(out).all()
    assert len(captured["shape"]) == 4  # Grad-CAM hooks a spatial feature map
    if arch != "simple_cnn":
        head = model.get_submodule(ARCHITECTURES[arch].head)
        assert isinstance(head[0], nn.Dropout) and head[1].out_features == num_outputs(classes)


def test_simple_cnn_is_the_classic_one() -> None:
    model = create_model("simple_cnn", dropout=0.2)
    assert isinstance(model, SimpleCNN)
    convs = [m for m in model.features.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features.modules()) == 3
    linears = [m for m in model.classifier.modules() if isinstance(m, nn.Linear)]
    assert [l.out_features for l in linears] == [512, 1]
    assert [m.p for m in model.classifier.modules() if isinstance(m, nn.Dropout)] == [0.2]  # as asked
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.5"):
        create_model("simple_cnn", dropout=1.5)


def test_unknown_arch_lists_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown arch 'alexnet'; choose one of \['densenet121'"):
        create_model("alexnet")
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_model("simple_cnn", pretrained=True)


@pytest.fixture(scope="module")
def rgb_resnet18() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return tvm.resnet18(weights=None).state_dict()  # the format of torchvision's ImageNet checkpoint


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_pretrained_weights_file_sums_rgb_filters(tmp_path: Path, rgb_resnet18: dict, suffix: str) -> None:
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":
        torch.save(rgb_resnet18, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in rgb_resnet18.items()}, str(path))
    model = create_model("resnet18", classes=2, weights_file=path)
    assert model.conv1.weight.shape == (64, 1, 7, 7)
    torch.testing.assert_close(model.conv1.weight, rgb_resnet18["conv1.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(model.layer3[1].conv2.weight, rgb_resnet18["layer3.1.conv2.weight"])
    torch.testing.assert_close(model.bn1.running_mean, rgb_resnet18["bn1.running_mean"])
    # A gray image through the adapted net equals that image tripled through the RGB net (up to the head).
    rgb = tvm.resnet18(weights=None)
    rgb.load_state_dict(rgb_resnet18)
    rgb.fc = nn.Identity()
    model.fc = nn.Identity()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), rgb.eval()(x.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-4)


def test_pretrained_weights_file_errors(tmp_path: Path, rgb_resnet18: dict) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_model("resnet18", weights_file=tmp_path / "missing.pth")
    wrong = tmp_path / "other.pth"
    torch.save({"features.0.0.weight": torch.zeros(16, 3, 3, 3)}, wrong)
    with pytest.raises(ValueError, match="does not hold resnet18 weights"):
        create_model("resnet18", weights_file=wrong)
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in rgb_resnet18.items() if not k.startswith("layer4")}, partial)
    with pytest.raises(ValueError, match="missing keys: \\['layer4"):
        create_model("resnet18", weights_file=partial)
    resnet34 = tmp_path / "resnet34.pth"
    state = dict(rgb_resnet18)
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    torch.save(state, resnet34)
    with pytest.raises(ValueError, match="does not hold resnet18 weights"):
        create_model("resnet18", weights_file=resnet34)


def _trainable(model: nn.Module, prefix: str) -> set[bool]:
    return {p.requires_grad for n, p in model.named_parameters() if n.startswith(prefix)}


def test_freeze_backbone_and_finetune_last_resnet() -> None:
    model = create_model("resnet18")
    set_trainable_blocks(model, "resnet18", freeze_backbone=True)
    for frozen in ("conv1", "bn1", "layer1", "layer4"):
        assert _trainable(model, frozen) == {False}, frozen
    assert _trainable(model, "fc") == {True}
    set_trainable_blocks(model, "resnet18", finetune_last=2)
    assert _trainable(model, "layer2") == {False}
    assert _trainable(model, "layer3") == _trainable(model, "layer4") == _trainable(model, "fc") == {True}
    set_trainable_blocks(model, "resnet18", finetune_last=99)  # more than there are: everything trains
    assert {p.requires_grad for p in model.parameters()} == {True}
    set_trainable_blocks(model, "resnet18", freeze_backbone=True)
    set_trainable_blocks(model, "resnet18")  # neither option: everything trains again
    assert {p.requires_grad for p in model.parameters()} == {True}
    with pytest.raises(ValueError, match="finetune_last must be >= 0"):
        set_trainable_blocks(model, "resnet18", finetune_last=-1)


def test_finetune_last_counts_blocks_with_weights() -> None:
    """The top block of a VGG is its last convolution, not the parameterless max-pool after it."""
    model = create_model("mobilenet_v3_small")
    set_trainable_blocks(model, "mobilenet_v3_small", finetune_last=1)
    assert _trainable(model, "features.12") == {True} and _trainable(model, "features.11") == {False}
    assert _trainable(model, "classifier") == {True}  # the dense layer under the head trains too
    with torch.device("meta"):
        dense = create_model("densenet121")
    set_trainable_blocks(dense, "densenet121", finetune_last=1)
    assert _trainable(dense, "features.denseblock4") == _trainable(dense, "features.norm5") == {True}
    assert _trainable(dense, "features.transition3") == {False}
    assert len(ModelParts(dense, "densenet121").blocks) == 8


def test_vgg_blocks_have_parameters() -> None:
    with torch.device("meta"):
        model = create_model("vgg16")
    assert all(any(True for _ in b.parameters()) for b in ModelParts(model, "vgg16").blocks)
    set_trainable_blocks(model, "vgg16", finetune_last=1)
    assert _trainable(model, "features.28") == {True} and _trainable(model, "features.26") == {False}
    assert _trainable(model, "classifier") == {True}
