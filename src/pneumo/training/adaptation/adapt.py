"""``adapt``: from a parent bundle and a site's labelled X-rays to a site bundle.

1. The parent scores every local X-ray (no local label used: the parent's figures as is).
2. Recalibration: temperature and threshold cross-fitted over patient-grouped folds.
3. Fine-tuning (optional): out-of-fold logits after each epoch; the epoch count with the best pooled AUC, its
   operating point cross-fitted the same way.
4. The method with the better cross-validated AUC is kept (fine-tuning must win by ``min_auc_gain``); its rule
   is fitted on all local labels (out-of-fold scores for a fine-tuned model, the threshold then matched to the
   final network by the share of local X-rays it flags) and the site bundle written.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pneumo import __version__
from pneumo.bundle import BundleMeta, read_meta
from pneumo.config import AugmentConfig
from pneumo.data.augment import BatchPreprocess, geometric_transform
from pneumo.data.cache import ImageCache
from pneumo.data.dataset import XrayDataset
from pneumo.evaluation.calibration import ThresholdRule
from pneumo.gate.mahalanobis import GATE_FILE
from pneumo.evaluation.metrics import auc_or_none
from pneumo.inference.decision import is_pneumonia
from pneumo.inference.loading import load_bundle
from pneumo.inference.probability import OutputHead
from pneumo.training.adaptation.config import AdaptConfig
from pneumo.training.adaptation.crossfit import (OperatingPoint, cross_fit, fit_operating_point, local_figures,
                                                 matched_threshold, summarise_points)
from pneumo.training.adaptation.finetune import FinetuneSetup, changed_gate_layers, fold_curves, train_final
from pneumo.training.adaptation.local import LocalData, load_local
from pneumo.training.adaptation.replay import parent_run_config, replay_records
from pneumo.training.adaptation.site_bundle import parent_provenance, write_site_bundle
from pneumo.training.adaptation.site_gate import Negatives, SiteGate, save_site_gate, site_gate
from pneumo.training.loop import evaluate
from pneumo.training.runtime import pick_device, seed_everything

log = logging.getLogger("pneumo.adapt")
PARENT, RECALIBRATION, FINE_TUNED = "parent", "recalibration", "fine-tuned"


@dataclass
class AdaptResult:
    bundle: Path
    method: str  # RECALIBRATION or FINE_TUNED
    why: str
    figures: dict[str, dict[str, Any]]  # cross-validated local figures per method (PARENT: as shipped)
    point: OperatingPoint
    rule: ThresholdRule
    warnings: list[str] = field(default_factory=list)
    gate: dict[str, Any] = field(default_factory=dict)  # meta.adaptation.gate


def threshold_rule(cfg: AdaptConfig, parent: BundleMeta) -> ThresholdRule:
    """The target sensitivity (default ``DEFAULT_SITE_SENSITIVITY``), or with ``None`` (``--parent-rule``) the
    rule the parent's threshold was chosen with."""
    if cfg.target_sensitivity is not None:
        return ThresholdRule("sensitivity", cfg.target_sensitivity)
    stored = (parent.calibration or {}).get("rule") or {}
    if not stored.get("kind"):
        raise ValueError(f"{cfg.model}: the parent records no threshold rule; give --target-sensitivity S")
    return ThresholdRule(stored["kind"], float(stored.get("value") or 0.0))


def _setup(cfg: AdaptConfig, parent_dir: Path, meta: BundleMeta, local: LocalData,
           device: torch.device) -> FinetuneSetup:
    """The fine-tuning context; the replay images decoded once into the cache."""
    augment, smoothing, replay = AugmentConfig(enabled=False), 0.0, None
    if cfg.finetune.enabled:
        run = parent_run_config(meta, str(parent_dir))
        augment, smoothing = run.augment, run.train.label_smoothing
        if meta.classes == 3 and any(r.label == "PNEUMONIA" and not r.subtype for r in local.records):
            raise ValueError(f"{cfg.manifest}: fine-tuning a 3-class bundle needs a bacterial/viral subtype for "
                             "every pneumonia image; add a subtype column, or adapt with --no-finetune")
    if cfg.finetune.enabled and cfg.finetune.replay_share > 0:
        records = replay_records(meta, str(parent_dir), cfg.finetune.replay_data)
        cache = ImageCache([r.path for r in records], meta.preprocess, cfg.cache_dir or None)
        failures = {f.path for f in cache.warm(workers=1, progress=cfg.progress)}
        keep = [i for i, r in enumerate(records) if r.path not in failures]
        records, cache = [records[i] for i in keep], cache.subset(keep) if failures else cache
        replay = XrayDataset(records, cache, geometric_transform(augment), meta.classes)
    return FinetuneSetup(str(parent_dir), meta, augment, smoothing, local, replay, cfg.finetune, device, cfg.seed)


def _score_parent(setup: FinetuneSetup) -> np.ndarray:
    """The parent's raw logits on every local X-ray, through the bundle's own preprocessing."""
    model, _, _ = load_bundle(setup.parent, device=str(setup.device))
    everything = np.arange(len(setup.local.records))
    return evaluate(model, setup.eval_loader(everything), BatchPreprocess(setup.meta.preprocess), setup.device)[0]


def _figures(local: LocalData, probabilities: np.ndarray, flagged: np.ndarray, cfg: AdaptConfig) -> dict[str, Any]:
    return local_figures(local.targets, probabilities, flagged, local.patients, n_boot=cfg.n_boot, seed=cfg.seed)


def _fine_tuned(setup: FinetuneSetup, rule: ThresholdRule, head: OutputHead,
                cfg: AdaptConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """Out-of-fold logits at the best epoch count, and their cross-fitted figures."""
    curves = fold_curves(setup)
    y = setup.local.targets
    by_epoch = [auc_or_none(y, head.score(curve, 1.0)[0]) for curve in curves]
    best = int(np.nanargmax([np.nan if a is None else a for a in by_epoch])) + 1
    log.info("fine-tuning: pooled out-of-fold AUC by epoch %s; best after %d", by_epoch, best)
    crossed = cross_fit(curves[best - 1], y, setup.local.folds, rule, head)
    figures = _figures(setup.local, crossed.probabilities, crossed.flagged, cfg)
    figures.update(epochs=best, auc_by_epoch=by_epoch, per_fold=summarise_points(crossed.points))
    return curves[best - 1], figures


def choose_method(figures: dict[str, dict[str, Any]], min_gain: float) -> tuple[str, str]:
    """Fine-tuned when its cross-validated AUC beats recalibration alone by ``min_gain``, else recalibration."""
    recal = figures[RECALIBRATION]["auc"]
    if FINE_TUNED not in figures:
        return RECALIBRATION, "fine-tuning was not run (--no-finetune)"
    tuned = figures[FINE_TUNED]["auc"]
    said = (f"cross-validated local AUC {_auc(tuned)} fine-tuned ({figures[FINE_TUNED]['epochs']} epochs) against "
            f"{_auc(recal)} recalibrated")
    if tuned is not None and recal is not None and tuned >= recal + min_gain:
        return FINE_TUNED, f"{said}: fine-tuning ranks better by at least {min_gain:g}"
    return RECALIBRATION, f"{said}: fine-tuning does not rank better by {min_gain:g}, so the parent's weights are kept"


def _auc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def adapt(cfg: AdaptConfig, negatives: Negatives | None = None) -> AdaptResult:
    """Adapt ``cfg.model`` to the site's labels in ``cfg.manifest``; writes the site bundle to ``cfg.out``. With
    ``negatives`` (``pneumo.gatefit.site_check.held_out_negatives``) the copied gate is widened to the local
    X-rays where those non-X-ray images stay refused; without, it is copied unchanged."""
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"--out {out} already exists and is not empty; choose a new folder")
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    parent_dir, meta = read_meta(cfg.model)
    rule, head = threshold_rule(cfg, meta), OutputHead.of(meta.class_names)
    local = load_local(cfg.manifest, meta.preprocess, folds=cfg.folds, min_per_class=cfg.min_per_class,
                       seed=cfg.seed, cache_dir=cfg.cache_dir, progress=cfg.progress)
    setup = _setup(cfg, parent_dir, meta, local, pick_device(cfg.device))
    parent_logits = _score_parent(setup)
    as_is = head.score(parent_logits, meta.temperature)[0]
    crossed = cross_fit(parent_logits, local.targets, local.folds, rule, head)
    figures = {PARENT: _figures(local, as_is, is_pneumonia(as_is, meta.threshold), cfg),
               RECALIBRATION: {**_figures(local, crossed.probabilities, crossed.flagged, cfg),
                               "per_fold": summarise_points(crossed.points)}}
    tuned_logits = None
    if cfg.finetune.enabled:
        tuned_logits, figures[FINE_TUNED] = _fine_tuned(setup, rule, head, cfg)
    method, why = choose_method(figures, cfg.finetune.min_auc_gain)
    log.info("kept %s: %s", method, why)
    if method == FINE_TUNED:
        model, point, matching = _final_fine_tuned(setup, figures[FINE_TUNED]["epochs"], tuned_logits, rule, head)
    else:
        model, point, matching = load_bundle(parent_dir)[0], fit_operating_point(parent_logits, local.targets, rule,
                                                                                 head), None
    # Recalibration keeps the parent's weights (loaded trainable, but untouched): its gate layers are unchanged.
    warnings = _gate_warnings(model, meta, out) if method == FINE_TUNED else []
    gate = site_gate(parent_dir, meta, [r.path for r in local.records], local.folds, keep_parent=cfg.keep_parent_gate,
                     layers_changed=bool(warnings), negatives=negatives, device=str(setup.device))
    warnings += gate.warnings
    record = _record(cfg, parent_dir, meta, local, rule, method, why, figures, point, warnings)
    record.update(threshold_matching=matching, gate=gate.record)
    _write(cfg, out, model, parent_dir, meta, local, method, figures, point, rule, record, gate)
    return AdaptResult(out, method, why, figures, point, rule, warnings, gate.record)


def _write(cfg: AdaptConfig, out: Path, model: torch.nn.Module, parent_dir: Path, meta: BundleMeta, local: LocalData,
           method: str, figures: dict[str, Any], point: OperatingPoint, rule: ThresholdRule, record: dict[str, Any],
           gate: SiteGate) -> None:
    """The site bundle, with the widened gate (written to a scratch folder first) when there is one."""
    with tempfile.TemporaryDirectory() as scratch:
        widened = None
        if gate.params is not None:
            widened = (save_site_gate(Path(scratch), gate.params, meta.gate or {}, gate.record),
                       Path(scratch) / GATE_FILE)
        write_site_bundle(out, model.cpu(), parent_dir, meta, temperature=point.temperature,
                          threshold=point.threshold, description=f"site adaptation ({method}) of {meta.version} on "
                                                                 f"{len(local.records)} local X-rays",
                          metrics=_metrics(figures[method], method),
                          calibration=_calibration(cfg, local, rule, point, figures[method], meta),
                          adaptation=record, export_onnx=cfg.export_onnx, gate=widened)


def _final_fine_tuned(setup: FinetuneSetup, epochs: int, oof_logits: np.ndarray, rule: ThresholdRule,
                      head: OutputHead) -> tuple[torch.nn.Module, OperatingPoint, dict[str, Any]]:
    """The network trained on every local label, and its operating point: temperature and threshold fitted on
    the fold models' out-of-fold scores, the threshold then moved to flag, on the final network's own scores, as
    many local X-rays as it flags on those (``matched_threshold``)."""
    y = setup.local.targets
    model = train_final(setup, epochs)
    fitted = fit_operating_point(oof_logits, y, rule, head)
    prep = BatchPreprocess(setup.meta.preprocess).to(setup.device)
    own = evaluate(model, setup.eval_loader(np.arange(len(y))), prep, setup.device)[0]
    reference, final = head.score(oof_logits, fitted.temperature)[0], head.score(own, fitted.temperature)[0]
    threshold = matched_threshold(reference, fitted.threshold, final)
    matching = {"out_of_fold_threshold": fitted.threshold, "threshold": threshold, "n": int(len(y)),
                "flagged_out_of_fold": int(is_pneumonia(reference, fitted.threshold).sum()),
                "final_flagged_at_out_of_fold_threshold": int(is_pneumonia(final, fitted.threshold).sum()),
                "final_flagged_at_threshold": int(is_pneumonia(final, threshold).sum())}
    log.info("threshold %.4f on the out-of-fold scores flags %d of %d local X-rays; the final network flags %d at "
             "it, %d at the matched %.4f", fitted.threshold, matching["flagged_out_of_fold"], len(y),
             matching["final_flagged_at_out_of_fold_threshold"], matching["final_flagged_at_threshold"], threshold)
    return model, OperatingPoint(fitted.temperature, threshold), matching


def _gate_warnings(model: torch.nn.Module, meta: BundleMeta, out: Path) -> list[str]:
    changed = changed_gate_layers(model, meta)
    if not changed:
        return []
    return [f"fine-tuning trained the gate's feature layers {changed}; the copied gate was fitted on the parent's "
            f"features: refit it with `pneumo gate fit --model {out} --data ROOT`, then `pneumo export --model "
            f"{out} --into-bundle`"]


def _record(cfg: AdaptConfig, parent_dir: Path, meta: BundleMeta, local: LocalData, rule: ThresholdRule, method: str,
            why: str, figures: dict[str, Any], point: OperatingPoint, warnings: list[str]) -> dict[str, Any]:
    """``meta.adaptation``: provenance, the method kept and why, and the cross-validated figures of each."""
    fitted_on = ("the out-of-fold scores of the fold models (the final network's own scores on its training images "
                 "would be optimistic); the threshold then matched to the final network so that it flags as many "
                 "local X-rays as the fold models did (threshold_matching)" if method == FINE_TUNED
                 else "the parent's scores")
    return {"parent": parent_provenance(parent_dir, meta), "local": local.describe(), "method": method, "why": why,
            "selection_rule": f"fine-tuned kept when its cross-validated AUC beats recalibration's by at least "
                              f"{cfg.finetune.min_auc_gain:g}",
            "rule": rule.to_dict(), "temperature": point.temperature, "threshold": point.threshold,
            "operating_point_fitted_on": f"all {len(local.records)} local labels, {fitted_on}",
            "folds": cfg.folds, "seed": cfg.seed, "cross_validated": figures,
            "fine_tuning": dataclasses.asdict(cfg.finetune), "warnings": warnings,
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "pneumo_version": __version__}


def _metrics(figures: dict[str, Any], method: str) -> dict[str, Any]:
    return {"split": "local, cross-validated", "method": method,
            **{k: figures[k] for k in ("n", "auc", "sensitivity", "specificity", "ci95")}}


def _calibration(cfg: AdaptConfig, local: LocalData, rule: ThresholdRule, point: OperatingPoint,
                 figures: dict[str, Any], parent: BundleMeta) -> dict[str, Any]:
    """``meta.calibration`` as ``pneumo calibrate`` writes it, with the cross-fitted (not in-sample) figures as
    what the rule achieves, so that evaluation quotes honest ones."""
    return {"split": "local", "source": cfg.manifest, "fingerprint": local.describe()["fingerprint"],
            "n": len(local.records), "rule": rule.to_dict(), "temperature": point.temperature,
            "temperature_fitted": True, "threshold": point.threshold, "cross_fitted_folds": cfg.folds,
            "achieved": {k: figures[k] for k in ("sensitivity", "specificity", "auc", "confusion_matrix")},
            "previous": {"threshold": parent.threshold, "temperature": parent.temperature},
            "skipped": len(local.skipped), "backend": "torch", "tta": False,
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "pneumo_version": __version__,
            "warnings": []}
