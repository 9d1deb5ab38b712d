"""The site's own figures, per model version, from its history rows and their latest reviews.

- agreement between pneumo and its reviewers: the 2x2 counts, the share that agree and Cohen's kappa;
- local sensitivity and specificity (Wilson intervals) and AUC (bootstrap interval), once at least
  ``min_per_class`` reviewed images of each class were read by the model (the report says so when not);
- by ISO week: predictions, the UNKNOWN rate, the out-of-distribution-warning rate and the distribution of
  P(pneumonia), with its drift from the reference: the model's first weeks at this site (``bundle.json`` records
  no validation distribution to compare with). The reference is the earliest whole weeks that hold at least
  ``reference_min`` probabilities; every later week with at least ``week_min`` is compared by PSI and the
  Kolmogorov-Smirnov test: "alarm" when PSI >= ``psi_alarm`` and KS p < ``alarm_p``, "watch" when PSI >=
  ``psi_watch`` and KS p < ``watch_p``, else "stable". PSI alone is noisy on a week of a hundred images (its
  expected value without any drift is about (bins - 1)(1/n + 1/m)); the KS test keeps the false alarms rare.

Images the model answered UNKNOWN count in no accuracy figure (they are counted apart); reviews of
NOT_ASSESSABLE count in none either.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

import numpy as np

from pneumo.site.figures import (PSI_BINS, bootstrap_auc, cohen_kappa, ks_distance, ks_pvalue, psi, rank_auc, shares,
                                 wilson)

PNEUMONIA_REVIEWS = frozenset({"PNEUMONIA", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL"})


@dataclass(frozen=True)
class SiteRow:
    """One history row as the report needs it (no image, no identifier)."""

    created: str  # ISO 8601 UTC
    model: str  # model id ("name@hash"), or the model version of rows older than model ids
    label: str  # NORMAL, PNEUMONIA or UNKNOWN
    probability: float | None
    warned: bool  # answered with an out-of-distribution warning
    review: str | None = None  # the latest review's label
    model_version: str = ""
    model_parent: str | None = None


@dataclass(frozen=True)
class ReportRules:
    min_per_class: int = 10  # reviewed images of each class before sensitivity, specificity and AUC are shown
    # Measured by bench/site_drift_null.py (docs/site.md): a week drawn from the reference's own distribution
    # is "watch" in about 3 % of weeks and "alarm" in about 0.1 %.
    reference_min: int = 300  # probabilities in the drift reference (the first whole weeks)
    week_min: int = 100  # a week with fewer probabilities is not tested for drift
    psi_watch: float = 0.1
    psi_alarm: float = 0.25
    watch_p: float = 0.05
    alarm_p: float = 0.01
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("min_per_class", "reference_min", "week_min", "n_boot"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.psi_watch <= self.psi_alarm or not 0 < self.alarm_p <= self.watch_p < 1:
            raise ValueError(f"drift levels must satisfy 0 < psi_watch <= psi_alarm and 0 < alarm_p <= watch_p < 1; "
                             f"got psi {self.psi_watch}/{self.psi_alarm}, p {self.watch_p}/{self.alarm_p}")


def iso_week(created: str) -> str:
    year, week, _ = datetime.fromisoformat(created.replace("Z", "+00:00")).isocalendar()
    return f"{year}-W{week:02d}"


def truth(review: str | None) -> int | None:
    if review == "NORMAL":
        return 0
    return 1 if review in PNEUMONIA_REVIEWS else None


def agreement(rows: Sequence[SiteRow]) -> dict[str, Any]:
    """pneumo's NORMAL/PNEUMONIA against the reviewers' conclusion, over the rows both read."""
    pairs = [(int(r.label == "PNEUMONIA"), truth(r.review)) for r in rows
             if r.label in ("NORMAL", "PNEUMONIA") and truth(r.review) is not None]
    model = np.array([m for m, _ in pairs], dtype=int)
    reviewer = np.array([t for _, t in pairs], dtype=int)
    counts = {"both_pneumonia": int(np.sum((model == 1) & (reviewer == 1))),
              "both_normal": int(np.sum((model == 0) & (reviewer == 0))),
              "pneumo_pneumonia_reviewer_normal": int(np.sum((model == 1) & (reviewer == 0))),
              "pneumo_normal_reviewer_pneumonia": int(np.sum((model == 0) & (reviewer == 1)))}
    return {"n": len(pairs), "counts": counts,
            "agreement": float(np.mean(model == reviewer)) if pairs else None,
            "kappa": cohen_kappa(model, reviewer),
            "reviewed": sum(r.review is not None for r in rows),
            "reviewed_not_assessable": sum(r.review == "NOT_ASSESSABLE" for r in rows),
            "reviewed_unknown": sum(r.review is not None and r.label == "UNKNOWN" for r in rows)}


def _rate(k: int, n: int) -> dict[str, Any]:
    return {"value": k / n if n else None, "k": k, "n": n, "ci95": wilson(k, n)}


def accuracy(rows: Sequence[SiteRow], rules: ReportRules) -> dict[str, Any]:
    """Local sensitivity, specificity and AUC against the reviews, or why there are not enough yet."""
    read = [r for r in rows if r.label in ("NORMAL", "PNEUMONIA") and truth(r.review) is not None]
    y = np.array([truth(r.review) for r in read], dtype=int)
    flagged = np.array([r.label == "PNEUMONIA" for r in read], dtype=bool)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if min(n_pos, n_neg) < rules.min_per_class:
        return {"enough": False, "n_pneumonia": n_pos, "n_normal": n_neg,
                "message": f"not enough reviews yet: {n_pos} pneumonia and {n_neg} normal reviewed images read by "
                           f"this model; at least {rules.min_per_class} of each are needed"}
    scored = [(t, r.probability) for t, r in zip(y, read) if r.probability is not None]
    ys, ps = np.array([t for t, _ in scored], dtype=int), np.array([p for _, p in scored], dtype=float)
    return {"enough": True, "n_pneumonia": n_pos, "n_normal": n_neg,
            "sensitivity": _rate(int(np.sum(flagged & (y == 1))), n_pos),
            "specificity": _rate(int(np.sum(~flagged & (y == 0))), n_neg),
            "auc": {"value": rank_auc(ys, ps), "n": len(ys),
                    "ci95": bootstrap_auc(ys, ps, rules.n_boot, rules.seed)}}


def _quantiles(p: np.ndarray) -> dict[str, float] | None:
    if p.size == 0:
        return None
    q = np.percentile(p, [10, 25, 50, 75, 90])
    return {"p10": float(q[0]), "p25": float(q[1]), "median": float(q[2]), "p75": float(q[3]), "p90": float(q[4]),
            "mean": float(p.mean())}


def weekly(rows: Sequence[SiteRow], rules: ReportRules) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One entry per ISO week (oldest first) and the drift reference they were compared with."""
    by_week: dict[str, list[SiteRow]] = defaultdict(list)
    for row in rows:
        by_week[iso_week(row.created)].append(row)
    weeks, reference, reference_weeks = [], np.empty(0), []
    for week in sorted(by_week):
        chosen = by_week[week]
        p = np.array([r.probability for r in chosen if r.probability is not None], dtype=float)
        assessed = [r for r in chosen if r.label != "UNKNOWN"]
        entry = {"week": week, "n": len(chosen), "unknown": _rate(len(chosen) - len(assessed), len(chosen)),
                 "warning": _rate(sum(r.warned for r in assessed), len(assessed)),
                 "probability": _quantiles(p), "histogram": [round(float(s), 4) for s in shares(p)] if p.size else None,
                 "drift": None}
        if reference.size < rules.reference_min:
            reference = np.concatenate([reference, p])
            reference_weeks.append(week)
            entry["drift"] = {"status": "reference"}
        else:
            entry["drift"] = drift(reference, p, rules)
        weeks.append(entry)
    if reference.size < rules.reference_min:  # never complete: nothing was compared
        for entry in weeks:
            entry["drift"] = {"status": "reference incomplete"}
    described = {"weeks": reference_weeks, "n": int(reference.size), "complete": reference.size >= rules.reference_min,
                 "rule": f"the first whole weeks of this model at the site holding at least {rules.reference_min} "
                         "probabilities (bundle.json records no validation distribution)",
                 "bins": [float(b) for b in PSI_BINS]}
    return weeks, described


def drift(reference: np.ndarray, current: np.ndarray, rules: ReportRules) -> dict[str, Any]:
    if current.size < rules.week_min:
        return {"status": "too few", "n": int(current.size)}
    value, distance = psi(reference, current), ks_distance(reference, current)
    p = ks_pvalue(distance, reference.size, current.size)
    status = ("alarm" if value >= rules.psi_alarm and p < rules.alarm_p
              else "watch" if value >= rules.psi_watch and p < rules.watch_p else "stable")
    return {"status": status, "psi": value, "ks": distance, "ks_p": p, "n": int(current.size)}


def model_report(rows: Sequence[SiteRow], rules: ReportRules) -> dict[str, Any]:
    rows = sorted(rows, key=lambda r: r.created)
    weeks, reference = weekly(rows, rules)
    alarms = [w["week"] for w in weeks if (w["drift"] or {}).get("status") == "alarm"]
    last = rows[-1]
    return {"model": last.model, "model_version": last.model_version, "model_parent": last.model_parent,
            "n": len(rows), "first": rows[0].created, "last": last.created,
            "unknown": _rate(sum(r.label == "UNKNOWN" for r in rows), len(rows)),
            "agreement": agreement(rows), "accuracy": accuracy(rows, rules), "weeks": weeks,
            "drift_reference": reference, "drift_alarms": alarms}


def build_report(rows: Sequence[SiteRow], rules: ReportRules = ReportRules(), *, generated: str = "") -> dict[str, Any]:
    """The whole report: one section per model (newest use first), and the rules it applied."""
    by_model: dict[str, list[SiteRow]] = defaultdict(list)
    for row in rows:
        by_model[row.model].append(row)
    sections = [model_report(chosen, rules) for chosen in by_model.values()]
    sections.sort(key=lambda s: s["last"], reverse=True)
    return {"generated": generated, "n": len(rows), "models": sections,
            "rules": {"min_per_class": rules.min_per_class, "reference_min": rules.reference_min,
                      "week_min": rules.week_min, "psi_watch": rules.psi_watch, "psi_alarm": rules.psi_alarm,
                      "watch_p": rules.watch_p, "alarm_p": rules.alarm_p, "bootstrap": rules.n_boot},
            "note": "Figures of an assistive tool against the site's own reviews, not a validation study: reviews "
                    "are not blinded to pneumo's answer, and images nobody reviewed count in no accuracy figure."}
