"""The exported graph's Grad-CAM heatmap: equal to PyTorch's autograd Grad-CAM, used by the ONNX Predictor, and
computed without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.bundles import make_bundle, xray_png
from pneumo.export.onnx import GRADCAM_TOLERANCE, add_onnx_to_bundle, export_onnx, probe_batch, verify_gradcam
from pneumo.inference.backend import OnnxBackend
from pneumo.inference.predictor import Predictor

SRC = str(Path(__file__).resolve().parents[2] / "src")
ASSETS = Path(__file__).resolve().parents[1] / "assets"


@pytest.fixture
def mobilenet_bundle(tmp_path) -> Path:
    return make_bundle(tmp_path / "mobilenet", arch="mobilenet_v3_small", classes=3, size=64)


def test_export_has_a_heatmap_equal_to_autograd_grad_cam(mobilenet_bundle, tmp_path):
    path = export_onnx(mobilenet_bundle, tmp_path / "m.onnx")
    runtime = OnnxBackend(path)
    assert runtime.has_gradcam
    heatmaps = runtime.gradcam(probe_batch(Predictor.load(mobilenet_bundle, backend="torch").meta, 3))
    assert heatmaps.shape == (3, 64, 64) and heatmaps.dtype == np.float32
    assert 0.0 <= heatmaps.min() and heatmaps.max() <= 1.0
    assert verify_gradcam(mobilenet_bundle, path) <= GRADCAM_TOLERANCE


def test_onnx_predictor_explains_from_the_graph(mobilenet_bundle, tmp_path):
    add_onnx_to_bundle(mobilenet_bundle)
    image = tmp_path / "x.png"
    image.write_bytes(xray_png(5, pneumonia=True))
    onnx, torch_ = Predictor.load(mobilenet_bundle), Predictor.load(mobilenet_bundle, backend="torch")
    assert onnx.backend.name == "onnx"
    got, want = onnx.explain(image), torch_.explain(image)
    assert onnx.heatmaps.torch_explainer is None  # no PyTorch network was loaded for it
    assert got.prediction.label == want.prediction.label
    assert np.abs(got.heatmap - want.heatmap).max() <= GRADCAM_TOLERANCE
    assert got.overlay_png[:8] == b"\x89PNG\r\n\x1a\n"


NO_TORCH_EXPLAIN = r"""
import json, sys
sys.modules["torch"] = None  # any import of torch fails
import numpy as np
from pneumo.inference.predictor import Predictor
from pneumo.optional import MissingExtraError
predictor = Predictor.load(sys.argv[1])
try:
    heatmap = predictor.explain(sys.argv[2]).heatmap
    print(json.dumps({"heatmap": heatmap.tolist()}))
except MissingExtraError as exc:
    print(json.dumps({"error": str(exc)}))
"""


def _explain_without_torch(bundle: Path, image: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", NO_TORCH_EXPLAIN, str(bundle), str(image)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_heatmap_without_torch_and_a_clear_error_where_the_graph_has_none(mobilenet_bundle, tiny_bundle, tmp_path):
    image = tmp_path / "x.png"
    image.write_bytes(xray_png(6))
    add_onnx_to_bundle(mobilenet_bundle)
    heatmap = np.asarray(_explain_without_torch(mobilenet_bundle, image)["heatmap"], dtype=np.float32)
    want = Predictor.load(mobilenet_bundle, backend="torch").explain(image).heatmap
    assert np.abs(heatmap - want).max() <= GRADCAM_TOLERANCE
    # simple_cnn pools to 4x4, not globally: its export has no heatmap, and without torch the answer names the extra.
    add_onnx_to_bundle(tiny_bundle)
    assert not OnnxBackend(tiny_bundle / "model.onnx").has_gradcam
    error = _explain_without_torch(tiny_bundle, image)["error"]
    assert "needs torch" in error and "pip install 'pneumo[train]'" in error


@pytest.mark.parametrize("name", ["default", "default-3class"])
def test_shipped_bundles_explain_on_onnx_runtime_as_on_pytorch(name):
    onnx, torch_ = Predictor.load(name), Predictor.load(name, backend="torch")
    assert onnx.backend.name == "onnx" and onnx.backend.has_gradcam
    for image in sorted(ASSETS.glob("*.jpeg")):
        got, want = onnx.explain(image), torch_.explain(image)
        assert got.prediction.label == want.prediction.label
        assert np.abs(got.heatmap - want.heatmap).max() <= GRADCAM_TOLERANCE, image.name
