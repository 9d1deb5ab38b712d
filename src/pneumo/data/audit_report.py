"""``audit.json`` and a readable ``report.md`` from a shortcut audit."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from pneumo.data.audit import ATTRIBUTES, AttributeScore, AttributeTable
from pneumo.data.audit_probe import ProbeResult


def _no_nan(value):
    """NaN (an attribute never measured) as JSON null: NaN is not JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def audit_dict(table: AttributeTable, scores: list[AttributeScore], probe: ProbeResult | None) -> dict:
    return _no_nan({
        "images": len(table.records), "skipped": [{"path": p, "reason": r} for p, r in table.skipped],
        "attributes": [dict(asdict(s), strength=s.strength, meaning=ATTRIBUTES[s.name]) for s in scores],
        "lungs_hidden_probe": asdict(probe) if probe is not None else None,
    })


def _cell(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def report_markdown(audit: dict) -> str:
    attributes = audit["attributes"]
    sequences = sorted(attributes[0]["by_sequence"]) if attributes else []
    lines = ["# Shortcut audit", "",
             f"{audit['images']} images measured, {len(audit['skipped'])} unreadable (skipped).", "",
             "AUC of each attribute alone for PNEUMONIA: 0.5 carries no information; the further from 0.5 "
             "(either way), the better the attribute alone predicts the label, and the more a network can "
             "learn it instead of the lungs. Per sequence: that sequence's normal films against all pneumonia "
             "films.", "",
             "| attribute | AUC | " + " | ".join(f"vs {s}" for s in sequences) + " | what it measures |",
             "| --- | --- | " + " | ".join("---" for _ in sequences) + " | --- |"]
    for a in attributes:
        cells = " | ".join(_cell(a["by_sequence"][s]) for s in sequences)
        lines.append(f"| {a['name']} | {_cell(a['auc'])} | {cells} | {a['meaning']} |")
    probe = audit["lungs_hidden_probe"]
    if probe:
        lines += ["", "## Lungs-hidden probe", "",
                  f"A logistic regression on {probe['images']} films"
                  f"{' cropped to their thorax and' if probe.get('source') == 'thorax crop' else ''} stretched to "
                  f"32 x 32 with the central box "
                  f"hidden ({probe['visible_share']:.0%} of the square visible: borders, neck, abdomen, "
                  f"corners), {probe['folds']} folds grouped by patient: out-of-fold AUC **{probe['auc']:.3f}**."]
        lines += [f"- normal {s} against all pneumonia: {_cell(v)}" for s, v in probe["by_sequence"].items()]
    return "\n".join(lines) + "\n"


def write_audit(out: Path, audit: dict) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "audit.json", out / "report.md"
    json_path.write_text(json.dumps(audit, indent=2, allow_nan=False) + "\n")
    md_path.write_text(report_markdown(audit))
    return json_path, md_path
