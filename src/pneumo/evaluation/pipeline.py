"""Evaluate a bundle on one split: score, compute the figures, write metrics, predictions, plots and report.

This is ``pneumo evaluate`` as a library call; the command only parses flags and prints.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pneumo import __version__
from pneumo.bundle import BundleMeta
from pneumo.evaluation import plots
from pneumo.evaluation.descriptions import dataset_description, dataset_labels, model_description
from pneumo.evaluation.metrics import binary_metrics, bootstrap_ci, deployed_metrics, multiclass_metrics
from pneumo.evaluation.report import write_report
from pneumo.evaluation.scoring import Selection, SplitScores, score_records, select_records
from pneumo.inference.decision import DecisionRule, predicted_classes
from pneumo.inference.predictor import BACKENDS, Predictor
from pneumo.inference.rows import csv_cell

log = logging.getLogger("pneumo.evaluation")

@dataclass
class EvaluationOptions:
    split: str = "test"
    threshold: float | None = None  # None: the bundle's threshold
    device: str = "auto"
    batch_size: int = 32
    cache_dir: str = ""  # not used since scoring runs through the Predictor; kept so old callers still run
    backend: str = "auto"  # as Predictor.load: the backend `pneumo predict` would use by default
    tta: bool = False
    workers: int | None = None  # decoding threads (default min(4, CPUs))
    n_boot: int = 1000
    seed: int = 0
    n_bins: int = 10
    progress: bool = False

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.n_boot < 0:
            raise ValueError(f"n_boot must be >= 0, got {self.n_boot}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {list(BACKENDS)}")


@dataclass
class ScoredSplit:
    """A split scored by a bundle: the scores and what the report says about how they were made."""

    scores: SplitScores
    meta: BundleMeta
    bundle_dir: Path | None  # None for a bare .onnx file
    selection: Selection
    backend: str = "torch"
    tta: bool = False


@dataclass
class EvaluationResult:
    metrics: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        return list(self.metrics.get("warnings", []))


def score_split(model_ref: str | Path, root: str, manifest: str, options: EvaluationOptions) -> ScoredSplit:
    """Score ``options.split`` through the Predictor that ``pneumo predict`` with the same backend and TTA
    would build."""
    if options.cache_dir:
        log.warning("--cache-dir %s is not used: evaluation decodes every image through the Predictor, as "
                    "prediction does", options.cache_dir)
    predictor = Predictor.load(model_ref, backend=options.backend, device=options.device, tta=options.tta,
                               workers=options.workers)
    selection = select_records(predictor.meta, options.split, root, manifest)
    scores = score_records(predictor, selection.records, batch_size=options.batch_size, progress=options.progress)
    return ScoredSplit(scores, predictor.meta, predictor.bundle_dir, selection, predictor.backend.name, options.tta)


def calibrated_on(meta: BundleMeta, selection: Selection) -> bool:
    """Whether the bundle's temperature/threshold were fitted on these very images."""
    cal = meta.calibration or {}
    if not cal:
        return False
    if cal.get("fingerprint"):
        return cal["fingerprint"] == selection.fingerprint
    return cal.get("split") == selection.split


def threshold_origin(meta: BundleMeta, override: float | None) -> str:
    if override is not None:
        return "This threshold was set on the command line for this evaluation."
    cal = meta.calibration or {}
    rule = (cal.get("rule") or {}).get("description")
    if rule:
        achieved = cal.get("achieved") or {}
        return (f"It was chosen on the {cal.get('split')!r} split ({cal.get('n')} X-rays) with the rule: {rule}; "
                f"there it gave sensitivity {_fmt(achieved.get('sensitivity'))} and specificity "
                f"{_fmt(achieved.get('specificity'))}.")
    return "This is the bundle's default threshold; it has not been calibrated on validation data."


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def compute_metrics(scored: ScoredSplit, options: EvaluationOptions) -> dict[str, Any]:
    """Every figure of metrics.json for a scored split."""
    scores, meta, selection = scored.scores, scored.meta, scored.selection
    threshold = options.threshold if options.threshold is not None else float(meta.threshold)
    prob = scores.probabilities
    out: dict[str, Any] = {"split": selection.split, "model_version": meta.version, "bundle": str(scored.bundle_dir)}
    out.update(binary_metrics(scores.targets, prob, threshold, options.n_bins))
    out["ci95"] = bootstrap_ci(scores.targets, prob, threshold, scores.patient_ids, n_boot=options.n_boot,
                               seed=options.seed)
    out["backend"] = scored.backend
    out["tta"] = scored.tta
    out["n_unknown"] = int(scores.unknown.sum())
    # The figures above are the model's on every readable image; these are what a user of `pneumo predict`
    # gets, where an image the gate refuses (UNKNOWN) is neither a detected pneumonia nor a cleared normal.
    out["deployed"] = deployed_metrics(scores.targets, prob, threshold, scores.unknown)
    if scores.class_targets is not None:
        out.update(multiclass_metrics(scores.class_targets, scores.class_probabilities, threshold,
                                      [n.upper() for n in meta.class_names]))
    out["threshold_source"] = "command line" if options.threshold is not None else "bundle"
    out["threshold_origin"] = threshold_origin(meta, options.threshold)
    out["temperature"] = scores.temperature
    out["calibrated_on_this_split"] = calibrated_on(meta, selection)
    out["data_fingerprint"] = selection.fingerprint
    out["seen_by_model"] = selection.seen.to_dict() if selection.seen is not None else None
    out["skipped"] = [{"path": f.path, "reason": f.reason} for f in scores.skipped]
    out["warnings"] = _warnings(scored, out)
    out["pneumo_version"] = __version__
    return out


def _warnings(scored: ScoredSplit, metrics: dict[str, Any]) -> list[str]:
    meta, selection, split = scored.meta, scored.selection, scored.selection.split
    warnings = list(selection.warnings)
    if metrics["calibrated_on_this_split"]:
        warnings.append(f"the bundle's temperature and threshold were fitted on this very split "
                        f"({meta.calibration.get('split')!r}); these figures are optimistic and are not a "
                        "held-out result. Report figures on a split the model was neither trained, selected "
                        "nor calibrated on.")
    # Training and local images are recognised from what the bundle records (pneumo.evaluation.seen), in
    # selection.warnings above, whatever the split is called.
    if split in ("val", "shifted-val") and not metrics["calibrated_on_this_split"]:
        warnings.append("the model's checkpoint was chosen on this validation split, so these figures are "
                        "slightly optimistic; the held-out test split is the honest one.")
    if scored.scores.skipped:
        warnings.append(f"{len(scored.scores.skipped)} unreadable image(s) were skipped and are not counted.")
    if metrics["n_unknown"]:
        warnings.append(f"the gate answered UNKNOWN for {metrics['n_unknown']} X-ray(s); they count against "
                        "sensitivity and specificity in the 'deployed' figures.")
    if meta.classes == 3 and scored.scores.class_targets is None:
        warnings.append("3-class model, but the data set lacks bacterial/viral labels for some pneumonia "
                        "images: only the normal-vs-pneumonia figures are reported.")
    return warnings


def write_predictions(path: Path, scores: SplitScores, threshold: float, class_names: list[str]) -> Path:
    """One row per scored image: the model's own call (``predicted_label``, every readable image) and the answer
    `pneumo predict` gives with this threshold (``deployed_label``, UNKNOWN where the gate refuses, and
    ``out_of_distribution``); both come from the one decision rule."""
    rule = DecisionRule(threshold)
    prob, class_prob = scores.probabilities, scores.class_probabilities
    classes_pred = predicted_classes(class_prob, threshold) if class_prob is not None else None
    with Path(path).open("w", newline="") as handle:
        writer = csv.writer(handle)
        header = ["path", "patient_id", "true_label", "probability", "predicted_label", "deployed_label",
                  "out_of_distribution"]
        if class_prob is not None:
            header += ["true_class", "predicted_class"] + [f"p_{n.lower()}" for n in class_names]
        writer.writerow(header)
        for i, (record, decision) in enumerate(zip(scores.records, scores.decisions(threshold))):
            row = [record.path, record.patient_id, record.label, f"{prob[i]:.6f}", rule.label(prob[i]),
                   decision.label, csv_cell(decision.out_of_distribution)]
            if class_prob is not None:
                true_class = (class_names[scores.class_targets[i]] if scores.class_targets is not None
                              else record.label)
                row += [true_class, class_names[classes_pred[i]]] + [f"{p:.6f}" for p in class_prob[i]]
            writer.writerow(row)
    return Path(path)


def make_plots(out_dir: Path, scored: ScoredSplit, metrics: dict[str, Any], n_bins: int = 10) -> dict[str, Path]:
    scores, meta = scored.scores, scored.meta
    y, prob, threshold = scores.targets, scores.probabilities, metrics["threshold"]
    cm = metrics["confusion_matrix"]
    made = {
        "confusion_matrix": plots.confusion_matrix_plot([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]],
                                                        ["NORMAL", "PNEUMONIA"], out_dir / "confusion_matrix.png"),
        "roc": plots.roc_plot(y, prob, threshold, metrics["sensitivity"], metrics["specificity"], metrics["auc"],
                              out_dir / "roc.png"),
        "pr": plots.pr_plot(y, prob, metrics["sensitivity"], metrics["precision"], metrics["pr_auc"],
                            out_dir / "pr.png"),
        "reliability": plots.reliability_plot(
            y, prob, out_dir / "reliability.png",
            raw_prob=scores.with_temperature(1.0).probabilities if scores.temperature != 1.0 else None,
            n_bins=n_bins),
        "threshold": plots.threshold_plot(y, prob, threshold, out_dir / "threshold.png"),
    }
    if "confusion_matrix_3class" in metrics:
        made["confusion_matrix_3class"] = plots.confusion_matrix_plot(
            metrics["confusion_matrix_3class"], [n.upper() for n in meta.class_names],
            out_dir / "confusion_matrix_3class.png", title="Confusion matrix (3 classes)")
    history = scored.bundle_dir / "history.csv" if scored.bundle_dir is not None else None
    if history is not None and history.is_file():
        rows = plots.read_history(history)
        if rows:
            made["training_curves"] = plots.training_curves_plot(rows, out_dir / "training_curves.png")
    return made


def to_json(value: Any) -> Any:
    """Plain JSON types; NaN and infinities become null (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, document: dict[str, Any]) -> Path:
    Path(path).write_text(json.dumps(to_json(document), indent=2, allow_nan=False))
    return Path(path)


def evaluate_bundle(model_ref: str | Path, root: str, manifest: str, out_dir: str | Path,
                    options: EvaluationOptions) -> EvaluationResult:
    """Score ``options.split`` and write metrics.json, predictions.csv, the plots and report.html."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scored = score_split(model_ref, root, manifest, options)
    metrics = compute_metrics(scored, options)
    files = make_plots(out, scored, metrics, options.n_bins)
    metrics["dataset"] = dataset_description(scored.scores, scored.selection)
    files["metrics"] = write_json(out / "metrics.json", metrics)
    files["predictions"] = write_predictions(out / "predictions.csv", scored.scores, metrics["threshold"],
                                             list(scored.meta.class_names))
    plot_files = {k: v for k, v in files.items() if v.suffix == ".png"}
    files["report"] = write_report(out / "report.html", metrics,
                                   model_description(scored.meta, scored.bundle_dir, metrics["threshold"]),
                                   dataset_labels(metrics["dataset"]), plot_files, metrics["warnings"])
    return EvaluationResult(metrics, files)


def format_summary(metrics: dict[str, Any]) -> str:
    """A short table for the terminal."""
    ci = metrics.get("ci95") or {}
    lines = [f"{'metric':<13} {'value':>7}   95% CI", "-" * 38]
    for name in ("auc", "sensitivity", "specificity", "precision", "f1", "accuracy", "pr_auc", "ece", "brier"):
        interval = ci.get(name)
        shown = f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""
        lines.append(f"{name:<13} {_fmt(metrics.get(name)):>7}   {shown}")
    cm = metrics["confusion_matrix"]
    lines.append(f"threshold {metrics['threshold']:.4f} ({metrics['threshold_source']}), temperature "
                 f"{metrics['temperature']:.3f}")
    lines.append(f"confusion: TP {cm['tp']}  FN {cm['fn']}  FP {cm['fp']}  TN {cm['tn']}")
    deployed = metrics.get("deployed")
    if deployed:
        lines.append(f"deployed ({metrics.get('backend')} backend, TTA {'on' if metrics.get('tta') else 'off'}): "
                     f"{deployed['n_unknown']} UNKNOWN; sensitivity {_fmt(deployed['sensitivity'])}, specificity "
                     f"{_fmt(deployed['specificity'])} with UNKNOWN counted as wrong")
    if metrics.get("per_class_recall"):
        recall = ", ".join(f"{k} {_fmt(v)}" for k, v in metrics["per_class_recall"].items())
        lines.append(f"per-class recall: {recall}; "
                     f"bacterial-vs-viral AUC {_fmt(metrics.get('bacterial_vs_viral_auc'))}")
    return "\n".join(lines)
