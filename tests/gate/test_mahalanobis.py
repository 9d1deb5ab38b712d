"""The Mahalanobis gate: distances, calibration, storage and integrity."""

from __future__ import annotations

import numpy as np
import pytest

from pneumo.gate.mahalanobis import (GATE_FILE, GateError, fit_far_boundary, fit_gate, load_gate, mahalanobis,
                                     nonxray_score, save_gate)

LAYERS = ["features.1", "features.2"]


def _data(n: int, seed: int, dim: int = 12, spread: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).normal(size=(dim, dim))
    scales = np.logspace(-spread / 2, spread / 2, dim)  # features on very different scales
    return (rng.normal(size=(n, dim)) @ mixing) * scales + 5.0


def test_distance_is_the_quadratic_form_and_threshold_is_the_percentile():
    params, calibration = fit_gate(_data(2000, 0), _data(500, 1), feature_layers=LAYERS, percentile=99.0)
    x = _data(7, 2)
    diff = x - params.mean
    direct = np.sqrt(np.einsum("ij,jk,ik->i", diff, params.precision, diff))
    np.testing.assert_allclose(mahalanobis(x, params), direct, rtol=1e-8)
    assert params.threshold == pytest.approx(np.percentile(calibration, 99.0))
    assert np.mean(calibration > params.threshold) <= 0.011
    fresh = mahalanobis(_data(4000, 3), params)
    assert 0.002 < np.mean(fresh > params.threshold) < 0.03  # about 1% of new in-distribution points
    far = _data(50, 4) + 10 * _data(50, 5).std(axis=0)
    assert (mahalanobis(far, params) > params.threshold).all()


def test_standardisation_makes_the_gate_scale_invariant():
    # Moderate scales: the floor for near-constant features (1% of the median scale) must not come into play.
    a, b = _data(1500, 0, spread=1.0), _data(400, 1, spread=1.0)
    scale = np.logspace(1, -1, a.shape[1])
    p1, _ = fit_gate(a, b, feature_layers=LAYERS)
    p2, _ = fit_gate(a * scale, b * scale, feature_layers=LAYERS)
    x = _data(20, 6, spread=1.0)
    np.testing.assert_allclose(mahalanobis(x, p1), mahalanobis(x * scale, p2), rtol=1e-6)


def test_save_load_roundtrip_and_tamper_detection(tmp_path):
    params, _ = fit_gate(_data(300, 0), _data(100, 1), feature_layers=LAYERS, pooling="mean", percentile=97.5)
    summary = save_gate(tmp_path, params)
    assert summary["file"] == GATE_FILE and len(summary["sha256"]) == 64
    assert summary["feature_layers"] == LAYERS and summary["threshold"] == params.threshold
    loaded = load_gate(tmp_path, summary)
    np.testing.assert_array_equal(loaded.precision, params.precision)
    assert (loaded.threshold, loaded.percentile, loaded.feature_layers, loaded.pooling) == (
        params.threshold, 97.5, LAYERS, "mean")
    assert load_gate(tmp_path, {}) is None
    data = bytearray((tmp_path / GATE_FILE).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / GATE_FILE).write_bytes(bytes(data))
    with pytest.raises(GateError, match="checksum"):
        load_gate(tmp_path, summary)
    (tmp_path / GATE_FILE).unlink()
    with pytest.raises(GateError, match="missing"):
        load_gate(tmp_path, summary)


def test_bad_arguments():
    with pytest.raises(ValueError, match="percentile"):
        fit_gate(_data(10, 0), None, feature_layers=LAYERS, percentile=100.0)
    with pytest.raises(ValueError, match="at least 2"):
        fit_gate(_data(1, 0), None, feature_layers=LAYERS)
    params, _ = fit_gate(_data(50, 0), None, feature_layers=LAYERS)
    with pytest.raises(GateError, match="dimension"):
        mahalanobis(np.zeros((2, 3)), params)


def _far_gate():
    """A gate with a far boundary: X-rays near the fitted cloud, 'site variants' further out along the same
    directions, non-X-rays shifted along a direction of their own."""
    params, _ = fit_gate(_data(600, 0), _data(200, 1), feature_layers=LAYERS, percentile=99.0)
    xrays = _data(400, 2)
    sites = 5.0 + (_data(400, 3) - 5.0) * 1.6  # the same cloud, wider: beyond the threshold, still X-ray-like
    nonxrays = _data(200, 4) + 4.0 * _data(400, 5).std(axis=0)[::-1]
    fit_far_boundary(params, np.concatenate([xrays, sites[:300]]), nonxrays[:150], sites[300:], far_percentile=99.0)
    return params, sites[300:], nonxrays[150:]


def test_far_boundary_admits_site_variants_and_scores_non_xrays():
    params, sites, nonxrays = _far_gate()
    assert params.far_threshold >= params.threshold
    site_d = mahalanobis(sites, params)
    assert np.mean(site_d > params.threshold) > 0.5  # mostly beyond the in-distribution boundary ...
    assert np.mean(site_d <= params.far_threshold) >= 0.95  # ... and mostly within the far one
    assert np.mean(nonxray_score(sites, params) <= 0) > 0.9
    assert np.mean(nonxray_score(nonxrays, params) > 0) > 0.9


def test_far_boundary_roundtrip_and_consistency(tmp_path):
    params, sites, _ = _far_gate()
    summary = save_gate(tmp_path, params)
    assert summary["far_threshold"] == params.far_threshold
    loaded = load_gate(tmp_path, summary)
    assert loaded.far_threshold == params.far_threshold and loaded.nonxray_bias == params.nonxray_bias
    np.testing.assert_allclose(nonxray_score(sites, loaded), nonxray_score(sites, params))
    with pytest.raises(GateError, match="far_threshold"):  # bundle.json and the file must agree
        load_gate(tmp_path, {**summary, "far_threshold": params.far_threshold + 1.0})
    with pytest.raises(GateError, match="far_threshold"):
        load_gate(tmp_path, {k: v for k, v in summary.items() if k != "far_threshold"})


def test_old_gate_without_far_boundary_loads_as_one_boundary(tmp_path):
    params, _ = fit_gate(_data(300, 0), _data(100, 1), feature_layers=LAYERS)
    summary = save_gate(tmp_path, params)
    old = {k: v for k, v in summary.items() if k != "far_threshold"}  # bundle.json as written before the field
    loaded = load_gate(tmp_path, old)
    assert loaded.far_threshold is None and loaded.nonxray_weight is None
    with pytest.raises(GateError, match="one-boundary"):
        nonxray_score(_data(2, 0), loaded)
    params.far_threshold = params.threshold / 2  # below the in-distribution boundary: refused
    params.nonxray_weight = np.zeros(params.dim)
    with pytest.raises(GateError, match="below threshold"):
        save_gate(tmp_path, params)


def test_the_margin_shifts_the_non_xray_score_by_itself():
    base, _ = fit_gate(_data(600, 0), _data(200, 1), feature_layers=LAYERS, percentile=99.0)
    xrays, sites, nonxrays = _data(400, 2), 5.0 + (_data(400, 3) - 5.0) * 1.6, _data(200, 4) + 3.0
    scores = []
    for margin in (0.0, 2.0):
        params, _ = fit_gate(_data(600, 0), _data(200, 1), feature_layers=LAYERS, percentile=99.0)
        fit_far_boundary(params, np.concatenate([xrays, sites[:300]]), nonxrays, sites[300:], margin=margin)
        scores.append(nonxray_score(sites, params))
    np.testing.assert_allclose(scores[1] - scores[0], 2.0, atol=1e-9)
    assert base.far_threshold is None  # fit_gate alone makes a one-boundary gate
