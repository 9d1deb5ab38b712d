"""SIGKILL ``pneumo serve`` during bursts of concurrent uploads and views, many times over one SQLite history,
and count the history rows and audit rows that clients were promised against those found after each restart.

    python -m bench.reliability_server_kill [--rounds 10] [--model BUNDLE] [--threads 8] [--kill-after 20]

The database gets one integration account and an API token first. Each round starts the server on it, sends
distinct PNGs from --threads clients at once, each client opening (viewing) the analysis it got back, SIGKILLs
the server as soon as --kill-after uploads were answered 200, restarts it and lists the history through the
API. A row is lost when an upload was answered 200 and its id is missing or holds another image; an audit row
is lost when an upload or a view was answered 200 and the account has no ``predict`` / ``view`` row for that
analysis, and doubled when it has more than one. Every analysis must have its ``predict`` row (they commit in
one transaction). Ends with PRAGMA integrity_check on the file. Exit status 1 on any of these, or any non-200
answer before the kill.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout root: pneumo_testsupport/

from bench.verdict import verdict  # noqa: E402
from pneumo_testsupport.launcher import Launcher  # noqa: E402
from pneumo_testsupport.server import (audit_actions, burst_and_kill, check_database,  # noqa: E402
                                       history_rows, lost_rows, start_server)

ACCOUNT = "bench-pacs-bridge"
# No per-account upload limit here: the bench measures crash safety, not the limiter.
SERVE_FLAGS = ("--predictions-per-minute", "0")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rounds", type=int, default=10, help="kill/restart rounds on the same database")
    p.add_argument("--model", default="", help="bundle to serve (default: a tiny untrained simple_cnn bundle)")
    p.add_argument("--threads", type=int, default=8, help="concurrent clients")
    p.add_argument("--requests", type=int, default=400, help="uploads queued per round (more than get answered)")
    p.add_argument("--kill-after", type=int, default=20, help="SIGKILL once this many uploads were answered")
    return p


def tiny_bundle(folder: Path) -> Path:
    import torch

    from pneumo.bundle import BundleMeta, save_bundle
    from pneumo.config import PreprocessConfig
    from pneumo.models import create_model

    torch.manual_seed(0)
    meta = BundleMeta(arch="simple_cnn", classes=2, class_names=["NORMAL", "PNEUMONIA"],
                      preprocess=PreprocessConfig(image_size=32), description="server-kill bench bundle")
    return save_bundle(folder / "bundle", create_model("simple_cnn", classes=2), meta)


def account_token(db: Path) -> dict[str, str]:
    """An integration account with a one-day token on a new database; the request headers that carry it."""
    from pneumo.service.accounts import AccountStore
    from pneumo.service.history import open_history

    history = open_history(f"sqlite:///{db}")
    try:
        store = AccountStore(history.engine, history.write_lock)
        store.add(ACCOUNT, "integration", None, by="bench")
        _, token, _ = store.issue_token(ACCOUNT, days=1, by="bench")
    finally:
        history.close()
    return {"Authorization": f"Bearer {token}"}


def audit_problems(db: Path, predicted: set[int], viewed: list[int], rows: dict[int, str]) -> dict[str, int]:
    """Answered actions without exactly one audit row, and analyses without their predict row."""
    counts = Counter(audit_actions(db, ACCOUNT))
    return {"lost": sum(counts[("predict", i)] == 0 for i in predicted) + sum(counts[("view", i)] == 0 for i in viewed),
            "doubled": sum(counts[("predict", i)] > 1 for i in predicted) + sum(counts[("view", i)] > 1 for i in viewed),
            "rows_without_audit": sum(counts[("predict", i)] != 1 for i in rows),
            "audit_rows": sum(n for (action, _), n in counts.items() if action in ("predict", "view"))}


def tally_round(round_: int, burst, rows: dict[int, str], before: int, totals: dict[str, int]) -> list[str]:
    """Print one round, add it to ``totals`` and return its problems."""
    problems = []
    lost = lost_rows(burst, rows)
    new_rows = len(rows) - before
    unanswered = new_rows - len(burst.acknowledged)
    print(f"round {round_:2d}: answered 200 {len(burst.acknowledged):3d}, in flight at the kill "
          f"{burst.in_flight_at_kill}, cut off {burst.cut_off:2d}, refused {burst.refused:2d}, "
          f"new rows {new_rows:3d} (committed but unanswered {unanswered}), lost {len(lost)}, "
          f"views answered {len(burst.viewed):3d}, other answers {len(burst.other)}")
    if lost:
        problems.append(f"round {round_}: lost {lost[:5]}")
    if burst.other:
        problems.append(f"round {round_}: non-200 answers {burst.other[:3]}")
    if not 0 <= unanswered <= burst.cut_off:
        problems.append(f"round {round_}: {unanswered} rows beyond the answered ones, {burst.cut_off} requests cut off")
    totals["acknowledged"] += len(burst.acknowledged)
    totals["cut_off"] += burst.cut_off
    totals["in_flight"] += burst.in_flight_at_kill
    totals["unanswered_rows"] += max(unanswered, 0)
    totals["lost"] += len(lost)
    totals["viewed"] += len(burst.viewed)
    return problems


def main(args: argparse.Namespace) -> int:
    problems: list[str] = []
    totals = {"acknowledged": 0, "cut_off": 0, "in_flight": 0, "found": 0, "unanswered_rows": 0, "lost": 0,
              "viewed": 0}
    predicted: set[int] = set()
    viewed: list[int] = []
    with tempfile.TemporaryDirectory(prefix="pneumo-server-kill-") as tmp:
        work = Path(tmp)
        model = args.model or str(tiny_bundle(work))
        db = work / "history.sqlite3"
        headers = account_token(db)
        started = time.perf_counter()
        rows: dict[int, str] = {}
        with Launcher() as launcher:
            server, base_url = start_server(launcher, model, db, work / "serve-0.log", extra_argv=SERVE_FLAGS, env={})
            for round_ in range(1, args.rounds + 1):
                before = len(rows)
                burst = burst_and_kill(server, base_url, requests=args.requests, threads=args.threads,
                                       kill_after=args.kill_after, first_index=round_ * 10**6, headers=headers,
                                       view=True)
                server, base_url = start_server(launcher, model, db, work / f"serve-{round_}.log",
                                                extra_argv=SERVE_FLAGS, env={})
                rows = history_rows(base_url, headers)
                predicted.update(burst.acknowledged.values())
                viewed.extend(burst.viewed)
                problems += tally_round(round_, burst, rows, before, totals)
            totals["found"] = len(rows)
            server.terminate()
        integrity, count = check_database(db)
        audit = audit_problems(db, predicted, viewed, rows)
        elapsed = time.perf_counter() - started
    if audit["lost"] or audit["doubled"] or audit["rows_without_audit"]:
        problems.append(f"audit: {audit}")
    if integrity != "ok" or count != totals["found"]:
        problems.append(f"integrity_check {integrity!r}, {count} rows in the file, {totals['found']} listed")
    print(f"rounds (SIGKILLs):                {args.rounds}")
    print(f"uploads answered 200:             {totals['acknowledged']}")
    print(f"uploads in flight at the kills:   {totals['in_flight']} (connections cut: {totals['cut_off']})")
    print(f"history rows after the restarts:  {totals['found']} (committed but unanswered: "
          f"{totals['unanswered_rows']})")
    print(f"answered uploads without a row:   {totals['lost']}")
    print(f"views answered 200:               {totals['viewed']}")
    print(f"audit rows (predict + view):      {audit['audit_rows']}")
    print(f"answered actions without audit:   {audit['lost']} (more than one row: {audit['doubled']})")
    print(f"analyses without a predict row:   {audit['rows_without_audit']}")
    print(f"PRAGMA integrity_check:           {integrity}")
    print(f"wall time:                        {elapsed:.1f} s")
    return verdict(problems)


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
