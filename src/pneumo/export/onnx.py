"""Export a bundle to ONNX: one file the light deployment (onnxruntime + NumPy + Pillow) runs alone.

The graph takes ``image`` (N, 1, S, S), already normalised with the bundle's preprocessing, with a dynamic
batch axis, and returns ``logits``, ``features`` (the pooled features the gate uses), when the bundle has a
gate, ``gate_distance`` (and ``gate_nonxray`` for a gate with a far boundary): the gate's mean, whitening matrix
and non-X-ray weights are constants inside the graph, so the gate needs no side file; and, for architectures
that pool globally into their head, ``gradcam`` (N, S, S): the Grad-CAM heatmap of the pneumonia score, the
same map :class:`pneumo.explain.gradcam.GradCAM` computes with autograd (:mod:`pneumo.export.graph`). ``metadata_props``
carries the bundle's ``bundle.json`` document (architecture, preprocessing, class names, threshold,
temperature, gate summary with its boundaries, weights checksum) under ``pneumo.bundle`` and the export
details under ``pneumo.export``; ``Predictor.load(file, backend="onnx")`` reads both.

The TorchScript-tracing exporter (``dynamo=False``) is used first: it handles every registry architecture at
its usual input sizes, quickly. Where it cannot (vgg16's adaptive pooling at sizes whose feature map does not
divide 7, say) the dynamo exporter (``torch.export``, opset >= 18) takes over. Opset 17 is the default.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from PIL import Image, ImageFilter

from pneumo import __version__
from pneumo.atomic import replacing
from pneumo.bundle import META_FILE, ONNX_FILE, BundleMeta, add_checked_files
from pneumo.data.preprocess import normalize_uint8, preprocess_array
from pneumo.inference.backend import EXPORT_KEY, INPUT_NAME, METADATA_KEY, ONNX_FORMAT, OnnxBackend
from pneumo.export.graph import GRADCAM_OUTPUT, ExportedNetwork
from pneumo.inference.loading import build_explainer, load_network, load_torch_backend

log = logging.getLogger("pneumo.export")

DEFAULT_OPSET = 17
# ONNX Runtime and PyTorch agree to float32 rounding; a larger gap means a broken export.
TOLERANCE = 1e-4
# The Grad-CAM heatmap is min-max scaled per image, which divides the feature maps' float32 differences by the
# map's own range; the overlay quantises the heat to 8 bits, so a gap below 1/255 cannot change a shown colour
# by more than one step. Measured on the shipped bundles: 8e-7 at most on tests/assets.
GRADCAM_TOLERANCE = 1.0 / 255.0


def export_onnx(ref: str | os.PathLike[str], out: str | os.PathLike[str], *, opset: int = DEFAULT_OPSET) -> Path:
    """Write the bundle ``ref`` as ONNX to ``out`` (atomically) and return the path."""
    if opset < 17:
        raise ValueError(f"opset must be at least 17, got {opset}")
    network, meta, directory, gate = load_network(ref, "cpu")
    exported = ExportedNetwork(network, meta).eval()
    size = meta.preprocess.image_size
    example = torch.randn(2, 1, size, size, generator=torch.Generator().manual_seed(0))
    outputs = ["logits", "features"] + (["gate_distance"] if gate is not None else []) + (
        ["gate_nonxray"] if network.has_nonxray else []) + ([GRADCAM_OUTPUT] if exported.has_gradcam else [])
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    with replacing(target) as tmp:
        exporter, opset = _trace_export(exported, example, str(tmp), opset, outputs)
        model = onnx.load(str(tmp))
        document = json.loads((directory / META_FILE).read_text())
        details = {"format": ONNX_FORMAT, "format_version": 1, "opset": opset, "exporter": exporter,
                   "outputs": outputs, "feature_layers": network.feature_layers, "pooling": network.pooling,
                   "gate_sha256": (meta.gate or {}).get("sha256", ""), "pneumo_version": __version__,
                   "input": {"name": INPUT_NAME, "shape": ["batch", 1, size, size], "normalised": True}}
        for key, value in ((METADATA_KEY, json.dumps(document)), (EXPORT_KEY, json.dumps(details))):
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        model.producer_name, model.producer_version = "pneumo", __version__
        model.doc_string = meta.description or f"pneumo {meta.arch}"
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
    return target


def _trace_export(network, example, path: str, opset: int, outputs: list[str]) -> tuple[str, int]:
    """Export with the tracing exporter, or the dynamo exporter where tracing cannot; returns which exporter
    and opset were used."""
    with warnings.catch_warnings():
        # The tracing exporter announces its deprecation on every call; it is chosen on purpose (see above).
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        # Shapes read while tracing (class count, feature-map size) are constants of the bundle: the image size is
        # fixed and only the batch axis is dynamic, so the warnings about them do not apply.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        try:
            torch.onnx.export(network, (example,), path, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=outputs,
                              dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME, *outputs]},
                              do_constant_folding=True)
            return "torchscript", opset
        except RuntimeError as exc:  # OnnxExporterError and SymbolicValueError derive from it
            log.warning("tracing exporter failed (%s); using the dynamo exporter", str(exc).splitlines()[0])
        batch = torch.export.Dim("batch", min=1, max=4096)
        torch.onnx.export(network, (example,), path, dynamo=True, opset_version=max(opset, 18),
                          input_names=[INPUT_NAME], output_names=outputs, dynamic_shapes=({0: batch},),
                          external_data=False, verbose=False)
        return "dynamo", max(opset, 18)


def probe_batch(meta: BundleMeta, batch: int = 3, seed: int = 0) -> np.ndarray:
    """Image-like inputs through the bundle's own preprocessing (smooth random fields, not white noise:
    an untrained network amplifies noise into logits in the tens, where float32 rounding alone exceeds 1e-4)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(batch):
        field = Image.fromarray(rng.integers(0, 256, size=(96, 80), dtype=np.uint8))
        smooth = np.asarray(field.filter(ImageFilter.GaussianBlur(4)), dtype=np.float32) / 255.0
        images.append(preprocess_array(smooth, meta.preprocess))
    return normalize_uint8(np.stack(images), meta.preprocess)[:, None]


def verify_export(ref: str | os.PathLike[str], path: str | os.PathLike[str], batch: int = 3) -> dict[str, float]:
    """Max difference between PyTorch and ONNX Runtime on image-like inputs: absolute for logits and features,
    relative for the gate distance (it is tens to thousands, so float32 rounding is relative)."""
    torch_backend, meta, _, _ = load_torch_backend(ref)
    x = probe_batch(meta, batch)
    expected, actual = torch_backend.run(x), OnnxBackend(path).run(x)
    diffs = {"logits": float(np.abs(expected.logits - actual.logits).max()),
             "features": float(np.abs(expected.features - actual.features).max())}
    if expected.distance is not None and actual.distance is not None:
        diffs["gate_distance (relative)"] = float(
            (np.abs(expected.distance - actual.distance) / np.maximum(np.abs(expected.distance), 1.0)).max())
    if expected.nonxray is not None and actual.nonxray is not None:
        diffs["gate_nonxray (relative)"] = float(
            (np.abs(expected.nonxray - actual.nonxray) / np.maximum(np.abs(expected.nonxray), 1.0)).max())
    return diffs


def verify_gradcam(ref: str | os.PathLike[str], path: str | os.PathLike[str], batch: int = 3) -> float | None:
    """Max difference between the export's ``gradcam`` heatmaps and PyTorch's autograd Grad-CAM on image-like
    inputs; None when the export has no ``gradcam`` output."""
    runtime = OnnxBackend(path)
    if not runtime.has_gradcam:
        return None
    torch_backend, meta, _, _ = load_torch_backend(ref)
    x = probe_batch(meta, batch)
    explain = build_explainer(torch_backend, None, meta)
    expected = np.stack([explain(image[0]) for image in x])
    return float(np.abs(runtime.gradcam(x) - expected).max())


def check_export(ref: str | os.PathLike[str], path: str | os.PathLike[str]) -> tuple[dict[str, float], list[str]]:
    """Every difference :func:`verify_export` and :func:`verify_gradcam` measure, and the ones over tolerance."""
    diffs = verify_export(ref, path)
    failures = [name for name, value in diffs.items() if value > TOLERANCE]
    cam = verify_gradcam(ref, path)
    if cam is not None:
        diffs["gradcam"] = cam
        if cam > GRADCAM_TOLERANCE:
            failures.append("gradcam")
    return diffs, failures


def add_onnx_to_bundle(ref: str | os.PathLike[str], *, opset: int = DEFAULT_OPSET) -> tuple[Path, dict[str, float]]:
    """Export the bundle ``ref`` to ``model.onnx`` inside it, checked against PyTorch, with its SHA-256 in
    ``bundle.json``; the bundle is swapped atomically (:func:`pneumo.bundle.add_checked_files`). Run it
    whenever a bundle is shipped or its gate refitted: the Predictor then defaults to ONNX Runtime, and never
    exports on its own. Returns the bundle directory and the differences measured; ValueError (nothing
    written) when ONNX Runtime and PyTorch differ by more than :data:`TOLERANCE` (the Grad-CAM heatmap by more
    than :data:`GRADCAM_TOLERANCE`)."""
    _, meta, directory, _ = load_network(ref, "cpu")
    with tempfile.TemporaryDirectory(prefix="pneumo-onnx-") as tmp:
        path = export_onnx(directory, Path(tmp) / ONNX_FILE, opset=opset)
        diffs, failures = check_export(directory, path)
        if failures:
            raise ValueError(f"{directory}: ONNX Runtime and PyTorch differ beyond tolerance in {failures} ({diffs}); "
                             f"{ONNX_FILE} not added")
        add_checked_files(directory, {ONNX_FILE: path})
    return directory, diffs
