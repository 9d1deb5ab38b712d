"""What a backend returns, and the ONNX Runtime backend (NumPy + onnxruntime only: no torch import here).

An exported pneumo ONNX model has one input ``image`` (N, 1, S, S) float32, already normalised, and outputs
``logits`` (N, K), ``features`` (N, D) (the pooled features the gate uses) and, when the bundle has a gate,
``gate_distance`` (N,) (the Mahalanobis distance computed inside the graph from the gate's parameters) and,
when the gate has a far boundary, ``gate_nonxray`` (N,) (the gate's linear non-X-ray score), and for
architectures that pool globally into their head ``gradcam`` (N, S, S) (the Grad-CAM heatmap, computed in the
graph; see :mod:`pneumo.explain.cam_graph`). The bundle's metadata is embedded as JSON in the model's
``metadata_props`` (see :mod:`pneumo.export.onnx`).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "features", "gate_distance", "gate_nonxray", "gradcam")
GRADCAM_OUTPUT = "gradcam"
METADATA_KEY = "pneumo.bundle"  # the bundle.json document (format, weights checksum, meta)
EXPORT_KEY = "pneumo.export"  # how it was exported: feature layer, gate checksum, opset, outputs
ONNX_FORMAT = "pneumo-onnx"


@dataclass
class ModelOutputs:
    logits: np.ndarray  # (N, K) float32
    features: np.ndarray  # (N, D) float32
    distance: np.ndarray | None  # (N,) Mahalanobis distance, None without a gate
    nonxray: np.ndarray | None = None  # (N,) non-X-ray score (a logit), None without a far boundary


class Backend(Protocol):
    """What the Predictor runs: a normalised (N, 1, S, S) float32 batch -> :class:`ModelOutputs`.

    ``lanes``: how many single-threaded ``run_in_lane`` calls may usefully run side by side (1: none; the
    Predictor then calls ``run`` with whole batches). An ensemble bundle plugs in as one more Backend."""

    name: str
    lanes: int

    def run(self, batch: np.ndarray) -> ModelOutputs: ...

    def run_in_lane(self, batch: np.ndarray) -> ModelOutputs: ...


class OnnxBackend:
    """Runs an exported pneumo model on ONNX Runtime's CPU provider. ``session.run`` is thread-safe."""

    name = "onnx"

    def __init__(self, path: str | os.PathLike[str], *, threads: int = 0, spinning: bool = False) -> None:
        self.path = Path(path)
        self._spinning = spinning
        self.session = self._open(threads)
        # Batches of a folder run in this many single-threaded lanes side by side (see run_in_lane).
        self.lanes = threads if threads > 0 else (os.cpu_count() or 1)
        self._lane_session: Any = None
        self._lane_lock = threading.Lock()
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        outputs = [o.name for o in self.session.get_outputs()]
        if outputs[:2] != ["logits", "features"]:
            raise ValueError(f"{self.path}: outputs {outputs} are not those of a pneumo export "
                             f"(expected {list(OUTPUT_NAMES)}); export it with `pneumo export`")
        self.has_distance = "gate_distance" in outputs
        self.has_nonxray = "gate_nonxray" in outputs
        self.has_gradcam = GRADCAM_OUTPUT in outputs
        # Scoring asks for everything but the heatmap, which only explain() needs.
        self._outputs = [name for name in outputs if name != GRADCAM_OUTPUT]

    def _open(self, threads: int) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads  # 0: one per physical core
        # Idle ORT workers spin by default, burning the cores that decoding threads (predict_many, the service's
        # thread pool) need; without spinning they sleep between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self._spinning else "0")
        try:
            return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ValueError(f"{self.path}: not a loadable ONNX model ({type(exc).__name__}: {exc})") from exc

    def bundle_document(self) -> dict[str, Any]:
        """The embedded bundle.json document; ValueError when the model carries none."""
        raw = self.metadata.get(METADATA_KEY)
        if not raw:
            raise ValueError(f"{self.path}: no pneumo metadata ({METADATA_KEY!r} in metadata_props); "
                             "export the model with `pneumo export`")
        return json.loads(raw)

    def export_info(self) -> dict[str, Any]:
        return json.loads(self.metadata.get(EXPORT_KEY, "{}"))

    def run(self, batch: np.ndarray) -> ModelOutputs:
        return self._run(self.session, batch)

    def run_in_lane(self, batch: np.ndarray) -> ModelOutputs:
        """``run`` on a single-threaded session that several threads call at once. With decoding threads
        sharing the cores, one multi-threaded run stalls whenever one of its threads loses its core; separate
        single-threaded runs do not wait for each other (bench/bench_predict.py)."""
        with self._lane_lock:
            if self._lane_session is None:
                self._lane_session = self._open(1)
        return self._run(self._lane_session, batch)

    def gradcam(self, batch: np.ndarray) -> np.ndarray:
        """(N, S, S) Grad-CAM heatmaps in [0, 1] from the graph's ``gradcam`` output; ValueError for an export
        without one (made before pneumo exported heatmaps, or of an architecture the graph cannot explain)."""
        if not self.has_gradcam:
            raise ValueError(f"{self.path}: this export has no {GRADCAM_OUTPUT!r} output; re-export it with "
                             "`pneumo export` (needs pneumo[train]), or explain on the torch backend")
        (heatmaps,) = self.session.run([GRADCAM_OUTPUT], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})
        return heatmaps

    def _run(self, session: Any, batch: np.ndarray) -> ModelOutputs:
        values = session.run(self._outputs, {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})
        named = dict(zip(self._outputs, values))
        return ModelOutputs(named["logits"], named["features"], named.get("gate_distance"), named.get("gate_nonxray"))
