"""``pneumo ensemble``: several trained bundles as one ensemble bundle (logits averaged)."""

from __future__ import annotations

import argparse

from pneumo.optional import require_extra


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ensemble", help="combine trained bundles into one ensemble bundle",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                              description="Combine bundles of the same classes, preprocessing and validation "
                                          "split into one bundle whose logits are the members' mean. Fit its "
                                          "gate, export and calibrate it as any new bundle (see the output).")
    p.add_argument("members", nargs="+", metavar="BUNDLE", help="member bundles (directories, runs, shipped names)")
    p.add_argument("--out", required=True, help="the ensemble bundle's directory")
    p.add_argument("--description", default="", help="one line for the bundle (default: the members' names)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_extra("train", needed_for="pneumo ensemble")
    from pneumo.training.ensemble_bundle import build_ensemble

    directory = build_ensemble(args.members, args.out, args.description)
    print(f"wrote ensemble bundle {directory} ({len(args.members)} members)")
    print("next, as for any new bundle: "
          f"pneumo gate fit --model {directory} --data ROOT; pneumo export --model {directory} --into-bundle; "
          f"pneumo calibrate --model {directory} --data ROOT --split val")
    return 0
