"""Soak ``pneumo serve``: sustained concurrent uploads for minutes, with the server's memory sampled.

    python -m bench.reliability_soak [--model default] [--minutes 3] [--concurrency 4] [--warmup-s 30]

Starts the server as a subprocess on loopback (API key on, a fresh SQLite history in a temporary folder)
and keeps --concurrency clients uploading for --minutes: the four real X-rays of tests/assets as JPEG, PNG,
16-bit PNG and DICOM, with Grad-CAM unless --no-heatmap, and one upload in ten a bad file (truncated JPEG,
HTML, empty) that must get its 4xx. The server's RSS (psutil if installed, else /proc/PID/status) is
sampled every --sample-s seconds. Memory "after warm-up" is the median of the samples in the --window-s
seconds after --warmup-s; "at the end" the median of the last --window-s seconds.

Prints requests, errors (any unexpected status or a failed connection), throughput, latency, history rows
against 200 answers, and the RSS figures; exit status 1 when memory grew more than --max-growth percent
after warm-up, or on any error or missing history row.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout root: pneumo_testsupport/

from bench.verdict import verdict  # noqa: E402
from pneumo_testsupport.corpus import dicom_bytes  # noqa: E402
from pneumo_testsupport.net import free_port, wait_healthy  # noqa: E402
from pneumo_testsupport.process import rss_bytes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]  # the checkout: its test assets and shipped bundle
API_KEY = "soak-test-key"
SHIPPED = ROOT / "src" / "pneumo" / "weights" / "default"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="default" if SHIPPED.is_dir() else None, required=not SHIPPED.is_dir(),
                   help="model to serve (the shipped 'default' when src/pneumo/weights/default exists)")
    p.add_argument("--minutes", type=float, default=3.0, help="length of the soak, warm-up included")
    p.add_argument("--concurrency", type=int, default=4, help="clients uploading at once")
    p.add_argument("--workers", type=int, default=2, help="the server's concurrent predictions (--workers)")
    p.add_argument("--warmup-s", type=float, default=30.0, help="seconds before the memory baseline")
    p.add_argument("--window-s", type=float, default=20.0, help="seconds of samples behind each RSS figure")
    p.add_argument("--sample-s", type=float, default=2.0, help="seconds between RSS samples")
    p.add_argument("--max-growth", type=float, default=10.0, help="allowed RSS growth after warm-up, percent")
    p.add_argument("--heatmap", action=argparse.BooleanOptionalAction, default=True,
                   help="ask for the Grad-CAM overlay (what the web page does)")
    return p


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def uploads() -> list[tuple[str, bytes, int]]:
    """(name, bytes, expected status): nine good uploads for each bad one."""
    jpegs = sorted((ROOT / "tests" / "assets").glob("*.jpeg"))
    good: list[tuple[str, bytes, int]] = [(p.name, p.read_bytes(), 200) for p in jpegs]
    gray = [np.asarray(Image.open(p).convert("L")) for p in jpegs]
    good += [(f"{p.stem}.png", encode(Image.fromarray(g), "PNG"), 200) for p, g in zip(jpegs[:2], gray)]
    good.append(("sixteen-bit.png", encode(Image.fromarray(gray[2].astype(np.uint16) * 257), "PNG"), 200))
    good.append(("xray.dcm", dicom_bytes(gray[3].astype(np.uint16) * 16, BitsStored=12, HighBit=11), 200))
    good.append(("again.jpeg", jpegs[1].read_bytes(), 200))
    first = jpegs[0].read_bytes()
    bad = [("truncated.jpeg", first[: len(first) // 2], 400), ("page.png", b"<!DOCTYPE html><html></html>", 415),
           ("empty.dcm", b"", 400)]
    return [item for one_bad in bad for item in good + [one_bad]]


def start_server(args: argparse.Namespace, data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "pneumo.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--model",
               args.model, "--data-dir", str(data_dir), "--workers", str(args.workers), "--log-level", "warning",
               "--predictions-per-minute", "0"]  # a soak, not a test of the per-account upload limit
    env = {**os.environ, "PNEUMO_API_KEY": API_KEY}
    with log.open("w") as handle:
        server = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    wait_healthy(f"http://127.0.0.1:{port}", lambda: server.poll() is None, timeout=180)
    return server


class Load:
    """Clients that upload until told to stop, counting statuses, errors and latencies."""

    def __init__(self, base_url: str, items: list[tuple[str, bytes, int]], heatmap: bool) -> None:
        self.base_url, self.items, self.heatmap = base_url, items, heatmap
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self.failed_connections = 0
        self.latencies: list[float] = []
        self.ok = 0
        self.next = 0

    def client(self) -> None:
        with httpx.Client(base_url=self.base_url, headers={"X-API-Key": API_KEY}, timeout=120.0) as http:
            while not self.stop.is_set():
                with self.lock:
                    name, data, expected = self.items[self.next % len(self.items)]
                    self.next += 1
                started = time.perf_counter()
                try:
                    response = http.post("/api/v1/predict", params={"heatmap": str(self.heatmap).lower()},
                                         files={"file": (name, data, "application/octet-stream")})
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.failed_connections += 1
                        self.errors.append(f"{name}: {exc!r}")
                    continue
                elapsed = time.perf_counter() - started
                with self.lock:
                    self.statuses[response.status_code] += 1
                    if response.status_code != expected:
                        self.errors.append(f"{name}: HTTP {response.status_code}, expected {expected}: "
                                           f"{response.text[:200]}")
                    elif expected == 200:
                        self.ok += 1
                        self.latencies.append(elapsed)


def window_median(samples: list[tuple[float, int]], start: float, end: float) -> int:
    chosen = [rss for t, rss in samples if start <= t <= end]
    if not chosen:
        raise RuntimeError(f"no RSS samples between {start:.0f} s and {end:.0f} s; lengthen the soak")
    return int(statistics.median(chosen))


def main(args: argparse.Namespace) -> int:
    duration = args.minutes * 60.0
    if duration < args.warmup_s + 2 * args.window_s:
        raise SystemExit(f"--minutes {args.minutes} leaves no room for a warm-up of {args.warmup_s} s and two "
                         f"{args.window_s} s windows")
    items = uploads()
    with tempfile.TemporaryDirectory(prefix="pneumo-soak-") as tmp:
        port = free_port()
        log = Path(tmp) / "server.log"
        server = start_server(args, Path(tmp) / "data", port, log)
        base_url = f"http://127.0.0.1:{port}"
        load = Load(base_url, items, args.heatmap)
        clients = [threading.Thread(target=load.client, daemon=True) for _ in range(args.concurrency)]
        samples: list[tuple[float, int]] = []
        started = time.perf_counter()
        try:
            for client in clients:
                client.start()
            while (now := time.perf_counter() - started) < duration:
                if server.poll() is not None:
                    load.errors.append(f"the server exited with code {server.returncode}")
                    break
                samples.append((now, rss_bytes(server.pid)))
                time.sleep(args.sample_s)
            load.stop.set()
            for client in clients:
                client.join(180)
            elapsed = time.perf_counter() - started
            with httpx.Client(base_url=base_url, headers={"X-API-Key": API_KEY}, timeout=30.0) as http:
                rows = http.get("/api/v1/history", params={"limit": 1}).json()["total"]
        finally:
            server.terminate()
            server.wait(60)
        server_log = log.read_text(errors="replace")

    warm = window_median(samples, args.warmup_s, args.warmup_s + args.window_s)
    end = window_median(samples, duration - args.window_s, duration)
    growth = 100.0 * (end - warm) / warm
    peak = max(rss for _, rss in samples)
    requests = sum(load.statuses.values()) + load.failed_connections
    latencies = sorted(load.latencies)
    mib = 1024 * 1024
    print(f"model {args.model}, {args.concurrency} clients, server --workers {args.workers}, "
          f"heatmap {'on' if args.heatmap else 'off'}, {elapsed:.0f} s")
    print(f"requests:             {requests} ({requests / elapsed:.1f}/s), "
          f"statuses {dict(sorted(load.statuses.items()))}")
    print(f"errors:               {len(load.errors)}")
    print(f"history rows:         {rows} for {load.ok} answers 200")
    if latencies:
        print(f"latency of 200s:      p50 {1000 * latencies[len(latencies) // 2]:.0f} ms, "
              f"p95 {1000 * latencies[int(len(latencies) * 0.95)]:.0f} ms")
    print(f"RSS after warm-up:    {warm / mib:.1f} MiB (median of {args.warmup_s:.0f}-"
          f"{args.warmup_s + args.window_s:.0f} s)")
    print(f"RSS at the end:       {end / mib:.1f} MiB (median of the last {args.window_s:.0f} s)")
    print(f"RSS peak / samples:   {peak / mib:.1f} MiB / {len(samples)}")
    print(f"growth after warm-up: {growth:+.1f}% (limit {args.max_growth:.0f}%)")
    problems = [f"error: {e}" for e in load.errors[:10]]
    if growth > args.max_growth:
        problems.append(f"RSS grew {growth:.1f}% after warm-up")
    if rows != load.ok:
        problems.append(f"{rows} history rows for {load.ok} answers 200")
    if "Traceback" in server_log:
        problems.append(f"traceback in the server log: {server_log[-1500:]}")
    return verdict(problems)


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
