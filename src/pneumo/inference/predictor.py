"""The Predictor: the one way to run a model bundle on images, from the CLI, the service or a notebook.

It only wires the steps, each in a module of its own:

input -> :mod:`~pneumo.inference.prepared` (decode, the gate's cheap checks, the bundle's preprocessing)
-> :mod:`~pneumo.inference.scorer` (test-time views, the backend, calibrated probability, gate scores)
-> :func:`pneumo.gate.verdict.verdict_for` (read, warned or UNKNOWN)
-> :class:`~pneumo.inference.decision.DecisionRule` (the label by the bundle's threshold)
-> a :class:`~pneumo.inference.results.Prediction`.

One input (:meth:`Predictor.predict`) goes straight down that path; a folder (:meth:`Predictor.predict_many`)
streams through it with decoding ahead and lanes (:mod:`~pneumo.inference.streaming`). Evaluation and
calibration score through the same object (:meth:`Predictor.score_many`) and decide with the same rule, so a
threshold chosen there is applied here to the very same numbers.

This module imports no torch: with the ONNX backend (a bundle holding ``model.onnx``, the default when it
does, or a bare ``.onnx`` file) the whole path runs on NumPy, Pillow, pydicom and onnxruntime, Grad-CAM
included when the export holds its heatmap output (:mod:`~pneumo.inference.opening`,
:mod:`~pneumo.inference.heatmap`).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from time import perf_counter
from typing import Any, Iterable, Sequence

from pneumo.bundle import BundleMeta
from pneumo.data.preprocess import preprocess_array
from pneumo.explain.overlay import overlay_png
from pneumo.gate.checks import CheckConfig
from pneumo.gate.status import gate_status
from pneumo.gate.verdict import GateRule, verdict_for
from pneumo.inference.backend import Backend
from pneumo.inference.decision import UNKNOWN, DecisionRule
from pneumo.inference.heatmap import Heatmaps
from pneumo.inference.inputs import describe, load_input
from pneumo.inference.opening import BACKENDS, open_model
from pneumo.inference.prepared import PreparedInput, check_input, elapsed_ms, prepare_input
from pneumo.inference.probability import OutputHead
from pneumo.inference.results import (READING_FIELDS, Embedding, Explanation, ImageOutputs, Prediction,
                                      PredictionDetail)
from pneumo.inference.scorer import ModelScorer
from pneumo.inference.streaming import decoded_ahead, lane_batch_size, run_in_lanes

__all__ = ["BACKENDS", "READING_FIELDS", "Embedding", "Explanation", "Prediction", "PredictionDetail", "Predictor",
           "PreparedInput", "prepare_input"]


class Predictor:
    """Load once, predict many times; thread-safe (``predict`` may be called from many threads at once)."""

    def __init__(self, meta: BundleMeta, backend: Backend, *, bundle_dir: Path | None = None, tta: bool = False,
                 gate_threshold: float | None = None, gate_far_threshold: float | None = None,
                 gate_warn_nonxray: float | None = None,
                 checks: CheckConfig = CheckConfig(), workers: int | None = None, backend_note: str = "") -> None:
        self.meta = meta
        self.backend = backend
        self.bundle_dir = bundle_dir
        self.tta = tta
        self.checks = checks
        # The gate's boundaries: beyond gate_threshold out of distribution (UNKNOWN for a one-boundary gate),
        # beyond gate_far_threshold UNKNOWN; gate_warn_nonxray the warning zone's non-X-ray limit.
        self.gate = _gate_rule(gate_threshold, gate_far_threshold, gate_warn_nonxray)
        self.decision = DecisionRule(float(meta.threshold))
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.backend_note = backend_note  # why this backend was chosen, for "auto"
        self.scorer = ModelScorer(meta, backend, views=tta)
        self.heatmaps = Heatmaps(backend, bundle_dir, meta)

    @classmethod
    def load(cls, model: str | os.PathLike[str] = "default", *, backend: str = "auto", device: str = "cpu",
             tta: bool = False, threads: int = 0, workers: int | None = None,
             checks: CheckConfig = CheckConfig()) -> "Predictor":
        """``model``: a bundle directory, a run directory, a shipped name (``default``), or an exported
        ``.onnx`` file. ``backend``: ``onnx`` needs the bundle's ``model.onnx`` (added by
        ``pneumo export --into-bundle``; never exported silently here), ``torch`` the PyTorch weights, ``auto``
        takes ONNX Runtime when the bundle holds a matching ``model.onnx`` (``backend_note`` says why not).
        ``threads``: ONNX Runtime intra-op threads (0: one per core; PyTorch's are process-wide, set with
        ``torch.set_num_threads``). ``device``: torch device (``auto`` picks CUDA or MPS when present).
        ``workers``: decoding threads of ``predict_many`` (default min(4, CPUs))."""
        opened = open_model(model, backend, device, threads)
        gate = opened.gate
        return cls(opened.meta, opened.backend, bundle_dir=opened.bundle_dir, tta=tta, checks=checks,
                   workers=workers, backend_note=opened.note,
                   gate_threshold=None if gate is None else gate.threshold,
                   gate_far_threshold=None if gate is None else gate.far_threshold,
                   gate_warn_nonxray=None if gate is None else gate.warn_nonxray)

    @property
    def head(self) -> OutputHead:
        return self.scorer.head

    @property
    def has_gate(self) -> bool:
        return self.gate is not None

    @property
    def gate_threshold(self) -> float | None:
        return None if self.gate is None else self.gate.threshold

    @property
    def gate_far_threshold(self) -> float | None:
        return None if self.gate is None else self.gate.far_threshold

    @property
    def gate_warn_nonxray(self) -> float | None:
        return None if self.gate is None else self.gate.warn_nonxray

    @property
    def subtype_names(self) -> list[str]:
        """The keys of ``Prediction.subtype_probabilities`` for this model: its class names for a multi-class
        head, none for the one-logit NORMAL/PNEUMONIA head (whose predictions carry no subtypes)."""
        return list(self.meta.class_names) if self.meta.classes > 2 else []

    @property
    def gate_status(self) -> str:
        """One line on what the chest-X-ray gate checks with this model."""
        return gate_status(self.meta.gate, self.gate)

    # ---- prediction --------------------------------------------------------------------------------------
    def predict(self, source: Any) -> Prediction:
        """Predict one input; never raises for bad input (the Prediction carries ``error``)."""
        started = perf_counter()
        prediction = self._score_prepared([self._prepare(source)])[0].prediction
        prediction.timing_ms["total"] = elapsed_ms(started)
        return prediction

    def predict_many(self, sources: Iterable[Any], batch_size: int = 16) -> list[Prediction]:
        """Predict many inputs in batches, decoding the next ones in threads while the model runs. On ONNX
        Runtime the batches (at most :data:`~pneumo.inference.streaming.LANE_BATCH` inputs) run in
        ``backend.lanes`` single-threaded lanes side by side."""
        return [detail.prediction for detail in self.score_many(sources, batch_size)]

    def score_many(self, sources: Iterable[Any], batch_size: int = 16, *, score_refused: bool = False
                   ) -> list[PredictionDetail]:
        """:meth:`predict_many` with the model's numbers and the gate's verdict kept, in input order: what
        evaluation and calibration score. ``score_refused``: also run the model on inputs the cheap checks refused
        (their Prediction is still UNKNOWN), so that model-only figures cover every readable image."""
        lanes = self.backend.lanes
        chunks = decoded_ahead(sources, partial(self._prepare, score_refused=score_refused),
                               lane_batch_size(batch_size, lanes), self.workers)
        return run_in_lanes(chunks, self._score_prepared, lanes)

    def score(self, prepared: Sequence[PreparedInput]) -> list[Prediction]:
        """Predictions for inputs already made by :func:`prepare_input` with this bundle's preprocessing, in
        one model batch: the second half of :meth:`predict_many`, for engines that decode elsewhere."""
        return [detail.prediction for detail in self._score_prepared(list(prepared))]

    def embed_many(self, sources: Iterable[Any], batch_size: int = 16) -> list[Embedding]:
        """Pooled features (no TTA) for inputs that pass the cheap checks; what the gate is fitted on."""
        out: list[Embedding] = []
        for chunk in decoded_ahead(sources, self._prepare, batch_size, self.workers):
            ready = [p for p in chunk if p.pixels is not None and p.reason is None]
            features = dict(zip(map(id, ready), self.scorer.features([p.pixels for p in ready]))) if ready else {}
            out.extend(Embedding(p.name, features.get(id(p)), p.reason, p.error) for p in chunk)
        return out

    def explain(self, source: Any, *, skip_unknown: bool = False) -> Explanation:
        """Prediction plus Grad-CAM heatmap and overlay. Raises ImageDecodeError for undecodable input.
        ``skip_unknown``: no Grad-CAM (heatmap and overlay None) when the gate answers UNKNOWN, for callers
        that would not show a heatmap over a non-X-ray anyway (the web app)."""
        started = perf_counter()
        image = load_input(source)
        prepared = check_input(describe(source), image, {"decode": elapsed_ms(started)}, self.meta.preprocess,
                               self.checks)
        prediction = self._score_prepared([prepared])[0].prediction
        if skip_unknown and prediction.label == UNKNOWN:
            return Explanation(heatmap=None, overlay_png=None, prediction=prediction)
        pixels = prepared.pixels if prepared.pixels is not None else preprocess_array(image.pixels,
                                                                                      self.meta.preprocess)
        cam_started = perf_counter()
        heatmap = self.heatmaps(pixels)
        overlay = overlay_png(image.pixels, heatmap, self.meta.preprocess)
        prediction.timing_ms["gradcam"] = elapsed_ms(cam_started)
        prediction.timing_ms["total"] = elapsed_ms(started)
        return Explanation(heatmap=heatmap, overlay_png=overlay, prediction=prediction)

    # ---- internals ---------------------------------------------------------------------------------------
    def _prepare(self, source: Any, score_refused: bool = False) -> PreparedInput:
        return prepare_input(source, self.meta.preprocess, self.checks, score_refused)

    def _score_prepared(self, prepared: list[PreparedInput], in_lane: bool = False) -> list[PredictionDetail]:
        """Prepared inputs -> their details, the ready ones through the model in one batch."""
        ready = [p for p in prepared if p.pixels is not None]
        outputs: dict[int, ImageOutputs] = {}
        if ready:
            started = perf_counter()
            outputs = dict(zip(map(id, ready), self.scorer.outputs([p.pixels for p in ready], in_lane)))
            model_ms = round(elapsed_ms(started) / len(ready), 3)
            for p in ready:
                p.timing["model"] = model_ms
        return [self._detail(p, outputs.get(id(p))) for p in prepared]

    def _detail(self, p: PreparedInput, outputs: ImageOutputs | None) -> PredictionDetail:
        """One input's Prediction: an error entry, or the decision on its outputs and the gate's verdict."""
        timing = dict(p.timing)
        timing.setdefault("total", round(sum(timing.values()), 3))
        base = dict(path=p.name, threshold=self.decision.threshold, timing_ms=timing, model_version=self.meta.version)
        if p.error is not None:
            return PredictionDetail(Prediction(label=None, probability=None, subtype_probabilities=None,
                                               unknown_reason=None, error=p.error, error_kind=p.error_kind, **base))
        if outputs is None:
            verdict = verdict_for(p.reason, self.gate, None, None)
            decision = self.decision.decide(None, verdict)
        else:
            verdict = verdict_for(p.reason, self.gate, outputs.distance, outputs.nonxray)
            decision = self.decision.decide(outputs.probability, verdict)
        shown = outputs if decision.answered else None  # UNKNOWN: no probability is reported
        return PredictionDetail(Prediction(
            label=decision.label, probability=None if shown is None else shown.probability,
            subtype_probabilities=None if shown is None else shown.subtypes, unknown_reason=decision.unknown_reason,
            error=None, out_of_distribution=decision.out_of_distribution, ood_reason=decision.ood_reason, **base),
            outputs, verdict)


def _gate_rule(threshold: float | None, far: float | None, warn_nonxray: float | None) -> GateRule | None:
    """The gate's rule from the Predictor's boundaries; None without a feature gate."""
    if threshold is None:
        if far is not None or warn_nonxray is not None:
            raise ValueError(f"gate_far_threshold {far} / gate_warn_nonxray {warn_nonxray} given without a "
                             "gate_threshold")
        return None
    if far is not None and not far >= threshold:
        raise ValueError(f"gate_far_threshold {far} is below gate_threshold {threshold}; the far (UNKNOWN) "
                         "boundary must lie at or beyond the in-distribution one")
    return GateRule(threshold, far, warn_nonxray)
