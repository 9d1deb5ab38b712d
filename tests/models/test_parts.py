"""The model interface: each architecture's features, head and blocks, read through ModelParts, reproduce the
network's own forward pass; an ensemble answers per member; one hook utility keeps layer outputs."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from pneumo.models import ENSEMBLE, LayerCapture, LogitEnsemble, ModelParts, create_model, parts_of

CHEAP = ["simple_cnn", "resnet18", "mobilenet_v3_small", "efficientnet_b0"]
SLOW = ["vgg16", "resnet50", "densenet121", "mobilenet_v3_large"]


@pytest.mark.parametrize("arch", CHEAP + [pytest.param(a, marks=pytest.mark.slow) for a in SLOW])
def test_head_of_features_is_the_forward_pass(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, classes=3).eval()
    parts = ModelParts(model, arch)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        features = parts.forward_features(x)
        torch.testing.assert_close(parts.forward_head(features), model(x), rtol=0, atol=0)
    assert features.dim() == 4


def test_which_heads_pool_globally() -> None:
    pooled = set()
    for arch in CHEAP + SLOW:
        with torch.device("meta"):
            model = create_model(arch)
        if ModelParts(model, arch).pools_globally:
            pooled.add(arch)
    # vgg16 and simple_cnn pool to a fixed grid (7x7, 4x4) before a dense head: no graph Grad-CAM for them.
    assert pooled == set(CHEAP + SLOW) - {"vgg16", "simple_cnn"}


def test_blocks_are_named_in_depth_order() -> None:
    model = create_model("resnet18")
    blocks = ModelParts(model, "resnet18").blocks
    # bn1 joins conv1: the block's output is the norm's.
    assert [b.name for b in blocks] == ["bn1", "layer1", "layer2", "layer3", "layer4"]
    assert blocks[0].modules == (model.conv1, model.bn1) and blocks[0].output is model.bn1


def test_intermediates_are_the_blocks_outputs() -> None:
    torch.manual_seed(0)
    model = create_model("simple_cnn").eval()
    parts = ModelParts(model, "simple_cnn")
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        logits, outputs = parts.forward_intermediates(x, parts.blocks)
        torch.testing.assert_close(logits, model(x), rtol=0, atol=0)
        for depth, output in enumerate(outputs):
            torch.testing.assert_close(output, model.features[: depth + 1](x), rtol=0, atol=0)
    x.requires_grad_(True)
    model(x).sum().backward()  # the capture's hooks are gone: a plain forward keeps nothing
    assert all(not m._forward_hooks for m in model.modules())


def test_ensemble_parts_address_each_member() -> None:
    members = [create_model("simple_cnn"), create_model("mobilenet_v3_small")]
    ensemble = LogitEnsemble(members, ["simple_cnn", "mobilenet_v3_small"])
    parts = parts_of(ensemble, ENSEMBLE)
    assert [p.model for p in parts] == members and [p.arch for p in parts] == ensemble.archs
    for parts_i in parts:
        for block in parts_i.blocks:
            assert ensemble.get_submodule(block.name) is block.output
    with pytest.raises(TypeError, match="needs a LogitEnsemble"):
        parts_of(members[0], ENSEMBLE)
    with pytest.raises(ValueError, match="unknown arch 'resnet9'"):
        parts_of(members[0], "resnet9")


def test_capture_keeps_outputs_only_inside_its_block_and_per_thread() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True)).eval()
    capture = LayerCapture([model[0]], transform=torch.Tensor.clone)
    model(torch.randn(1, 4))  # outside capturing(): nothing is stored anywhere
    inputs = [torch.randn(3, 4) for _ in range(8)]
    results: dict[int, torch.Tensor] = {}

    def run(i: int) -> None:
        with capture.capturing() as kept:
            for _ in range(20):
                model(inputs[i])
        results[i] = kept[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, x in enumerate(inputs):
        torch.testing.assert_close(results[i], model[0](x))  # kept before the in-place ReLU changed it
    with capture.capturing() as kept:
        pass
    with pytest.raises(RuntimeError, match="did not run"):
        kept[0]
    capture.remove()
    assert not model[0]._forward_hooks
