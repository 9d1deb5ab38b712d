"""Non-X-ray images for calibration, and ``pneumo gate fit`` end to end on a tiny dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inference.bundles import make_bundle, noise_png, png, xray_png
from pneumo.bundle import read_meta
from pneumo.evaluation.scoring import select_records
from pneumo.cli import main
from pneumo.data.decode import decode_image
from pneumo.gatefit import negatives
from pneumo.gatefit.fit import GateFitConfig, fit_bundle_gate
from pneumo.inference.predictor import Predictor


@pytest.mark.parametrize("make", [negatives.document, negatives.screenshot, negatives.blank, negatives.noise,
                                  negatives.gradient, negatives.pattern])
def test_synthetic_negatives_decode_and_are_deterministic(make):
    first = [make(np.random.default_rng(5), i) for i in range(4)]
    again = [make(np.random.default_rng(5), i) for i in range(4)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.uint8 and min(a.shape[:2]) >= 64
        assert decode_image(png(a)).shape == a.shape[:2]


def test_shipped_samples_are_found_offline():
    pytest.importorskip("skimage")
    names = {p.name for p in negatives.sample_photo_files()}
    assert {"camera.png", "astronaut.png"} <= names
    dicoms = list(negatives.other_dicoms())
    assert any(d.name == "CT_small.dcm" for d in dicoms) and all(d.category == "dicom-other" for d in dicoms)


def test_unknown_category_is_refused():
    with pytest.raises(ValueError, match="category"):
        negatives.NegativeImage("cats", "x", b"")


def _small_negatives(seed=0, scale=1.0):
    return [negatives.NegativeImage("noise", f"n{i}", noise_png(i)) for i in range(4)] + [
        negatives.NegativeImage("document", "d0", png(negatives.document(np.random.default_rng(0), 0)))]


def _dataset(root, patients=24):
    for split in ("train",):
        for label in ("NORMAL", "PNEUMONIA"):
            (root / split / label).mkdir(parents=True)
        for p in range(patients):
            for k in range(3):
                (root / split / "NORMAL" / f"IM-{p:04d}-{k:04d}.jpeg").write_bytes(xray_png(p * 10 + k))
                (root / split / "PNEUMONIA" / f"person{p}_bacteria_{p * 10 + k}.jpeg").write_bytes(
                    xray_png(5000 + p * 10 + k, pneumonia=True))
    return root


def test_fit_stores_a_verified_gate_with_figures(tmp_path, monkeypatch):
    monkeypatch.setattr("pneumo.gatefit.fit.negative_images", _small_negatives)
    root = _dataset(tmp_path / "data")
    bundle = make_bundle(tmp_path / "bundle", data_root=str(root))
    report = fit_bundle_gate(str(bundle), str(root), cfg=GateFitConfig(percentile=99.0, batch_size=16))
    _, meta = read_meta(bundle)
    gate = meta.gate
    assert gate == report.summary and (bundle / gate["file"]).is_file()
    assert gate["n_fit"] + gate["n_calibration"] > 50 and gate["n_calibration"] > 0
    assert gate["xray_flagged_split"].startswith("val")
    assert set(gate["nonxray_by_category"]) == {"noise", "document"} and gate["n_nonxray"] == 5
    assert gate["nonxray_flagged_pct"] == 100.0  # noise by distance, the document by distance or a check
    predictor = Predictor.load(bundle)
    # The stored figure is what the stored gate does on the validation X-rays, recounted here.
    validation = [r.path for r in select_records(meta, "val", str(root)).records]
    answers = predictor.predict_many(validation)
    flagged = 100.0 * sum(a.label == "UNKNOWN" for a in answers) / len(answers)
    assert gate["xray_flagged_pct"] == pytest.approx(round(flagged, 3))
    assert predictor.has_gate and predictor.gate_threshold == pytest.approx(gate["threshold"])
    assert predictor.predict(noise_png(99)).label == "UNKNOWN"


def test_gate_fit_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("pneumo.gatefit.fit.negative_images", _small_negatives)
    root = _dataset(tmp_path / "data", patients=12)
    bundle = make_bundle(tmp_path / "bundle", data_root=str(root))
    report = tmp_path / "report.json"
    assert main(["gate", "fit", "--model", str(bundle), "--data", str(root), "--max-images", "30",
                 "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "X-rays flagged UNKNOWN" in out and "non-X-ray images flagged UNKNOWN" in out
    gate = read_meta(bundle)[1].gate
    assert gate["variants"] == 1 and gate["n_fit"] + gate["n_calibration"] == 30 * 2  # originals + one variant each
    assert len(json.loads(report.read_text())["negatives"]) == 5
    assert main(["gate", "show", "--model", str(bundle)]) == 0


def test_fit_needs_the_training_config(tmp_path):
    root = _dataset(tmp_path / "data", patients=3)
    bundle = make_bundle(tmp_path / "bundle")
    with pytest.raises(ValueError, match="training config"):
        fit_bundle_gate(str(bundle), str(root))
