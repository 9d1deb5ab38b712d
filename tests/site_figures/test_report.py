"""The site report on hand-built histories with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from pneumo.site.html import render
from pneumo.site.report import ReportRules, SiteRow, build_report, iso_week

MONDAY = "2026-11-02T09:00:00.000Z"  # ISO week 2026-W45


def row(label, review=None, probability=None, day="02", model="site@abc", warned=False, month="11"):
    if probability is None and label != "UNKNOWN":
        probability = 0.9 if label == "PNEUMONIA" else 0.1
    return SiteRow(created=f"2026-{month}-{day}T09:00:00.000Z", model=model, label=label, probability=probability,
                   warned=warned, review=review, model_version="simple_cnn-32px-x")


def test_agreement_and_accuracy_of_a_hand_built_set():
    # 12 reviewed pneumonia: pneumo flagged 9 (sensitivity 9/12); 15 reviewed normal: pneumo cleared 12 (12/15).
    rows = ([row("PNEUMONIA", "PNEUMONIA")] * 6 + [row("PNEUMONIA", "PNEUMONIA_VIRAL")] * 3
            + [row("NORMAL", "PNEUMONIA_BACTERIAL")] * 3 + [row("NORMAL", "NORMAL")] * 12
            + [row("PNEUMONIA", "NORMAL")] * 3
            + [row("UNKNOWN", "NORMAL"), row("NORMAL", "NOT_ASSESSABLE"), row("NORMAL")])
    section = build_report(rows, ReportRules(min_per_class=10, n_boot=200))["models"][0]
    agreement, accuracy = section["agreement"], section["accuracy"]
    assert agreement["counts"] == {"both_pneumonia": 9, "both_normal": 12, "pneumo_pneumonia_reviewer_normal": 3,
                                   "pneumo_normal_reviewer_pneumonia": 3}
    assert agreement["agreement"] == pytest.approx(21 / 27)
    # kappa: observed 21/27; chance (12/27)(12/27) + (15/27)(15/27)
    chance = (12 / 27) ** 2 + (15 / 27) ** 2
    assert agreement["kappa"] == pytest.approx((21 / 27 - chance) / (1 - chance))
    assert agreement["reviewed_not_assessable"] == 1 and agreement["reviewed_unknown"] == 1
    assert accuracy["enough"] is True
    assert accuracy["sensitivity"]["value"] == pytest.approx(9 / 12) and accuracy["sensitivity"]["n"] == 12
    assert accuracy["specificity"]["value"] == pytest.approx(12 / 15)
    low, high = accuracy["sensitivity"]["ci95"]
    assert low < 0.75 < high
    # The probabilities rank exactly as the labels do: AUC = P(flagged | pneumonia) ... by the 2x2 alone.
    assert accuracy["auc"]["value"] == pytest.approx(0.5 * (9 / 12 + 12 / 15))
    assert section["unknown"]["k"] == 1 and section["n"] == len(rows)


def test_too_few_reviews_are_said_not_computed():
    section = build_report([row("PNEUMONIA", "PNEUMONIA")] * 4 + [row("NORMAL", "NORMAL")] * 30)["models"][0]
    assert section["accuracy"]["enough"] is False
    assert "4 pneumonia and 30 normal" in section["accuracy"]["message"]
    assert "sensitivity" not in section["accuracy"]


def test_weeks_rates_and_a_drift_alarm_against_the_first_weeks():
    rng = np.random.default_rng(0)
    rules = ReportRules()  # reference: the first whole weeks holding 300; a week of fewer than 100 is not tested
    early = [row("NORMAL", probability=float(p), day=d) for d in ("02", "09") for p in rng.beta(2, 8, 160)]
    steady = [row("NORMAL", probability=float(p), day="16") for p in rng.beta(2, 8, 150)]
    shifted = [row("PNEUMONIA", probability=float(p), day="23", warned=i < 10)
               for i, p in enumerate(rng.beta(8, 2, 120))]
    few = [row("UNKNOWN", day="30")] * 5
    section = build_report(early + steady + shifted + few, rules)["models"][0]
    weeks = {w["week"]: w for w in section["weeks"]}
    assert list(weeks) == ["2026-W45", "2026-W46", "2026-W47", "2026-W48", "2026-W49"]
    assert [weeks[w]["drift"]["status"] for w in weeks] == ["reference", "reference", "stable", "alarm", "too few"]
    assert section["drift_reference"]["weeks"] == ["2026-W45", "2026-W46"] and section["drift_reference"]["n"] == 320
    assert section["drift_alarms"] == ["2026-W48"]
    assert weeks["2026-W48"]["warning"]["value"] == pytest.approx(10 / 120)
    assert weeks["2026-W48"]["drift"]["psi"] > 0.25 and weeks["2026-W48"]["drift"]["ks_p"] < 0.01
    assert weeks["2026-W49"]["unknown"]["value"] == 1.0 and weeks["2026-W49"]["probability"] is None
    assert weeks["2026-W48"]["probability"]["median"] > 0.6 > weeks["2026-W47"]["probability"]["median"]


def test_each_model_version_has_its_own_section_and_the_html_escapes():
    rows = [row("NORMAL", model="default@111"), row("NORMAL", model="<site>@222", day="09")]
    report = build_report(rows)
    assert [m["model"] for m in report["models"]] == ["<site>@222", "default@111"]  # the newest in use first
    page = render(report)
    assert "&lt;site&gt;@222" in page and "<site>" not in page
    assert "not enough reviews yet" in page


def test_iso_week_of_a_stored_timestamp():
    assert iso_week(MONDAY) == "2026-W45"
    assert iso_week("2027-01-01T00:00:00.000Z") == "2026-W53"


def test_rules_refuse_values_that_make_no_report():
    with pytest.raises(ValueError, match="week_min must be at least 1, got 0"):
        ReportRules(week_min=0)
    with pytest.raises(ValueError, match="psi_watch <= psi_alarm"):
        ReportRules(psi_watch=0.3, psi_alarm=0.2)
