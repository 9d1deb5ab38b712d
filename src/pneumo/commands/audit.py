"""``pneumo audit export``: the service's audit trail as CSV or JSON, from the history database."""

from __future__ import annotations

import argparse
import sys

from pneumo.commands.users import add_db_flags, open_stores


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("audit", help="the service's audit trail")
    sub = p.add_subparsers(dest="audit_command", required=True)
    export = sub.add_parser("export", help="write every audit event to standard output (or --output)",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--output", default=None, metavar="FILE", help="write here instead of standard output")
    add_db_flags(export)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pneumo.service.audit import AuditEvent, AuditTrail

    history, _ = open_stores(args)
    try:
        trail = AuditTrail(history.engine, history.write_lock)
        if args.output:
            with open(args.output, "w", encoding="utf-8", newline="") as out:
                count = trail.export(out, args.format)
        else:
            count = trail.export(sys.stdout, args.format)
        # The export is itself an action worth knowing about (after it, so it is not in its own output).
        trail.record(AuditEvent(actor="cli", action="export", detail=f"audit export, {count} events as {args.format}"))
    finally:
        history.close()
    print(f"exported {count} audit events", file=sys.stderr)
    return 0
