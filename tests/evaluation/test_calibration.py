"""Temperature scaling and threshold rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pneumo.evaluation.calibration import (ThresholdRule, choose_threshold, fit_temperature, negative_log_likelihood,
                                           threshold_for_sensitivity, threshold_youden)
from pneumo.evaluation.metrics import binary_metrics, expected_calibration_error
from pneumo.inference.probability import OutputHead
from pneumo.training.losses import pneumonia_probability as torch_probability

BINARY = OutputHead.of(["NORMAL", "PNEUMONIA"])
THREE = OutputHead.of(["NORMAL", "BACTERIAL", "VIRAL"])


def pneumonia_probability(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return (BINARY if logits.shape[1] == 1 else THREE).pneumonia_probability(logits, temperature)


def class_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return THREE.class_probabilities(logits, temperature)


def _calibrated_logits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose sigmoid is the true pneumonia probability: a perfectly calibrated binary model."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return z[:, None], y


def test_temperature_scaling_undoes_overconfidence() -> None:
    logits, y = _calibrated_logits(4000, 0)
    overconfident = logits * 5  # deliberately miscalibrated: same ranking, far too sure
    temperature = fit_temperature(overconfident, y, BINARY)
    before = expected_calibration_error(y, pneumonia_probability(overconfident))
    after = expected_calibration_error(y, pneumonia_probability(overconfident, temperature))
    assert temperature == pytest.approx(5.0, rel=0.15)
    assert after < before / 3
    assert after < 0.03
    # Scaling never changes the ranking, so AUC is untouched.
    assert binary_metrics(y, pneumonia_probability(overconfident, temperature), 0.5)["auc"] == pytest.approx(
        binary_metrics(y, pneumonia_probability(overconfident), 0.5)["auc"])


def test_temperature_scaling_three_class_head() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0.0, 1.5, (3000, 3))
    true_prob = class_probabilities(logits)
    y = np.array([rng.choice(3, p=row) for row in true_prob])
    overconfident = logits * 4
    assert fit_temperature(overconfident, y, THREE, class_targets=True) == pytest.approx(4.0, rel=0.15)
    # The same head against 0/1 labels (no subtypes) is fitted on P(pneumonia) = 1 - P(normal).
    t_binary = fit_temperature(overconfident, (y > 0).astype(int), THREE)
    binary = (y > 0).astype(int)
    assert expected_calibration_error(binary, pneumonia_probability(overconfident, t_binary)) < \
        expected_calibration_error(binary, pneumonia_probability(overconfident))


def test_numpy_probability_matches_the_training_code() -> None:
    logits = np.random.default_rng(2).normal(0, 3, (16, 3))
    for head in (logits[:, :1], logits):
        for t in (1.0, 2.5):
            expected = torch_probability(torch.from_numpy(head), t).numpy()
            assert pneumonia_probability(head, t) == pytest.approx(expected, abs=1e-6)


def test_test_time_views_are_averaged_as_probabilities() -> None:
    """(N, V, width) logits: the NLL is that of the view-averaged probability, as the Predictor answers."""
    rng = np.random.default_rng(5)
    views = rng.normal(0.0, 2.0, (50, 5, 1))
    y = rng.integers(0, 2, 50)
    averaged = BINARY.score(views, 1.5)[0]
    assert averaged == pytest.approx(BINARY.pneumonia_probability(views, 1.5).mean(axis=1))
    p = np.clip(averaged, 1e-12, 1 - 1e-12)
    expected = float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).mean())
    assert negative_log_likelihood(views, y, 1.5, BINARY) == pytest.approx(expected)
    assert negative_log_likelihood(views[:, :1], y, 1.5, BINARY) != pytest.approx(expected)


def _validation_toy(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400)
    return y, np.clip(0.3 * y + 0.7 * rng.random(400), 0, 1)


def _rates(y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[float, float]:
    """Sensitivity and specificity counted directly (an independent check, and fast over many thresholds)."""
    flagged = p >= threshold
    return float(flagged[y == 1].mean()), float((~flagged[y == 0]).mean())


@pytest.mark.parametrize("target", [0.8, 0.95, 1.0])
def test_sensitivity_rule_meets_target_with_highest_threshold(target: float) -> None:
    y, p = _validation_toy(3)
    threshold = threshold_for_sensitivity(y, p, target)
    achieved = binary_metrics(y, p, threshold)
    assert achieved["sensitivity"] >= target
    assert _rates(y, p, threshold) == pytest.approx((achieved["sensitivity"], achieved["specificity"]))
    # It stands for a validation score, a float-precision margin above it (the same image in a batch of
    # another size may score a hair lower), with the same decisions there ...
    score = np.unique(p[p >= threshold])[0]
    assert 0 < score - threshold <= 1e-6
    assert _rates(y, p, score) == _rates(y, p, threshold)
    # ... and it is the highest such threshold: the next distinct score above misses the target ...
    higher = np.unique(p[p > score])
    if higher.size:
        assert _rates(y, p, higher[0])[0] < target
    # ... so no threshold meeting the target has better specificity.
    for t in np.unique(p):
        sens, spec = _rates(y, p, t)
        if sens >= target:
            assert spec <= achieved["specificity"] + 1e-12


def test_youden_maximises_j() -> None:
    y, p = _validation_toy(4)
    sens, spec = _rates(y, p, threshold_youden(y, p))
    best = sens + spec - 1
    assert all(sum(_rates(y, p, t)) - 1 <= best + 1e-12 for t in np.unique(p))


def test_rules_and_their_errors() -> None:
    y, p = _validation_toy(5)
    assert choose_threshold(ThresholdRule("fixed", 0.42), y, p) == 0.42
    assert choose_threshold(ThresholdRule("youden"), y, p) == threshold_youden(y, p)
    with pytest.raises(ValueError, match="choose one of"):
        ThresholdRule("f1")
    with pytest.raises(ValueError, match="target sensitivity"):
        ThresholdRule("sensitivity", 1.5)
    with pytest.raises(ValueError, match="both normal and pneumonia"):
        threshold_for_sensitivity(np.ones(5, int), np.linspace(0, 1, 5), 0.9)
