"""``pneumo calibrate``: fit temperature scaling and choose the decision threshold on validation data."""

from __future__ import annotations

import argparse
import sys

from pneumo.commands.evaluate import add_data_arguments
from pneumo.optional import require_extra



def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("calibrate", help="fit temperature and threshold on validation data, into the bundle",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="bundle directory or run directory (its best/) to update")
    add_data_arguments(p, "val")
    rule = p.add_mutually_exclusive_group(required=True)
    rule.add_argument("--target-sensitivity", type=float, metavar="S",
                      help="the highest threshold whose sensitivity on the split is at least S (e.g. 0.95)")
    rule.add_argument("--youden", action="store_true", help="the threshold maximising sensitivity + specificity")
    rule.add_argument("--threshold", type=float, metavar="X", help="a fixed threshold")
    p.add_argument("--temperature", action=argparse.BooleanOptionalAction, default=True,
                   help="fit temperature scaling (--no-temperature keeps T = 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_extra("eval", needed_for="pneumo calibrate")
    from pneumo.evaluation.calibration import ThresholdRule
    from pneumo.evaluation.operating_point import calibrate_bundle
    from pneumo.evaluation.pipeline import EvaluationOptions

    if args.youden:
        rule = ThresholdRule("youden")
    elif args.threshold is not None:
        rule = ThresholdRule("fixed", args.threshold)
    else:
        rule = ThresholdRule("sensitivity", args.target_sensitivity)
    if args.split in ("test", "train", "all"):
        print(f"WARNING: calibrating on split {args.split!r}. Fit on validation data ('val'); never report "
              "figures from the split you calibrated on.", file=sys.stderr)
    options = EvaluationOptions(split=args.split, device=args.device, batch_size=args.batch_size,
                                cache_dir=args.cache_dir, progress=args.progress, backend=args.backend, tta=args.tta)
    record = calibrate_bundle(args.model, args.data, args.manifest, rule, options, fit_temp=args.temperature)
    achieved = record["achieved"]
    print(f"calibrated {record['bundle']} on split {record['split']!r} ({record['n']} images, "
          f"{record['skipped']} skipped)")
    print(f"  temperature  {record['previous']['temperature']:.4f} -> {record['temperature']:.4f}")
    print(f"  ECE          {_fmt(record['ece_before'])} -> {_fmt(record['ece_after'])}")
    print(f"  threshold    {record['previous']['threshold']:.4f} -> {record['threshold']:.4f}  "
          f"({record['rule']['description']}; stored as {record['threshold']!r})")
    print(f"  on this split: sensitivity {_fmt(achieved['sensitivity'])}, specificity "
          f"{_fmt(achieved['specificity'])}")
    print(f"Evaluate on a different split (e.g. --split test); figures on {record['split']!r} are not held-out.",
          flush=True)
    for warning in record["warnings"]:
        print(f"WARNING: {warning}", file=sys.stderr)
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
