"""``pneumo data summary ROOT`` and ``pneumo data audit ROOT --out DIR``."""

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
    audit = data_sub.add_parser("audit", help="shortcut audit: acquisition attributes that predict the label",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    audit.add_argument("root", nargs="?", default="", help="dataset root in the Kermany layout")
    audit.add_argument("--manifest", default="", help="CSV manifest instead of a root")
    audit.add_argument("--split", default="", help="audit one split only (train, val, test); default all")
    audit.add_argument("--out", required=True, help="folder for audit.json and report.md")
    audit.add_argument("--probe", action=argparse.BooleanOptionalAction, default=True,
                       help="run the lungs-hidden probe (a small model on the film's frame)")
    audit.add_argument("--probe-on", choices=("film", "thorax"), default="film",
                       help="the probe's frame from the whole film, or from the film cropped to its thorax (what a "
                       "model trained with preprocess.thorax_crop sees)")
    audit.set_defaults(func=run_audit)


def run_summary(args: argparse.Namespace) -> int:
    from pneumo.data.records import load_records
    from pneumo.data.summary import summarize  # imported on use: `pneumo --help` stays fast

    records = load_records(args.root, args.manifest)
    summary = summarize(records)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.format())
    return 0


def run_audit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pneumo.optional import require_extra

    require_extra("eval", needed_for="pneumo data audit")  # before the imports below, which need it
    from pneumo.data.audit import measure, score_attributes, sequence_of
    from pneumo.data.audit_probe import run_probe
    from pneumo.data.audit_report import audit_dict, write_audit
    from pneumo.data.records import load_records

    records = [r for r in load_records(args.root, args.manifest) if not args.split or r.split == args.split]
    if not records:
        raise SystemExit(f"no images to audit in {args.root or args.manifest}"
                         + (f" (split {args.split!r})" if args.split else ""))
    table = measure(records, probe_on_thorax=args.probe_on == "thorax")
    for path, reason in table.skipped:
        print(f"skipped unreadable image {path}: {reason}")
    sequences = [sequence_of(r) for r in table.records]
    source = "thorax crop" if args.probe_on == "thorax" else "film"
    probe = run_probe(table.records, table.frames, sequences, source=source) if args.probe else None
    json_path, md_path = write_audit(Path(args.out), audit_dict(table, score_attributes(table), probe))
    print(md_path.read_text(), end="")
    print(f"wrote {json_path} and {md_path}")
    return 0
