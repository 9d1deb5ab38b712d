"""The PyTorch side of inference: build a network from a bundle (weights, gate) and the Grad-CAM explainer.

Building a network from a bundle sits here, above :mod:`pneumo.models` and :mod:`pneumo.bundle` (the file
format alone). The Predictor imports this module only for the torch backend or Grad-CAM, so the ONNX path
never loads torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from pneumo.bundle import META_FILE, BundleError, BundleMeta, load_state, read_meta
from pneumo.explain.gradcam import GradCAM, pneumonia_log_odds
from pneumo.gate.layers import default_gate_layers
from pneumo.gate.mahalanobis import GateError, GateParams, load_gate
from pneumo.inference.network import InferenceNetwork, TorchBackend
from pneumo.inference.probability import OutputHead
from pneumo.models import ENSEMBLE, MemberSpec, create_ensemble, create_model, gradcam_layers


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto``: the first CUDA device, else Apple's MPS, else the CPU; anything else as torch names it."""
    if requested == "cuda":  # under torchrun each process takes its own GPU
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def load_bundle(ref: str | os.PathLike[str], device: str = "cpu") -> tuple[nn.Module, BundleMeta, Path]:
    """Return ``(model in eval mode, BundleMeta, bundle directory)``."""
    directory, meta = read_meta(ref)
    try:
        model = _network_of(meta)
    except ValueError as exc:
        raise BundleError(f"{directory / META_FILE}: {exc}") from exc
    state = load_state(directory)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BundleError(f"{directory}: weights do not fit architecture {meta.arch!r} ({exc})") from exc
    return model.to(device).eval(), meta, directory


def _network_of(meta: BundleMeta) -> nn.Module:
    """The untrained network a bundle's metadata describes: one architecture, or an ensemble of members."""
    if meta.arch != ENSEMBLE:
        return create_model(meta.arch, classes=meta.classes, dropout=meta.dropout)
    if not meta.members:
        raise ValueError(f"arch {ENSEMBLE!r} but no members are listed")
    try:
        specs = [MemberSpec(str(m["arch"]), float(m.get("dropout", 0.3))) for m in meta.members]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"ensemble members {meta.members!r} are not {{arch, dropout}} entries ({exc})") from exc
    return create_ensemble(specs, classes=meta.classes)


def load_network(ref: str | os.PathLike[str], device: str = "cpu"
                 ) -> tuple[InferenceNetwork, BundleMeta, Path, GateParams | None]:
    """``(InferenceNetwork, meta, bundle directory, gate or None)`` for a bundle reference."""
    model, meta, directory = load_bundle(ref, device=device)
    try:
        gate = load_gate(directory, meta.gate)
    except GateError as exc:
        raise BundleError(str(exc)) from exc
    if gate is not None:
        layers, pooling = gate.feature_layers, gate.pooling
    else:
        layers, pooling = default_gate_layers(model, meta.arch)
    return InferenceNetwork(model, layers, pooling, gate), meta, directory, gate


def load_torch_backend(ref: str | os.PathLike[str], device: str = "cpu"
                       ) -> tuple[TorchBackend, BundleMeta, Path, GateParams | None]:
    network, meta, directory, gate = load_network(ref, str(resolve_device(device)))
    return TorchBackend(network, str(resolve_device(device))), meta, directory, gate


def build_explainer(backend: Any, bundle_dir: Path | None, meta: BundleMeta) -> Callable[[np.ndarray], np.ndarray]:
    """A function normalised SxS float32 -> Grad-CAM heatmap SxS, on the backend's PyTorch network (loaded
    from the bundle when the backend is ONNX Runtime)."""
    if isinstance(backend, TorchBackend):
        network, device = backend.network, backend.device
    else:
        if bundle_dir is None:
            raise ValueError("Grad-CAM needs the PyTorch model; load the bundle directory rather than a bare "
                             ".onnx file to explain predictions")
        network, _, _, _ = load_network(bundle_dir, "cpu")
        network.eval()
        device = torch.device("cpu")
    cam = GradCAM(network, gradcam_layers(network.model, meta.arch))
    score = pneumonia_log_odds(OutputHead.of(meta.class_names).normal_index)

    def explain(normalised: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(normalised, dtype=np.float32))[None, None].to(device)
        heatmaps, _ = cam(x, score)
        return heatmaps[0]

    return explain
