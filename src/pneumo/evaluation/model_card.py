"""A shipped bundle's own model card (``MODEL_CARD.md`` beside its weights, served by ``GET /api/v1/model``),
rendered from its ``bundle.json`` so that every figure in it is one that bundle records, and it cannot describe
another bundle. What the shipped models share (recipe, data, test-set results, robustness, limitations) is written
once, in docs/MODEL_CARD.md of the source tree, which this card points to.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pneumo import DISCLAIMER
from pneumo.atomic import write_text
from pneumo.bundle import META_FILE, read_document

CARD_FILE = "MODEL_CARD.md"
SHARED_CARD = "docs/MODEL_CARD.md"


def write_model_card(directory: str | os.PathLike[str], name: str) -> Path:
    """Render the card of the bundle in ``directory`` (shipped as ``name``) into its ``MODEL_CARD.md``."""
    directory = Path(directory)
    return write_text(directory / CARD_FILE, render_model_card(name, read_document(directory)))


def render_model_card(name: str, document: dict[str, Any]) -> str:
    """The Markdown card of a bundle named ``name`` from its ``bundle.json`` document."""
    meta = document.get("meta") or {}
    sections = [_header(name), _model(meta, document.get("files") or {}), _training(meta), _validation(meta),
                _operating_point(meta), _gate(meta.get("gate"))]
    return "\n\n".join(section for section in sections if section) + "\n"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _share(record: dict[str, Any], key: str) -> str:
    """A percentage the gate's fit recorded (already in percent)."""
    return "n/a" if record.get(key) is None else f"{record[key]:.2f}%"


def _header(name: str) -> str:
    return (f"# Model card: `{name}`\n\n> **Assistive tool, not a diagnosis.** {DISCLAIMER} A NORMAL answer never "
            f"rules pneumonia out.\n\nRendered from this bundle's `{META_FILE}` when it was shipped "
            "(`scripts/ship_models.sh`): every figure below is one the bundle records. How the shipped models are "
            f"trained, the data, their test-set results, robustness and limitations: `{SHARED_CARD}` in the pneumo "
            "source tree.")


def _model(meta: dict[str, Any], files: dict[str, str]) -> str:
    pre = meta.get("preprocess") or {}
    members = meta.get("members") or []
    rows = [("task", " / ".join(meta.get("class_names") or []) + f" ({meta.get('classes')} outputs)"),
            ("architecture", f"{meta.get('arch')}, dropout {meta.get('dropout')}"
             + (f", an ensemble of {len(members)}" if members else "")),
            ("input", f"{pre.get('image_size')} x {pre.get('image_size')} grayscale, resize {pre.get('resize_mode')}, "
                      f"intensity {pre.get('intensity')}, CLAHE {'on' if pre.get('clahe') else 'off'}"),
            ("description", meta.get("description") or ""),
            ("created", f"{meta.get('created')} by pneumo {meta.get('pneumo_version')}"),
            ("training data fingerprint", meta.get("data_fingerprint") or "")]
    rows += [(f"`{file}` SHA-256", f"`{digest}`") for file, digest in sorted(files.items())]
    if meta.get("gate"):
        rows.append((f"`{meta['gate'].get('file')}` SHA-256", f"`{meta['gate'].get('sha256')}`"))
    if meta.get("adaptation"):
        rows.append(("site adaptation", "made by `pneumo adapt` from a parent bundle (docs/site.md)"))
    return "## The model\n\n| | |\n| --- | --- |\n" + "\n".join(f"| {key} | {value} |" for key, value in rows)


def _training(meta: dict[str, Any]) -> str:
    training = meta.get("training") or {}
    if not training:
        return ""
    data = (training.get("config") or {}).get("data") or {}
    hours = (training.get("train_seconds") or 0) / 3600
    return (f"## Training\n\n{training.get('n_train')} training images, {training.get('n_val')} validation images "
            f"(split by {data.get('split_by', 'n/a')}); {training.get('epoch')} epochs, the weights of epoch "
            f"{training.get('best_epoch')} kept; {hours:.1f} h of training. The full run configuration is "
            f"`meta.training.config` in `{META_FILE}`.")


def _validation(meta: dict[str, Any]) -> str:
    metrics = meta.get("metrics") or {}
    if not metrics:
        return ""
    lines = [f"## Validation\n\nAUC {metrics.get('auc', float('nan')):.4f} on `{metrics.get('split')}` "
             f"({metrics.get('n')} images held out from training, epoch {metrics.get('epoch')})."]
    if metrics.get("auc_shifted") is not None:
        lines.append(f"AUC {metrics['auc_shifted']:.4f} on the same images as other sites acquire them (the "
                     f"acquisition-shifted block, {metrics.get('n_shifted')} images).")
    return " ".join(lines)


def _operating_point(meta: dict[str, Any]) -> str:
    calibration = meta.get("calibration") or {}
    text = f"## Operating point\n\nThreshold {meta.get('threshold'):.4f} on P(pneumonia), temperature " \
           f"{meta.get('temperature'):.4f}."
    if not calibration:
        return text + " Not calibrated on validation data (`pneumo calibrate`)."
    rule = (calibration.get("rule") or {}).get("description", "")
    achieved = calibration.get("achieved") or {}
    matrix = achieved.get("confusion_matrix") or {}
    text += (f" Chosen on `{calibration.get('split')}` ({calibration.get('n')} images, {calibration.get('backend')} "
             f"backend, TTA {'on' if calibration.get('tta') else 'off'}) as the {rule}; the temperature "
             f"{'fitted there' if calibration.get('temperature_fitted') else 'kept'}.")
    if achieved:
        text += (f"\n\nAt that threshold on those images: sensitivity {_pct(achieved.get('sensitivity'))}, "
                 f"specificity {_pct(achieved.get('specificity'))}, precision {_pct(achieved.get('precision'))} "
                 f"(TP {matrix.get('tp')}, FN {matrix.get('fn')}, TN {matrix.get('tn')}, FP {matrix.get('fp')}). "
                 "The threshold was chosen on these same images: figures on data it has not seen are in "
                 f"`{SHARED_CARD}`.")
    if calibration.get("ece_before") is not None:
        text += (f" Expected calibration error {calibration['ece_before']:.3f} before the temperature, "
                 f"{calibration['ece_after']:.3f} after.")
    return text


def _gate(gate: dict[str, Any] | None) -> str:
    if not gate:
        return "## UNKNOWN gate\n\nNone: every image is scored, in distribution or not."
    text = (f"## UNKNOWN gate\n\n{gate.get('method')} on the features of {', '.join(gate.get('feature_layers') or [])} "
            f"({gate.get('pooling')}, {gate.get('feature_dim')} dimensions), fitted on {gate.get('n_fit')} images. "
            f"It answers UNKNOWN on {_share(gate, 'xray_flagged_pct')} of {gate.get('xray_flagged_split')}, "
            f"{_share(gate, 'site_variant_flagged_pct')} of their site variants "
            f"({_share(gate, 'site_variant_ood_pct')} answered with the out-of-distribution warning), "
            f"{_share(gate, 'inverted_flagged_pct')} of inverted films and {_share(gate, 'nonxray_flagged_pct')} of "
            f"{gate.get('n_nonxray')} non-X-ray images held out from its non-X-ray score.")
    kinds = gate.get("nonxray_by_category") or {}
    if kinds:
        text += (f"\n\n| non-X-ray kind (all {gate.get('n_nonxray_all')}, those it was fitted on included) | images "
                 "| UNKNOWN |\n| --- | --- | --- |\n") + "\n".join(
            f"| {kind} | {row.get('n')} | {_share(row, 'flagged_pct')} |" for kind, row in sorted(kinds.items()))
    return text
