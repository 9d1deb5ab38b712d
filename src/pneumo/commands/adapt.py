"""``pneumo adapt``: a site bundle from a parent bundle and the site's own labelled X-rays."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("adapt", help="recalibrate (and fine-tune when it ranks better) a bundle on a site's "
                              "labelled X-rays, with cross-validated local figures",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="the parent: bundle directory, run directory or shipped name")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", metavar="CSV", help="local labels: path,label,patient_id (one row per X-ray)")
    source.add_argument("--from-history", metavar="DB", help="reviewed analyses in pneumo's history (a database URL "
                        "as pneumo serve --db): each image's latest review, NOT_ASSESSABLE left out; needs --images")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="with --from-history: the folder holding the reviewed images (the history keeps only their "
                        "SHA-256; files are matched by it)")
    p.add_argument("--out", required=True, metavar="SITE_BUNDLE", help="the site bundle's folder (new)")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--target-sensitivity", type=float, default=None, metavar="S",
                      help="threshold rule: the highest with cross-validated sensitivity >= S (unset: 0.9, the site "
                      "target in docs/site.md)")
    rule.add_argument("--parent-rule", action="store_true",
                      help="use the parent's own threshold rule instead (0.95 sensitivity for default)")
    p.add_argument("--folds", type=int, default=5, help="patient-grouped folds for cross-fitting and -validation")
    p.add_argument("--min-per-class", type=int, default=20, help="refuse with fewer local labels of a class")
    p.add_argument("--finetune", action=argparse.BooleanOptionalAction, default=True,
                   help="also try fine-tuning, kept only when its cross-validated AUC is better")
    p.add_argument("--replay-data", default="", metavar="ROOT", help="the parent's training data (replayed)")
    p.add_argument("--replay-share", type=float, default=None,
                   help="share of each batch from --replay-data (unset: 0.25 with --replay-data, else 0: the site "
                   "bundle then fine-tunes on local X-rays alone, and says so)")
    p.add_argument("--finetune-last", type=int, default=1, metavar="N", help="top backbone blocks trained")
    p.add_argument("--lr", type=float, default=5e-4, help="fine-tuning learning rate (constant)")
    p.add_argument("--max-epochs", type=int, default=6, help="epoch counts tried by cross-validation: 1..N")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--min-auc-gain", type=float, default=0.005,
                   help="fine-tuning must beat recalibration's cross-validated AUC by this much")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (0: torch's default; 1 is fastest on a CPU shared with other jobs)")
    p.add_argument("--cache-dir", default="", help="where decoded images are cached (unset: ~/.cache/pneumo)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="patient bootstrap resamples")
    p.add_argument("--onnx", action=argparse.BooleanOptionalAction, default=True,
                   help="add model.onnx to the site bundle (pneumo export --into-bundle)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False, help="progress bars")
    p.add_argument("--keep-parent-gate", action="store_true",
                   help="copy the parent's gate unchanged (default: its far boundary widened to the local X-rays, "
                        "unless held-out non-X-ray images would then pass)")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace):
    from pneumo.training.adaptation import AdaptConfig, FinetuneConfig

    tuning = FinetuneConfig(enabled=args.finetune, finetune_last=args.finetune_last, lr=args.lr,
                            max_epochs=args.max_epochs, batch_size=args.batch_size, replay_data=args.replay_data,
                            replay_share=replay_share(args), min_auc_gain=args.min_auc_gain)
    # Unset: AdaptConfig's default site rule; --parent-rule: None, the parent's own rule.
    rule = {"target_sensitivity": None} if args.parent_rule else (
        {} if args.target_sensitivity is None else {"target_sensitivity": args.target_sensitivity})
    return AdaptConfig(model=args.model, manifest=args.manifest, out=args.out, folds=args.folds,
                       min_per_class=args.min_per_class, seed=args.seed, device=args.device, threads=args.threads,
                       cache_dir=args.cache_dir, n_boot=args.bootstrap, export_onnx=args.onnx, progress=args.progress,
                       keep_parent_gate=args.keep_parent_gate, finetune=tuning, **rule)


def replay_share(args: argparse.Namespace) -> float:
    """Replay by default only where the parent's training images are at hand: a site rarely has them, and
    fine-tuning without them is still chosen only when it beats recalibration on the site's own folds."""
    if args.replay_share is not None:
        return args.replay_share
    return 0.25 if args.replay_data else 0.0


def _line(name: str, figures: dict) -> str:
    ci = figures["ci95"]

    def shown(key: str) -> str:
        value, interval = figures[key], ci.get(key)
        text = "n/a" if value is None else f"{value:.3f}"
        return text + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")

    return f"  {name:<14} AUC {shown('auc')}  sensitivity {shown('sensitivity')}  specificity {shown('specificity')}"


def manifest_from_history(args: argparse.Namespace) -> str:
    """Write the history's reviewed images found under --images as a manifest beside --out; its path."""
    from pathlib import Path

    from pneumo.service.history import open_history
    from pneumo.service.site_data import reviewed_images
    from pneumo.training.adaptation.from_history import write_history_manifest

    if not args.images:
        raise ValueError("--from-history needs --images DIR: the history keeps each image's SHA-256, not the image")
    history = open_history(args.from_history)
    try:
        reviewed = reviewed_images(history.engine)
    finally:
        history.close()
    out = Path(args.out)
    written = write_history_manifest(reviewed, Path(args.images), out.parent / f"{out.name}-from-history.csv")
    print(f"history: {len(reviewed)} reviewed images (not assessable left out), {written.written} found in "
          f"{args.images}, {written.missing} missing; labels written to {written.path}", flush=True)
    return str(written.path)


def run(args: argparse.Namespace) -> int:
    if args.images and not args.from_history:
        raise ValueError("--images goes with --from-history (a --manifest names its own image paths)")
    if args.from_history:
        args.manifest = manifest_from_history(args)
    from pneumo.gatefit.site_check import held_out_negatives
    from pneumo.training.adaptation import adapt

    config = _config(args)
    if config.finetune.enabled and config.finetune.replay_share == 0:
        print("fine-tuning without replaying the parent's training images (no --replay-data): a fine-tuned site "
              "bundle is fitted to this site and may read the parent's population worse", file=sys.stderr)
    result = adapt(config, negatives=None if config.keep_parent_gate else held_out_negatives)
    first = next(iter(result.figures.values()))
    print(f"local X-rays: {first['n']} ({first['n_pneumonia']} pneumonia, {first['n_normal']} normal); "
          f"figures pooled over {args.folds} patient-grouped folds, each fold's operating point fitted without it:")
    for name, figures in result.figures.items():
        print(_line(name if name != "parent" else "parent as is", figures))
    print(f"kept: {result.method} ({result.why})")
    print(f"operating point on all local labels ({result.rule.describe()}): temperature "
          f"{result.point.temperature:.4f}, threshold {result.point.threshold:.4f}")
    gate = result.gate
    if "unknown_parent" in gate.get("local_xrays", {}):
        xrays, bounds = gate["local_xrays"], gate["widened_to"]
        done = "widened" if gate["widened"] else f"the parent's, kept ({gate['why']})"
        print(f"gate: {done}; local X-rays answered UNKNOWN: {xrays['unknown_parent']} of {xrays['n']} by the "
              "parent's gate, "
              f"{xrays['unknown_widened_cross_fitted']} by the widened one (cross-fitted; far boundary "
              f"{gate['parent']['far_threshold']:.2f} -> {bounds['far_threshold']:.2f})")
    else:
        print(f"gate: the parent's, unchanged ({gate.get('why')})")
    print(f"wrote site bundle {result.bundle}. Assistive tool, not a diagnosis: check it on X-rays it never saw "
          "(pneumo evaluate) before use.", flush=True)
    for warning in result.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    return 0
