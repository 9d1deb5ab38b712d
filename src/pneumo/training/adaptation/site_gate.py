"""Widening the copied gate to the site's own labelled X-rays (issue 24).

The parent's far boundary (UNKNOWN beyond it) sits at a high percentile of held-out *simulated* site variants'
feature distances. A real site's acquisition can put all its X-rays just past it; a site that labelled them has
shown they are chest X-rays. So the far boundary moves out to the rule the parent's fit used
(``far_percentile`` of the site X-rays' distances, never inward), and the warning zone's limit on the
non-X-ray score to ``warn_percentile`` of the site X-rays' scores there (never stricter than the parent's). The
in-distribution boundary and the non-X-ray score itself stay the parent's: the site's X-rays are still read
with the out-of-distribution warning, and anything the score calls a non-X-ray is still UNKNOWN.

Measured honestly: the boundaries are cross-fitted over the same patient-grouped folds as the operating point
(fitted on the other folds' X-rays, checked on this fold's). Then the non-X-ray images ``pneumo gate fit`` held
out of its score (:mod:`pneumo.gatefit.holdout`: CT slices, figures, viewer screenshots, ...; the composites
made with the site's X-rays inset) are judged by the widened gate; when any kind is answered UNKNOWN less often
than ``MIN_NONXRAY_REFUSED`` the parent's gate is kept and the bundle says which kind.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pneumo.bundle import BundleMeta
from pneumo.gate.mahalanobis import GateParams, load_gate, mahalanobis, nonxray_score, save_gate
from pneumo.gate.verdict import GateRule, Reading
from pneumo.inference.loading import load_bundle
from pneumo.inference.network import InferenceNetwork, TorchBackend
from pneumo.inference.predictor import Predictor

log = logging.getLogger("pneumo.adapt")
# Every kind of held-out non-X-ray image must still be answered UNKNOWN at least this often by the widened gate.
MIN_NONXRAY_REFUSED = 0.97
# gatefit's defaults (GateFitConfig), used when the parent's meta.gate does not record them.
FAR_PERCENTILE, WARN_PERCENTILE = 99.8, 87.5
# (the parent's meta.gate, the local X-rays' paths) -> (non-X-ray images the Predictor accepts, the kind of each):
# pneumo.gatefit.site_check.held_out_negatives, passed in from above (training may not import gatefit).
Negatives = Callable[[dict[str, Any], list[str]], tuple[list[Any], list[str]]]


@dataclass
class Scores:
    """The gate's two scores on a set of images; ``refused``: the cheap checks (or decoding) refused it."""

    distance: np.ndarray
    nonxray: np.ndarray
    refused: np.ndarray


@dataclass
class SiteGate:
    params: GateParams | None  # the widened gate to ship; None: the parent's is copied unchanged
    record: dict[str, Any]  # meta.adaptation.gate
    warnings: list[str]


def embed_scores(predictor: Predictor, sources: list[Any], params: GateParams) -> Scores:
    """The gate's two scores on each source (features through ``predictor``, cheap checks included)."""
    embedded = predictor.embed_many(sources, batch_size=16)
    refused = np.array([e.features is None for e in embedded], dtype=bool)
    dim = params.dim
    features = np.stack([np.zeros(dim) if e.features is None else np.asarray(e.features, np.float64)
                         for e in embedded]) if embedded else np.zeros((0, dim))
    return Scores(mahalanobis(features, params), nonxray_score(features, params), refused)


def unknown(rule: GateRule, scores: Scores) -> np.ndarray:
    """(N,) bool: answered UNKNOWN by ``rule`` (or refused before it)."""
    return np.array([bool(r) or rule.judge(float(d), float(s)).reading is Reading.UNKNOWN
                     for d, s, r in zip(scores.distance, scores.nonxray, scores.refused)], dtype=bool)


def widen(params: GateParams, xrays: Scores, percentiles: tuple[float, float]) -> GateParams:
    """The gate with its far boundary at ``far_percentile`` of the X-rays' distances and its warning-zone limit at
    ``warn_percentile`` of their non-X-ray scores there, neither narrower than ``params``' own."""
    far_percentile, warn_percentile = percentiles
    usable = ~xrays.refused
    distance = xrays.distance[usable]
    wide = dataclasses.replace(params)
    if distance.size:
        wide.far_threshold = max(float(params.far_threshold), float(np.percentile(distance, far_percentile)))
    inside = usable & (xrays.distance > wide.threshold) & (xrays.distance <= wide.far_threshold) & (xrays.nonxray <= 0)
    if inside.any():
        # pneumo.gate.mahalanobis.fit_warning_limit's rule, on the scores (it takes features, which are not kept)
        fitted = min(0.0, float(np.percentile(xrays.nonxray[inside], warn_percentile)))
        wide.warn_nonxray = max(params.rule().warning_limit, fitted) if params.warn_nonxray is not None else None
    return wide


def cross_fitted(params: GateParams, xrays: Scores, folds: np.ndarray, percentiles: tuple[float, float]
                 ) -> tuple[np.ndarray, list[dict[str, float | None]]]:
    """(N,) bool: each X-ray answered UNKNOWN by the gate widened on the other folds' X-rays; per-fold bounds."""
    flagged = np.zeros(len(folds), dtype=bool)
    bounds = []
    for fold in range(int(folds.max()) + 1):
        held = folds == fold
        others = Scores(xrays.distance[~held], xrays.nonxray[~held], xrays.refused[~held])
        wide = widen(params, others, percentiles)
        flagged[held] = unknown(wide.rule(), Scores(xrays.distance[held], xrays.nonxray[held], xrays.refused[held]))
        bounds.append({"fold": fold, "far_threshold": wide.far_threshold, "warn_nonxray": wide.warn_nonxray})
    return flagged, bounds


def refusal_by_kind(rule: GateRule, scores: Scores, kinds: list[str]) -> dict[str, dict[str, float]]:
    """Per kind of non-X-ray image: images and the share answered UNKNOWN."""
    flagged = unknown(rule, scores)
    names = np.array(kinds)
    return {k: {"n": int((names == k).sum()), "unknown": round(float(flagged[names == k].mean()), 4)}
            for k in dict.fromkeys(kinds)}


def gate_predictor(parent_dir: Path, meta: BundleMeta, params: GateParams, device: str) -> Predictor:
    """A Predictor that embeds with the gate's feature layers and pooling (torch: features, not verdicts)."""
    model = load_bundle(parent_dir, device=device)[0]
    backend = TorchBackend(InferenceNetwork(model, params.feature_layers, params.pooling, None), device)
    return Predictor(meta, backend, bundle_dir=parent_dir)


RULE = ("far boundary at the {:g}th percentile of the local X-rays' feature distances and warning-zone limit at the "
        "{:g}th percentile of their non-X-ray scores there (gate fit's rule), never narrower than the parent's; "
        "in-distribution boundary and non-X-ray score kept")


def _bounds(parent: GateParams, wide: GateParams) -> dict[str, dict[str, float | None]]:
    return {name: {"threshold": p.threshold, "far_threshold": p.far_threshold, "warn_nonxray": p.warn_nonxray}
            for name, p in (("parent", parent), ("widened_to", wide))}


def _median(scores: Scores) -> float | None:
    usable = scores.distance[~scores.refused]
    return float(np.median(usable)) if usable.size else None


def _skip(why: str) -> SiteGate:
    log.info("the parent's gate is copied unchanged: %s", why)
    return SiteGate(None, {"widened": False, "why": why}, [])


def site_gate(parent_dir: Path, meta: BundleMeta, paths: list[str], folds: np.ndarray, *, keep_parent: bool,
              layers_changed: bool, negatives: Negatives | None, device: str = "cpu") -> SiteGate:
    """The gate a site bundle ships (see the module docstring), and what ``meta.adaptation.gate`` records."""
    if keep_parent:
        return _skip("--keep-parent-gate")
    if negatives is None:
        return _skip("no non-X-ray images were given to check a widened gate against")
    if layers_changed:
        return _skip("fine-tuning trained the gate's feature layers: the gate must be refitted, not widened")
    params = load_gate(parent_dir, meta.gate or {})
    if params is None or params.far_threshold is None:
        return _skip("the parent has no two-boundary gate to widen")
    summary = meta.gate or {}
    percentiles = (float(summary.get("far_percentile", FAR_PERCENTILE)),
                   float(summary.get("warn_percentile", WARN_PERCENTILE)))
    predictor = gate_predictor(parent_dir, meta, params, device)
    xrays = embed_scores(predictor, list(paths), params)
    before = unknown(params.rule(), xrays)
    after, per_fold = cross_fitted(params, xrays, folds, percentiles)
    wide = widen(params, xrays, percentiles)
    sources, kinds = negatives(summary, list(paths))
    nonxrays = embed_scores(predictor, sources, params)
    refused_after = refusal_by_kind(wide.rule(), nonxrays, kinds)
    weakest = min(refused_after, key=lambda k: refused_after[k]["unknown"])
    record = {"rule": RULE.format(*percentiles), **_bounds(params, wide),
              "local_xrays": {"n": int(len(paths)), "unknown_parent": int(before.sum()),
                              "unknown_widened_cross_fitted": int(after.sum()), "per_fold": per_fold,
                              "distance_median": _median(xrays)},
              "nonxray_held_out_unknown": {"parent": refusal_by_kind(params.rule(), nonxrays, kinds),
                                           "widened": refused_after, "min_required": MIN_NONXRAY_REFUSED}}
    log.info("gate: the parent answers UNKNOWN for %d of %d local X-rays, the widened gate (cross-fitted) for %d; "
             "far boundary %.2f -> %.2f; held-out non-X-rays UNKNOWN at least %.3f (%s)", before.sum(), len(paths),
             after.sum(), params.far_threshold, wide.far_threshold, refused_after[weakest]["unknown"], weakest)
    if refused_after[weakest]["unknown"] < MIN_NONXRAY_REFUSED:
        warning = (f"the gate was not widened to the local X-rays: the widened gate answered UNKNOWN for only "
                   f"{refused_after[weakest]['unknown']:.1%} of held-out {weakest} images (at least "
                   f"{MIN_NONXRAY_REFUSED:.0%} of every kind required); the parent's gate is kept, and answers "
                   f"UNKNOWN for {int(before.sum())} of the {len(paths)} local X-rays")
        return SiteGate(None, {"widened": False, "why": warning, **record}, [warning])
    if (wide.far_threshold, wide.warn_nonxray) == (params.far_threshold, params.warn_nonxray):
        return SiteGate(None, {"widened": False, "why": "the local X-rays lie within the parent's boundaries",
                               **record}, [])
    return SiteGate(wide, {"widened": True, **record}, [])


def save_site_gate(directory: Path, params: GateParams, parent_summary: dict[str, Any],
                   record: dict[str, Any]) -> dict[str, Any]:
    """Write the widened ``gate.safetensors`` into ``directory``; returns the site bundle's ``meta.gate``: the
    parent's summary with the new file's checksum and boundaries, and the adaptation record under ``site``."""
    summary = {**parent_summary, **save_gate(directory, params)}
    summary["site"] = {k: record[k] for k in ("parent", "widened_to", "local_xrays", "rule")}
    return summary
