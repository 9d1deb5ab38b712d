"""The gate's one rule (pneumo.gate.verdict): read, warned or UNKNOWN from the distance and the non-X-ray score,
the warning zone's stricter limit, its fit on site variants, and the Predictor asking the rule."""

from __future__ import annotations

import numpy as np
import pytest

from inference.bundles import xray_png
from pneumo.bundle import read_meta
from pneumo.gate.mahalanobis import GateError, GateParams, fit_warning_limit, load_gate, save_gate
from pneumo.gate.verdict import GateRule, GateVerdict, Reading, verdict_for
from pneumo.inference.backend import ModelOutputs
from pneumo.inference.predictor import Predictor

RULE = GateRule(threshold=10.0, far_threshold=50.0, warn_nonxray=-1.5)


@pytest.mark.parametrize("distance, nonxray, reading", [
    (5.0, -1.0, Reading.READ),  # in distribution: the stricter limit does not apply there
    (5.0, 0.5, Reading.UNKNOWN),  # the non-X-ray score refuses at any distance
    (20.0, -2.0, Reading.WARNED),  # between the boundaries with a score well on the X-ray side
    (20.0, -1.0, Reading.UNKNOWN),  # between the boundaries, on the X-ray side of 0 but above the zone's limit
    (20.0, -1.5, Reading.WARNED),  # at the limit: read
    (60.0, -9.0, Reading.UNKNOWN),  # beyond the far boundary, whatever the score
    (float("nan"), -9.0, Reading.UNKNOWN),
    (20.0, float("nan"), Reading.UNKNOWN),
    (20.0, None, Reading.UNKNOWN),  # a two-boundary gate needs its score
])
def test_rule(distance, nonxray, reading):
    verdict = RULE.judge(distance, nonxray)
    assert verdict.reading is reading
    assert verdict.out_of_distribution == (reading is Reading.WARNED)
    assert (verdict.reason is None) == (reading is Reading.READ)
    if reading is Reading.UNKNOWN:
        assert verdict.reason.startswith("does not look like a chest X-ray")


def test_zone_refusal_says_why():
    reason = RULE.judge(20.0, -1.0).reason
    assert "-1.00 above -1.50" in reason and "CT slices and figures" in reason


def test_gate_without_zone_limit_reads_the_zone_up_to_zero():
    older = GateRule(threshold=10.0, far_threshold=50.0)
    assert older.judge(20.0, -0.1).reading is Reading.WARNED and older.judge(20.0, 0.1).reading is Reading.UNKNOWN


def test_one_boundary_gate():
    rule = GateRule(threshold=10.0)
    assert rule.judge(9.0, None).reading is Reading.READ
    assert rule.judge(11.0, None).reading is Reading.UNKNOWN
    assert "trained on" in rule.judge(11.0, None).reason


@pytest.mark.parametrize("far, warn, match", [(5.0, None, "below threshold"), (50.0, 0.5, "<= 0"),
                                              (None, -1.0, "needs a far_threshold")])
def test_inconsistent_rules_are_refused(far, warn, match):
    with pytest.raises(ValueError, match=match):
        GateRule(threshold=10.0, far_threshold=far, warn_nonxray=warn)


def test_cheap_checks_come_before_the_feature_gate():
    refused = verdict_for("colour image", GateRule(10.0, 50.0), 1.0, -5.0)
    assert (refused.reading, refused.reason, refused.by_features) == (Reading.UNKNOWN, "colour image", False)
    assert verdict_for(None, None, None, None) == GateVerdict(Reading.READ, by_features=False)
    assert verdict_for(None, GateRule(10.0), 11.0, None).reading is Reading.UNKNOWN


def _params(dim: int = 3) -> GateParams:
    """A gate on 3 features: distance = |f| (identity precision), non-X-ray score = f[1] - 1."""
    return GateParams(mean=np.zeros(dim), precision=np.eye(dim), threshold=10.0, percentile=99.0,
                      feature_layers=["x"], far_threshold=50.0, nonxray_weight=np.array([0.0, 1.0, 0.0]),
                      nonxray_bias=-1.0)


def test_warning_limit_is_a_percentile_of_site_variants_in_the_zone():
    rng = np.random.default_rng(0)
    in_zone = np.c_[np.full(200, 20.0), rng.uniform(-8.0, 0.0, 200), np.zeros(200)]  # distance ~20, score f1-1
    inside = np.c_[np.zeros(50), np.full(50, 0.9), np.zeros(50)]  # in distribution: not counted
    params = _params()
    assert fit_warning_limit(params, np.concatenate([in_zone, inside]), percentile=90.0) == 200
    scores = in_zone[:, 1] - 1.0
    assert params.warn_nonxray == pytest.approx(np.percentile(scores, 90.0))
    assert np.mean(scores <= params.warn_nonxray) == pytest.approx(0.9, abs=0.01)


def test_warning_limit_never_above_zero_and_zero_without_site_variants_in_the_zone():
    params = _params()
    high = np.c_[np.full(20, 20.0), np.full(20, 0.99), np.zeros(20)]  # scores -0.01: limit capped at 0 at most
    fit_warning_limit(params, high, percentile=100.0)
    assert params.warn_nonxray <= 0.0
    params = _params()
    assert fit_warning_limit(params, np.zeros((5, 3)), percentile=90.0) == 0 and params.warn_nonxray == 0.0


def test_zone_limit_travels_in_the_gate_file(tmp_path):
    params = _params()
    params.warn_nonxray = -1.25
    summary = save_gate(tmp_path, params)
    assert summary["warn_nonxray"] == -1.25
    assert load_gate(tmp_path, summary).warn_nonxray == -1.25
    with pytest.raises(GateError, match="warn_nonxray"):
        load_gate(tmp_path, {**summary, "warn_nonxray": -3.0})
    params.warn_nonxray = 0.5
    with pytest.raises(ValueError, match="<= 0"):
        save_gate(tmp_path, params)


class _Backend:
    """Every input gets the given gate outputs, so that the Predictor's use of the rule can be checked."""

    name = "fixed"

    def __init__(self, distance: float, nonxray: float) -> None:
        self.distance, self.nonxray = distance, nonxray

    def run(self, batch: np.ndarray) -> ModelOutputs:
        n = len(batch)
        return ModelOutputs(np.full((n, 1), 2.0, np.float32), np.zeros((n, 4), np.float32),
                            np.full(n, self.distance, np.float32), np.full(n, self.nonxray, np.float32))


@pytest.mark.parametrize("nonxray, label, warned", [(-1.0, "UNKNOWN", None), (-2.0, "PNEUMONIA", True)])
def test_predictor_asks_the_rule_in_the_warning_zone(tiny_bundle, nonxray, label, warned):
    _, meta = read_meta(tiny_bundle)
    predictor = Predictor(meta, _Backend(20.0, nonxray), gate_threshold=10.0, gate_far_threshold=50.0,
                          gate_warn_nonxray=-1.5)
    prediction = predictor.predict(xray_png(1))
    assert (prediction.label, prediction.out_of_distribution) == (label, warned)
    expected = RULE.judge(20.0, nonxray)
    assert (prediction.unknown_reason if label == "UNKNOWN" else prediction.ood_reason) == expected.reason
