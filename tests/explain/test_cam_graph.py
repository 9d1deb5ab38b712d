"""Grad-CAM as a forward graph (pneumo.explain.cam_graph) equals autograd Grad-CAM, architecture by architecture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import synthetic_xray
from pneumo.explain.cam_graph import GraphGradCAM, HeadGradient, supports_graph_cam
from pneumo.explain.gradcam import GradCAM, pneumonia_log_odds
from pneumo.models import LogitEnsemble, create_model, gradcam_layers

# The architectures whose Grad-CAM layer is pooled globally into a dense head (ModelParts.pools_globally).
POOLED = ["densenet121", "efficientnet_b0", "mobilenet_v3_large", "mobilenet_v3_small", "resnet18", "resnet50"]

SIZE = 64
# Both sides run the same float32 operations except the head's backward (autograd's kernels against the written-out
# one) and the order of a few reductions: rounding, not method (measured: below 1e-6). Min-max scaling divides by
# the map's range, so the bound is relative to 1; a wrong slope, sign or class share shows up at 1e-2 and more.
AGREE = 1e-4


def _batch(count: int = 2) -> torch.Tensor:
    images = [synthetic_xray(20 + i, size=(SIZE, SIZE), pneumonia=i % 2 == 0).astype(np.float32) / 255.0
              for i in range(count)]
    return torch.from_numpy((np.stack(images) - 0.5) / 0.25)[:, None]


def _model(arch: str, classes: int, seed: int = 0) -> nn.Module:
    from inference.bundles import settle_batchnorm

    torch.manual_seed(seed)
    model = settle_batchnorm(create_model(arch, classes=classes), size=SIZE)
    # A trained head's hidden units sit on both sides of the activations' kinks; an untrained one barely moves.
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                layer.weight.mul_(8.0)
    return model.eval()


def _graph_map(model: nn.Module, arch: str, normal_index: int, x: torch.Tensor) -> np.ndarray:
    graph = GraphGradCAM(model, arch, normal_index)
    maps: dict[int, torch.Tensor] = {}
    handles = [layer.register_forward_hook(lambda m, a, out, i=i: maps.__setitem__(i, out))
               for i, layer in enumerate(graph.layers)]
    try:
        with torch.no_grad():
            model(x)
            return graph([maps[i] for i in range(len(graph.layers))], (SIZE, SIZE)).numpy()
    finally:
        for handle in handles:
            handle.remove()


def _autograd_map(model: nn.Module, arch: str, normal_index: int, x: torch.Tensor) -> np.ndarray:
    cam = GradCAM(model, gradcam_layers(model, arch))
    try:
        return cam(x, pneumonia_log_odds(normal_index))[0]
    finally:
        cam.remove()


FAST = ["mobilenet_v3_small", "resnet18", "efficientnet_b0"]


@pytest.mark.parametrize("arch", FAST + [pytest.param(a, marks=pytest.mark.slow) for a in POOLED
                                         if a not in FAST])
@pytest.mark.parametrize("classes, normal_index", [(2, 0), (3, 0), (3, 2)])
def test_graph_map_equals_autograd(arch, classes, normal_index):
    model, x = _model(arch, classes), _batch()
    expected = _autograd_map(model, arch, normal_index, x)
    actual = _graph_map(model, arch, normal_index, x)
    assert actual.shape == expected.shape == (2, SIZE, SIZE)
    assert expected.std() > 0.01  # a map with structure, not a constant that any method would match
    np.testing.assert_allclose(actual, expected, atol=AGREE)


def test_ensemble_of_pooled_members():
    members = [_model("mobilenet_v3_small", 3, seed=1), _model("resnet18", 3, seed=2)]
    ensemble = LogitEnsemble(members, ["mobilenet_v3_small", "resnet18"]).eval()
    x = _batch()
    np.testing.assert_allclose(_graph_map(ensemble, "ensemble", 0, x), _autograd_map(ensemble, "ensemble", 0, x),
                               atol=AGREE)


def test_architectures_that_do_not_pool_globally_have_no_graph():
    model = create_model("simple_cnn")
    assert not supports_graph_cam("simple_cnn", model)
    with pytest.raises(ValueError, match=r"no Grad-CAM graph for \['simple_cnn'\]"):
        GraphGradCAM(model, "simple_cnn", 0)
    mixed = LogitEnsemble([create_model("simple_cnn"), create_model("resnet18")], ["simple_cnn", "resnet18"])
    assert not supports_graph_cam("ensemble", mixed)


def test_head_with_a_layer_it_cannot_differentiate_is_refused():
    with pytest.raises(ValueError, match="resnet18: the head holds a LayerNorm"):
        HeadGradient(nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3)), "resnet18")


@pytest.mark.parametrize("activation", [nn.ReLU(), nn.Hardswish(), nn.SiLU()])
def test_head_backward_equals_autograd(activation):
    torch.manual_seed(0)
    head = nn.Sequential(nn.Linear(6, 5), activation, nn.Dropout(0.5), nn.Sequential(nn.Dropout(0.3), nn.Linear(5, 3)))
    head.eval()
    pooled = (torch.randn(4, 6) * 4).requires_grad_(True)  # inputs across the kinks at 0 and +-3
    seed = torch.randn(4, 3)
    (head(pooled) * seed).sum().backward()
    written = HeadGradient(head, "test")
    logits, inputs = written(pooled.detach())
    torch.testing.assert_close(logits, head(pooled.detach()))
    torch.testing.assert_close(written.backward(inputs, seed), pooled.grad)
