"""A simulated site for ``pneumo adapt``: figures of the parent as is, recalibration only, fine-tuned, and what
``adapt`` keeps, each measured on patients it never saw.

The site: X-rays of the parent's temporal validation block (never trained on), a few hundred sampled by patient,
each rendered with ONE fixed acquisition (``pneumo.data.acquisition.site_variant`` with the same seed for every
image: the same exposure, field of view, collimation, markers, scale and noise) and written as PNG files with a
manifest ``path,label,patient_id``. Then, as the issue's "to reach" asks: five patient-disjoint folds; adapt on
four (inside, adapt cross-fits and cross-validates on those four alone), evaluate the site bundle on the fifth
through the Predictor (``pneumo evaluate``'s path), pooled over the five.

    python bench/bench_adapt.py --data ../shared/data/kermany --out /tmp/site-bench --site-seed 3

Figures, not pass/fail (docs/site.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from pathlib import Path

import numpy as np

from pneumo.bundle import read_meta
from pneumo.data.acquisition import site_variant, to_pil
from pneumo.data.decode import decode_image
from pneumo.data.records import ImageRecord, read_manifest
from pneumo.evaluation.calibration import ThresholdRule, choose_threshold
from pneumo.evaluation.pipeline import EvaluationOptions, score_split
from pneumo.evaluation.scoring import select_records
from pneumo.gatefit.site_check import held_out_negatives
from pneumo.training.adaptation import AdaptConfig, FinetuneConfig, adapt
from pneumo.training.adaptation.adapt import FINE_TUNED, choose_method
from pneumo.training.adaptation.config import DEFAULT_MIN_AUC_GAIN, DEFAULT_SITE_SENSITIVITY
from pneumo.training.adaptation.crossfit import local_figures
from pneumo.training.adaptation.local import patient_folds

# "fine-tuned, unmatched": the same site bundles at the threshold fitted on the fold models' out-of-fold scores,
# before it is matched to the final network (what adapt shipped before the matching).
METHODS = ("parent as is", "recalibration only", "fine-tuned, unmatched", "fine-tuned", "adapt (kept)")


def sample_patients(records: list[ImageRecord], label: str, images: int, rng: np.random.Generator) -> list[ImageRecord]:
    """Whole patients of ``label``, in random order, until ``images`` X-rays are reached."""
    by_patient: dict[str, list[ImageRecord]] = {}
    for record in records:
        if record.label == label:
            by_patient.setdefault(record.patient_id, []).append(record)
    chosen: list[ImageRecord] = []
    for patient in rng.permutation(sorted(by_patient)):
        if len(chosen) >= images:
            break
        chosen += by_patient[patient]
    return chosen


def build_site(model: str, root: str, out: Path, normal: int, pneumonia: int, site_seed: int) -> Path:
    """The site's PNG files and manifest (path,label,patient_id); the same acquisition for every image."""
    _, meta = read_meta(model)
    block = select_records(meta, "val", root).records
    rng = np.random.default_rng(site_seed)
    chosen = sample_patients(block, "NORMAL", normal, rng) + sample_patients(block, "PNEUMONIA", pneumonia, rng)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, record in enumerate(chosen):
        name = f"site{site_seed}-{index:04d}.png"  # new names: nothing ties them to the Kermany files
        rendered = site_variant(decode_image(record.path), np.random.default_rng(site_seed))
        to_pil(rendered).save(images / name)
        rows.append({"path": f"images/{name}", "label": record.label, "patient_id": f"p-{record.patient_id}"})
    return write_manifest(out / "manifest.csv", rows)


def write_manifest(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "patient_id"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def fold_manifests(manifest: Path, folds: int, seed: int) -> list[tuple[Path, Path]]:
    """(adapt on, evaluate on) manifests of each outer fold, patient-disjoint."""
    records = read_manifest(manifest)
    assignment = patient_folds(records, folds, seed)
    pairs = []
    for fold in range(folds):
        parts = []
        for name, keep in (("adapt", assignment != fold), ("held", assignment == fold)):
            rows = [{"path": r.path, "label": r.label, "patient_id": r.patient_id}
                    for r, k in zip(records, keep) if k]
            parts.append(write_manifest(manifest.parent / f"fold{fold}-{name}.csv", rows))
        pairs.append((parts[0], parts[1]))
    return pairs


def held_out_scores(model: str | Path, manifest: Path, threshold: float | None = None) -> dict[str, list]:
    """Targets, P(pneumonia), flagged at the bundle's threshold (or ``threshold``), patients and the gate's
    UNKNOWN, through the Predictor (the model's figures count every image, as ``pneumo evaluate``'s main figures
    do)."""
    scored = score_split(model, "", str(manifest), EvaluationOptions(split="all"))
    scores = scored.scores
    probabilities = scores.probabilities
    cut = scored.meta.threshold if threshold is None else threshold
    return {"y": list(scores.targets), "p": list(probabilities), "flag": list(probabilities >= cut),
            "patients": scores.patient_ids, "unknown": list(scores.unknown)}


def adapt_fold(args: argparse.Namespace, adapt_on: Path, out: Path, finetune: bool) -> Path:
    # --no-replay: as `pneumo adapt` without --replay-data (a site without the parent's training images).
    tuning = FinetuneConfig(enabled=finetune, replay_data="" if args.no_replay else args.data,
                            replay_share=0.0 if args.no_replay else 0.25, max_epochs=max(1, args.max_epochs),
                            finetune_last=args.finetune_last, lr=args.lr, min_auc_gain=-1.0)  # kept: compared below
    rule = {"target_sensitivity": None if args.parent_rule else args.target_sensitivity}
    cfg = AdaptConfig(model=args.model, manifest=str(adapt_on), out=str(out), folds=args.inner_folds, seed=args.seed,
                      threads=args.threads, n_boot=200, finetune=tuning, **rule)
    return adapt(cfg, negatives=held_out_negatives).bundle  # as `pneumo adapt`: the gate widened to the site


def run_fold(args: argparse.Namespace, fold: int, adapt_on: Path, held: Path, pooled: dict) -> None:
    started = time.perf_counter()
    bundles = {"parent as is": (args.model, None),
               "recalibration only": (adapt_fold(args, adapt_on, args.out / f"fold{fold}-recal", False), None)}
    if args.max_epochs:
        tuned = adapt_fold(args, adapt_on, args.out / f"fold{fold}-tuned", True)
        record = read_meta(tuned)[1].adaptation
        bundles["fine-tuned, unmatched"] = (tuned, record["threshold_matching"]["out_of_fold_threshold"])
        bundles["fine-tuned"] = (tuned, None)
        kept, why = choose_method(record["cross_validated"], DEFAULT_MIN_AUC_GAIN)
        bundles["adapt (kept)"] = bundles["fine-tuned" if kept == FINE_TUNED else "recalibration only"]
        print(f"fold {fold}: adapt keeps {kept} ({why}); threshold matching {record['threshold_matching']}",
              flush=True)
    for name, (bundle, threshold) in bundles.items():
        for part, values in held_out_scores(bundle, held, threshold).items():
            pooled.setdefault(name, {}).setdefault(part, []).extend(values)
    print(f"fold {fold}: {time.perf_counter() - started:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", required=True, help="the parent's training data root (Kermany layout)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--site-seed", type=int, default=3, help="the site's one acquisition")
    parser.add_argument("--normal", type=int, default=100, help="normal X-rays at the site (whole patients)")
    parser.add_argument("--pneumonia", type=int, default=200, help="pneumonia X-rays at the site")
    parser.add_argument("--folds", type=int, default=5, help="outer folds: adapt on the others, evaluate on one")
    parser.add_argument("--inner-folds", type=int, default=5, help="adapt's own folds (--folds of pneumo adapt)")
    parser.add_argument("--max-epochs", type=int, default=4, help="0: recalibration only")
    parser.add_argument("--finetune-last", type=int, default=1)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--no-replay", action="store_true",
                        help="fine-tune on the local X-rays alone, as `pneumo adapt` does without --replay-data")
    parser.add_argument("--target-sensitivity", type=float, default=DEFAULT_SITE_SENSITIVITY,
                        help="adapt's threshold rule (its default)")
    parser.add_argument("--parent-rule", action="store_true", help="the parent's own rule (adapt --parent-rule)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a busy CPU)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("pneumo.adapt").setLevel(logging.INFO)  # one line per fold epoch: progress on a slow CPU
    manifest = build_site(args.model, args.data, args.out / "site", args.normal, args.pneumonia, args.site_seed)
    pooled: dict[str, dict[str, list]] = {}
    for fold, (adapt_on, held) in enumerate(fold_manifests(manifest, args.folds, args.seed)):
        run_fold(args, fold, adapt_on, held, pooled)
    report = {name: {**local_figures(np.array(v["y"]), np.array(v["p"]), np.array(v["flag"]), v["patients"],
                                     n_boot=1000, seed=0), "n_unknown": int(np.sum(v["unknown"])),
                     "best_specificity": best_specificity(np.array(v["y"]), np.array(v["p"]))}
              for name, v in pooled.items()}
    (args.out / "figures.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "pooled": report}, indent=2))
    print_table(report)


def best_specificity(y: np.ndarray, p: np.ndarray, targets: tuple[float, ...] = (0.90, 0.95)) -> dict[str, float]:
    """Specificity at the best single threshold for each sensitivity target, chosen on the pooled held-out
    scores themselves (hindsight: what the ranking allows, not what a site bundle achieves)."""
    y = y.astype(int)
    best = {}
    for target in targets:
        threshold = choose_threshold(ThresholdRule("sensitivity", target), y, p)
        best[f"{target:g}"] = float(np.mean(p[y == 0] < threshold))
    return best


def print_table(report: dict) -> None:
    def shown(figures: dict, key: str) -> str:
        interval = figures["ci95"][key]
        return f"{figures[key]:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else f"{figures[key]:.3f}"

    print(f"{'method':<22} {'AUC':<22} {'sensitivity':<22} {'specificity':<22} UNKNOWN (gate)")
    for name in METHODS:
        if name in report:
            figures = report[name]
            print(f"{name:<22} {shown(figures, 'auc'):<22} {shown(figures, 'sensitivity'):<22} "
                  f"{shown(figures, 'specificity'):<22} {figures['n_unknown']} of {figures['n']}")
    print("best single threshold on the pooled held-out scores (hindsight), specificity at sensitivity >= S:")
    for name in METHODS:
        if name in report:
            said = ", ".join(f"S={k}: {v:.3f}" for k, v in report[name]["best_specificity"].items())
            print(f"  {name:<22} {said}")


if __name__ == "__main__":
    main()
