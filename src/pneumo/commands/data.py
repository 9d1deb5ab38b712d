"""``pneumo data summary ROOT``."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="inspect datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    summary = data_sub.add_parser("summary", help="counts, patients, sizes, corrupt files, duplicates, leakage",
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    summary.add_argument("root", nargs="?", default="", help="dataset root in the Kermany layout")
    summary.add_argument("--manifest", default="", help="CSV manifest instead of a root")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    summary.set_defaults(func=run_summary)


def run_summary(args: argparse.Namespace) -> int:
    from pneumo.data.records import load_records
    from pneumo.data.summary import summarize  # imported on use: `pneumo --help` stays fast

    records = load_records(args.root, args.manifest)
    summary = summarize(records)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.format())
    return 0
