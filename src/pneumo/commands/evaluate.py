"""``pneumo evaluate``: score a split with a model and write metrics, predictions, plots and a report."""

from __future__ import annotations

import argparse
import sys

from pneumo.data.selection import SPLIT_CHOICES
from pneumo.optional import require_extra



def add_data_arguments(p: argparse.ArgumentParser, default_split: str) -> None:
    """Flags shared by evaluate, calibrate and compare: where the images are and how to score them."""
    p.add_argument("--data", default="", metavar="ROOT", help="dataset root in the Kermany layout")
    p.add_argument("--manifest", default="", metavar="CSV",
                   help="CSV manifest (path,label[,split][,patient_id][,subtype]) instead of, or with, a root")
    p.add_argument("--split", default=default_split, choices=SPLIT_CHOICES,
                   help="which images: 'val' is the patient-level validation the model was trained against")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"),
                   help="scored exactly as `pneumo predict --backend` answers; auto: ONNX Runtime when the bundle "
                        "holds model.onnx, else torch")
    p.add_argument("--tta", action="store_true", help="average over the test-time views, as `pneumo predict --tta`")
    p.add_argument("--cache-dir", default="", help="unused: images are scored through the Predictor (kept so old "
                   "command lines still run)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False, help="progress bars")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="metrics with 95%% intervals, plots and an HTML report for one split",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="bundle directory, run directory (its best/), or a shipped name")
    add_data_arguments(p, "test")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for metrics.json, predictions.csv, plots, "
                   "report.html")
    p.add_argument("--threshold", type=float, default=None,
                   help="decision threshold on P(pneumonia); unset means the bundle's calibrated one")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples for the 95%% CIs")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_extra("eval", needed_for="pneumo evaluate")
    from pneumo.evaluation.pipeline import EvaluationOptions, evaluate_bundle, format_summary

    options = EvaluationOptions(split=args.split, threshold=args.threshold, device=args.device,
                                batch_size=args.batch_size, cache_dir=args.cache_dir, n_boot=args.bootstrap,
                                seed=args.seed, progress=args.progress, backend=args.backend, tta=args.tta)
    result = evaluate_bundle(args.model, args.data, args.manifest, args.out, options)
    metrics = result.metrics
    print(f"{metrics['model_version']} on split {metrics['split']!r}: {metrics['n']} images "
          f"({metrics['n_pneumonia']} pneumonia, {metrics['n_normal']} normal), {len(metrics['skipped'])} skipped")
    print(format_summary(metrics))
    if metrics["calibrated_on_this_split"]:
        print("NOT HELD-OUT: the bundle was calibrated on these images (calibrated_on_this_split: true)")
    print(f"wrote {result.files['report']}, {result.files['metrics'].name}, {result.files['predictions'].name} "
          f"and {sum(p.suffix == '.png' for p in result.files.values())} plots", flush=True)
    # Warnings last, so they are what the terminal shows at the end.
    for skipped in metrics["skipped"]:
        print(f"skipped unreadable image {skipped['path']}: {skipped['reason']}", file=sys.stderr)
    for warning in result.warnings:
        loud = "!!! " if "fitted on this very split" in warning else ""
        print(f"{loud}WARNING: {warning}", file=sys.stderr)
    return 0
