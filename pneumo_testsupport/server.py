"""``pneumo serve`` as a real process on loopback: start it, wait for it, hit it with a burst of uploads,
SIGKILL it mid-burst, and read back what its history kept.

Shared by ``test_server_kill.py`` (one kill, in CI) and ``bench/reliability_server_kill.py`` (many).
"""

from __future__ import annotations

import io
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from .corpus import xray_like
from .launcher import Child, Launcher
from .net import free_port, wait_healthy

API_KEY = "reliability-server-kill-key"
HEADERS = {"X-API-Key": API_KEY}


def serve_argv(model: Path | str, db: Path, port: int, workers: int = 2) -> list[str]:
    return ["serve", "--host", "127.0.0.1", "--port", port, "--model", model, "--db", f"sqlite:///{db}",
            "--workers", workers, "--log-level", "warning"]


def start_server(launcher: Launcher, model: Path | str, db: Path, log: Path, *, extra_argv: tuple = (),
                 env: dict[str, str] | None = None) -> tuple[Child, str]:
    """Fork ``pneumo serve`` (the old API key on, unless ``env`` says otherwise) on a free loopback port;
    returns the child and its base URL."""
    port = free_port()
    env = {"PNEUMO_API_KEY": API_KEY} if env is None else env
    child = launcher.start([*serve_argv(model, db, port), *extra_argv], log, env=env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, child.running)
    except BaseException:
        finished = child.kill()
        raise RuntimeError(f"pneumo serve did not start: {finished.output[-2000:]}") from None
    return child, base_url


def png_upload(index: int, side: int = 40) -> bytes:
    """A small distinct PNG per index, so each request's SHA-256 identifies its history row."""
    buffer = io.BytesIO()
    Image.fromarray(xray_like(np.random.default_rng(index), side, side)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Burst:
    """What the clients saw: ``acknowledged`` maps the image SHA-256 of each 200 to its history id."""

    sent: int = 0
    acknowledged: dict[str, int] = field(default_factory=dict)
    cut_off: int = 0  # sent, then the connection died with the server: these may or may not have a row
    refused: int = 0  # no connection at all (the server was already gone): these never reached it
    other: list[str] = field(default_factory=list)  # any non-200 answer: must stay empty
    in_flight_at_kill: int = 0
    viewed: list[int] = field(default_factory=list)  # history ids whose view was answered 200


def view_after_predict(http: httpx.Client, burst: Burst, lock: threading.Lock, entry_id: int) -> None:
    """Open the analysis just made, as a reader would; a view cut by the kill counts as cut off."""
    try:
        response = http.get(f"/api/v1/history/{entry_id}")
    except httpx.TransportError:
        with lock:
            burst.cut_off += 1
        return
    with lock:
        if response.status_code == 200:
            burst.viewed.append(entry_id)
        else:
            burst.other.append(f"view {response.status_code}: {response.text[:200]}")


def burst_and_kill(child: Child, base_url: str, *, requests: int, threads: int, kill_after: int,
                   first_index: int = 0, timeout: float = 120.0, headers: dict[str, str] = HEADERS,
                   view: bool = False) -> Burst:
    """Upload ``requests`` distinct images from ``threads`` clients at once (with ``view``, each client then
    opens the analysis it made); SIGKILL the server as soon as ``kill_after`` uploads have been answered 200,
    while the other clients are still waiting."""
    burst = Burst()
    lock = threading.Lock()
    enough = threading.Event()
    killed = threading.Event()
    pending = iter(range(first_index, first_index + requests))
    in_flight = 0

    def client() -> None:
        nonlocal in_flight
        with httpx.Client(base_url=base_url, headers=headers, timeout=30.0) as http:
            while not killed.is_set():
                with lock:
                    index = next(pending, None)
                    if index is None:
                        return
                    burst.sent += 1
                    in_flight += 1
                try:
                    response = http.post("/api/v1/predict", params={"heatmap": "false"},
                                         files={"file": (f"{index}.png", png_upload(index), "image/png")})
                except httpx.ConnectError:
                    with lock:
                        in_flight -= 1
                        burst.refused += 1
                    continue
                except httpx.TransportError:
                    with lock:
                        in_flight -= 1
                        burst.cut_off += 1
                    continue
                with lock:
                    in_flight -= 1
                    entry_id = None
                    if response.status_code == 200:
                        body = response.json()
                        entry_id = burst.acknowledged[body["image_sha256"]] = body["id"]
                        if len(burst.acknowledged) >= kill_after:
                            enough.set()
                    else:
                        burst.other.append(f"{response.status_code}: {response.text[:200]}")
                if view and entry_id is not None and not killed.is_set():
                    view_after_predict(http, burst, lock, entry_id)

    workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    reached = enough.wait(timeout)
    with lock:
        burst.in_flight_at_kill = in_flight
    finished = child.kill()
    killed.set()
    for worker in workers:
        worker.join(60)
    if not reached:
        raise TimeoutError(f"only {len(burst.acknowledged)} uploads answered in {timeout:.0f} s: "
                           f"{finished.output[-2000:]}")
    if not finished.killed:
        raise RuntimeError(f"the server had already exited (code {finished.code}): {finished.output[-2000:]}")
    return burst


def history_rows(base_url: str, headers: dict[str, str] = HEADERS) -> dict[int, str]:
    """Every history row the restarted server lists, as id -> image SHA-256 (paging through)."""
    rows: dict[int, str] = {}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30.0) as http:
        while True:
            page = http.get("/api/v1/history", params={"limit": 200, "offset": len(rows)})
            page.raise_for_status()
            body = page.json()
            rows.update({item["id"]: item["image_sha256"] for item in body["items"]})
            if not body["items"] or len(rows) >= body["total"]:
                return rows


def check_database(db: Path) -> tuple[str, int]:
    """``PRAGMA integrity_check`` and the row count, read straight from the SQLite file."""
    with sqlite3.connect(db) as connection:
        integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
        count = connection.execute("SELECT COUNT(*) FROM analyses").fetchone()[0]
    connection.close()
    return str(integrity), int(count)


def lost_rows(burst: Burst, rows: dict[int, str]) -> list[str]:
    """Acknowledged uploads whose row is missing, or holds another image."""
    return [f"id {row_id} ({sha[:12]})" for sha, row_id in burst.acknowledged.items() if rows.get(row_id) != sha]


def audit_actions(db: Path, actor: str) -> list[tuple[str, int | None]]:
    """(action, analysis id) of every audit row of ``actor``, read straight from the SQLite file."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT action, analysis_id FROM audit_events WHERE actor = ? ORDER BY id",
                                  (actor,)).fetchall()
    connection.close()
    return [(str(action), None if analysis_id is None else int(analysis_id)) for action, analysis_id in rows]
