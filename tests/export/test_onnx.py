"""ONNX export: same outputs as PyTorch within 1e-4, metadata embedded, and a torch-free runtime path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import synthetic_xray
from inference.bundles import add_gate, make_bundle, noise_png, xray_png
from pneumo.bundle import META_FILE, BundleError, file_sha256, read_meta, write_meta
from pneumo.data.preprocess import normalize_uint8, preprocess_array
from pneumo.cli import main
from pneumo.export.onnx import add_onnx_to_bundle, export_onnx, verify_export
from pneumo.inference.backend import EXPORT_KEY, METADATA_KEY, OnnxBackend
from pneumo.inference.loading import load_torch_backend
from pneumo.inference.predictor import Predictor

TOLERANCE = 1e-4
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _xrays(meta, batch: int) -> np.ndarray:
    """Synthetic X-rays through the bundle's preprocessing: what the exported graph will see."""
    images = [preprocess_array(synthetic_xray(700 + i, size=(70, 60), pneumonia=i % 2 == 1) / 255.0, meta.preprocess)
              for i in range(batch)]
    return normalize_uint8(np.stack(images), meta.preprocess)[:, None]


@pytest.fixture
def gated_bundle(tmp_path) -> Path:
    bundle = make_bundle(tmp_path / "gated", classes=3)
    add_gate(bundle, [xray_png(s, pneumonia=s % 2 == 0) for s in range(90)], percentile=99.0)
    return bundle


@pytest.mark.parametrize("arch, size", [("simple_cnn", 32), ("mobilenet_v3_small", 64)])
def test_outputs_equal_pytorch_for_any_batch(tmp_path, arch, size):
    bundle = make_bundle(tmp_path / arch, arch=arch, size=size)
    path = export_onnx(bundle, tmp_path / f"{arch}.onnx")
    torch_backend, meta, _, _ = load_torch_backend(bundle)
    runtime = OnnxBackend(path)
    for batch in (1, 5):
        x = _xrays(meta, batch)
        expected, actual = torch_backend.run(x), runtime.run(x)
        assert actual.logits.shape == (batch, 1) and actual.features.shape == expected.features.shape
        np.testing.assert_allclose(actual.logits, expected.logits, atol=TOLERANCE)
        # An untrained mobilenet's mid-level activations reach the hundreds, where float32 rounding (and ONNX
        # Runtime's conv/batch-norm fusion) is relative to that scale; a trained one stays within 1e-5.
        scale = max(1.0, float(np.abs(expected.features).max()))
        assert np.abs(actual.features - expected.features).max() <= TOLERANCE * scale
        assert np.abs(expected.features).max() > 1e-3  # a meaningful comparison, not of vanished signals
    assert verify_export(bundle, path)["logits"] < TOLERANCE


def test_metadata_opset_and_gate_output(gated_bundle, tmp_path):
    path = export_onnx(gated_bundle, tmp_path / "m.onnx")
    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    props = {p.key: p.value for p in model.metadata_props}
    document = json.loads(props[METADATA_KEY])
    assert document == json.loads((gated_bundle / META_FILE).read_text())
    details = json.loads(props[EXPORT_KEY])
    assert details["outputs"] == ["logits", "features", "gate_distance"]
    assert details["gate_sha256"] == document["meta"]["gate"]["sha256"]
    torch_backend, meta, _, _ = load_torch_backend(gated_bundle)
    x = _xrays(meta, 4)
    expected, actual = torch_backend.run(x), OnnxBackend(path).run(x)
    np.testing.assert_allclose(actual.logits, expected.logits, atol=TOLERANCE)
    np.testing.assert_allclose(actual.distance, expected.distance, rtol=1e-5)


def test_onnx_predictor_matches_torch_predictor(gated_bundle, tmp_path):
    path = export_onnx(gated_bundle, tmp_path / "m.onnx")
    sources = [xray_png(s, pneumonia=s % 2 == 0) for s in range(500, 508)] + [noise_png(3), b"junk" * 40]
    torch_results = Predictor.load(gated_bundle).predict_many(sources)
    onnx_results = Predictor.load(path, backend="onnx").predict_many(sources)
    for t, o in zip(torch_results, onnx_results):
        assert (t.label, t.unknown_reason is None, t.error is None) == (o.label, o.unknown_reason is None,
                                                                        o.error is None)
        if t.probability is not None:
            assert o.probability == pytest.approx(t.probability, abs=TOLERANCE)
            for k, v in t.subtype_probabilities.items():
                assert o.subtype_probabilities[k] == pytest.approx(v, abs=TOLERANCE)
        assert o.model_version == t.model_version and o.threshold == t.threshold
    assert onnx_results[-2].label == "UNKNOWN" and onnx_results[-1].error


def test_folder_batches_in_parallel_lanes_keep_order_and_values(gated_bundle, tmp_path):
    path = export_onnx(gated_bundle, tmp_path / "m.onnx")
    # 41 inputs: several lane batches in flight at once, junk and non-X-rays among them, a short last batch.
    sources = [xray_png(s, pneumonia=s % 3 == 0) for s in range(600, 636)] + [noise_png(4), b"junk" * 40]
    sources += [xray_png(s) for s in range(700, 703)]
    laned = Predictor.load(path, backend="onnx", threads=2)
    single = Predictor.load(path, backend="onnx", threads=1)
    assert laned.backend.lanes == 2 and single.backend.lanes == 1
    many = laned.predict_many(sources, batch_size=32)
    one_by_one = [single.predict(s) for s in sources]
    assert len(many) == len(sources)
    for m, o in zip(many, one_by_one):
        assert (m.label, m.unknown_reason is None, m.error is None) == (o.label, o.unknown_reason is None,
                                                                        o.error is None)
        if o.probability is not None:
            assert m.probability == pytest.approx(o.probability, abs=1e-6)
    assert many[36].label == "UNKNOWN" and many[37].error and laned.backend._lane_session is not None


def test_bundle_without_model_onnx_is_never_exported_silently(tiny_bundle, monkeypatch, tmp_path):
    monkeypatch.setenv("PNEUMO_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="--into-bundle"):
        Predictor.load(tiny_bundle, backend="onnx")
    auto = Predictor.load(tiny_bundle)  # auto: PyTorch, and it says why
    assert auto.backend.name == "torch" and "no model.onnx" in auto.backend_note
    assert not (tiny_bundle / "model.onnx").exists() and not (tmp_path / "cache").exists()


def test_model_onnx_added_to_a_bundle_is_checksummed_and_used_by_default(tiny_bundle):
    directory, diffs = add_onnx_to_bundle(tiny_bundle)
    assert directory == tiny_bundle and max(diffs.values()) <= TOLERANCE
    files = json.loads((tiny_bundle / META_FILE).read_text())["files"]
    assert files["model.onnx"] == file_sha256(tiny_bundle / "model.onnx")
    auto = Predictor.load(tiny_bundle)
    assert auto.backend.name == "onnx" and auto.backend.path == tiny_bundle / "model.onnx"
    torch_predictor = Predictor.load(tiny_bundle, backend="torch")
    assert torch_predictor.backend.name == "torch"
    assert auto.predict(xray_png(1)).probability == pytest.approx(torch_predictor.predict(xray_png(1)).probability,
                                                                  abs=TOLERANCE)
    # Grad-CAM still works: the bundle's PyTorch weights are loaded for it on demand.
    assert auto.explain(xray_png(2)).heatmap.shape == (32, 32)
    # Rewriting the metadata (calibration) keeps the recorded checksum; the model stays usable.
    directory, meta = read_meta(tiny_bundle)
    meta.threshold = 0.25
    write_meta(directory, meta)
    again = Predictor.load(tiny_bundle)
    assert again.backend.name == "onnx" and again.meta.threshold == 0.25


def test_tampered_or_unrecorded_model_onnx_is_refused(tiny_bundle, tmp_path):
    add_onnx_to_bundle(tiny_bundle)
    onnx_path = tiny_bundle / "model.onnx"
    data = bytearray(onnx_path.read_bytes())
    data[-1] ^= 1
    onnx_path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum mismatch"):
        Predictor.load(tiny_bundle)
    document = json.loads((tiny_bundle / META_FILE).read_text())
    del document["files"]["model.onnx"]
    (tiny_bundle / META_FILE).write_text(json.dumps(document))
    with pytest.raises(BundleError, match="not recorded"):
        Predictor.load(tiny_bundle, backend="onnx")


def test_export_into_bundle_command(tiny_bundle, capsys):
    assert main(["export", "--model", str(tiny_bundle), "--into-bundle"]) == 0
    assert "added model.onnx" in capsys.readouterr().out and (tiny_bundle / "model.onnx").is_file()


NO_TORCH_SCRIPT = """
import json, sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
from pneumo.inference.predictor import Predictor
predictor = Predictor.load(sys.argv[1], backend="onnx")
results = predictor.predict_many(sys.argv[2:])
print(json.dumps([r.to_dict() for r in results]))
loaded = sorted(m for m, module in sys.modules.items()
                if module is not None and m.split(".")[0] in ("torch", "torchvision", "scipy", "sklearn", "onnx"))
print(json.dumps(loaded))
"""


def test_onnx_path_runs_without_torch(gated_bundle, tmp_path):
    path = export_onnx(gated_bundle, tmp_path / "m.onnx")
    images = []
    for i, data in enumerate([xray_png(600), xray_png(601, pneumonia=True), noise_png(4)]):
        images.append(tmp_path / f"{i}.png")
        images[-1].write_bytes(data)
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", NO_TORCH_SCRIPT, str(path), *map(str, images)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    results, heavy = json.loads(lines[0]), json.loads(lines[1])
    assert heavy == []  # no torch (poisoned), and no scipy, sklearn or onnx either
    expected = Predictor.load(gated_bundle).predict_many(images)
    for got, want in zip(results, expected):
        assert got["label"] == want.label and got["path"] == want.path
        if want.probability is not None:
            assert got["probability"] == pytest.approx(want.probability, abs=TOLERANCE)


def test_export_command(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "deploy" / "model.onnx"
    assert main(["export", "--model", str(tiny_bundle), "--format", "onnx", "--out", str(out)]) == 0
    assert out.is_file() and "max difference" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["export", "--model", str(tiny_bundle), "--format", "tflite", "--out", str(out)])


def test_bare_onnx_file_predicts_but_cannot_explain(tiny_bundle, tmp_path, capsys):
    path = export_onnx(tiny_bundle, tmp_path / "m.onnx")
    image = tmp_path / "x.png"
    image.write_bytes(xray_png(8))
    assert main(["predict", str(image), "--model", str(path), "--backend", "onnx", "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["label"] in ("NORMAL", "PNEUMONIA")
    with pytest.raises(ValueError, match="PyTorch model"):
        Predictor.load(path, backend="onnx").explain(image)
    import warnings

    import torch

    foreign = tmp_path / "foreign.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracing exporter's deprecation notice
        torch.onnx.export(torch.nn.Conv2d(1, 1, 3).eval(), (torch.zeros(1, 1, 8, 8),), str(foreign), dynamo=False)
    with pytest.raises(ValueError, match="pneumo export"):
        Predictor.load(foreign, backend="onnx")
