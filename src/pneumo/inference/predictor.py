"""The Predictor: the one way to run a model bundle on images, from the CLI, the service or a notebook.

input -> :mod:`pneumo.inference.inputs` (decode any source to gray [0, 1] + its colour) -> cheap gate checks
-> ``preprocess_array``/``normalize_uint8`` with the bundle's own preprocessing -> backend (PyTorch or ONNX
Runtime: logits, pooled features, gate distance) -> calibrated probability (bundle temperature), label by the
bundle's threshold, UNKNOWN when the gate refuses.

The gate (:mod:`pneumo.gate.mahalanobis`): within ``threshold`` of feature distance the input looks like the
training X-rays (``out_of_distribution`` False). Beyond it, a gate with a far boundary answers UNKNOWN when the
distance exceeds ``far_threshold`` or the gate's non-X-ray score is above 0 (not a chest X-ray), and otherwise
gives the label and probability with ``out_of_distribution`` True and a warning in ``ood_reason`` (a chest
X-ray unlike the training population: another site, age group or equipment). A gate fitted before the far
boundary existed has none: every input beyond ``threshold`` is UNKNOWN, as before, and scored inputs have
``out_of_distribution`` False.

This module imports no torch: with ``backend="onnx"`` and an exported model (or a bundle whose export is
cached) the whole path runs on NumPy, Pillow, pydicom and onnxruntime.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any, Iterable, Iterator

import numpy as np

from pneumo.bundle import META_FILE, WEIGHTS_FILE, BundleMeta, read_meta
from pneumo.data.errors import ImageDecodeError
from pneumo.data.preprocess import normalize_uint8, preprocess_array
from pneumo.gate.checks import CheckConfig, cheap_reason
from pneumo.inference import tta
from pneumo.inference.backend import ModelOutputs, OnnxBackend
from pneumo.inference.inputs import InputImage, describe, load_input
from pneumo.inference.probability import class_probabilities, pneumonia_probability

BACKENDS = ("torch", "onnx")
ONNX_FILE = "model.onnx"  # an export kept inside the bundle is used by backend="onnx" when it matches


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
    # True: a chest X-ray beyond the gate's in-distribution boundary (label and probability given, to be read
    # with caution); False: within it; None: not scored (UNKNOWN, error) or the model has no feature gate.
    out_of_distribution: bool | None = None
    ood_reason: str | None = None  # the warning sentence when out_of_distribution is True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
class _Prepared:
    name: str | None
    pixels: np.ndarray | None = None  # uint8 SxS, set when the cheap checks pass
    reason: str | None = None
    error: str | None = None
    timing: dict[str, float] = field(default_factory=dict)


def _ms(start: float) -> float:
    return round((perf_counter() - start) * 1000.0, 3)


# A single-threaded lane gains nothing from big batches (no intra-op parallelism to feed), and small ones
# interleave better with decoding: on 2 cores, 8 gave the highest folder rate of 4, 8, 16 and 32.
LANE_BATCH = 8


class Predictor:
    """Load once, predict many times; thread-safe (``predict`` may be called from many threads at once)."""

    def __init__(self, meta: BundleMeta, backend: Any, *, bundle_dir: Path | None = None, tta: bool = False,
                 gate_threshold: float | None = None, gate_far_threshold: float | None = None,
                 checks: CheckConfig = CheckConfig(),
                 device: str = "cpu", workers: int | None = None) -> None:
        self.meta = meta
        self.backend = backend
        self.bundle_dir = bundle_dir
        self.tta = tta
        self.checks = checks
        self.device = device
        if gate_threshold is None and gate_far_threshold is not None:
            raise ValueError(f"gate_far_threshold {gate_far_threshold} given without a gate_threshold")
        if gate_threshold is not None and gate_far_threshold is not None and gate_far_threshold < gate_threshold:
            raise ValueError(f"gate_far_threshold {gate_far_threshold} is below gate_threshold {gate_threshold}; "
                             "the far (UNKNOWN) boundary must lie at or beyond the in-distribution one")
        self.gate_threshold = gate_threshold  # beyond it: out of distribution (UNKNOWN for an old gate)
        self.gate_far_threshold = gate_far_threshold  # beyond it: UNKNOWN; None: a gate with one boundary
        self.workers = workers or min(4, os.cpu_count() or 1)
        self._explainer: Any = None
        self._explainer_lock = threading.Lock()

    # ---- loading -----------------------------------------------------------------------------------------
    @classmethod
    def load(cls, model: str | os.PathLike[str] = "default", *, backend: str = "torch", device: str = "cpu",
             tta: bool = False, threads: int = 0, workers: int | None = None) -> "Predictor":
        """``model``: a bundle directory, a run directory, a shipped name (``default``), or for
        ``backend="onnx"`` also an exported ``.onnx`` file. ``threads``: ONNX Runtime intra-op threads
        (0: one per core; PyTorch's are process-wide, set with ``torch.set_num_threads``). ``workers``:
        decoding threads of ``predict_many`` (default min(4, CPUs))."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
        path = Path(str(model)).expanduser()
        if path.suffix.lower() == ".onnx" and path.is_file():
            if backend != "onnx":
                raise ValueError(f"{path} is an ONNX model; load it with backend='onnx' (or give the bundle "
                                 "directory for PyTorch)")
            runtime = OnnxBackend(path, threads=threads)
            meta = BundleMeta.from_dict(runtime.bundle_document()["meta"])
            return cls(meta, runtime, tta=tta, gate_threshold=_onnx_gate_threshold(runtime, meta),
                       gate_far_threshold=_onnx_far_threshold(runtime, meta), device="cpu", workers=workers)
        if backend == "onnx":
            directory, meta = read_meta(model)
            runtime = _onnx_backend_for(directory, meta, threads)
            return cls(meta, runtime, bundle_dir=directory, tta=tta,
                       gate_threshold=_onnx_gate_threshold(runtime, meta),
                       gate_far_threshold=_onnx_far_threshold(runtime, meta), device="cpu", workers=workers)
        from pneumo.inference.loading import load_torch_backend

        torch_backend, meta, directory, gate = load_torch_backend(model, device)
        return cls(meta, torch_backend, bundle_dir=directory, tta=tta,
                   gate_threshold=gate.threshold if gate is not None else None,
                   gate_far_threshold=gate.far_threshold if gate is not None else None, device=device, workers=workers)

    @property
    def has_gate(self) -> bool:
        return self.gate_threshold is not None

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
                          "training X-rays; beyond it UNKNOWN (a gate without an out-of-distribution band: refit "
                          "it with `pneumo gate fit` to warn rather than refuse on X-rays from other sites)")
        else:
            boundaries = (f"out-of-distribution warning beyond {self.gate_threshold:.2f} ({gate.get('percentile', '?')}"
                          f"th percentile of training X-rays), UNKNOWN beyond {self.gate_far_threshold:.2f}")
        return (f"chest-X-ray gate: {cheap} + Mahalanobis distance on pooled features of {layers} "
                f"({boundaries}){figures}")

    # ---- prediction --------------------------------------------------------------------------------------
    def predict(self, source: Any) -> Prediction:
        """Predict one input; never raises for bad input (the Prediction carries ``error``)."""
        started = perf_counter()
        prediction = self._finish([self._prepare(source)])[0]
        prediction.timing_ms["total"] = _ms(started)
        return prediction

    def predict_many(self, sources: Iterable[Any], batch_size: int = 16) -> list[Prediction]:
        """Predict many inputs in batches, decoding the next ones in threads while the model runs. On ONNX
        Runtime the batches (at most :data:`LANE_BATCH` inputs) run in ``backend.lanes`` single-threaded
        lanes side by side."""
        results: list[Prediction] = []
        lanes = getattr(self.backend, "lanes", 1)
        in_lanes = lanes > 1
        # Up to ``lanes`` consecutive batches run side by side; results keep the input order.
        with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="pneumo-lane") as pool:
            running: deque[Future[list[Prediction]]] = deque()
            for chunk in self._prepared_chunks(sources, min(batch_size, LANE_BATCH) if in_lanes else batch_size):
                running.append(pool.submit(self._finish, chunk, in_lanes))
                if len(running) >= lanes:
                    results.extend(running.popleft().result())
            while running:
                results.extend(running.popleft().result())
        return results

    def embed_many(self, sources: Iterable[Any], batch_size: int = 16) -> list[Embedding]:
        """Pooled features (no TTA) for inputs that pass the cheap checks; what the gate is fitted on."""
        out: list[Embedding] = []
        for chunk in self._prepared_chunks(sources, batch_size):
            ready = [p for p in chunk if p.pixels is not None]
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
        from pneumo.explain.overlay import overlay_png

        started = perf_counter()
        image = load_input(source)
        prepared = self._check(describe(source), image, {"decode": _ms(started)})
        prediction = self._finish([prepared])[0]
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
    def _prepare(self, source: Any) -> _Prepared:
        """Decode, check and preprocess one input; errors become an entry, never an exception."""
        name = describe(source)
        started = perf_counter()
        try:
            image = load_input(source)
        except ImageDecodeError as exc:
            return _Prepared(name, error=str(exc), timing={"decode": _ms(started)})
        except Exception as exc:  # a decoder bug must not take down a whole batch
            return _Prepared(name, error=f"{name or '<input>'}: unexpected error while reading "
                                         f"({type(exc).__name__}: {exc})", timing={"decode": _ms(started)})
        return self._check(name, image, {"decode": _ms(started)})

    def _check(self, name: str | None, image: InputImage, timing: dict[str, float]) -> _Prepared:
        """Cheap gate checks, then the bundle's preprocessing for inputs that pass them."""
        started = perf_counter()
        prepared = _Prepared(name, timing=timing)
        prepared.reason = cheap_reason(image.pixels, image.colour_fraction, self.checks)
        if prepared.reason is None:
            prepared.pixels = preprocess_array(image.pixels, self.meta.preprocess)
        timing["preprocess"] = _ms(started)
        return prepared

    def _prepared_chunks(self, sources: Iterable[Any], batch_size: int) -> Iterator[list[_Prepared]]:
        """Prepared inputs in order, ``batch_size`` at a time, with a bounded window decoding ahead."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        window = 2 * batch_size + self.workers
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="pneumo-decode") as pool:
            pending: deque[Future[_Prepared]] = deque()
            feed = iter(sources)
            exhausted = False
            chunk: list[_Prepared] = []
            while True:
                while not exhausted and len(pending) < window:
                    try:
                        pending.append(pool.submit(self._prepare, next(feed)))
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

    def _finish(self, prepared: list[_Prepared], lane: bool = False) -> list[Prediction]:
        ready = [p for p in prepared if p.pixels is not None]
        scored: dict[int, tuple[float, dict[str, float] | None, float | None, float | None]] = {}
        if ready:
            started = perf_counter()
            outputs, views = self._run_model([p.pixels for p in ready], lane)  # type: ignore[misc]
            model_ms = _ms(started) / len(ready)
            temperature = float(self.meta.temperature)
            probability = pneumonia_probability(outputs.logits, temperature).reshape(len(ready), views).mean(axis=1)
            classes = class_probabilities(outputs.logits, temperature)
            if classes is not None:
                classes = classes.reshape(len(ready), views, -1).mean(axis=1)
            distance = None if outputs.distance is None else outputs.distance.reshape(len(ready), views)[:, 0]
            nonxray = None if outputs.nonxray is None else outputs.nonxray.reshape(len(ready), views)[:, 0]
            for i, p in enumerate(ready):
                subtypes = None if classes is None else {
                    name: float(value) for name, value in zip(self.meta.class_names, classes[i])}
                scored[id(p)] = (float(probability[i]), subtypes, None if distance is None else float(distance[i]),
                                 None if nonxray is None else float(nonxray[i]))
                p.timing["model"] = round(model_ms, 3)
        return [self._prediction(p, scored.get(id(p))) for p in prepared]

    def _prediction(self, p: _Prepared,
                    score: tuple[float, dict[str, float] | None, float | None, float | None] | None) -> Prediction:
        timing = dict(p.timing)
        timing.setdefault("total", round(sum(timing.values()), 3))
        base = dict(path=p.name, threshold=float(self.meta.threshold), timing_ms=timing,
                    model_version=self.meta.version)
        if p.error is not None:
            return Prediction(label=None, probability=None, subtype_probabilities=None, unknown_reason=None,
                              error=p.error, **base)
        if p.reason is not None or score is None:
            return Prediction(label="UNKNOWN", probability=None, subtype_probabilities=None,
                              unknown_reason=p.reason or "not scored", error=None, **base)
        probability, subtypes, distance, nonxray = score
        gated = distance is not None and self.gate_threshold is not None
        # ``not distance <= limit`` rather than ``distance > limit``: a NaN distance is refused, never scored.
        if gated and self.gate_far_threshold is None and not distance <= self.gate_threshold:  # an old gate
            reason = (f"does not look like the chest X-rays this model was trained on (feature distance "
                      f"{distance:.1f} above the gate's threshold {self.gate_threshold:.1f})")
            return Prediction(label="UNKNOWN", probability=None, subtype_probabilities=None, unknown_reason=reason,
                              error=None, **base)
        if gated and self.gate_far_threshold is not None and not distance <= self.gate_threshold:
            reason = None
            if not distance <= self.gate_far_threshold:
                reason = (f"does not look like a chest X-ray (feature distance {distance:.1f} above the gate's far "
                          f"threshold {self.gate_far_threshold:.1f}, beyond which even X-rays from other sites "
                          "rarely fall)")
            elif nonxray is None or not nonxray <= 0.0:
                reason = (f"does not look like a chest X-ray (feature distance {distance:.1f} above the in-"
                          f"distribution threshold {self.gate_threshold:.1f}, and the gate's non-X-ray score "
                          f"{'missing' if nonxray is None else f'{nonxray:.2f}'} is above 0)")
            if reason is not None:
                return Prediction(label="UNKNOWN", probability=None, subtype_probabilities=None,
                                  unknown_reason=reason, error=None, **base)
        outside = gated and not distance <= self.gate_threshold
        ood_reason = (f"a chest X-ray unlike the training population (feature distance {distance:.1f} above the "
                      f"in-distribution threshold {self.gate_threshold:.1f}): the result is less reliable; X-rays "
                      "from other sites, other age groups or other equipment can look like this") if outside else None
        label = "PNEUMONIA" if probability >= self.meta.threshold else "NORMAL"
        return Prediction(label=label, probability=probability, subtype_probabilities=subtypes, unknown_reason=None,
                          error=None, **base, out_of_distribution=bool(outside) if gated else None,
                          ood_reason=ood_reason)

    def _gradcam(self, pixels: np.ndarray) -> np.ndarray:
        with self._explainer_lock:
            if self._explainer is None:
                from pneumo.inference.loading import build_explainer

                self._explainer = build_explainer(self)
        return self._explainer(normalize_uint8(pixels, self.meta.preprocess))


def _onnx_gate_threshold(runtime: OnnxBackend, meta: BundleMeta) -> float | None:
    """The gate threshold when the ONNX graph computes the distance (export after ``gate fit``)."""
    if not runtime.has_distance:
        return None
    threshold = (meta.gate or {}).get("threshold")
    if threshold is None:
        raise ValueError(f"{runtime.path}: the model outputs a gate distance but its metadata has no gate "
                         "threshold; re-export it with `pneumo export`")
    return float(threshold)


def _onnx_far_threshold(runtime: OnnxBackend, meta: BundleMeta) -> float | None:
    """The gate's far (UNKNOWN) boundary from the exported metadata; None for a gate fitted without one (its
    graph has no ``gate_nonxray`` output either)."""
    if not runtime.has_distance:
        return None
    far = (meta.gate or {}).get("far_threshold")
    if (far is None) != (not runtime.has_nonxray):
        raise ValueError(f"{runtime.path}: the metadata's far_threshold ({far}) and the graph's gate_nonxray output "
                         f"({'present' if runtime.has_nonxray else 'absent'}) disagree; re-export it with "
                         "`pneumo export`")
    return None if far is None else float(far)


def _weights_sha(directory: Path) -> str:
    return json.loads((directory / META_FILE).read_text())["files"][WEIGHTS_FILE]


def _matches(runtime: OnnxBackend, weights_sha: str, gate_sha: str) -> bool:
    try:
        document = runtime.bundle_document()
    except ValueError:
        return False
    return (document.get("files", {}).get(WEIGHTS_FILE) == weights_sha
            and runtime.export_info().get("gate_sha256", "") == gate_sha)


def _onnx_backend_for(directory: Path, meta: BundleMeta, threads: int = 0) -> OnnxBackend:
    """ONNX Runtime on an export matching this bundle's weights and gate: ``model.onnx`` inside the bundle if
    it matches, else a cached export (made once, with torch) under ``$PNEUMO_CACHE/onnx``."""
    from pneumo.data.cache import default_cache_dir

    weights_sha = _weights_sha(directory)
    gate_sha = (meta.gate or {}).get("sha256", "")
    cached = default_cache_dir() / "onnx" / f"{weights_sha[:20]}-{(gate_sha or 'nogate')[:12]}.onnx"
    for candidate in (directory / ONNX_FILE, cached):
        if candidate.is_file():
            runtime = OnnxBackend(candidate, threads=threads)
            if _matches(runtime, weights_sha, gate_sha):
                return runtime
    try:
        from pneumo.export.onnx import export_onnx
    except ImportError as exc:  # the light deployment: no torch to export with
        raise ValueError(f"{directory} has no matching {ONNX_FILE} and exporting one needs PyTorch ({exc}); run "
                         f"`pneumo export --model {directory} --format onnx --out {directory / ONNX_FILE}` where "
                         "torch is installed") from exc
    export_onnx(directory, cached)
    return OnnxBackend(cached, threads=threads)
