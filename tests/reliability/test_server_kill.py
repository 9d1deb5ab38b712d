"""Crash safety of the service: ``pneumo serve`` SIGKILLed during a burst of concurrent uploads loses no
history row that a client was told about, and its SQLite file comes back intact."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from pneumo_testsupport.launcher import Launcher
from pneumo_testsupport.server import (HEADERS, burst_and_kill, check_database, history_rows, lost_rows,
                                       png_upload, start_server)

REQUESTS = 400  # far more than can finish before the kill, so clients are still waiting when it lands
THREADS = 8
KILL_AFTER = 15


def test_history_survives_a_sigkill_during_a_burst(launcher: Launcher, session_bundle: Path,
                                                   tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite3"
    server, base_url = start_server(launcher, session_bundle, db, tmp_path / "serve-1.log")
    burst = burst_and_kill(server, base_url, requests=REQUESTS, threads=THREADS, kill_after=KILL_AFTER)
    assert not burst.other, burst.other[:5]  # before the kill every upload was answered 200
    assert len(burst.acknowledged) >= KILL_AFTER
    assert burst.in_flight_at_kill >= 1 and burst.cut_off >= 1, burst  # the kill did land mid-burst

    server, base_url = start_server(launcher, session_bundle, db, tmp_path / "serve-2.log")
    try:
        rows = history_rows(base_url)
        assert not lost_rows(burst, rows), f"acknowledged but not in the history: {lost_rows(burst, rows)}"
        # Rows beyond the acknowledged ones are uploads committed just before the kill whose answer was lost:
        # each of those clients saw its connection cut.
        assert len(rows) - len(burst.acknowledged) <= burst.cut_off, (len(rows), burst)
        # The restarted server keeps working on the same file, and ids never go back.
        after = httpx.post(f"{base_url}/api/v1/predict", params={"heatmap": "false"}, headers=HEADERS,
                           files={"file": ("after.png", png_upload(10**6), "image/png")}, timeout=30.0)
        assert after.status_code == 200, after.text
        assert after.json()["id"] > max(rows)
    finally:
        stopped = server.terminate()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it: ending by that signal is a clean stop.
    assert stopped.code == 0 or stopped.signal == signal.SIGTERM, stopped
    assert "Traceback" not in stopped.output

    integrity, count = check_database(db)
    assert integrity == "ok"
    assert count == len(rows) + 1
