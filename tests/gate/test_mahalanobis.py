"""The Mahalanobis gate: distances, calibration, storage and integrity."""

from __future__ import annotations

import numpy as np
import pytest

from pneumo.gate.mahalanobis import GATE_FILE, GateError, fit_gate, load_gate, mahalanobis, save_gate

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
