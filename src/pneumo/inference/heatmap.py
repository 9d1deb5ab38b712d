"""Grad-CAM for the Predictor, where the prediction runs: the ONNX graph's own heatmap output when the export
holds one, else PyTorch (imported on first use only, so that the ONNX path never loads it)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from pneumo.bundle import BundleMeta
from pneumo.data.preprocess import normalize_uint8
from pneumo.inference.backend import Backend, OnnxBackend
from pneumo.optional import require


class Heatmaps:
    """``heatmaps(pixels)``: the float32 SxS Grad-CAM heatmap in [0, 1] of one preprocessed uint8 input.
    Thread-safe: the PyTorch explainer is built once, under a lock."""

    def __init__(self, backend: Backend, bundle_dir: Path | None, meta: BundleMeta) -> None:
        self.backend, self.bundle_dir, self.meta = backend, bundle_dir, meta
        self._explainer: Any = None
        self._lock = threading.Lock()

    @property
    def torch_explainer(self) -> Any:
        """The PyTorch explainer, None until a heatmap needed one (never on an export with the heatmap output)."""
        return self._explainer

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        normalised = normalize_uint8(pixels, self.meta.preprocess)
        if isinstance(self.backend, OnnxBackend) and self.backend.has_gradcam:
            return self.backend.gradcam(normalised[None, None])[0]  # the heatmap the exported graph computes
        with self._lock:
            if self._explainer is None:
                if isinstance(self.backend, OnnxBackend):
                    require("torch", extra="train", needed_for=f"Grad-CAM with {self.backend.path}, an export "
                            "without the heatmap output (re-export it with `pneumo export`)")
                from pneumo.inference.loading import build_explainer

                self._explainer = build_explainer(self.backend, self.bundle_dir, self.meta)
        return self._explainer(normalised)
