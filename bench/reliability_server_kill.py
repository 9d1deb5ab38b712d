"""SIGKILL ``pneumo serve`` during bursts of concurrent uploads, many times over one SQLite history, and
count the history rows that clients were promised against the rows found after each restart.

    python -m bench.reliability_server_kill [--rounds 10] [--model BUNDLE] [--threads 8] [--kill-after 20]

Each round starts the server (API key on) on the same database, sends distinct PNGs from --threads clients
at once, SIGKILLs the server as soon as --kill-after uploads were answered 200, restarts it and lists the
history through the API. A row is lost when an upload was answered 200 and its id is missing or holds
another image. Ends with PRAGMA integrity_check on the file. Exit status 1 on any lost row, any non-200
answer before the kill, or a damaged database.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench.verdict import verdict  # run from the checkout as `python -m bench.reliability_server_kill`
from tests.reliability.launcher import Launcher
from tests.reliability.server import (burst_and_kill, check_database, history_rows, lost_rows,
                                      start_server)


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


def main(args: argparse.Namespace) -> int:
    problems: list[str] = []
    totals = {"acknowledged": 0, "cut_off": 0, "in_flight": 0, "found": 0, "unanswered_rows": 0, "lost": 0}
    with tempfile.TemporaryDirectory(prefix="pneumo-server-kill-") as tmp:
        work = Path(tmp)
        model = args.model or str(tiny_bundle(work))
        db = work / "history.sqlite3"
        started = time.perf_counter()
        rows: dict[int, str] = {}
        with Launcher() as launcher:
            server, base_url = start_server(launcher, model, db, work / "serve-0.log")
            for round_ in range(1, args.rounds + 1):
                before = len(rows)
                burst = burst_and_kill(server, base_url, requests=args.requests, threads=args.threads,
                                       kill_after=args.kill_after, first_index=round_ * 10**6)
                server, base_url = start_server(launcher, model, db, work / f"serve-{round_}.log")
                rows = history_rows(base_url)
                lost = lost_rows(burst, rows)
                new_rows = len(rows) - before
                unanswered = new_rows - len(burst.acknowledged)
                print(f"round {round_:2d}: answered 200 {len(burst.acknowledged):3d}, in flight at the kill "
                      f"{burst.in_flight_at_kill}, cut off {burst.cut_off:2d}, refused {burst.refused:2d}, "
                      f"new rows {new_rows:3d} (committed but unanswered {unanswered}), lost {len(lost)}, "
                      f"other answers {len(burst.other)}")
                if lost:
                    problems.append(f"round {round_}: lost {lost[:5]}")
                if burst.other:
                    problems.append(f"round {round_}: non-200 answers {burst.other[:3]}")
                if not 0 <= unanswered <= burst.cut_off:
                    problems.append(f"round {round_}: {unanswered} rows beyond the answered ones, "
                                    f"{burst.cut_off} requests cut off")
                totals["acknowledged"] += len(burst.acknowledged)
                totals["cut_off"] += burst.cut_off
                totals["in_flight"] += burst.in_flight_at_kill
                totals["unanswered_rows"] += max(unanswered, 0)
                totals["lost"] += len(lost)
            totals["found"] = len(rows)
            server.terminate()
        integrity, count = check_database(db)
        elapsed = time.perf_counter() - started
    if integrity != "ok" or count != totals["found"]:
        problems.append(f"integrity_check {integrity!r}, {count} rows in the file, {totals['found']} listed")
    print(f"rounds (SIGKILLs):                {args.rounds}")
    print(f"uploads answered 200:             {totals['acknowledged']}")
    print(f"uploads in flight at the kills:   {totals['in_flight']} (connections cut: {totals['cut_off']})")
    print(f"history rows after the restarts:  {totals['found']} (committed but unanswered: "
          f"{totals['unanswered_rows']})")
    print(f"answered uploads without a row:   {totals['lost']}")
    print(f"PRAGMA integrity_check:           {integrity}")
    print(f"wall time:                        {elapsed:.1f} s")
    return verdict(problems)


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
