"""Put several models' figures side by side, each with its 95% interval where one is known.

An entry comes from scoring a split now (the fair comparison: every model on its own validation split or
on the same test images), from an earlier ``pneumo evaluate`` folder (its metrics.json), or from the
figures stored in a bundle at training and calibration time.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pneumo.bundle import read_meta
from pneumo.evaluation.metrics import paired_auc_difference
from pneumo.evaluation.pipeline import EvaluationOptions, compute_metrics, score_split, to_json
from pneumo.evaluation.plots import compare_plot

TABLE_METRICS = ("n", "auc", "sensitivity", "specificity", "precision", "f1", "ece", "brier", "threshold")


@dataclass
class ImageScores:
    """Per-image outputs behind an entry's figures: what a paired comparison needs."""

    paths: list[str]
    targets: np.ndarray  # 0 normal / 1 pneumonia
    probabilities: np.ndarray  # P(pneumonia)
    patients: list[str]


@dataclass
class Entry:
    name: str
    source: str
    metrics: dict[str, Any]
    images: ImageScores | None = None  # None: figures stored without per-image outputs (a bundle's)


def read_predictions(path: Path) -> ImageScores:
    """An evaluation folder's predictions.csv (``pneumo evaluate``)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = {"path", "patient_id", "true_label", "probability"} - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{path}: no column {', '.join(sorted(missing))}; not a pneumo evaluate predictions.csv")
    return ImageScores([r["path"] for r in rows], np.array([r["true_label"] != "NORMAL" for r in rows], dtype=int),
                       np.array([float(r["probability"]) for r in rows]),
                       [r["patient_id"] or r["path"] for r in rows])


def entry_name(ref: str) -> str:
    path = Path(ref)
    return path.parent.name if path.name in ("best", "last") and path.parent.name else (path.name or ref)


def stored_metrics(ref: str) -> Entry:
    """Figures without scoring: an evaluation folder's metrics.json, or the bundle's stored ones."""
    path = Path(ref)
    if (path / "metrics.json").is_file() and not (path / "bundle.json").is_file():
        metrics = json.loads((path / "metrics.json").read_text())
        predictions = path / "predictions.csv"
        return Entry(entry_name(ref), f"{path / 'metrics.json'} (split {metrics.get('split')})", metrics,
                     read_predictions(predictions) if predictions.is_file() else None)
    directory, meta = read_meta(ref)
    metrics = dict(meta.metrics or {})
    cal = meta.calibration or {}
    # Calibration's achieved sensitivity/specificity describe the same split when it is the stored one.
    if cal and cal.get("split") == metrics.get("split", cal.get("split")):
        metrics.setdefault("split", cal.get("split"))
        for key, value in (cal.get("achieved") or {}).items():
            metrics.setdefault(key, value)
        metrics.setdefault("threshold", cal.get("threshold"))
        metrics.setdefault("ece", cal.get("ece_after"))
    metrics.setdefault("threshold", meta.threshold)
    return Entry(entry_name(ref), f"stored in {directory} (split {metrics.get('split', '?')})", metrics)


def scored_metrics(ref: str, root: str, manifest: str, options: EvaluationOptions) -> Entry:
    scored = score_split(ref, root, manifest, options)
    metrics = compute_metrics(scored, options)
    scores = scored.scores
    images = ImageScores([r.path for r in scores.records], scores.targets, scores.probabilities,
                         [str(p) for p in scores.patient_ids])
    return Entry(entry_name(ref), f"scored on {options.split!r} of {root or manifest}", metrics, images)


def paired_differences(entries: Sequence[Entry], n_boot: int = 1000) -> list[dict[str, Any]]:
    """AUC of each entry after the first minus the first's, on the images both scored, with a paired patient
    bootstrap interval (:func:`pneumo.evaluation.metrics.paired_auc_difference`). An entry without per-image
    outputs, or whose images or labels differ from the first's, gets the reason instead."""
    first = entries[0].images if entries else None
    out = []
    for entry in entries[1:]:
        row: dict[str, Any] = {"name": entry.name, "against": entries[0].name}
        images = entry.images
        if first is None or images is None:
            row["reason"] = "no per-image outputs (give --data, or `pneumo evaluate` folders)"
        elif sorted(images.paths) != sorted(first.paths):
            row["reason"] = "not the same images"
        else:
            order = {path: i for i, path in enumerate(images.paths)}
            index = np.array([order[path] for path in first.paths])
            if not np.array_equal(images.targets[index], first.targets):
                row["reason"] = "the same images with other labels"
            else:
                row.update(paired_auc_difference(first.targets, first.probabilities, images.probabilities[index],
                                                 first.patients, n_boot=n_boot))
        out.append(row)
    return out


def format_differences(rows: Sequence[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        if "reason" in row:
            lines.append(f"AUC {row['name']} - {row['against']}: not compared ({row['reason']})")
        elif row["difference"] is not None:
            interval = row["ci95"]
            ci = f" [{interval[0]:+.3f}, {interval[1]:+.3f}]" if interval else ""
            lines.append(f"AUC {row['name']} - {row['against']}: {row['difference']:+.3f}{ci} (paired bootstrap "
                         f"over {row['resampled']}, {row['n']} images)")
    return "\n".join(lines)


def unique_names(entries: list[Entry]) -> list[Entry]:
    seen: dict[str, int] = {}
    for entry in entries:
        count = seen.get(entry.name, 0)
        seen[entry.name] = count + 1
        if count:
            entry.name = f"{entry.name}#{count + 1}"
    return entries


def _cell(metrics: dict[str, Any], name: str) -> str:
    value = metrics.get(name)
    if value is None:
        return "-"
    if name == "n":
        return str(int(value))
    interval = (metrics.get("ci95") or {}).get(name)
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else f"{value:.3f}"


def format_table(entries: Sequence[Entry], metrics: Sequence[str] = TABLE_METRICS) -> str:
    cells = [[_cell(e.metrics, m) for e in entries] for m in metrics]
    widths = [max(len(e.name), *(len(row[i]) for row in cells)) for i, e in enumerate(entries)]
    lines = ["metric".ljust(12) + "  ".join(e.name.rjust(w) for e, w in zip(entries, widths))]
    lines.append("-" * len(lines[0]))
    for name, row in zip(metrics, cells):
        lines.append(name.ljust(12) + "  ".join(c.rjust(w) for c, w in zip(row, widths)))
    lines += [f"{e.name}: {e.source}" for e in entries]
    return "\n".join(lines)


def different_images(entries: Sequence[Entry]) -> bool:
    prints = {e.metrics.get("data_fingerprint") for e in entries}
    return len(prints) > 1 or None in prints


def write_comparison(entries: Sequence[Entry], out_dir: str | Path,
                     differences: Sequence[dict[str, Any]] = ()) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    document = {"runs": [{"name": e.name, "source": e.source, "metrics": e.metrics} for e in entries],
                "auc_differences": list(differences)}
    (out / "compare.json").write_text(json.dumps(to_json(document), indent=2, allow_nan=False))
    plot = compare_plot([e.name for e in entries], [e.metrics for e in entries], out / "compare.png")
    return {"json": out / "compare.json", "plot": plot}
