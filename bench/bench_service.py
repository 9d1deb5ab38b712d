"""Load-test ``pneumo serve`` on loopback and compare it with the Predictor in one process.

    python bench/bench_service.py --model runs/x/best [--requests 500] [--concurrency 8]

Starts the server as a subprocess with a fresh SQLite history, measures the Predictor's own sequential
rate here (the same work the service does per request: Grad-CAM unless --no-heatmap), then sends the
requests with httpx at the given concurrency. Prints errors, history rows lost, p50/p95/p99 latency,
throughput and throughput / Predictor rate (target: >= 0.8). Figures, not pass/fail; exit code 1 only
when a request failed or a row went missing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout root: pneumo_testsupport/

from pneumo_testsupport.net import free_port, wait_healthy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = sorted((ROOT / "tests" / "assets").glob("*.jpeg"))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="bundle or run directory (or a shipped model name)")
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--workers", type=int, default=2,
                   help="the server's concurrent predictions (pneumo serve --workers)")
    p.add_argument("--reference", type=int, default=40, help="sequential Predictor calls for the reference rate")
    p.add_argument("--heatmap", action=argparse.BooleanOptionalAction, default=True,
                   help="ask for the Grad-CAM overlay (what the web page does)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch/OpenMP threads for both the server and the reference (0: torch's default)")
    p.add_argument("--images", nargs="*", default=[str(p) for p in DEFAULT_IMAGES], help="images to cycle through")
    return p


def start_server(args: argparse.Namespace, db: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "pneumo.cli", "serve", "--model", args.model, "--port", str(port),
               "--db", f"sqlite:///{db}", "--workers", str(args.workers), "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if k != "PNEUMO_API_KEY"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", lambda: server.poll() is None, timeout=120)
    except RuntimeError as exc:  # it exited: say why
        raise RuntimeError(f"{exc} (code {server.returncode}):\n{server.stderr.read()}") from None
    except TimeoutError:
        server.terminate()
        raise
    return server


def load_reference(model: str, images: list[bytes], heatmap: bool):
    """The same Predictor work the service does for one request, warmed up."""
    from pneumo.inference.predictor import Predictor

    predictor = Predictor.load(model)
    work = predictor.explain if heatmap else predictor.predict
    for data in images[:3]:  # warm-up: first calls allocate and tune kernels
        work(data)
    return work


def rate(work, images: list[bytes], calls: int) -> float:
    """Sequential calls per second."""
    start = time.perf_counter()
    for i in range(calls):
        work(images[i % len(images)])
    return calls / (time.perf_counter() - start)


async def load(base: str, images: list[bytes], requests: int, concurrency: int, heatmap: bool):
    latencies: list[float] = []
    failures: list[str] = []
    ids: list[int] = []
    queue = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        async def worker() -> None:
            for i in queue:
                files = {"file": (f"img{i}.jpeg", images[i % len(images)], "image/jpeg")}
                start = time.perf_counter()
                try:
                    response = await client.post("/api/v1/predict", files=files,
                                                 params={"heatmap": str(heatmap).lower()})
                except httpx.HTTPError as exc:
                    failures.append(f"request {i}: {exc!r}")
                    continue
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    failures.append(f"request {i}: HTTP {response.status_code} {response.text[:200]}")
                else:
                    ids.append(response.json()["id"])

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        total = (await client.get("/api/v1/history", params={"limit": 1})).json()["total"]
    return latencies, failures, ids, elapsed, total


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main(args: argparse.Namespace) -> int:
    images = [Path(p).read_bytes() for p in args.images]
    if not images:
        raise SystemExit("no images to send; pass --images")
    with tempfile.TemporaryDirectory(prefix="pneumo-bench-") as tmp:
        port = free_port()
        server = start_server(args, Path(tmp) / "history.sqlite3", port)
        try:
            # The reference runs while the server idles, half before and half after the load, so that both
            # figures see the same machine even when other work comes and goes on it.
            if args.threads:
                import torch

                torch.set_num_threads(args.threads)
            work = load_reference(args.model, images, args.heatmap)
            before = rate(work, images, max(1, args.reference // 2))
            latencies, failures, ids, elapsed, rows = asyncio.run(
                load(f"http://127.0.0.1:{port}", images, args.requests, args.concurrency, args.heatmap))
            after = rate(work, images, max(1, args.reference - args.reference // 2))
            reference = (before + after) / 2
        finally:
            server.terminate()
            server.wait(timeout=30)
    ok = len(ids)
    throughput = ok / elapsed
    ms = sorted(1000 * x for x in latencies)
    import torch

    print(f"model {args.model} | {args.requests} requests, concurrency {args.concurrency}, server workers "
          f"{args.workers}, heatmap {'on' if args.heatmap else 'off'}, CPUs {os.cpu_count()}, torch threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print(f"errors            {len(failures)}")
    for line in failures[:5]:
        print(f"  {line}")
    print(f"history rows      {rows} (expected {ok}; lost {ok - rows}; duplicate ids {ok - len(set(ids))})")
    print(f"latency ms        p50 {percentile(ms, 50):.1f}  p95 {percentile(ms, 95):.1f}  p99 {percentile(ms, 99):.1f}"
          f"  max {ms[-1]:.1f}")
    print(f"throughput        {throughput:.2f} req/s over {elapsed:.1f} s")
    kind = "explain (Grad-CAM)" if args.heatmap else "predict"
    print(f"Predictor rate    {reference:.2f} /s ({kind}, sequential, in-process, {args.reference} calls; "
          f"{before:.2f} before the load, {after:.2f} after)")
    print(f"service/Predictor {throughput / reference:.2f} (target >= 0.80)")
    return 1 if failures or rows != ok or len(set(ids)) != ok else 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
