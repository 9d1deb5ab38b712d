"""The Predictor: the one way to run a model bundle on images, from the CLI, the service or a notebook.

input -> :mod:`pneumo.inference.inputs` (decode any source to gray [0, 1] + its colour) -> cheap gate checks
-> ``preprocess_array``/``normalize_uint8`` with the bundle's own preprocessing -> backend (PyTorch or ONNX
Runtime: logits, pooled features, gate distance and non-X-ray score) -> calibrated probability (bundle
temperature), label by the bundle's threshold, UNKNOWN when the gate refuses.

The gate answers three ways, by the one rule in :class:`pneumo.gate.verdict.GateRule`: a reading
(``out_of_distribution`` False), a reading with an out-of-distribution warning in ``ood_reason`` (a chest
X-ray unlike the training population), or UNKNOWN (not taken for a chest X-ray).

Evaluation and calibration score through the same object (:meth:`Predictor.score_many`), so a threshold
chosen there is applied here to the very same numbers.

This module imports no torch: with the ONNX backend (a bundle holding ``model.onnx``, the default when it
does, or a bare ``.onnx`` file) the whole path runs on NumPy, Pillow, pydicom and onnxruntime, Grad-CAM
included when the export holds its heatmap output. PyTorch (the ``train`` extra) is imported only for the torch
backend and for Grad-CAM on an export without that output.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any, Iterable, Iterator, Literal, Sequence

import numpy as np

from pneumo.bundle import ONNX_FILE, WEIGHTS_FILE, BundleError, BundleMeta, file_sha256, read_document, read_meta
from pneumo.config import PreprocessConfig
from pneumo.data.errors import ImageDecodeError, ImageTooLargeError, UnsupportedFormatError
from pneumo.data.preprocess import normalize_uint8, preprocess_array
from pneumo.explain.overlay import overlay_png
from pneumo.gate.checks import CheckConfig, cheap_reason
from pneumo.gate.verdict import GateRule, Reading
from pneumo.inference import tta
from pneumo.inference.backend import Backend, ModelOutputs, OnnxBackend
from pneumo.inference.inputs import InputImage, describe, load_input
from pneumo.inference.probability import OutputHead
from pneumo.optional import require

# "auto": ONNX Runtime when the bundle holds a model.onnx matching its weights and gate, else PyTorch.
BACKENDS = ("auto", "torch", "onnx")
# Why an input got no answer: "too_large" (a decompression-bomb guard), "unsupported" (not an image pneumo
# reads), "undecodable" (a damaged file of a known format), "internal" (a decoder bug; the batch goes on).
ErrorKind = Literal["too_large", "unsupported", "undecodable", "internal"]


def error_kind(exc: ImageDecodeError) -> ErrorKind:
    if isinstance(exc, ImageTooLargeError):
        return "too_large"
    if isinstance(exc, UnsupportedFormatError):
        return "unsupported"
    return "undecodable"


@dataclass
class Prediction:
    path: str | None
    label: str | None
    probability: float | None
    threshold: float
    subtype_probabilities: dict[str, float] | None
    unknown_reason: str | None
    error: str | None
    timing_ms: dict[str, float]
    model_version: str
    error_kind: ErrorKind | None = None  # set with ``error``: what kind of failure, for callers that map it
    # True: a chest X-ray beyond the gate's in-distribution boundary (label and probability given, to be read
    # with caution); False: within it; None: not scored (UNKNOWN, error) or the model has no feature gate.
    out_of_distribution: bool | None = None
    ood_reason: str | None = None  # the warning sentence when out_of_distribution is True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def reading(self) -> dict[str, Any]:
        """The fields a history row and an API response keep (:data:`READING_FIELDS`): not the path, which
        may name a patient, nor an error, which is never stored."""
        document = self.to_dict()
        return {key: document[key] for key in READING_FIELDS}


# What one reading stores, for uploads and DICOM arrivals alike.
READING_FIELDS = ("label", "probability", "threshold", "subtype_probabilities", "unknown_reason", "model_version",
                  "timing_ms", "out_of_distribution", "ood_reason")


@dataclass
class ScoredInput:
    """One input as evaluation sees it: the Prediction plus the raw outputs behind it. ``logits`` (V, width)
    before temperature, one row per test-time view; None when the model did not run on the input."""

    prediction: Prediction
    logits: np.ndarray | None = None
    distance: float | None = None


@dataclass
class Explanation:
    heatmap: np.ndarray | None  # float32 SxS in [0, 1] at the model's input size; None: skipped for UNKNOWN
    overlay_png: bytes | None
    prediction: Prediction


@dataclass
class Embedding:
    """Pooled features of one input (for fitting the gate); ``features`` is None when refused or unreadable."""

    path: str | None
    features: np.ndarray | None
    unknown_reason: str | None = None
    error: str | None = None


@dataclass
class PreparedInput:
    """One input decoded, checked and preprocessed, ready for :meth:`Predictor.score` (which may run in another
    process: the batch engines prepare inputs in one set of workers and score them in another)."""

    name: str | None
    pixels: np.ndarray | None = None  # uint8 SxS, set when the cheap checks pass
    reason: str | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    timing: dict[str, float] = field(default_factory=dict)


def _ms(start: float) -> float:
    return round((perf_counter() - start) * 1000.0, 3)


# A single-threaded lane gains nothing from big batches (no intra-op parallelism to feed), and small ones
# interleave better with decoding: on 2 cores, 8 gave the highest folder rate of 4, 8, 16 and 32.
LANE_BATCH = 8


def prepare_input(source: Any, preprocess: PreprocessConfig, checks: CheckConfig = CheckConfig(),
                  score_refused: bool = False) -> PreparedInput:
    """Decode, check and preprocess one input with a bundle's ``preprocess``; errors become an entry, never an
    exception. What :meth:`Predictor.predict` does before the model, without needing the model."""
    name = describe(source)
    started = perf_counter()
    try:
        image = load_input(source)
    except ImageDecodeError as exc:
        return PreparedInput(name, error=str(exc), error_kind=error_kind(exc), timing={"decode": _ms(started)})
    except Exception as exc:  # a decoder bug must not take down a whole batch
        return PreparedInput(name, error=f"{name or '<input>'}: unexpected error while reading "
                                         f"({type(exc).__name__}: {exc})", error_kind="internal",
                             timing={"decode": _ms(started)})
    return check_input(name, image, {"decode": _ms(started)}, preprocess, checks, score_refused)


def check_input(name: str | None, image: InputImage, timing: dict[str, float], preprocess: PreprocessConfig,
                checks: CheckConfig = CheckConfig(), score_refused: bool = False) -> PreparedInput:
    """Cheap gate checks, then the bundle's preprocessing for inputs that pass them (or for all, with
    ``score_refused``)."""
    started = perf_counter()
    prepared = PreparedInput(name, timing=timing)
    prepared.reason = cheap_reason(image.pixels, image.colour_fraction, checks)
    if prepared.reason is None or score_refused:
        prepared.pixels = preprocess_array(image.pixels, preprocess)
    timing["preprocess"] = _ms(started)
    return prepared


class Predictor:
    """Load once, predict many times; thread-safe (``predict`` may be called from many threads at once)."""

    def __init__(self, meta: BundleMeta, backend: Backend, *, bundle_dir: Path | None = None, tta: bool = False,
                 gate_threshold: float | None = None, gate_far_threshold: float | None = None,
                 gate_warn_nonxray: float | None = None,
                 checks: CheckConfig = CheckConfig(), workers: int | None = None, backend_note: str = "") -> None:
        self.meta = meta
        self.head = OutputHead.of(meta.class_names)
        self.backend = backend
        self.bundle_dir = bundle_dir
        self.tta = tta
        self.checks = checks
        if gate_threshold is None and gate_far_threshold is not None:
            raise ValueError(f"gate_far_threshold {gate_far_threshold} given without a gate_threshold")
        if gate_threshold is not None and gate_far_threshold is not None and not gate_far_threshold >= gate_threshold:
            raise ValueError(f"gate_far_threshold {gate_far_threshold} is below gate_threshold {gate_threshold}; "
                             "the far (UNKNOWN) boundary must lie at or beyond the in-distribution one")
        self.gate_threshold = gate_threshold  # beyond it: out of distribution (UNKNOWN for a one-boundary gate)
        self.gate_far_threshold = gate_far_threshold  # beyond it: UNKNOWN; None: a gate with one boundary
        self.gate_warn_nonxray = gate_warn_nonxray  # the warning zone's non-X-ray limit (GateRule.warn_nonxray)
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.backend_note = backend_note  # why this backend was chosen, for "auto"
        self._explainer: Any = None
        self._explainer_lock = threading.Lock()

    # ---- loading -----------------------------------------------------------------------------------------
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
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
        options = dict(tta=tta, checks=checks, workers=workers)
        path = Path(str(model)).expanduser()
        if path.suffix.lower() == ".onnx" and path.is_file():
            if backend == "torch":
                raise ValueError(f"{path} is an ONNX model; load it with backend='onnx' (or give the bundle "
                                 "directory for PyTorch)")
            runtime = OnnxBackend(path, threads=threads)
            meta = BundleMeta.from_dict(runtime.bundle_document()["meta"])
            return cls(meta, runtime, **_onnx_gate_boundaries(runtime, meta), **options)
        directory, meta = read_meta(model)
        note = ""
        if backend in ("auto", "onnx"):
            runtime, note = bundled_onnx(directory, meta, threads)
            if runtime is not None:
                return cls(meta, runtime, bundle_dir=directory, **_onnx_gate_boundaries(runtime, meta),
                           backend_note=note, **options)
            if backend == "onnx":
                raise ValueError(f"{note}; add it with `pneumo export --model {directory} --into-bundle` (needs "
                                 "PyTorch), or use --backend torch")
        # PyTorch is imported here, on use, so that the ONNX path above never loads it (3 s on 2 cores).
        require("torch", extra="train", needed_for=f"the torch backend ({note})" if note else "the torch backend")
        from pneumo.inference.loading import load_torch_backend

        torch_backend, meta, directory, gate = load_torch_backend(directory, device)
        return cls(meta, torch_backend, bundle_dir=directory,
                   gate_threshold=gate.threshold if gate is not None else None,
                   gate_far_threshold=gate.far_threshold if gate is not None else None,
                   gate_warn_nonxray=gate.warn_nonxray if gate is not None else None, backend_note=note, **options)

    @property
    def has_gate(self) -> bool:
        return self.gate_threshold is not None

    @property
    def subtype_names(self) -> list[str]:
        """The keys of ``Prediction.subtype_probabilities`` for this model: its class names for a multi-class
        head, none for the one-logit NORMAL/PNEUMONIA head (whose predictions carry no subtypes)."""
        return list(self.meta.class_names) if self.meta.classes > 2 else []

    @property
    def gate_status(self) -> str:
        """One line on what the chest-X-ray gate checks with this model."""
        cheap = "cheap checks (colour, blank, size, aspect ratio)"
        if not self.has_gate:
            if self.meta.gate:
                return (f"chest-X-ray gate: this ONNX export has no gate output; only {cheap} run. Re-export with "
                        "`pneumo export` after `pneumo gate fit`")
            return (f"chest-X-ray gate: none fitted for this model; only {cheap} run (non-X-ray images may get a "
                    "probability). Fit one with `pneumo gate fit`")
        gate = self.meta.gate
        figures = ""
        if "xray_flagged_pct" in gate and "nonxray_flagged_pct" in gate:
            figures = (f"; when fitted it flagged {gate['xray_flagged_pct']:.1f}% of held-out X-rays and "
                       f"{gate['nonxray_flagged_pct']:.1f}% of non-X-ray images")
        layers = ", ".join(gate.get("feature_layers", []))
        if self.gate_far_threshold is None:
            boundaries = (f"threshold {self.gate_threshold:.2f}, {gate.get('percentile', '?')}th percentile of "
                          "training X-rays; beyond it UNKNOWN. This gate has no out-of-distribution band: refit it "
                          "with `pneumo gate fit` to warn rather than refuse on X-rays from other sites")
        else:
            boundaries = (f"out-of-distribution warning beyond {self.gate_threshold:.2f}, the "
                          f"{gate.get('percentile', '?')}th percentile of training X-rays; UNKNOWN beyond "
                          f"{self.gate_far_threshold:.2f} or when the non-X-ray score is above 0 (above "
                          f"{0.0 if self.gate_warn_nonxray is None else self.gate_warn_nonxray:.2f} between the two)")
        return (f"chest-X-ray gate: {cheap} + Mahalanobis distance on pooled features of {layers} "
                f"({boundaries}){figures}")

    # ---- prediction --------------------------------------------------------------------------------------
    def predict(self, source: Any) -> Prediction:
        """Predict one input; never raises for bad input (the Prediction carries ``error``)."""
        started = perf_counter()
        prediction = self._finish([self._prepare(source)])[0].prediction
        prediction.timing_ms["total"] = _ms(started)
        return prediction

    def predict_many(self, sources: Iterable[Any], batch_size: int = 16) -> list[Prediction]:
        """Predict many inputs in batches, decoding the next ones in threads while the model runs. On ONNX
        Runtime the batches (at most :data:`LANE_BATCH` inputs) run in ``backend.lanes`` single-threaded
        lanes side by side."""
        return [s.prediction for s in self.score_many(sources, batch_size)]

    def score_many(self, sources: Iterable[Any], batch_size: int = 16, *, score_refused: bool = False
                   ) -> list[ScoredInput]:
        """:meth:`predict_many` with the raw logits and gate distance kept, in input order: what evaluation and
        calibration score. ``score_refused``: also run the model on inputs the cheap checks refused (their
        Prediction is still UNKNOWN), so that model-only figures cover every readable image."""
        results: list[ScoredInput] = []
        lanes = self.backend.lanes
        in_lanes = lanes > 1
        # Up to ``lanes`` consecutive batches run side by side; results keep the input order.
        with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="pneumo-lane") as pool:
            running: deque[Future[list[ScoredInput]]] = deque()
            size = min(batch_size, LANE_BATCH) if in_lanes else batch_size
            for chunk in self._prepared_chunks(sources, size, score_refused):
                running.append(pool.submit(self._finish, chunk, in_lanes))
                if len(running) >= lanes:
                    results.extend(running.popleft().result())
            while running:
                results.extend(running.popleft().result())
        return results

    def score(self, prepared: Sequence[PreparedInput]) -> list[Prediction]:
        """Predictions for inputs already made by :func:`prepare_input` with this bundle's preprocessing, in
        one model batch: the second half of :meth:`predict_many`, for engines that decode elsewhere."""
        return [scored.prediction for scored in self._finish(list(prepared))]

    def embed_many(self, sources: Iterable[Any], batch_size: int = 16) -> list[Embedding]:
        """Pooled features (no TTA) for inputs that pass the cheap checks; what the gate is fitted on."""
        out: list[Embedding] = []
        for chunk in self._prepared_chunks(sources, batch_size):
            ready = [p for p in chunk if p.pixels is not None and p.reason is None]
            features: dict[int, np.ndarray] = {}
            if ready:
                batch = normalize_uint8(np.stack([p.pixels for p in ready]), self.meta.preprocess)[:, None]
                outputs = self.backend.run(batch)
                features = {id(p): outputs.features[i] for i, p in enumerate(ready)}
            out.extend(Embedding(p.name, features.get(id(p)), p.reason, p.error) for p in chunk)
        return out

    def explain(self, source: Any, *, skip_unknown: bool = False) -> Explanation:
        """Prediction plus Grad-CAM heatmap and overlay. Raises ImageDecodeError for undecodable input.
        ``skip_unknown``: no Grad-CAM (heatmap and overlay None) when the gate answers UNKNOWN, for callers
        that would not show a heatmap over a non-X-ray anyway (the web app)."""
        started = perf_counter()
        image = load_input(source)
        prepared = self._check(describe(source), image, {"decode": _ms(started)})
        prediction = self._finish([prepared])[0].prediction
        if skip_unknown and prediction.label == "UNKNOWN":
            return Explanation(heatmap=None, overlay_png=None, prediction=prediction)
        pixels = prepared.pixels if prepared.pixels is not None else preprocess_array(image.pixels,
                                                                                      self.meta.preprocess)
        cam_started = perf_counter()
        heatmap = self._gradcam(pixels)
        overlay = overlay_png(image.pixels, heatmap, self.meta.preprocess)
        prediction.timing_ms["gradcam"] = _ms(cam_started)
        prediction.timing_ms["total"] = _ms(started)
        return Explanation(heatmap=heatmap, overlay_png=overlay, prediction=prediction)

    # ---- internals ---------------------------------------------------------------------------------------
    def _prepare(self, source: Any, score_refused: bool = False) -> PreparedInput:
        return prepare_input(source, self.meta.preprocess, self.checks, score_refused)

    def _check(self, name: str | None, image: InputImage, timing: dict[str, float],
               score_refused: bool = False) -> PreparedInput:
        return check_input(name, image, timing, self.meta.preprocess, self.checks, score_refused)

    def _prepared_chunks(self, sources: Iterable[Any], batch_size: int, score_refused: bool = False
                         ) -> Iterator[list[PreparedInput]]:
        """Prepared inputs in order, ``batch_size`` at a time, with a bounded window decoding ahead."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        window = 2 * batch_size + self.workers
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="pneumo-decode") as pool:
            pending: deque[Future[PreparedInput]] = deque()
            feed = iter(sources)
            exhausted = False
            chunk: list[PreparedInput] = []
            while True:
                while not exhausted and len(pending) < window:
                    try:
                        pending.append(pool.submit(self._prepare, next(feed), score_refused))
                    except StopIteration:
                        exhausted = True
                if not pending:
                    break
                chunk.append(pending.popleft().result())
                if len(chunk) == batch_size:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk

    def _run_model(self, pixels: list[np.ndarray], lane: bool = False) -> tuple[ModelOutputs, int]:
        views = [tta.views(p, self.tta) for p in pixels]
        count = views[0].shape[0]
        batch = normalize_uint8(np.concatenate(views), self.meta.preprocess)[:, None]
        return (self.backend.run_in_lane(batch) if lane else self.backend.run(batch)), count

    def _finish(self, prepared: list[PreparedInput], lane: bool = False) -> list[ScoredInput]:
        ready = [p for p in prepared if p.pixels is not None]
        scored: dict[int, tuple[np.ndarray, float, dict[str, float] | None, float | None, float | None]] = {}
        if ready:
            started = perf_counter()
            outputs, views = self._run_model([p.pixels for p in ready], lane)  # type: ignore[misc]
            model_ms = _ms(started) / len(ready)
            logits = outputs.logits.reshape(len(ready), views, -1)
            probability, classes = self.head.score(logits, float(self.meta.temperature))
            # The gate judges the image as given: the first view (TTA's other views are shifted copies).
            distance = None if outputs.distance is None else outputs.distance.reshape(len(ready), views)[:, 0]
            nonxray = None if outputs.nonxray is None else outputs.nonxray.reshape(len(ready), views)[:, 0]
            for i, p in enumerate(ready):
                subtypes = None if classes is None else {
                    name: float(value) for name, value in zip(self.meta.class_names, classes[i])}
                scored[id(p)] = (logits[i], float(probability[i]), subtypes,
                                 None if distance is None else float(distance[i]),
                                 None if nonxray is None else float(nonxray[i]))
                p.timing["model"] = round(model_ms, 3)
        out = []
        for p in prepared:
            score = scored.get(id(p))
            out.append(ScoredInput(self._prediction(p, score and score[1:]), None if score is None else score[0],
                                   None if score is None else score[3]))
        return out

    def _prediction(self, p: PreparedInput,
                    score: tuple[float, dict[str, float] | None, float | None, float | None] | None) -> Prediction:
        timing = dict(p.timing)
        timing.setdefault("total", round(sum(timing.values()), 3))
        base = dict(path=p.name, threshold=float(self.meta.threshold), timing_ms=timing,
                    model_version=self.meta.version)
        if p.error is not None:
            return Prediction(label=None, probability=None, subtype_probabilities=None, unknown_reason=None,
                              error=p.error, error_kind=p.error_kind, **base)
        if p.reason is not None or score is None:
            return Prediction(label="UNKNOWN", probability=None, subtype_probabilities=None,
                              unknown_reason=p.reason or "not scored", error=None, **base)
        probability, subtypes, distance, nonxray = score
        verdict = None if distance is None or self.gate_threshold is None else GateRule(
            self.gate_threshold, self.gate_far_threshold, self.gate_warn_nonxray).judge(distance, nonxray)
        if verdict is not None and verdict.reading is Reading.UNKNOWN:
            return Prediction(label="UNKNOWN", probability=None, subtype_probabilities=None,
                              unknown_reason=verdict.reason, error=None, **base)
        warned = None if verdict is None else verdict.out_of_distribution
        label = "PNEUMONIA" if probability >= self.meta.threshold else "NORMAL"
        return Prediction(label=label, probability=probability, subtype_probabilities=subtypes, unknown_reason=None,
                          error=None, **base, out_of_distribution=warned,
                          ood_reason=verdict.reason if warned else None)

    def _gradcam(self, pixels: np.ndarray) -> np.ndarray:
        normalised = normalize_uint8(pixels, self.meta.preprocess)
        if isinstance(self.backend, OnnxBackend) and self.backend.has_gradcam:
            return self.backend.gradcam(normalised[None, None])[0]  # the heatmap the exported graph computes
        with self._explainer_lock:
            if self._explainer is None:
                # PyTorch on use only (see load): the torch backend, or an export without the heatmap output.
                if isinstance(self.backend, OnnxBackend):
                    require("torch", extra="train", needed_for=f"Grad-CAM with {self.backend.path}, an export "
                            "without the heatmap output (re-export it with `pneumo export`)")
                from pneumo.inference.loading import build_explainer

                self._explainer = build_explainer(self.backend, self.bundle_dir, self.meta)
        return self._explainer(normalised)

def _onnx_gate_boundaries(runtime: OnnxBackend, meta: BundleMeta) -> dict[str, float | None]:
    """The gate's boundaries (``gate_threshold``, ``gate_far_threshold``, ``gate_warn_nonxray``) when the ONNX
    graph computes the distance (export after ``gate fit``); a far boundary needs the graph's ``gate_nonxray``
    output too."""
    if not runtime.has_distance:
        return {"gate_threshold": None, "gate_far_threshold": None, "gate_warn_nonxray": None}
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
    return {"gate_threshold": float(threshold), "gate_far_threshold": None if far is None else float(far),
            "gate_warn_nonxray": None if warn is None else float(warn)}


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
