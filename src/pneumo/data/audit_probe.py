"""The lungs-hidden probe: how well a small model predicts the label from a film whose lung fields are hidden.

Each film is stretched to a small square (as the network's input is), its central box (where the lungs and
heart lie on a frontal chest film) set to the film's mean grey, and a logistic regression is trained on the
frame that is left: neck, shoulders, abdomen, borders, corners with their markers. Scored out of fold with
folds grouped by patient. An AUC well above 0.5 means the label can be read off the acquisition alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pneumo.data.preprocess import resize_square
from pneumo.data.records import ImageRecord

PROBE_SIZE = 32
HIDDEN_BOX = (0.12, 0.88)  # rows and columns of the square hidden from the probe (the lung fields)


@dataclass
class ProbeResult:
    auc: float  # out of fold, all images
    by_sequence: dict[str, float]  # normal sequence -> AUC against all pneumonia, out of fold
    folds: int
    images: int
    visible_share: float  # share of the square the probe sees
    source: str = "film"  # "film", or "thorax crop": the film cropped to its thorax first (pneumo.data.thorax)


def hide_lungs(image: np.ndarray, size: int = PROBE_SIZE) -> np.ndarray:
    """The film stretched to ``size`` x ``size`` with the central box set to its mean; returns the visible
    frame's pixels as one vector."""
    square = resize_square(np.clip(image, 0.0, 1.0), size, "stretch")
    return square[~_hidden_mask(size)]


def _hidden_mask(size: int) -> np.ndarray:
    low, high = (int(round(f * size)) for f in HIDDEN_BOX)
    mask = np.zeros((size, size), dtype=bool)
    mask[low:high, low:high] = True
    return mask


def run_probe(records: list[ImageRecord], frames: np.ndarray, sequences: list[str], folds: int = 5,
              seed: int = 0, source: str = "film") -> ProbeResult:
    """Out-of-fold AUC of a logistic regression on the lungs-hidden ``frames`` of ``records`` (one row each,
    from :func:`hide_lungs`; :func:`pneumo.data.audit.measure` makes them)."""
    if len(frames) != len(records):
        raise ValueError(f"{len(records)} records but {len(frames)} lungs-hidden frames")
    features = frames
    labels = np.array([r.label != "NORMAL" for r in records])
    groups = np.array([r.patient_id or r.path for r in records])
    chosen_folds = min(folds, len(set(groups.tolist())))
    if chosen_folds < 2 or len(set(labels.tolist())) < 2:
        raise ValueError(f"the probe needs two labels and two patients at least; got {len(records)} images")
    scores = np.zeros(len(records))
    for train, test in GroupKFold(n_splits=chosen_folds).split(features, labels, groups):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, random_state=seed))
        model.fit(features[train], labels[train])
        scores[test] = model.predict_proba(features[test])[:, 1]
    seq = np.array(sequences)
    by_sequence = {}
    for sequence in sorted(set(seq[~labels].tolist())):
        chosen = labels | (seq == sequence)
        by_sequence[sequence] = float(roc_auc_score(labels[chosen], scores[chosen]))
    visible = 1.0 - _hidden_mask(PROBE_SIZE).mean()
    return ProbeResult(float(roc_auc_score(labels, scores)), by_sequence, chosen_folds, len(records), float(visible),
                       source)
