"""Writing the site bundle: the parent's format, preprocessing and gate, the site's weights and operating
point, and the record of how they were obtained (``meta.adaptation``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from torch import nn

from pneumo.bundle import META_FILE, WEIGHTS_FILE, BundleError, BundleMeta, file_sha256, read_document, save_bundle
from pneumo.export.onnx import add_onnx_to_bundle


def parent_provenance(directory: Path, meta: BundleMeta) -> dict[str, Any]:
    """What identifies the parent: its checksums (weights as recorded, and bundle.json itself), version and
    operating point."""
    files = read_document(directory).get("files") or {}
    return {"bundle": str(directory), "version": meta.version, "weights_sha256": files.get(WEIGHTS_FILE, ""),
            "bundle_json_sha256": file_sha256(directory / META_FILE), "threshold": meta.threshold,
            "temperature": meta.temperature, "rule": (meta.calibration or {}).get("rule"),
            "data_fingerprint": meta.data_fingerprint}


def _gate_file(parent_dir: Path, meta: BundleMeta) -> dict[str, Path]:
    name = (meta.gate or {}).get("file")
    if not name:
        return {}
    path = parent_dir / str(name)
    if not path.is_file():
        raise BundleError(f"{path}: the parent's gate file named in its bundle.json is missing")
    return {str(name): path}


def write_site_bundle(out: Path, model: nn.Module, parent_dir: Path, parent: BundleMeta, *, temperature: float,
                      threshold: float, description: str, metrics: dict[str, Any], calibration: dict[str, Any],
                      adaptation: dict[str, Any], export_onnx: bool,
                      gate: tuple[dict[str, Any], Path] | None = None) -> Path:
    """Save the site bundle atomically with the parent's gate copied (checksum unchanged), or ``gate`` (its
    ``meta.gate`` and file: the gate widened to the site), then add ``model.onnx`` exported from the site's own
    weights and checked against PyTorch."""
    meta = dataclasses.replace(parent, threshold=float(threshold), temperature=float(temperature),
                               description=description, created="", metrics=metrics, calibration=calibration,
                               adaptation=adaptation, pneumo_version=adaptation["pneumo_version"])
    files = _gate_file(parent_dir, parent)
    if gate is not None:
        meta.gate, files = gate[0], {str(gate[0]["file"]): gate[1]}
    save_bundle(out, model, meta, files)
    if export_onnx:
        add_onnx_to_bundle(out)
    return out
