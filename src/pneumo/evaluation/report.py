"""One self-contained HTML page per evaluation, written for the clinicians who will read it.

Figures are embedded as base64 PNGs and the style sheet is inline: the page opens offline, can be
mailed or archived as one file, and loads nothing from anywhere.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from pneumo import DISCLAIMER, __version__

# (file stem, title, how to read it); only the plots that exist are shown, in this order.
PLOT_CAPTIONS: tuple[tuple[str, str, str], ...] = (
    ("confusion_matrix", "Confusion matrix",
     "Rows are the truth, columns what the model said at the operating threshold. The bottom-left cell "
     "counts missed pneumonia (false negatives); the top-right cell counts normal X-rays flagged."),
    ("roc", "ROC curve",
     "Every possible threshold traced out: higher and further left is better. The red dot is the threshold "
     "in use."),
    ("threshold", "Sensitivity and specificity against threshold",
     "Lowering the threshold finds more pneumonia (sensitivity up) at the cost of more normal X-rays flagged "
     "(specificity down). The dashed line is the threshold in use."),
    ("pr", "Precision-recall curve",
     "Of the X-rays the model flags, the share that truly have pneumonia, for every level of sensitivity. "
     "Precision depends on how common pneumonia is in the data set."),
    ("reliability", "Reliability diagram",
     "Whether the probabilities can be read at face value: among X-rays given about 70%, about 70% should "
     "have pneumonia (points on the dashed diagonal). The bars show how many X-rays fall in each range."),
    ("confusion_matrix_3class", "Confusion matrix: normal, bacterial, viral",
     "The same table for the three-class model; bacterial and viral pneumonia are hard to tell apart on an "
     "X-ray, so confusion between them is expected."),
    ("training_curves", "Training curves",
     "Loss and validation AUC per training epoch. A validation loss that rises while the training loss keeps "
     "falling is a sign of over-fitting."),
)

_EXPLAIN = {
    "sensitivity": "share of pneumonia X-rays the model flags (recall)",
    "specificity": "share of normal X-rays the model leaves unflagged",
    "auc": "chance a pneumonia X-ray scores higher than a normal one (0.5 is chance, 1 perfect)",
    "pr_auc": "average precision over all thresholds",
    "precision": "share of flagged X-rays that have pneumonia (positive predictive value here)",
    "accuracy": "share of all X-rays called correctly",
    "f1": "balance of precision and sensitivity",
    "ece": "average gap between stated probability and observed rate (lower is better)",
    "brier": "mean squared error of the probabilities (lower is better)",
}

_NAMES = {"sensitivity": "Sensitivity", "specificity": "Specificity", "auc": "AUC (ROC)", "pr_auc": "Average precision",
          "precision": "Precision (PPV)", "accuracy": "Accuracy", "f1": "F1 score", "ece": "Calibration error (ECE)",
          "brier": "Brier score"}

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:980px;margin:24px auto;padding:0 16px;
color:#1d2329;line-height:1.5}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:2px solid #e3e7eb;padding-bottom:4px;margin-top:32px}
.sub{color:#5b6670}.box{border-radius:6px;padding:10px 14px;margin:12px 0}
.disclaimer{background:#eef4fb;border-left:5px solid #1f77b4}.warn{background:#fdecea;border-left:5px solid #c62828}
.note{background:#fff8e1;border-left:5px solid #f9a825}
table{border-collapse:collapse;margin:8px 0}td,th{border-bottom:1px solid #e3e7eb;padding:5px 10px;text-align:left;
vertical-align:top}th{background:#f5f7f9}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.figs{display:flex;flex-wrap:wrap;gap:18px}figure{margin:0;flex:1 1 420px;max-width:100%}
figure img{max-width:100%;border:1px solid #e3e7eb}figcaption{font-size:.9em;color:#414b55}
.big{font-size:1.1em}ul.plain{padding-left:20px}
"""


def embed_png(path: Path) -> str:
    """A ``data:`` URI holding the PNG itself."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _e(value: Any) -> str:
    return html.escape(str(value))


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(metrics: dict[str, Any], name: str, as_pct: bool) -> str:
    interval = (metrics.get("ci95") or {}).get(name)
    if not interval:
        return ""
    lo, hi = interval
    return f"{_pct(lo)} to {_pct(hi)}" if as_pct else f"{lo:.3f} to {hi:.3f}"


def operating_point_words(metrics: dict[str, Any]) -> list[str]:
    """The operating point and what it means, in sentences a clinician can check against the figures."""
    cm = metrics["confusion_matrix"]
    n_pos, n_neg = cm["tp"] + cm["fn"], cm["tn"] + cm["fp"]
    threshold = metrics["threshold"]
    lines = [f"An X-ray is flagged as <b>pneumonia</b> when the model's probability is at least "
             f"<b>{threshold:.3f}</b>. {_e(metrics.get('threshold_origin', ''))}"]
    if n_pos:
        ci = _ci(metrics, "sensitivity", True)
        lines.append(f"Of the <b>{n_pos}</b> X-rays with pneumonia it flagged <b>{cm['tp']}</b> and missed "
                     f"<b>{cm['fn']}</b>: sensitivity {_pct(metrics['sensitivity'])}"
                     + (f" (95% interval {ci})" if ci else "") + ".")
    if n_neg:
        ci = _ci(metrics, "specificity", True)
        lines.append(f"Of the <b>{n_neg}</b> normal X-rays it cleared <b>{cm['tn']}</b> and flagged "
                     f"<b>{cm['fp']}</b> for a second look: specificity {_pct(metrics['specificity'])}"
                     + (f" (95% interval {ci})" if ci else "") + ".")
    flagged = cm["tp"] + cm["fp"]
    if flagged:
        lines.append(f"Of the {flagged} X-rays it flagged, {_pct(metrics['precision'])} had pneumonia; this "
                     "share depends on how common pneumonia is in this data set and will differ elsewhere.")
    if metrics.get("auc") is not None:
        ci = _ci(metrics, "auc", False)
        lines.append(f"Over all thresholds the AUC is {metrics['auc']:.3f}" + (f" (95% interval {ci})" if ci else "")
                     + ": the chance that a random pneumonia X-ray scores higher than a random normal one.")
    for name, count, what in (("sensitivity", n_pos, "pneumonia X-rays were all found"),
                              ("specificity", n_neg, "normal X-rays were all cleared")):
        if metrics.get(name) == 1.0 and count:
            # A bootstrap interval cannot reach below a perfect observed rate; the rule of three can.
            lines.append(f"The {count} {what}, so the bootstrap interval collapses to 100%; the true {name} "
                         f"could still be as low as {_pct(max(0.0, 1 - 3 / count), 0)} (rule of three, 95%).")
    if metrics.get("ece") is not None:
        lines.append(f"Calibration: the stated probabilities differ from the observed rates by "
                     f"{100 * metrics['ece']:.1f} percentage points on average (ECE).")
    return lines


def _metrics_table(metrics: dict[str, Any]) -> str:
    rows = []
    for name in ("sensitivity", "specificity", "auc", "precision", "accuracy", "f1", "pr_auc", "ece", "brier"):
        value = metrics.get(name)
        as_pct = name in ("sensitivity", "specificity", "precision", "accuracy")
        shown = _pct(value) if as_pct else _num(value)
        rows.append(f"<tr><td>{_e(_NAMES[name])}</td><td class=num>{shown}</td>"
                    f"<td class=num>{_ci(metrics, name, as_pct)}</td><td>{_e(_EXPLAIN[name])}</td></tr>")
    ci = metrics.get("ci95") or {}
    note = (f"95% intervals: bootstrap over {ci.get('n_groups', '?')} {ci.get('resampled', 'patients')}, "
            f"{ci.get('n_boot', '?')} resamples.") if ci else ""
    return ("<table><tr><th>figure</th><th>value</th><th>95% interval</th><th>meaning</th></tr>"
            + "".join(rows) + f"</table><p class=sub>{_e(note)}</p>")


def _kv_table(pairs: Sequence[tuple[str, Any]]) -> str:
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in pairs
                               if v not in (None, "")) + "</table>"


def _three_class(metrics: dict[str, Any]) -> str:
    recall = metrics.get("per_class_recall")
    if not recall:
        return ""
    rows = "".join(f"<tr><td>{_e(k)}</td><td class=num>{_pct(v)}</td><td class=num>"
                   f"{(metrics.get('class_counts') or {}).get(k, '')}</td></tr>" for k, v in recall.items())
    return ("<h2>Normal, bacterial and viral</h2><table><tr><th>class</th><th>recall</th><th>images</th></tr>"
            f"{rows}</table><p>Telling bacterial from viral pneumonia (pneumonia X-rays only): AUC "
            f"{_num(metrics.get('bacterial_vs_viral_auc'))}.</p>")


def _figures(plots: dict[str, Path]) -> str:
    parts = []
    for stem, title, caption in PLOT_CAPTIONS:
        if stem in plots:
            parts.append(f"<figure><img alt='{_e(title)}' src='{embed_png(plots[stem])}'>"
                         f"<figcaption><b>{_e(title)}.</b> {_e(caption)}</figcaption></figure>")
    return "<div class=figs>" + "".join(parts) + "</div>"


def render_report(metrics: dict[str, Any], model: dict[str, Any], dataset: dict[str, Any],
                  plots: dict[str, Path], warnings: Sequence[str] = ()) -> str:
    """The report page as a string. ``model`` and ``dataset`` are label -> value descriptions."""
    split = metrics.get("split", "?")
    version = metrics.get("model_version", "")
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    warn_html = "".join(f"<div class='box warn'><b>Warning.</b> {_e(w)}</div>" for w in warnings)
    words = "".join(f"<li>{line}</li>" for line in operating_point_words(metrics))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>pneumo evaluation: {_e(version)} on {_e(split)}</title><style>{_CSS}</style></head>
<body>
<h1>Pneumonia detection: evaluation report</h1>
<div class=sub>Model {_e(version)} &middot; split <b>{_e(split)}</b> &middot; {metrics['n']} X-rays
&middot; generated {_e(created)} by pneumo {_e(__version__)}</div>
<div class='box disclaimer'><b>Not a diagnosis.</b> {_e(DISCLAIMER)}</div>
{warn_html}
<h2>What the model does at its operating point</h2>
<ul class='plain big'>{words}</ul>
<h2>Figures</h2>
{_metrics_table(metrics)}
{_three_class(metrics)}
<h2>Plots</h2>
{_figures(plots)}
<h2>Model</h2>
{_kv_table(list(model.items()))}
<h2>Data</h2>
{_kv_table(list(dataset.items()))}
<p class=sub>{_e(DISCLAIMER)}</p>
</body></html>
"""


def write_report(path: Path, metrics: dict[str, Any], model: dict[str, Any], dataset: dict[str, Any],
                 plots: dict[str, Path], warnings: Sequence[str] = ()) -> Path:
    path = Path(path)
    path.write_text(render_report(metrics, model, dataset, plots, warnings), encoding="utf-8")
    return path
