"""The Predictor: the bundle's preprocessing, temperature and threshold; errors as entries; the gate."""

from __future__ import annotations

import threading
from dataclasses import fields

import numpy as np
import pytest
import torch

from conftest import synthetic_xray
from inference.bundles import add_gate, make_bundle, noise_png, png, xray_png
from pneumo.bundle import BundleError, read_meta, write_meta
from pneumo.inference.loading import load_bundle
from pneumo.data.errors import ImageDecodeError
from pneumo.data.preprocess import normalize_uint8, preprocess_array
from pneumo.inference import tta
from pneumo.inference.predictor import Prediction, Predictor


def _manual_logits(bundle, image: np.ndarray) -> torch.Tensor:
    model, meta, _ = load_bundle(bundle)
    x = normalize_uint8(preprocess_array(image.astype(np.float32) / 255.0, meta.preprocess), meta.preprocess)
    with torch.no_grad():
        return model(torch.from_numpy(x)[None, None])


def test_probability_uses_bundle_preprocessing_temperature_and_threshold(tmp_path):
    bundle = make_bundle(tmp_path / "b", temperature=2.5, threshold=0.3)
    image = synthetic_xray(7, size=(60, 50), pneumonia=True)
    prediction = Predictor.load(bundle).predict(png(image))
    logit = float(_manual_logits(bundle, image)[0, 0])
    assert prediction.probability == pytest.approx(1 / (1 + np.exp(-logit / 2.5)), abs=1e-6)
    assert prediction.threshold == 0.3
    assert prediction.label == ("PNEUMONIA" if prediction.probability >= 0.3 else "NORMAL")
    assert prediction.model_version == read_meta(bundle)[1].version
    assert prediction.error is None and prediction.unknown_reason is None and prediction.subtype_probabilities is None
    assert set(prediction.timing_ms) >= {"decode", "preprocess", "model", "total"}


def test_threshold_decides_the_label(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    probability = Predictor.load(bundle).predict(xray_png(3)).probability
    directory, meta = read_meta(bundle)
    for threshold, label in ((probability - 1e-3, "PNEUMONIA"), (probability + 1e-3, "NORMAL")):
        meta.threshold = threshold
        write_meta(directory, meta)
        assert Predictor.load(bundle).predict(xray_png(3)).label == label


def test_three_class_bundle_reports_subtypes(tmp_path):
    bundle = make_bundle(tmp_path / "b", classes=3, temperature=1.7)
    image = synthetic_xray(4, size=(48, 48))
    prediction = Predictor.load(bundle).predict(image)
    subtypes = prediction.subtype_probabilities
    assert list(subtypes) == ["NORMAL", "BACTERIAL", "VIRAL"]
    assert sum(subtypes.values()) == pytest.approx(1.0)
    assert prediction.probability == pytest.approx(1.0 - subtypes["NORMAL"])
    expected = torch.softmax(_manual_logits(bundle, image)[0] / 1.7, dim=0).numpy()
    np.testing.assert_allclose(list(subtypes.values()), expected, atol=1e-6)


def test_prediction_to_dict_has_exactly_the_fields(tiny_bundle):
    document = Predictor.load(tiny_bundle).predict(xray_png(1)).to_dict()
    assert list(document) == [f.name for f in fields(Prediction)]


def test_bad_input_is_an_error_entry_and_the_batch_goes_on(tiny_bundle, tmp_path):
    predictor = Predictor.load(tiny_bundle)
    good = tmp_path / "good.png"
    good.write_bytes(xray_png(2))
    sources = [good, tmp_path / "missing.png", b"garbage bytes" * 20, xray_png(5), np.full((4, 4), 9.0)]
    results = predictor.predict_many(sources, batch_size=2)
    assert [r.error is None for r in results] == [True, False, False, True, False]
    assert "missing.png" in results[1].error and results[1].path == str(tmp_path / "missing.png")
    assert results[1].label is None and results[1].probability is None
    assert results[0].path == str(good) and results[3].path is None
    single = predictor.predict(sources[1])
    assert single.error == results[1].error


def test_batched_equals_single(tiny_bundle):
    predictor = Predictor.load(tiny_bundle)
    sources = [xray_png(s, pneumonia=s % 2 == 0) for s in range(7)]
    singles = [predictor.predict(s).probability for s in sources]
    for batch_size in (1, 3, 16):
        batched = [p.probability for p in predictor.predict_many(sources, batch_size=batch_size)]
        np.testing.assert_allclose(batched, singles, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        predictor.predict_many(sources, batch_size=0)


@pytest.mark.parametrize("source, reason", [
    (np.full((64, 64), 128, np.uint8), "blank"),
    (np.zeros((20, 20), np.uint8) + np.arange(20, dtype=np.uint8), "too small"),
    (synthetic_xray(1, size=(40, 200)), "aspect ratio"),
    (np.dstack([synthetic_xray(1, size=(64, 64))] + [np.zeros((64, 64), np.uint8)] * 2), "colour"),
])
def test_cheap_checks_give_unknown_with_reason(tiny_bundle, source, reason):
    prediction = Predictor.load(tiny_bundle).predict(source)
    assert prediction.label == "UNKNOWN" and reason in prediction.unknown_reason
    assert prediction.probability is None and prediction.error is None


def test_gate_status_without_gate(tiny_bundle):
    predictor = Predictor.load(tiny_bundle)
    assert not predictor.has_gate and "none fitted" in predictor.gate_status


def test_gate_refuses_noise_and_accepts_xrays(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    add_gate(bundle, [xray_png(s, pneumonia=s % 3 == 0) for s in range(150)], percentile=99.0)
    predictor = Predictor.load(bundle)
    assert predictor.has_gate and "Mahalanobis" in predictor.gate_status
    noise = predictor.predict(noise_png(1))
    assert noise.label == "UNKNOWN" and "feature distance" in noise.unknown_reason and noise.probability is None
    xrays = predictor.predict_many([xray_png(s, pneumonia=s % 3 == 0) for s in range(1000, 1040)])
    assert sum(p.label == "UNKNOWN" for p in xrays) <= 4


def test_tampered_gate_is_refused(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    add_gate(bundle, [xray_png(s) for s in range(30)])
    with open(bundle / "gate.safetensors", "r+b") as handle:
        handle.seek(-8, 2)
        handle.write(b"\x00" * 8)
    with pytest.raises(BundleError, match="checksum"):
        Predictor.load(bundle)


def test_concurrent_predictions_equal_sequential(tiny_bundle):
    predictor = Predictor.load(tiny_bundle)
    sources = [xray_png(s, pneumonia=s % 2 == 1) for s in range(12)]
    expected = [predictor.predict(s).probability for s in sources]
    results: dict[int, float] = {}

    def work(i: int) -> None:
        for _ in range(3):
            results[i] = predictor.predict(sources[i]).probability

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sources))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_allclose([results[i] for i in range(len(sources))], expected, atol=1e-6)


def test_tta_views_are_small_deterministic_shifts():
    image = np.zeros((50, 50), np.uint8)
    image[20:30, 20:30] = 255
    views = tta.views(image)
    assert views.shape == (len(tta.VIEWS), 50, 50) and views.dtype == np.uint8
    np.testing.assert_array_equal(views[0], image)
    shifted_right = dict(zip((v[0] for v in tta.VIEWS), views))["right"]
    np.testing.assert_array_equal(shifted_right[20:30, 22:32], 255)  # 3% of 50 px rounds to 2 px
    np.testing.assert_array_equal(tta.views(image), views)
    assert tta.views(image, enabled=False).shape == (1, 50, 50)


def test_tta_averages_views(tiny_bundle):
    source = xray_png(9, size=(64, 64), pneumonia=True)
    plain = Predictor.load(tiny_bundle).predict(source).probability
    averaged = Predictor.load(tiny_bundle, tta=True)
    first, second = averaged.predict(source).probability, averaged.predict(source).probability
    assert first == second and first != plain
    model, meta, _ = load_bundle(tiny_bundle)
    pixels = preprocess_array(synthetic_xray(9, size=(64, 64), pneumonia=True) / 255.0, meta.preprocess)
    with torch.no_grad():
        logits = model(torch.from_numpy(normalize_uint8(tta.views(pixels), meta.preprocess))[:, None])
    assert first == pytest.approx(float(torch.sigmoid(logits[:, 0]).mean()), abs=1e-6)


def test_explain_gives_heatmap_overlay_and_the_prediction(tiny_bundle):
    from PIL import Image
    import io

    predictor = Predictor.load(tiny_bundle)
    source = xray_png(11, size=(80, 64), pneumonia=True)
    explanation = predictor.explain(source)
    assert explanation.heatmap.shape == (32, 32) and explanation.heatmap.dtype == np.float32
    assert np.isfinite(explanation.heatmap).all() and 0 <= explanation.heatmap.min() <= explanation.heatmap.max() <= 1
    overlay = Image.open(io.BytesIO(explanation.overlay_png))
    assert overlay.mode == "RGB" and overlay.size[0] == 64 and overlay.size[1] > 80
    assert explanation.prediction.probability == pytest.approx(predictor.predict(source).probability, abs=1e-6)
    assert "gradcam" in explanation.prediction.timing_ms
    with pytest.raises(ImageDecodeError):
        predictor.explain(b"not an image" * 30)


def test_unknown_backend_and_onnx_file_with_torch_are_refused(tiny_bundle, tmp_path):
    with pytest.raises(ValueError, match="backend"):
        Predictor.load(tiny_bundle, backend="tensorrt")
    fake = tmp_path / "m.onnx"
    fake.write_bytes(b"x")
    with pytest.raises(ValueError, match="backend='onnx'"):
        Predictor.load(fake, backend="torch")
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        Predictor.load(fake)  # auto: an .onnx file is opened with ONNX Runtime


def test_explain_can_skip_gradcam_for_unknown(tiny_bundle):
    predictor = Predictor.load(tiny_bundle)
    colour = np.zeros((64, 64, 3), np.uint8)
    colour[..., 0] = 200  # strongly coloured: refused by the cheap checks
    skipped = predictor.explain(colour, skip_unknown=True)
    assert skipped.prediction.label == "UNKNOWN" and skipped.heatmap is None and skipped.overlay_png is None
    assert "gradcam" not in skipped.prediction.timing_ms
    full = predictor.explain(colour)
    assert full.heatmap is not None and full.overlay_png  # research use: explain whatever it is given
    xray = predictor.explain(xray_png(12), skip_unknown=True)
    assert xray.prediction.label != "UNKNOWN" and xray.heatmap is not None
