"""``pneumo site``: the site's own figures from its history (``report``), and the radiologists' reads imported
from the RIS (``import-reviews``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pneumo.commands.users import add_db_flags
from pneumo.site.report import ReportRules

FORMATS = ("json", "html")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("site", help="the site's figures from its reviewed history; import reviews",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="site_command", required=True)
    report = sub.add_parser("report", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                            help="agreement with the reviewers, local accuracy, UNKNOWN/warning rates and drift "
                                 "by week, per model version")
    report.add_argument("--format", choices=FORMATS, default="json")
    report.add_argument("--out", default=None, metavar="FILE", help="write here instead of standard output")
    rules = ReportRules()
    report.add_argument("--min-per-class", type=int, default=rules.min_per_class,
                        help="reviewed images of each class before sensitivity, specificity and AUC are shown")
    report.add_argument("--reference-min", type=int, default=rules.reference_min,
                        help="probabilities in the drift reference (the model's first whole weeks at the site)")
    report.add_argument("--week-min", type=int, default=rules.week_min, help="a week with fewer is not tested")
    report.add_argument("--bootstrap", type=int, default=rules.n_boot, metavar="N", help="resamples for the AUC")
    imports = sub.add_parser("import-reviews", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                             help="store reviews from a CSV (analysis_id or sop_instance_uid, label[, note, "
                                  "reviewer]); reports lines matched, unmatched and invalid")
    imports.add_argument("file", metavar="FILE.csv")
    imports.add_argument("--reviewer", default=None, help="who reviewed, for lines without a reviewer column")
    for command in (report, imports):
        add_db_flags(command)
    p.set_defaults(func=run)


def _open(args: argparse.Namespace):
    from pneumo.service.history import open_history
    from pneumo.service.settings import ServiceSettings

    return open_history(ServiceSettings(db_url=args.db or "", data_dir=args.data_dir, api_key=None).database_url)


def report(args: argparse.Namespace) -> int:
    from pneumo.service.site_data import site_report
    from pneumo.site.html import render

    rules = ReportRules(min_per_class=args.min_per_class, reference_min=args.reference_min, week_min=args.week_min,
                        n_boot=args.bootstrap)
    history = _open(args)
    try:
        document = site_report(history.engine, rules)
    finally:
        history.close()
    text = render(document) if args.format == "html" else json.dumps(document, indent=1) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}: {document['n']} analyses, {len(document['models'])} model versions")
    else:
        sys.stdout.write(text)
    return 0


def import_reviews(args: argparse.Namespace) -> int:
    from pneumo.service.audit import AuditEvent, AuditTrail
    from pneumo.service.review_import import IMPORT_ACTOR, import_file
    from pneumo.service.reviews import ReviewStore

    history = _open(args)
    try:
        outcome = import_file(history, ReviewStore(history.engine, history.write_lock), Path(args.file),
                              reviewer=args.reviewer)
        AuditTrail(history.engine, history.write_lock).record(AuditEvent(
            actor=IMPORT_ACTOR, action="reviews.import", detail=outcome.summary()))
    finally:
        history.close()
    print(outcome.summary())
    for line, why in outcome.unmatched:
        print(f"  line {line}: unmatched: {why}")
    for line, why in outcome.invalid:
        print(f"  line {line}: invalid: {why}")
    return 0 if not outcome.invalid else 1


def run(args: argparse.Namespace) -> int:
    return report(args) if args.site_command == "report" else import_reviews(args)
