"""The decision, written once (pneumo.inference.decision): the threshold rule, the 3-class pick and what the
gate's verdict does to the label; evaluation's figures count the same labels."""

from __future__ import annotations

import numpy as np
import pytest

from pneumo.evaluation.metrics import binary_metrics, deployed_metrics, multiclass_metrics, predict_labels
from pneumo.gate.verdict import GateRule, GateVerdict, Reading
from pneumo.inference.decision import UNKNOWN, Decision, DecisionRule, is_pneumonia, predicted_classes

RULE = DecisionRule(0.4)
WARNED = GateRule(10.0, 50.0).judge(20.0, -1.0)


def test_at_the_threshold_is_pneumonia():
    assert RULE.label(0.4) == "PNEUMONIA" and RULE.label(np.nextafter(0.4, 0)) == "NORMAL"
    assert is_pneumonia([0.39, 0.4, 0.41], 0.4).tolist() == [False, True, True]


@pytest.mark.parametrize("probability, verdict, expected", [
    (0.9, GateVerdict(Reading.READ, by_features=False), Decision("PNEUMONIA")),  # no feature gate: cannot tell
    (0.1, GateVerdict(Reading.READ), Decision("NORMAL", out_of_distribution=False)),
    (0.9, WARNED, Decision("PNEUMONIA", out_of_distribution=True, ood_reason=WARNED.reason)),
    (0.9, GateVerdict(Reading.UNKNOWN, "blank image", by_features=False), Decision(UNKNOWN, "blank image")),
    (0.9, GateRule(10.0, 50.0).judge(60.0, -1.0), Decision(UNKNOWN, GateRule(10.0, 50.0).judge(60.0, -1.0).reason)),
    (None, GateVerdict(Reading.READ, by_features=False), Decision(UNKNOWN, "not scored")),
])
def test_decide(probability, verdict, expected):
    decision = RULE.decide(probability, verdict)
    assert decision == expected and decision.answered == (expected.label != UNKNOWN)


def test_evaluation_counts_the_labels_prediction_gives():
    rng = np.random.default_rng(0)
    prob = np.r_[rng.random(40), [0.4, 0.4]]  # two on the threshold itself
    y = rng.integers(0, 2, prob.size)
    labels = [RULE.label(p) for p in prob]
    assert predict_labels(prob, 0.4).tolist() == [int(label == "PNEUMONIA") for label in labels]
    cm = binary_metrics(y, prob, 0.4)["confusion_matrix"]
    assert cm["tp"] + cm["fp"] == labels.count("PNEUMONIA")
    unknown = rng.random(prob.size) < 0.3
    decisions = RULE.decide_many(prob, [GateVerdict(Reading.UNKNOWN, "x") if u else GateVerdict(Reading.READ)
                                        for u in unknown])
    flagged = sum(d.label == "PNEUMONIA" and t == 1 for d, t in zip(decisions, y))
    assert deployed_metrics(y, prob, 0.4, unknown)["sensitivity"] == pytest.approx(flagged / (y == 1).sum())


def test_subtype_follows_the_threshold_rule():
    rng = np.random.default_rng(1)
    class_prob = rng.dirichlet(np.ones(3), size=200)
    classes = predicted_classes(class_prob, 0.4)
    np.testing.assert_array_equal(classes != 0, is_pneumonia(1.0 - class_prob[:, 0], 0.4))
    names = ["NORMAL", "BACTERIAL", "VIRAL"]
    assert [RULE.subtype(p, names) for p in class_prob[:5]] == [names[c] for c in classes[:5]]
    y = rng.integers(0, 3, 200)
    matrix = np.array(multiclass_metrics(y, class_prob, 0.4)["confusion_matrix_3class"])
    assert matrix[:, 0].sum() == (classes == 0).sum()


def test_threshold_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="threshold"):
        DecisionRule(1.5)
    with pytest.raises(ValueError, match="1 gate verdicts"):
        RULE.decide_many([0.1, 0.2], [GateVerdict(Reading.READ)])
