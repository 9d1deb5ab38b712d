"""Which threshold rule transfers in time? Fit each rule on the later half of the temporal validation block,
apply it to the earlier half (further from the training patients, as the official test is), and report both.

    pneumo evaluate --model RUN --data ROOT --split val --out eval-val
    pneumo evaluate --model RUN --data ROOT --split official-val --out eval-official
    python bench/bench_threshold_rules.py eval-val/predictions.csv [--official eval-official/predictions.csv]

Figures, not pass/fail: the rule shipped is argued for in docs/MODEL_CARD.md from this table.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from pneumo.data.records import ImageRecord
from pneumo.data.splits import temporal_position
from pneumo.evaluation.calibration import threshold_for_sensitivity, threshold_youden


@dataclass
class Rows:
    prob: np.ndarray
    y: np.ndarray
    sequence: list[str]
    position: np.ndarray

    def take(self, mask: np.ndarray) -> "Rows":
        return Rows(self.prob[mask], self.y[mask], [s for s, m in zip(self.sequence, mask) if m], self.position[mask])


def read(path: str) -> Rows:
    prob, y, seq, pos = [], [], [], []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            record = ImageRecord(row["path"], row["true_label"], "val", row["patient_id"])
            sequence, position = temporal_position(record)
            prob.append(float(row["probability"]))
            y.append(int(row["true_label"] == "PNEUMONIA"))
            seq.append(sequence)
            pos.append(position)
    return Rows(np.array(prob), np.array(y), seq, np.array(pos))


def earlier_half(rows: Rows) -> np.ndarray:
    """True for rows at or below their sequence's median position (the earlier patients)."""
    mask = np.zeros(len(rows.y), bool)
    for sequence in set(rows.sequence):
        idx = np.array([s == sequence for s in rows.sequence])
        mask |= idx & (rows.position <= np.median(rows.position[idx]))
    return mask


def at_sensitivity(target: float) -> Callable[[np.ndarray, np.ndarray], float]:
    return lambda y, p: threshold_for_sensitivity(y, p, target)  # the rule `pneumo calibrate` applies


def specificity_floor(floor: float) -> Callable[[np.ndarray, np.ndarray], float]:
    def rule(y: np.ndarray, p: np.ndarray) -> float:
        fpr, _, thr = roc_curve(y, p, drop_intermediate=False)
        return float(thr[1:][1 - fpr[1:] >= floor].min())
    return rule


RULES = {"sensitivity >= 0.95": at_sensitivity(0.95), "sensitivity >= 0.90": at_sensitivity(0.90),
         "Youden's J": threshold_youden, "specificity >= 0.85": specificity_floor(0.85),
         "specificity >= 0.90": specificity_floor(0.90)}


def operating(rows: Rows, threshold: float) -> str:
    flagged = rows.prob >= threshold
    sens = flagged[rows.y == 1].mean() if (rows.y == 1).any() else float("nan")
    spec = (~flagged[rows.y == 0]).mean() if (rows.y == 0).any() else float("nan")
    return f"{sens:.3f} / {spec:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", help="predictions.csv of `pneumo evaluate --split val` (temporal split)")
    parser.add_argument("--official", help="predictions.csv of `pneumo evaluate --split official-val`")
    args = parser.parse_args()
    rows = read(args.predictions)
    early = earlier_half(rows)
    fit_on, apply_to = rows.take(~early), rows.take(early)
    official = read(args.official) if args.official else None
    print(f"temporal validation: {len(rows.y)} images; fit on the later half ({len(fit_on.y)}), applied to the "
          f"earlier half ({len(apply_to.y)}). AUC later {roc_auc_score(fit_on.y, fit_on.prob):.4f}, "
          f"earlier {roc_auc_score(apply_to.y, apply_to.prob):.4f}")
    header = "| rule | threshold (later half) | sens / spec, later half (fit) | sens / spec, earlier half |"
    header += " threshold (whole block) | sens / spec, official val |" if official else ""
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for name, rule in RULES.items():
        t_half = rule(fit_on.y, fit_on.prob)
        line = f"| {name} | {t_half:.4f} | {operating(fit_on, t_half)} | {operating(apply_to, t_half)} |"
        if official:
            t_all = rule(rows.y, rows.prob)
            line += f" {t_all:.4f} | {operating(official, t_all)} |"
        print(line)


if __name__ == "__main__":
    main()
