"""``pneumo compare``: several runs or bundles side by side, figures with 95% intervals, a table and a plot."""

from __future__ import annotations

import argparse
import sys

from pneumo.commands.evaluate import add_data_arguments
from pneumo.optional import require_extra



def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="compare runs/bundles side by side (table and plot)",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("models", nargs="+", metavar="RUN_OR_BUNDLE",
                   help="run directories, bundle directories, shipped names, or `pneumo evaluate` output folders")
    add_data_arguments(p, "val")
    p.add_argument("--out", default="pneumo-compare", metavar="DIR", help="folder for compare.png and compare.json")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples when scoring, and for the paired AUC differences")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_extra("eval", needed_for="pneumo compare")
    from pneumo.evaluation.compare import (different_images, format_differences, format_table, paired_differences,
                                           scored_metrics, stored_metrics, unique_names, write_comparison)
    from pneumo.evaluation.pipeline import EvaluationOptions

    if args.data or args.manifest:
        options = EvaluationOptions(split=args.split, device=args.device, batch_size=args.batch_size,
                                    cache_dir=args.cache_dir, n_boot=args.bootstrap, progress=args.progress,
                                    backend=args.backend, tta=args.tta)
        entries = [scored_metrics(ref, args.data, args.manifest, options) for ref in args.models]
    else:
        entries = [stored_metrics(ref) for ref in args.models]
        print("no --data given: showing the figures stored with each model (intervals only where an "
              "evaluation computed them); give --data ROOT to score them now", file=sys.stderr)
    entries = unique_names(entries)
    if len(entries) > 1 and different_images(entries):
        print("WARNING: the models were not scored on the same images (different splits or data sets); "
              "compare with care", file=sys.stderr)
    print(format_table(entries))
    differences = paired_differences(entries, args.bootstrap)
    if differences:
        print(format_differences(differences))
    files = write_comparison(entries, args.out, differences)
    print(f"wrote {files['plot']} and {files['json']}")
    return 0
