"""Batch prediction through Ray Data against ``Predictor.predict_many``, on the same files in the same run, and
on a two-node Ray cluster simulated on this machine: figures, not pass/fail.

- local: ``predict_many`` (ONNX Runtime, ``--cpus`` model threads and decoding threads), images/s;
- ray: ``pneumo.batch.ray_engine.predict_to_file`` on a local Ray with ``--cpus`` CPUs, images/s overall and after
  warm-up (the run minus one of a quarter of the files, which pays the same start-up); rounds alternate with
  ``local`` so drift in load hits both;
- cluster: ``ray start --head --num-cpus 1`` plus a second ``ray start --address`` worker process (on the
  machine's address, as any cluster), then ``pneumo predict --engine ray --ray-address`` on the same files.
Rows of ray and cluster are compared with local's: labels, errors and UNKNOWN reasons equal, probabilities within
1e-5. Target on the 2-core reference machine: ray after warm-up >= 0.70 of local.

    python bench/bench_ray.py --model default --data ../shared/data/kermany/train --images 2000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pneumo.batch import LOOPBACK_SWITCH, ray_engine  # before ray: keeps the local instance on loopback

import pyarrow.parquet as pq  # noqa: E402
import ray  # noqa: E402

from pneumo.commands.predict import expand_paths  # noqa: E402
from pneumo.inference.predictor import Predictor  # noqa: E402
from pneumo.inference.rows import table_columns, table_row  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout root: pneumo_testsupport/

from pneumo_testsupport.net import free_port  # noqa: E402

RAY = str(Path(sys.executable).with_name("ray"))  # the ray command of this environment


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="default", help="bundle directory, run directory or shipped name")
    p.add_argument("--backend", default="onnx", choices=("torch", "onnx"))
    p.add_argument("--data", default="../shared/data/kermany/train", help="folder of X-rays (recursive)")
    p.add_argument("--images", type=int, default=2000, help="files, spread evenly over the sorted folder")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray; threads and decoders of local")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--warmup", type=int, default=64, help="files scored by each engine before the timed rounds")
    p.add_argument("--no-cluster", dest="cluster", action="store_false", help="skip the simulated cluster")
    defaults = ray_engine.RayConfig()
    p.add_argument("--decode-batch", type=int, default=defaults.decode_batch, help="files per decoding task")
    p.add_argument("--model-batch", type=int, default=defaults.model_batch, help="images per model call")
    p.add_argument("--json", default="", metavar="FILE", help="also write the figures here")
    return p


def pick(data: str, count: int) -> list[str]:
    paths = expand_paths([data])
    if not paths:
        raise SystemExit(f"no images under {data}")
    step = max(1, len(paths) // count)
    return paths[::step][:count]


def differences(rows: list[dict], reference: list[dict]) -> list[str]:
    """What differs between two row lists (empty when they agree)."""
    if [r["path"] for r in rows] != [r["path"] for r in reference]:
        return ["paths or their order differ"]
    out = []
    for ours, theirs in zip(rows, reference):
        for column in ("label", "error", "unknown_reason", "out_of_distribution"):
            if ours[column] != theirs[column]:
                out.append(f"{ours['path']}: {column} {ours[column]!r} != {theirs[column]!r}")
        a, b = ours["probability"], theirs["probability"]
        if (a is None) != (b is None) or (a is not None and not math.isclose(a, b, abs_tol=1e-5)):
            out.append(f"{ours['path']}: probability {a} != {b}")
    return out


def local_rate(predictor: Predictor, paths: list[str], columns: list[str]) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    predictions = predictor.predict_many(paths, batch_size=32)
    rate = len(paths) / (time.perf_counter() - started)
    return rate, [table_row(p.to_dict(), columns) for p in predictions]


def ray_run(paths: list[str], out: Path, spec: ray_engine.ModelSpec, cfg: ray_engine.RayConfig
            ) -> tuple[ray_engine.BatchSummary, list[dict]]:
    summary = ray_engine.predict_to_file(paths, out, spec, cfg)
    return summary, pq.read_table(out).to_pylist()


class PeakMemory:
    """Peak resident memory of Ray's worker processes by role, sampled every second from ps."""

    ROLES = {"model actor": "_Scorer", "decoding worker": "_prepare_batch"}

    def __init__(self) -> None:
        self.peak_mib = {role: 0.0 for role in self.ROLES}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            listing = subprocess.run(["ps", "-eo", "rss=,args="], capture_output=True, text=True).stdout
            for line in listing.splitlines():
                rss, _, command = line.strip().partition(" ")
                for role, marker in self.ROLES.items():
                    if marker in command:
                        self.peak_mib[role] = max(self.peak_mib[role], int(rss) / 1024)


def wait_for_nodes(address: str, count: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = subprocess.run([RAY, "status", "--address", address], capture_output=True, text=True,
                                env={**os.environ, LOOPBACK_SWITCH: "1"})
        if status.returncode == 0 and status.stdout.count("node_") >= count:
            return
        time.sleep(2)
    raise SystemExit(f"the simulated cluster at {address} did not reach {count} nodes in {timeout:.0f} s")


def cluster_run(paths: list[str], args: argparse.Namespace, work: Path) -> dict:
    """Head and worker as separate `ray start --block` processes (ended by their ids), the CLI as the driver."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    # A cluster, even of two processes on one machine, runs with Ray's default network behaviour: its nodes
    # advertise the machine's address (Ray turns 127.0.0.1 into it) and listen on it.
    cluster_env = {**os.environ, LOOPBACK_SWITCH: "1"}
    common = ["--block", "--num-cpus", "1", "--disable-usage-stats"]
    head = subprocess.Popen([RAY, "start", "--head", "--port", str(port), "--include-dashboard", "false", *common],
                            env=cluster_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        wait_for_nodes(address, 1)
        worker = subprocess.Popen([RAY, "start", "--address", address, *common], env=cluster_env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_nodes(address, 2)
        listening = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout
        out = work / "cluster.parquet"
        command = [sys.executable, "-m", "pneumo.cli", "predict", *paths, "--engine", "ray", "--ray-address",
                   address, "--out", str(out), "--model", args.model, "--backend", args.backend]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=cluster_env)
        seconds = time.perf_counter() - started
        if done.returncode not in (0, 1):
            raise SystemExit(f"cluster run failed ({done.returncode}):\n{done.stderr[-3000:]}")
        summary = [line for line in done.stderr.splitlines() if " files, " in line]
        return {"address": address, "seconds_with_startup": round(seconds, 1), "summary": summary[-1:],
                "rows": pq.read_table(out).to_pylist(),
                "non_loopback_listeners": [line for line in listening.splitlines()
                                           if "127.0.0.1:" not in line and "[::1]:" not in line]}
    finally:
        for process in (worker, head):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()


def main(args: argparse.Namespace) -> dict:
    paths = pick(args.data, args.images)
    print(f"{len(paths)} files from {args.data}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
          flush=True)
    predictor = Predictor.load(args.model, backend=args.backend, threads=args.cpus, workers=args.cpus)
    columns = table_columns(predictor.subtype_names)
    spec = ray_engine.ModelSpec(model=args.model, backend=args.backend)
    cfg = ray_engine.RayConfig(decode_batch=args.decode_batch, model_batch=args.model_batch, progress=False)
    figures: dict[str, list[float]] = {"local": [], "ray": [], "ray_after_warmup": []}
    short = paths[: len(paths) // 4]
    problems: list[str] = []
    reference: list[dict] = []
    memory = PeakMemory()
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        work = Path(tmp)
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING")
        try:
            local_rate(predictor, paths[: args.warmup], columns)  # warm-up: first-call allocations, workers
            ray_run(paths[: args.warmup], work / "warm.parquet", spec, cfg)
            with memory:
                for round_ in range(args.rounds):
                    rate, reference = local_rate(predictor, paths, columns)
                    figures["local"].append(rate)
                    summary, rows = ray_run(paths, work / "ray.parquet", spec, cfg)
                    brief, _ = ray_run(short, work / "short.parquet", spec, cfg)
                    # Rows arrive in input order, in bursts, so the rate after warm-up is not read off the
                    # output's timing: a run of a quarter of the files costs the same start-up, and the difference
                    # of the two runs is the time the other three quarters took.
                    marginal = (len(paths) - len(short)) / max(summary.seconds - brief.seconds, 1e-9)
                    figures["ray"].append(summary.images_per_s)
                    figures["ray_after_warmup"].append(marginal)
                    problems += [f"ray: {d}" for d in differences(rows, reference)]
                    print(f"round {round_ + 1}: local {rate:.1f} images/s; ray {summary.line()}; {len(short)} files "
                          f"in {brief.seconds:.1f} s, so {marginal:.1f} images/s after warm-up; load average "
                          f"{os.getloadavg()[0]:.1f}", flush=True)
        finally:
            ray.shutdown()
        result: dict = {"model": predictor.meta.version, "backend": args.backend, "images": len(paths),
                        "cpus": args.cpus, **{k: [round(v, 1) for v in vs] for k, vs in figures.items()},
                        "peak_rss_mib": {k: round(v) for k, v in memory.peak_mib.items()}}
        local, steady = statistics.median(figures["local"]), statistics.median(figures["ray_after_warmup"])
        result["ray_over_local"] = round(statistics.median(figures["ray"]) / local, 3)
        result["ray_after_warmup_over_local"] = round(steady / local, 3)
        if args.cluster:
            cluster = cluster_run(paths, args, work)
            problems += [f"cluster: {d}" for d in differences(cluster.pop("rows"), reference)]
            result["cluster"] = cluster
        result["row_differences"] = problems
        result["load_average_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(result, indent=2))
    print(f"ray / predict_many: {result['ray_over_local']:.2f} overall, {result['ray_after_warmup_over_local']:.2f} "
          f"after warm-up (target >= 0.70); "
          f"rows {'equal' if not problems else f'DIFFER ({len(problems)})'}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
