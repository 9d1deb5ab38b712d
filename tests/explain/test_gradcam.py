"""Grad-CAM on every registry architecture, and the overlay."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import synthetic_xray
from pneumo.config import PreprocessConfig
from pneumo.explain.gradcam import GradCAM, pneumonia_score
from pneumo.explain.overlay import LEGEND_HEIGHT, heatmap_to_original, overlay_png, overlay_rgb
from pneumo.models import ARCHITECTURES, ModelParts, create_model

SIZE = 64


def _input(seed: int = 3, size: int = SIZE) -> torch.Tensor:
    image = synthetic_xray(seed, size=(size, size), pneumonia=True).astype(np.float32) / 255.0
    return torch.from_numpy((image - 0.5) / 0.25)[None, None]


def _valid(heatmap: np.ndarray, size: int = SIZE) -> bool:
    assert heatmap.shape == (1, size, size) and heatmap.dtype == np.float32
    assert np.isfinite(heatmap).all()
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    return bool(heatmap.std() > 0.01)  # differs from a constant map


def _check(cam: GradCAM, x: torch.Tensor) -> torch.Tensor:
    """Evidence for and against pneumonia: both maps valid, and an untrained network (whose pneumonia score
    may have no positive evidence anywhere, giving an all-zero map) shows structure in at least one."""
    for_pneumonia, logits = cam(x)
    against, _ = cam(x, lambda out: -pneumonia_score(out))
    assert _valid(for_pneumonia) or _valid(against)
    return logits


def _model(arch: str, classes: int = 2) -> torch.nn.Module:
    from inference.bundles import settle_batchnorm

    torch.manual_seed(0)
    return settle_batchnorm(create_model(arch, classes=classes), size=SIZE).eval()


@pytest.mark.parametrize("arch", [a for a in ARCHITECTURES if a != "vgg16"])
@pytest.mark.parametrize("classes", [2, 3])
def test_every_architecture(arch, classes):
    model = _model(arch, classes)
    cam = GradCAM(model, ModelParts(model, arch).gradcam_layer)
    logits = _check(cam, _input())
    assert logits.shape == (1, 1 if classes == 2 else 3)
    assert all(p.grad is None for p in model.parameters())  # no .grad side effects on the model
    cam.remove()


@pytest.mark.slow
def test_vgg16():
    model = _model("vgg16")
    _check(GradCAM(model, ModelParts(model, "vgg16").gradcam_layer), _input())


def test_layer_by_name_and_errors():
    torch.manual_seed(0)
    model = create_model("simple_cnn").eval()
    _check(GradCAM(model, "features.2.0"), _input())
    with pytest.raises(ValueError, match="not found"):
        GradCAM(model, "features.99")
    with pytest.raises(ValueError, match="spatial"):
        GradCAM(model, "classifier.1")(_input())
    with pytest.raises(ValueError, match="eval"):
        GradCAM(model.train(), "features.2.0")(_input())


def test_heatmap_follows_the_evidence():
    """With a score that grows with brightness, the bright blob is hot and the background cold; with the
    opposite score there is no positive evidence anywhere and the map is all zero."""
    conv = torch.nn.Conv2d(1, 1, 1, bias=False)
    torch.nn.init.ones_(conv.weight)
    model = torch.nn.Sequential(conv, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    x = torch.zeros(1, 1, 32, 32)
    x[..., 4:12, 20:28] = 1.0
    cam = GradCAM(model, "0")
    heatmap, _ = cam(x)
    assert heatmap[0, 5:11, 21:27].min() > 0.9 and heatmap[0, 20:, :10].max() < 0.05
    against, _ = cam(x, lambda out: -out[:, 0])
    assert against.max() == 0.0


def test_three_class_score_is_pneumonia_log_odds():
    logits = torch.tensor([[0.3, -1.2, 2.0]])
    p = torch.softmax(logits, dim=1)[0]
    assert float(pneumonia_score(logits)) == pytest.approx(float(torch.log((p[1] + p[2]) / p[0])), abs=1e-6)


def test_concurrent_calls_do_not_mix():
    model = _model("mobilenet_v3_small")
    cam = GradCAM(model, ModelParts(model, "mobilenet_v3_small").gradcam_layer)
    inputs = [_input(seed) for seed in range(6)]
    expected = [cam(x)[0] for x in inputs]
    results: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, cam(inputs[i])[0])) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(6):
        np.testing.assert_allclose(results[i], expected[i], atol=1e-5)


def test_overlay_geometry_and_colour():
    cfg = PreprocessConfig(image_size=32)
    image = np.linspace(0, 1, 60 * 90, dtype=np.float32).reshape(60, 90)
    cold = overlay_rgb(image, np.zeros((32, 32), np.float32), cfg)
    assert cold.shape == (60, 90, 3)
    assert np.array_equal(cold[..., 0], cold[..., 1]) and np.array_equal(cold[..., 1], cold[..., 2])  # untouched gray
    hot = overlay_rgb(image, np.ones((32, 32), np.float32), cfg)
    assert np.abs(hot.astype(int) - cold.astype(int)).max() > 50
    png = Image.open(io.BytesIO(overlay_png(image, np.ones((32, 32), np.float32), cfg)))
    assert png.size == (90, 60 + LEGEND_HEIGHT)


def test_letterbox_heatmap_maps_back_onto_the_content():
    cfg = PreprocessConfig(image_size=32, resize_mode="letterbox")
    heatmap = np.zeros((32, 32), np.float32)
    heatmap[8:24, :] = 1.0  # a 64x32 (wide) image occupies rows 8..24 of the letterboxed square
    back = heatmap_to_original(heatmap, 32, 64, cfg)
    assert back.shape == (32, 64) and back.min() > 0.99


def test_overlay_colours_are_matplotlibs_turbo():
    colormaps = pytest.importorskip("matplotlib").colormaps  # the eval extra; the shipped table needs no matplotlib
    from pneumo.explain.overlay import colour

    heat = np.concatenate([np.linspace(0.0, 1.0, 4097, dtype=np.float32),
                           np.array([1 / 256, 255 / 256, 1 - 1e-7], dtype=np.float32)])
    np.testing.assert_array_equal(colour(heat), colormaps["turbo"](heat)[:, :3].astype(np.float32))
