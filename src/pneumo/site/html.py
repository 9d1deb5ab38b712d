"""The site report as one self-contained HTML page (no script, no outside resource), for ``--format html``."""

from __future__ import annotations

from html import escape
from typing import Any

STYLE = ("body{font:14px system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:.5em 0}"
         "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}th{background:#f3f3f3}"
         ".alarm{background:#fdd}.watch{background:#ffd}")


def number(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def rate(entry: dict[str, Any] | None) -> str:
    """``0.912 [0.85, 0.95] (52/57)`` or a dash."""
    if not entry or entry.get("value") is None:
        return "–"
    ci = entry.get("ci95")
    interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    counts = f" ({entry['k']}/{entry['n']})" if "k" in entry else f" (n={entry['n']})"
    return f"{entry['value']:.3f}{interval}{counts}"


def _table(header: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(f"<tr class=\"{escape((classes or [''] * len(rows))[i])}\">"
                   + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for i, row in enumerate(rows))
    return f"<table><tr>{head}</tr>{body}</table>"


def _section(model: dict[str, Any]) -> str:
    title = model["model"] + (f", adapted from {model['model_parent']}" if model.get("model_parent") else "")
    agreement, accuracy = model["agreement"], model["accuracy"]
    parts = [f"<h2>{escape(title)}</h2>",
             f"<p>{model['n']} analyses from {escape(model['first'])} to {escape(model['last'])}; version "
             f"{escape(model.get('model_version') or '–')}; UNKNOWN {escape(rate(model['unknown']))}.</p>",
             "<h3>Agreement with the reviewers</h3>",
             _table(["pairs", "agree", "Cohen's kappa", "both pneumonia", "both normal", "pneumo only",
                     "reviewer only"],
                    [[str(agreement["n"]), number(agreement["agreement"]), number(agreement["kappa"]),
                      *(str(v) for v in agreement["counts"].values())]]),
             "<h3>Local accuracy</h3>"]
    if accuracy["enough"]:
        parts.append(_table(["sensitivity", "specificity", "AUC"],
                            [[rate(accuracy["sensitivity"]), rate(accuracy["specificity"]), rate(accuracy["auc"])]]))
    else:
        parts.append(f"<p>{escape(accuracy['message'])}</p>")
    parts.append(f"<h3>By week</h3><p>Drift reference: {escape(model['drift_reference']['rule'])}.</p>")
    weeks = model["weeks"]
    rows = [[w["week"], str(w["n"]), rate(w["unknown"]), rate(w["warning"]),
             number((w["probability"] or {}).get("median")), number((w["drift"] or {}).get("psi")),
             number((w["drift"] or {}).get("ks")), (w["drift"] or {}).get("status", "")] for w in weeks]
    parts.append(_table(["week", "n", "UNKNOWN", "OOD warning", "median P", "PSI", "KS", "drift"], rows,
                        [(w["drift"] or {}).get("status", "") for w in weeks]))
    return "".join(parts)


def render(report: dict[str, Any]) -> str:
    sections = "".join(_section(m) for m in report["models"]) or "<p>The history holds no analysis yet.</p>"
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>pneumo site report</title>"
            f"<style>{STYLE}</style></head><body><h1>pneumo site report</h1><p>Generated "
            f"{escape(report['generated'])}. {escape(report['note'])}</p>{sections}</body></html>\n")
