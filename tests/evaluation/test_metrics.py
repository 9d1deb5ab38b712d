"""Metrics on cases small enough to work by hand, and the patient-level bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pneumo.evaluation.metrics import (binary_metrics, bootstrap_ci, bootstrap_weights, confusion,
                                       expected_calibration_error, multiclass_metrics, paired_auc_difference,
                                       weighted_auc)

# Eight images, threshold 0.5 (pneumonia when prob >= 0.5):
#   y:    1    1    1    1    0    0    0    0
#   p:  0.9  0.8  0.5  0.3  0.6  0.2  0.1  0.4
#   call  P    P    P    N    P    N    N    N
# -> TP 3, FN 1, FP 1, TN 3
Y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
P = np.array([0.9, 0.8, 0.5, 0.3, 0.6, 0.2, 0.1, 0.4])


def test_binary_metrics_worked_by_hand() -> None:
    m = binary_metrics(Y, P, threshold=0.5, n_bins=2)
    assert m["confusion_matrix"] == {"tn": 3, "fp": 1, "fn": 1, "tp": 3}
    assert m["n"] == 8 and m["n_pneumonia"] == 4 and m["n_normal"] == 4
    assert m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["f1"] == pytest.approx(3 / 4)
    # AUC: of the 16 (pneumonia, normal) pairs the pneumonia image scores higher in all but
    # (0.5 < 0.6) and (0.3 < 0.6) and (0.3 < 0.4): 13/16.
    assert m["auc"] == pytest.approx(13 / 16)
    # Brier: mean of (p - y)^2 = (.01 + .04 + .25 + .49 + .36 + .04 + .01 + .16) / 8 = 1.36 / 8.
    assert m["brier"] == pytest.approx(1.36 / 8)
    # ECE with 2 bins (calibration_curve puts an edge value in the lower bin): [0, .5] holds .3 .2 .1 .4 .5
    # (mean .3, 2 of 5 pneumonia: .4) -> gap .1; (.5, 1] holds .9 .8 .6 (mean .767, 2 of 3: .667) -> gap .1;
    # weighted: 5/8 * .1 + 3/8 * .1 = .1.
    assert m["ece"] == pytest.approx(0.1)
    assert m["threshold"] == 0.5


def test_threshold_moves_the_decision() -> None:
    # At 0.35 the 0.4 and 0.5/0.6 images are flagged: TP 3 (0.9 .8 .5), FN 1 (.3), FP 2 (.6 .4), TN 2.
    assert binary_metrics(Y, P, threshold=0.35)["confusion_matrix"] == {"tn": 2, "fp": 2, "fn": 1, "tp": 3}
    assert confusion([1, 0, 1], [1, 1, 0]) == {"tn": 0, "fp": 1, "fn": 1, "tp": 1}


def test_one_class_set_gives_undefined_not_a_crash() -> None:
    m = binary_metrics([0, 0, 0], [0.1, 0.7, 0.2], threshold=0.5)
    assert m["auc"] is None and m["sensitivity"] is None and m["pr_auc"] is None
    assert m["specificity"] == pytest.approx(2 / 3)
    ci = bootstrap_ci([0, 0, 0], [0.1, 0.7, 0.2], 0.5, n_boot=50)
    assert ci["auc"] is None and ci["sensitivity"] is None and ci["specificity"] is not None


def test_labels_must_be_binary() -> None:
    with pytest.raises(ValueError, match="0 \\(normal\\) or 1"):
        binary_metrics([0, 2], [0.1, 0.2], 0.5)


def test_ece_is_zero_when_probabilities_match_rates() -> None:
    # Every image says 0.25 and one in four has pneumonia.
    assert expected_calibration_error([1, 0, 0, 0], [0.25] * 4) == pytest.approx(0.0)


def _toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1)
    return y, p


def test_bootstrap_interval_contains_point_estimate() -> None:
    y, p = _toy(300, 1)
    groups = [f"patient{i // 3}" for i in range(300)]
    ci = bootstrap_ci(y, p, 0.5, groups, n_boot=300, seed=3)
    point = binary_metrics(y, p, 0.5)
    for name in ("auc", "sensitivity", "specificity"):
        lo, hi = ci[name]
        assert lo < point[name] < hi, name
        assert hi - lo < 0.3
    assert ci["resampled"] == "patients" and ci["n_groups"] == 100


def test_bootstrap_resamples_whole_patients() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat([f"p{i}" for i in range(20)], 3)
    weights = bootstrap_weights(groups, 200, rng)
    assert weights.shape == (200, 60)
    per_patient = weights.reshape(200, 20, 3)
    assert (per_patient == per_patient[:, :, :1]).all()  # a patient's images are drawn together
    assert (per_patient[:, :, 0].sum(axis=1) == 20).all()  # as many patients drawn as there are


def test_duplicated_images_do_not_narrow_patient_level_intervals() -> None:
    # 60 patients, each X-ray stored four times. Resampled by patient, the copies add nothing (the intervals
    # equal those of the de-duplicated set resampled by image); resampled by image they look 2x too precise.
    y, p = _toy(60, 2)
    ids = [str(i) for i in range(60)]  # same sort order as the image-level keys
    y4, p4, ids4 = np.repeat(y, 4), np.repeat(p, 4), np.repeat(ids, 4)
    by_patient = bootstrap_ci(y4, p4, 0.5, ids4, n_boot=400, seed=5)
    reference = bootstrap_ci(y, p, 0.5, None, n_boot=400, seed=5)
    naive = bootstrap_ci(y4, p4, 0.5, None, n_boot=400, seed=5)
    for name in ("auc", "sensitivity", "specificity"):
        assert by_patient[name] == pytest.approx(reference[name])
        assert naive[name][1] - naive[name][0] < 0.75 * (by_patient[name][1] - by_patient[name][0])


def test_weighted_auc_matches_sklearn_with_ties() -> None:
    y, p = _toy(80, 4)
    p = np.round(p, 1)  # many ties
    weights = bootstrap_weights([str(i // 2) for i in range(80)], 5, np.random.default_rng(1))
    ours = weighted_auc(y, p, weights)
    for row, value in zip(weights, ours):
        assert value == pytest.approx(roc_auc_score(y, p, sample_weight=row))


def test_three_class_worked_by_hand() -> None:
    # columns: normal, bacterial, viral; threshold 0.5 on P(pneumonia) = 1 - P(normal)
    prob = np.array([
        [0.8, 0.1, 0.1],  # normal    -> normal
        [0.4, 0.5, 0.1],  # normal    -> bacterial (P(pneumonia) 0.6)
        [0.1, 0.7, 0.2],  # bacterial -> bacterial
        [0.2, 0.3, 0.5],  # bacterial -> viral
        [0.1, 0.3, 0.6],  # viral     -> viral
        [0.6, 0.1, 0.3],  # viral     -> normal (P(pneumonia) 0.4)
    ])
    y = np.array([0, 0, 1, 1, 2, 2])
    m = multiclass_metrics(y, prob, threshold=0.5)
    assert m["per_class_recall"] == {"NORMAL": 0.5, "BACTERIAL": 0.5, "VIRAL": 0.5}
    assert m["confusion_matrix_3class"] == [[1, 1, 0], [0, 1, 1], [1, 0, 1]]
    # Viral share P(v) / (P(b) + P(v)) of the pneumonia images: bacterial 2/9, 5/8; viral 6/9, 3/4.
    # Pairs (viral, bacterial) ranked right: (6/9 > 2/9), (6/9 > 5/8), (3/4 > 2/9), (3/4 > 5/8): AUC 1.
    assert m["bacterial_vs_viral_auc"] == pytest.approx(1.0)
    prob[4] = [0.1, 0.6, 0.3]  # viral share 1/3: now above 2/9 only -> 3 of 4 pairs
    assert multiclass_metrics(y, prob, 0.5)["bacterial_vs_viral_auc"] == pytest.approx(0.75)


def test_paired_auc_difference_is_the_difference_with_a_narrower_interval_than_the_two_side_by_side() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    signal = y + rng.normal(0, 1.0, 400)  # what both models see
    a = signal + rng.normal(0, 0.3, 400)
    b = signal + rng.normal(0, 0.1, 400)  # a little less noise: a little better everywhere
    patients = [f"p{i // 2}" for i in range(400)]
    paired = paired_auc_difference(y, a, b, patients, n_boot=500)
    assert paired["difference"] == pytest.approx(roc_auc_score(y, b) - roc_auc_score(y, a))
    low, high = paired["ci95"]
    assert low <= paired["difference"] <= high and paired["resampled"] == "patients"
    side = [bootstrap_ci(y, p, 0.5, patients, n_boot=500)["auc"] for p in (a, b)]
    assert high - low < 0.5 * min(hi - lo for lo, hi in side)  # what the images share cancels
    swapped = paired_auc_difference(y, b, a, patients, n_boot=500)
    assert swapped["difference"] == pytest.approx(-paired["difference"])
    assert paired_auc_difference(np.ones(4), P[:4], P[:4])["difference"] is None  # one class: no AUC
    with pytest.raises(ValueError, match="probabilities"):
        paired_auc_difference(Y, P, P[:4])
