"""Evaluation figures as PNG files.

Figures are built with ``matplotlib.figure.Figure`` and its Agg canvas, not ``pyplot``: no global figure
state, no display needed, safe in a server or a test run.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import precision_recall_curve, roc_curve

from pneumo.evaluation.metrics import reliability_bins

DPI = 110
_OPERATING = dict(marker="o", markersize=9, color="#d62728", zorder=5)


def _figure(width: float = 5.2, height: float = 4.2) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def confusion_matrix_plot(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path,
                          title: str = "Confusion matrix") -> Path:
    """Counts with row percentages; rows are the truth, columns the model's call."""
    cm = np.asarray(matrix, dtype=int)
    fig = _figure(4.6 if len(labels) == 2 else 5.4, 4.0 if len(labels) == 2 else 4.6)
    ax = fig.add_subplot()
    rows = cm.sum(axis=1, keepdims=True).clip(min=1)
    ax.imshow(cm / rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            share = cm[i, j] / rows[i, 0]
            ax.text(j, i, f"{cm[i, j]}\n({share:.0%})", ha="center", va="center",
                    color="white" if share > 0.6 else "black", fontsize=11)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("model says")
    ax.set_ylabel("truth")
    ax.set_title(title)
    return _save(fig, path)


def _unit_square(ax, xlabel: str, ylabel: str, title: str) -> None:
    """Labels and [0, 1] limits (with a margin so points on the edge stay visible) for rate-vs-rate plots."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)


def roc_plot(y_true: np.ndarray, prob: np.ndarray, threshold: float, sensitivity: float | None,
             specificity: float | None, auc: float | None, path: Path) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    if auc is not None:
        fpr, tpr, _ = roc_curve(y_true, prob)
        ax.plot(fpr, tpr, color="#1f77b4", lw=2, label=f"ROC (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    if sensitivity is not None and specificity is not None:
        ax.plot(1 - specificity, sensitivity, **_OPERATING, ls="none",
                label=f"operating point (threshold {threshold:.3f})")
    _unit_square(ax, "1 - specificity (normal X-rays flagged)", "sensitivity (pneumonia found)", "ROC curve")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def pr_plot(y_true: np.ndarray, prob: np.ndarray, sensitivity: float | None, precision: float | None,
            pr_auc: float | None, path: Path) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    if pr_auc is not None:
        prec, rec, _ = precision_recall_curve(y_true, prob)
        ax.plot(rec, prec, color="#2ca02c", lw=2, label=f"precision-recall (AP {pr_auc:.3f})")
    prevalence = float(np.mean(y_true)) if len(y_true) else 0.0
    ax.axhline(prevalence, ls="--", color="grey", lw=1, label=f"prevalence {prevalence:.2f}")
    if sensitivity is not None and precision is not None:
        ax.plot(sensitivity, precision, **_OPERATING, ls="none", label="operating point")
    _unit_square(ax, "recall = sensitivity", "precision (flagged X-rays that have pneumonia)",
                 "Precision-recall curve")
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def reliability_plot(y_true: np.ndarray, prob: np.ndarray, path: Path, raw_prob: np.ndarray | None = None,
                     n_bins: int = 10) -> Path:
    """Observed pneumonia rate per probability bin; on the diagonal means the probabilities can be taken
    at face value. ``raw_prob`` (before temperature scaling) is drawn for comparison when given."""
    fig = _figure(5.2, 5.0)
    ax = fig.add_subplot(4, 1, (1, 3))
    hist = fig.add_subplot(4, 1, 4, sharex=ax)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    if raw_prob is not None:
        raw = reliability_bins(y_true, raw_prob, n_bins)
        ax.plot(raw["confidence"], raw["observed"], marker="s", color="#ff7f0e", alpha=0.7, label="before scaling")
    bins = reliability_bins(y_true, prob, n_bins)
    ax.plot(bins["confidence"], bins["observed"], marker="o", color="#1f77b4", lw=2, label="model")
    ax.set_ylabel("observed pneumonia rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Reliability diagram")
    ax.legend(loc="upper left", fontsize=8)
    hist.hist(prob, bins=np.linspace(0, 1, n_bins + 1), color="#1f77b4", alpha=0.7)
    hist.set_xlabel("predicted P(pneumonia)")
    hist.set_ylabel("images")
    hist.set_xlim(0, 1)
    return _save(fig, path)


def threshold_plot(y_true: np.ndarray, prob: np.ndarray, threshold: float, path: Path) -> Path:
    """Sensitivity and specificity as the threshold moves, with the one in use marked."""
    fig = _figure()
    ax = fig.add_subplot()
    if 0 < int(np.sum(y_true)) < len(y_true):
        fpr, tpr, cuts = roc_curve(y_true, prob, drop_intermediate=False)
        finite = np.isfinite(cuts)
        cuts, tpr, fpr = np.clip(cuts[finite], 0, 1), tpr[finite], fpr[finite]
        # Flagged means prob >= t, so each rate holds on (next lower cut, cut]: a "pre" step. Past the top
        # score nothing is flagged; at 0 everything is.
        xs = np.r_[0.0, cuts[::-1], 1.0]
        ax.step(xs, np.r_[1.0, tpr[::-1], 0.0], where="pre", color="#d62728", lw=2, label="sensitivity")
        ax.step(xs, np.r_[0.0, (1 - fpr)[::-1], 1.0], where="pre", color="#1f77b4", lw=2, label="specificity")
    ax.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold in use {threshold:.3f}")
    ax.set_xlabel("threshold on P(pneumonia)")
    ax.set_ylabel("rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Sensitivity and specificity against threshold")
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def read_history(path: Path) -> list[dict[str, float]]:
    """Rows of a training ``history.csv`` as floats (empty cells become NaN)."""
    rows: list[dict[str, float]] = []
    with Path(path).open(newline="") as handle:
        for row in csv.DictReader(handle):
            rows.append({k: _float(v) for k, v in row.items() if k})
    return rows


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else float("nan")
    except ValueError:
        return float("nan")


def training_curves_plot(history: list[dict[str, float]], path: Path) -> Path:
    """Training and validation loss, and validation AUC, per epoch."""
    fig = _figure(8.0, 3.6)
    loss_ax, auc_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    for key, color in (("train_loss", "#1f77b4"), ("val_loss", "#ff7f0e")):
        if any(key in row for row in history):
            loss_ax.plot(epochs, [row.get(key, np.nan) for row in history], marker="o", color=color,
                         label=key.replace("_", " "))
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.set_title("Loss")
    loss_ax.legend(fontsize=8)
    auc_ax.plot(epochs, [row.get("val_auc", np.nan) for row in history], marker="o", color="#2ca02c")
    auc_ax.set_xlabel("epoch")
    auc_ax.set_ylabel("validation AUC")
    auc_ax.set_title("Validation AUC")
    for ax in (loss_ax, auc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, path)


def compare_plot(names: Sequence[str], rows: Sequence[dict[str, Any]], path: Path,
                 metrics: Sequence[str] = ("auc", "sensitivity", "specificity")) -> Path:
    """One panel per metric: each run's point estimate with its 95% interval when known."""
    fig = _figure(3.2 * len(metrics), 0.9 + 0.45 * max(2, len(names)))
    positions = np.arange(len(names))
    for k, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), k + 1)
        for pos, row in zip(positions, rows):
            value = row.get(metric)
            if value is None:
                continue
            interval = (row.get("ci95") or {}).get(metric)
            if interval:
                ax.errorbar(value, pos, xerr=[[value - interval[0]], [interval[1] - value]], fmt="o",
                            color="#1f77b4", capsize=4)
            else:
                ax.plot(value, pos, "o", color="#1f77b4")
        ax.set_yticks(positions, names if k == 0 else [""] * len(names))
        ax.set_ylim(-0.6, len(names) - 0.4)
        ax.invert_yaxis()
        ax.set_title(metric)
        ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)
