"""The PyTorch side of the Predictor: build the inference network from a bundle (weights, gate) and the
Grad-CAM explainer. Imported lazily, so the ONNX path never loads torch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pneumo.bundle import BundleError, BundleMeta, load_bundle
from pneumo.gate.mahalanobis import GateError, GateParams, load_gate


def load_network(ref: str | os.PathLike[str], device: str = "cpu"):
    """``(InferenceNetwork, meta, bundle directory, gate or None)`` for a bundle reference."""
    from pneumo.inference.network import InferenceNetwork, default_gate_layers

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
                       ) -> tuple[Any, BundleMeta, Path, GateParams | None]:
    from pneumo.inference.network import TorchBackend

    network, meta, directory, gate = load_network(ref, device)
    return TorchBackend(network, device), meta, directory, gate


def build_explainer(predictor: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A function normalised SxS float32 -> Grad-CAM heatmap SxS, on the predictor's PyTorch network (loaded
    from the bundle when the predictor itself runs on ONNX Runtime)."""
    import torch

    from pneumo.explain.gradcam import GradCAM
    from pneumo.models import gradcam_layer

    network = getattr(predictor.backend, "network", None)
    device = getattr(predictor.backend, "device", torch.device("cpu"))
    if network is None:
        if predictor.bundle_dir is None:
            raise ValueError("Grad-CAM needs the PyTorch model; load the bundle directory rather than a bare "
                             ".onnx file to explain predictions")
        network, _, _, _ = load_network(predictor.bundle_dir, "cpu")
        network.eval()
    cam = GradCAM(network, gradcam_layer(network.model, predictor.meta.arch))

    def explain(normalised: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(normalised, dtype=np.float32))[None, None].to(device)
        heatmaps, _ = cam(x)
        return heatmaps[0]

    return explain
