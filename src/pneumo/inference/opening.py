"""Opening a model for the Predictor: which backend runs (ONNX Runtime or PyTorch) and the gate it applies.

This module imports no torch: PyTorch is imported only when the torch backend is chosen, so that the ONNX
path never loads it (3 s on 2 cores).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pneumo.bundle import ONNX_FILE, WEIGHTS_FILE, BundleError, BundleMeta, file_sha256, read_document, read_meta
from pneumo.gate.verdict import GateRule
from pneumo.inference.backend import Backend, OnnxBackend
from pneumo.optional import require

# "auto": ONNX Runtime when the bundle holds a model.onnx matching its weights and gate, else PyTorch.
BACKENDS = ("auto", "torch", "onnx")


@dataclass
class OpenedModel:
    meta: BundleMeta
    backend: Backend
    bundle_dir: Path | None  # None for a bare .onnx file
    gate: GateRule | None  # None: no feature gate runs
    note: str = ""  # why this backend was chosen, for "auto"


def open_model(model: str | os.PathLike[str], backend: str = "auto", device: str = "cpu",
               threads: int = 0) -> OpenedModel:
    """The backend of ``model`` (see :meth:`pneumo.inference.predictor.Predictor.load` for what it may be)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    path = Path(str(model)).expanduser()
    if path.suffix.lower() == ".onnx" and path.is_file():
        if backend == "torch":
            raise ValueError(f"{path} is an ONNX model; load it with backend='onnx' (or give the bundle "
                             "directory for PyTorch)")
        runtime = OnnxBackend(path, threads=threads)
        meta = BundleMeta.from_dict(runtime.bundle_document()["meta"])
        return OpenedModel(meta, runtime, None, onnx_gate_rule(runtime, meta))
    directory, meta = read_meta(model)
    note = ""
    if backend in ("auto", "onnx"):
        runtime, note = bundled_onnx(directory, meta, threads)
        if runtime is not None:
            return OpenedModel(meta, runtime, directory, onnx_gate_rule(runtime, meta), note)
        if backend == "onnx":
            raise ValueError(f"{note}; add it with `pneumo export --model {directory} --into-bundle` (needs "
                             "PyTorch), or use --backend torch")
    require("torch", extra="train", needed_for=f"the torch backend ({note})" if note else "the torch backend")
    from pneumo.inference.loading import load_torch_backend

    torch_backend, meta, directory, gate = load_torch_backend(directory, device)
    rule = None if gate is None else GateRule(gate.threshold, gate.far_threshold, gate.warn_nonxray)
    return OpenedModel(meta, torch_backend, directory, rule, note)


def onnx_gate_rule(runtime: OnnxBackend, meta: BundleMeta) -> GateRule | None:
    """The gate's boundaries when the ONNX graph computes the distance (export after ``gate fit``); a far
    boundary needs the graph's ``gate_nonxray`` output too."""
    if not runtime.has_distance:
        return None
    gate = meta.gate or {}
    threshold, far = gate.get("threshold"), gate.get("far_threshold")
    if threshold is None:
        raise ValueError(f"{runtime.path}: the model outputs a gate distance but its metadata has no gate "
                         "threshold; re-export it with `pneumo export`")
    if (far is None) != (not runtime.has_nonxray):
        raise ValueError(f"{runtime.path}: the metadata's far_threshold ({far}) and the graph's gate_nonxray output "
                         f"({'present' if runtime.has_nonxray else 'absent'}) disagree; re-export it with "
                         "`pneumo export`")
    warn = gate.get("warn_nonxray")
    return GateRule(float(threshold), None if far is None else float(far), None if warn is None else float(warn))


def bundled_onnx(directory: Path, meta: BundleMeta, threads: int = 0) -> tuple[OnnxBackend | None, str]:
    """ONNX Runtime on the bundle's own ``model.onnx``, with a sentence saying which backend runs and why.

    ``(None, why)`` when the bundle has none, or one exported from other weights or another gate (refit
    since): the caller then uses PyTorch or refuses. A ``model.onnx`` whose checksum differs from the one in
    ``bundle.json``, or that is not recorded there, is a :class:`BundleError`: never run unverified."""
    path = directory / ONNX_FILE
    if not path.is_file():
        return None, f"{directory} has no {ONNX_FILE}"
    files = read_document(directory).get("files") or {}
    expected = files.get(ONNX_FILE)
    if not expected:
        raise BundleError(f"{path}: not recorded in {directory / 'bundle.json'}'s files, so it cannot be verified; "
                          f"add it with `pneumo export --model {directory} --into-bundle`")
    if file_sha256(path) != expected:
        raise BundleError(f"{path}: checksum mismatch; the ONNX model was modified or truncated")
    runtime = OnnxBackend(path, threads=threads)
    document = runtime.bundle_document()
    gate_sha = (meta.gate or {}).get("sha256", "")
    if (document.get("files") or {}).get(WEIGHTS_FILE) != files.get(WEIGHTS_FILE):
        return None, f"{path} was exported from other weights than the bundle's"
    if runtime.export_info().get("gate_sha256", "") != gate_sha:
        return None, f"{path} was exported before the gate was refitted"
    return runtime, f"ONNX Runtime on {path}"
