"""Ensemble bundles: built from trained bundles, then read everywhere a bundle is (predict, TTA, Grad-CAM,
gate, ONNX, evaluate/calibrate through the Predictor), with logits that are the members' mean."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.bundles import add_gate, make_bundle, noise_png, xray_png
from pneumo.bundle import read_meta
from pneumo.cli import main
from pneumo.inference.loading import load_bundle
from pneumo.inference.predictor import Predictor
from pneumo.models import ENSEMBLE, LogitEnsemble
from pneumo.training.ensemble_bundle import build_ensemble


@pytest.fixture
def members(tmp_path) -> list[Path]:
    return [make_bundle(tmp_path / f"m{seed}", seed=seed, data_root="data") for seed in (1, 2)]


def test_the_ensemble_answers_the_mean_of_its_members_logits(members, tmp_path):
    ensemble_dir = build_ensemble(members, tmp_path / "ens")
    _, meta = read_meta(ensemble_dir)
    assert meta.arch == ENSEMBLE and [m["arch"] for m in meta.members] == ["simple_cnn", "simple_cnn"]
    images = [xray_png(i) for i in range(6)]
    ensemble = Predictor.load(ensemble_dir, backend="torch")
    singles = [Predictor.load(m, backend="torch") for m in members]
    got = [s.logits for s in ensemble.score_many(images, score_refused=True)]
    want = np.mean([[s.logits for s in single.score_many(images, score_refused=True)] for single in singles], axis=0)
    np.testing.assert_allclose(np.array(got), want, atol=1e-5)
    model, _, _ = load_bundle(ensemble_dir)
    assert isinstance(model, LogitEnsemble) and len(model.members) == 2


def test_an_ensemble_exports_as_one_onnx_graph_and_explains_with_the_members_mean_map(members, tmp_path, capsys):
    ensemble_dir = build_ensemble(members, tmp_path / "ens")
    assert main(["export", "--model", str(ensemble_dir), "--into-bundle"]) == 0
    images = [xray_png(i) for i in range(4)]
    on_onnx = Predictor.load(ensemble_dir)  # model.onnx inside: ONNX Runtime by default
    assert on_onnx.backend.name == "onnx"
    on_torch = Predictor.load(ensemble_dir, backend="torch")
    np.testing.assert_allclose([p.probability for p in on_onnx.predict_many(images)],
                               [p.probability for p in on_torch.predict_many(images)], atol=1e-5)
    tta = Predictor.load(ensemble_dir, tta=True).predict(images[0])
    assert tta.probability is not None and 0.0 <= tta.probability <= 1.0
    explanation = on_torch.explain(images[0])
    assert explanation.heatmap.shape == (32, 32) and 0.0 <= explanation.heatmap.min() <= explanation.heatmap.max() <= 1.0
    # The mean map of the two members' maps, each scaled to [0, 1] first.
    from pneumo.explain.gradcam import GradCAM
    from pneumo.models import gradcam_layers

    network = on_torch.backend.network
    x = torch.rand(1, 1, 32, 32)
    both, _ = GradCAM(network, gradcam_layers(network.model, ENSEMBLE))(x)
    each = [GradCAM(network, [layer])(x)[0] for layer in gradcam_layers(network.model, ENSEMBLE)]
    np.testing.assert_allclose(both, np.mean(each, axis=0), atol=1e-6)


def test_an_ensemble_gets_a_gate_on_its_first_members_blocks(members, tmp_path):
    ensemble_dir = build_ensemble(members, tmp_path / "ens")
    params = add_gate(ensemble_dir, [xray_png(i) for i in range(30)])
    assert all(name.startswith("members.0.") for name in params.feature_layers)
    predictor = Predictor.load(ensemble_dir, backend="torch")
    (scored,) = predictor.score_many([noise_png(3)], score_refused=True)
    assert scored.distance is not None


def test_members_that_do_not_fit_together_are_refused(tmp_path):
    base = make_bundle(tmp_path / "a", seed=1, data_root="data")
    with pytest.raises(ValueError, match="at least 2"):
        build_ensemble([base], tmp_path / "e1")
    with pytest.raises(ValueError, match="same classes"):
        build_ensemble([base, make_bundle(tmp_path / "b", classes=3, seed=2, data_root="data")], tmp_path / "e2")
    with pytest.raises(ValueError, match="preprocesses images otherwise"):
        build_ensemble([base, make_bundle(tmp_path / "c", size=48, seed=2, data_root="data")], tmp_path / "e3")
    with pytest.raises(ValueError, match="another split"):
        build_ensemble([base, make_bundle(tmp_path / "d", seed=2)], tmp_path / "e4")  # no training config
    ensemble = build_ensemble([base, make_bundle(tmp_path / "f", seed=3, data_root="data")], tmp_path / "e5")
    with pytest.raises(ValueError, match="is an ensemble itself"):
        build_ensemble([ensemble, base], tmp_path / "e6")


def test_ensemble_command(members, tmp_path, capsys):
    out = tmp_path / "ens"
    assert main(["ensemble", *map(str, members), "--out", str(out)]) == 0
    assert "pneumo calibrate --model" in capsys.readouterr().out
    document = json.loads((out / "bundle.json").read_text())
    assert document["meta"]["arch"] == ENSEMBLE and len(document["meta"]["members"]) == 2
    assert main(["ensemble", str(members[0]), "--out", str(tmp_path / "x")]) == 2
    assert "at least 2" in capsys.readouterr().err
