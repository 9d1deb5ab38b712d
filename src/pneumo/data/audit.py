"""Shortcut audit: acquisition attributes of every image and how well each alone predicts the label.

A label that a film's framing, exposure, burned-in text or size predicts is a shortcut a network can learn
instead of reading the lungs (Kermany's pneumonia films are framed, sized and exposed differently from its
normal ones). Each attribute is measured on the decoded original, before any resizing, and scored by the AUC
of the attribute alone against the label, over the whole dataset and for each numbering sequence of normal
films against all pneumonia films (in Kermany, the ``IM-`` and ``NORMAL2-IM-`` sequences come from
different periods and look different). :mod:`pneumo.data.audit_probe` adds what a small model learns from the
film with its lung fields hidden.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score

from pneumo.data.audit_probe import hide_lungs
from pneumo.data.decode import decoded_each
from pneumo.data.records import ImageRecord
from pneumo.data.splits import temporal_position
from pneumo.data.thorax import crop_to_thorax, find_thorax

# What each attribute measures, for the report.
ATTRIBUTES = {
    "aspect": "width / height of the film (framing, body proportions, how the export was resized)",
    "pixels": "width x height in pixels (detector, export size)",
    "mean": "mean grey level (exposure)",
    "spread": "standard deviation of grey levels (contrast of the window)",
    "black_point": "5th percentile grey level (how much black background or collimation is in the field)",
    "white_point": "95th percentile grey level (how bright dense tissue and markers are rendered)",
    "border_dark": "share of dark pixels (< 0.1) in a band of 6% along the edges (collimation, borders)",
    "thorax_height": "share of the film's height the lung fields span (pneumo.data.thorax; how much neck "
                     "and abdomen the field holds)",
    "thorax_width": "share of the film's width the lung fields span (arms, borders beside the chest)",
    "thorax_aspect": "width / height of the lung fields in the film's pixels (body proportions, age)",
    "corner_text": "share of near-white pixels (> 0.95) in the brightest corner (burned-in markers, text)",
    "centre_spread": "standard deviation inside the central half (lung-field contrast; also pathology)",
}


@dataclass
class AttributeScore:
    name: str
    auc: float  # of the attribute alone for PNEUMONIA; 0.5 is no information, 0 or 1 a perfect cue
    by_sequence: dict[str, float] = field(default_factory=dict)  # normal sequence -> AUC against all pneumonia
    medians: dict[str, float] = field(default_factory=dict)  # sequence -> median value

    @property
    def strength(self) -> float:
        """How far from chance, whichever direction: |AUC - 0.5| * 2 (0 none, 1 perfect)."""
        return abs(self.auc - 0.5) * 2


def attributes(image: np.ndarray) -> dict[str, float]:
    """The acquisition attributes of one decoded float [0, 1] film (see ATTRIBUTES)."""
    h, w = image.shape
    band = max(1, int(0.06 * min(h, w)))
    edges = np.concatenate([image[:band].ravel(), image[-band:].ravel(), image[:, :band].ravel(),
                            image[:, -band:].ravel()])
    corners = [image[:h // 5, :w // 5], image[:h // 5, -(w // 5):], image[-(h // 5):, :w // 5],
               image[-(h // 5):, -(w // 5):]]
    low, high = np.percentile(image, [5, 95])
    return {
        "aspect": w / h, "pixels": float(w * h), "mean": float(image.mean()), "spread": float(image.std()),
        "black_point": float(low), "white_point": float(high), "border_dark": float((edges < 0.1).mean()),
        **_thorax(image),
        "corner_text": float(max((c > 0.95).mean() for c in corners if c.size)),
        "centre_spread": float(image[h // 4:3 * h // 4, w // 4:3 * w // 4].std()),
    }


def _thorax(image: np.ndarray) -> dict[str, float]:
    """The lung fields' extent; NaN where the classical finder finds no pair (left out of that AUC)."""
    box = find_thorax(image)
    if box is None:
        return {"thorax_height": float("nan"), "thorax_width": float("nan"), "thorax_aspect": float("nan")}
    h, w = image.shape
    height, width = box.bottom - box.top, box.right - box.left
    return {"thorax_height": height, "thorax_width": width, "thorax_aspect": width * w / (height * h)}


def sequence_of(record: ImageRecord) -> str:
    """The record's numbering sequence (Kermany: ``IM-``, ``NORMAL2-IM-``, bacteria, virus), or its label."""
    try:
        return f"{record.label}:{temporal_position(record)[0]}"
    except ValueError:  # no number in the patient key and no order column: one sequence per label
        return record.label


@dataclass
class AttributeTable:
    records: list[ImageRecord]
    values: dict[str, np.ndarray]  # attribute -> one value per record
    skipped: list[tuple[str, str]]
    frames: np.ndarray  # per record, the film's frame with the lungs hidden (the probe's input)


def measure(records: list[ImageRecord], probe_on_thorax: bool = False) -> AttributeTable:
    """Every attribute of every readable record, and its lungs-hidden frame for the probe, from one decode
    per file; unreadable files are named and skipped. ``probe_on_thorax``: the probe's frame is taken from the
    film cropped to its thorax (what a model trained with ``preprocess.thorax_crop`` sees), the attributes from
    the whole film either way."""
    kept, rows, frames, skipped = [], [], [], []
    for record, image in decoded_each(records, skipped):
        rows.append(attributes(image))
        frames.append(hide_lungs(crop_to_thorax(image) if probe_on_thorax else image))
        kept.append(record)
    values = {name: np.array([row[name] for row in rows], dtype=np.float64) for name in ATTRIBUTES}
    return AttributeTable(kept, values, skipped, np.stack(frames) if frames else np.zeros((0, 0), np.float32))


def _auc(is_pneumonia: np.ndarray, values: np.ndarray) -> float:
    """AUC over the images where the attribute was measured (not NaN)."""
    measured = np.isfinite(values)
    if len(set(is_pneumonia[measured].tolist())) < 2:
        return float("nan")
    return float(roc_auc_score(is_pneumonia[measured], values[measured]))


def score_attributes(table: AttributeTable) -> list[AttributeScore]:
    """Each attribute's AUC overall and per normal numbering sequence, strongest cue first."""
    is_pneumonia = np.array([r.label != "NORMAL" for r in table.records])
    sequences = np.array([sequence_of(r) for r in table.records])
    scores = []
    for name, values in table.values.items():
        score = AttributeScore(name, _auc(is_pneumonia, values))
        for sequence in sorted(set(sequences[~is_pneumonia].tolist())):
            chosen = is_pneumonia | (sequences == sequence)
            score.by_sequence[sequence] = _auc(is_pneumonia[chosen], values[chosen])
        score.medians = {s: float(np.nanmedian(values[sequences == s])) if np.isfinite(values[sequences == s]).any()
                         else float("nan") for s in sorted(set(sequences.tolist()))}
        scores.append(score)
    return sorted(scores, key=lambda s: -s.strength)
