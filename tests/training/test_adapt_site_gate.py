"""The site bundle's gate widened to the site's own labelled X-rays: local-like X-rays admitted (cross-fitted),
non-X-rays still refused, and the parent's gate kept, with a warning naming the kind, when a kind of held-out
non-X-ray image would pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tests.inference.bundles import add_gate, noise_png, xray_png
from tests.training.adapt_support import write_site
from pneumo.bundle import file_sha256, read_meta, write_meta
from pneumo.data.records import read_manifest
from pneumo.gate.mahalanobis import GateParams, fit_far_boundary, save_gate
from pneumo.inference.predictor import Predictor
from pneumo.training.adaptation import AdaptConfig, FinetuneConfig, adapt
from pneumo.training.adaptation.site_gate import Scores, cross_fitted, unknown, widen


def _params(threshold: float = 1.0, far: float = 2.0, warn: float | None = -0.5) -> GateParams:
    return GateParams(mean=np.zeros(2), precision=np.eye(2), threshold=threshold, percentile=99.0,
                      feature_layers=["x"], far_threshold=far, nonxray_weight=np.zeros(2), nonxray_bias=-1.0,
                      warn_nonxray=warn)


def _scores(distance, nonxray) -> Scores:
    distance = np.asarray(distance, dtype=float)
    return Scores(distance, np.asarray(nonxray, dtype=float), np.zeros(len(distance), dtype=bool))


def test_widened_far_boundary_admits_local_distances_but_never_a_positive_nonxray_score() -> None:
    local = _scores(np.linspace(2.5, 3.0, 50), np.full(50, -2.0))
    params = _params()
    assert unknown(params.rule(), local).all()  # all past the parent's far boundary
    wide = widen(params, local, (99.8, 87.5))
    assert 2.99 < wide.far_threshold <= 3.0 and wide.threshold == params.threshold
    assert unknown(wide.rule(), local).sum() == 1  # only the farthest, past the 99.8th percentile
    # a non-X-ray score above 0 stays UNKNOWN at any distance; beyond the new boundary still UNKNOWN
    assert unknown(wide.rule(), _scores([0.5, 2.7, 3.5], [0.1, 0.1, -5.0])).all()
    # never narrower than the parent's: local X-rays well inside leave the boundaries as they were
    same = widen(params, _scores([0.1, 0.2, 0.3], [-2.0, -2.0, -2.0]), (99.8, 87.5))
    assert (same.far_threshold, same.warn_nonxray) == (params.far_threshold, params.warn_nonxray)


def test_cross_fitting_judges_each_fold_with_boundaries_fitted_without_it() -> None:
    # fold 1 lies further out than fold 0 was fitted to: widened on fold 0 alone, fold 1 stays UNKNOWN
    local = _scores([2.5, 2.6, 4.0, 4.1], [-2.0] * 4)
    flagged, bounds = cross_fitted(_params(), local, np.array([0, 0, 1, 1]), (99.8, 87.5))
    assert flagged.tolist() == [False, False, True, True]
    assert bounds[1]["far_threshold"] < 2.61 and bounds[0]["far_threshold"] > 4.0


def _two_boundary_gate(bundle: Path, local_images: list[str]) -> GateParams:
    """A two-boundary gate on ``bundle`` with a non-X-ray score fitted against noise and blank images, and its far
    boundary pulled in to the 10th percentile of the local X-rays' distances: the parent refuses most of them."""
    params = add_gate(bundle, [xray_png(s) for s in range(40)])
    predictor = Predictor.load(bundle, backend="torch")
    xrays = np.stack([e.features for e in predictor.embed_many([xray_png(s) for s in range(40)])])
    nonxray = np.stack([e.features for e in predictor.embed_many([noise_png(s) for s in range(20)])
                        if e.features is not None])
    fit_far_boundary(params, xrays, nonxray, xrays[:5], far_percentile=90.0)
    local = np.stack([e.features for e in predictor.embed_many(local_images)])
    from pneumo.gate.mahalanobis import mahalanobis
    params.far_threshold = params.threshold = float(np.percentile(mahalanobis(local, params), 10))
    params.warn_nonxray = None
    directory, meta = read_meta(bundle)
    meta.gate = {**save_gate(directory, params), "seed": 0, "negatives_scale": 0.1}
    write_meta(directory, meta)
    return params


def _config(parent: Path, manifest: Path, out: Path, **extra) -> AdaptConfig:
    return AdaptConfig(model=str(parent), manifest=str(manifest), out=str(out), target_sensitivity=0.9, folds=3,
                       min_per_class=5, device="cpu", n_boot=20, export_onnx=False,
                       finetune=FinetuneConfig(enabled=False), **extra)


def _site(tmp_path: Path) -> tuple[Path, list[str]]:
    manifest = write_site(tmp_path / "site-data", 8, 8)
    return manifest, [str(manifest.parent / r.path) for r in read_manifest(manifest)]


def test_site_bundle_gate_admits_local_xrays_and_still_refuses_non_xrays(tiny_bundle: Path, tmp_path: Path) -> None:
    manifest, images = _site(tmp_path)
    parent = _two_boundary_gate(tiny_bundle, images)
    # An untrained network cannot tell gate fit's rendered non-X-rays from X-rays; noise it can (its score).
    result = adapt(_config(tiny_bundle, manifest, tmp_path / "site"),
                   negatives=lambda gate, paths: ([noise_png(s) for s in range(200, 220)], ["noise"] * 20))
    gate = result.gate
    assert gate["widened"], gate
    assert gate["local_xrays"]["unknown_parent"] >= 0.8 * len(images)
    assert gate["local_xrays"]["unknown_widened_cross_fitted"] < gate["local_xrays"]["unknown_parent"]
    assert gate["widened_to"]["far_threshold"] > parent.far_threshold
    assert all(row["unknown"] >= 0.97 for row in gate["nonxray_held_out_unknown"]["widened"].values())
    directory, meta = read_meta(result.bundle)
    assert meta.adaptation["gate"]["widened"] and meta.gate["far_threshold"] == gate["widened_to"]["far_threshold"]
    assert meta.gate["sha256"] == file_sha256(directory / meta.gate["file"])
    predictor = Predictor.load(directory, backend="torch")
    site_answers = predictor.predict_many(images)
    parent_answers = Predictor.load(tiny_bundle, backend="torch").predict_many(images)
    assert sum(a.label == "UNKNOWN" for a in site_answers) < sum(a.label == "UNKNOWN" for a in parent_answers)
    assert all(a.label == "UNKNOWN" for a in predictor.predict_many([noise_png(s) for s in range(100, 110)]))


def test_widening_is_refused_when_held_out_non_xrays_would_pass(tiny_bundle: Path, tmp_path: Path) -> None:
    manifest, images = _site(tmp_path)
    _two_boundary_gate(tiny_bundle, images)
    parent_sha = read_meta(tiny_bundle)[1].gate["sha256"]
    # "viewer screenshots" that are the local X-rays themselves: the widened gate reads them
    result = adapt(_config(tiny_bundle, manifest, tmp_path / "site"),
                   negatives=lambda gate, paths: (paths[:10], ["viewer"] * 10))
    assert not result.gate["widened"] and "viewer" in result.gate["why"]
    assert any("viewer" in w for w in result.warnings)
    meta = read_meta(result.bundle)[1]
    assert meta.gate["sha256"] == parent_sha and meta.adaptation["warnings"] == result.warnings


def test_keep_parent_gate_copies_it_unchanged(tiny_bundle: Path, tmp_path: Path) -> None:
    manifest, images = _site(tmp_path)
    _two_boundary_gate(tiny_bundle, images)
    result = adapt(_config(tiny_bundle, manifest, tmp_path / "site", keep_parent_gate=True),
                   negatives=lambda gate, paths: ([noise_png(1)], ["noise"]))
    assert result.gate == {"widened": False, "why": "--keep-parent-gate"}
    assert read_meta(result.bundle)[1].gate == read_meta(tiny_bundle)[1].gate
