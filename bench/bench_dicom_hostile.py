"""The DICOM node's memory under hostile peers: ``pneumo serve --dicom-port`` in a subprocess, the networking
corpus of ``tests/reliability/dicom_network.py`` sent at full size with pynetdicom (a 0.5 MB deflate bomb that
inflates to 512 MiB, a 128 x 2000 x 2000 multi-frame header, a dataset over the limit, PDUs claiming 4 GB, a
connection cut mid-PDU), then the same bombs over parallel associations, then a good C-STORE. The node's RSS is
sampled from /proc every 20 ms and its peak read from VmHWM. Target: peak under 700 MB, every bomb refused (a
failure status or a refused association), the node still answering.

    python -m bench.bench_dicom_hostile                   # deflate offered (the worst case), default limits
    python -m bench.bench_dicom_hostile --no-deflate      # the default configuration
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout root: pneumo_testsupport/

from bench.verdict import verdict  # noqa: E402
from pneumo_testsupport.dicom_network import REFUSED, corpus, explicit_le, good_dx, store_encoded  # noqa: E402
from pneumo_testsupport.net import free_port, wait_healthy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
TARGET_MB = 700


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


class RssSampler(threading.Thread):
    """VmRSS of ``pid`` every ``interval`` seconds; ``peak_mb`` the highest sample."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak_mb = pid, interval, 0.0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.peak_mb = max(self.peak_mb, proc_kib(self.pid, "VmRSS") / 1024)
            except (OSError, RuntimeError):
                return
            time.sleep(self.interval)


def start_node(args, data_dir: Path, http_port: int, dicom_port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "pneumo.cli", "serve", "--model", args.model, "--port", str(http_port),
               "--data-dir", str(data_dir), "--log-level", "warning", "--dicom-port", str(dicom_port)]
    command += ["--dicom-accept-deflate"] if args.deflate else []
    env = {k: v for k, v in os.environ.items() if k != "PNEUMO_API_KEY"}
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    with open(data_dir / "serve.log", "wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_healthy(f"http://127.0.0.1:{http_port}", lambda: server.poll() is None, timeout=900)
    return server


def good_store(port: int) -> int:
    ds = good_dx(side=256)
    return store_encoded("127.0.0.1", port, ds, explicit_le(ds), ExplicitVRLittleEndian)


def run_bombs(args, port: int, pid: int) -> list[str]:
    sends = corpus(deflate_inflated=int(args.bomb_inflated_mb * MIB), dataset_bytes=int(args.oversize_mb * MIB),
                   frames=args.frames, side=args.side)
    problems = []
    print(f"{'hostile send':58s} {'answer':>8s} {'RSS MB':>7s} {'peak MB':>8s}")
    for hostile in sends:
        answer = hostile.send("127.0.0.1", port)
        shown = "refused" if answer == REFUSED else f"0x{answer:04X}"
        print(f"{hostile.name:58s} {shown:>8s} {proc_kib(pid, 'VmRSS') / 1024:7.0f} "
              f"{proc_kib(pid, 'VmHWM') / 1024:8.0f}")
        if answer not in hostile.expected:
            problems.append(f"{hostile.name}: answered {shown}")
    heavy = [s for s in sends if s.name in ("deflate bomb", "oversize dataset")]
    for round_ in range(1, args.rounds + 1):
        with ThreadPoolExecutor(args.parallel) as pool:
            answers = list(pool.map(lambda i: heavy[i % len(heavy)].send("127.0.0.1", port), range(args.parallel)))
        label = f"{args.parallel} at once (deflate bombs, oversize datasets), round {round_}"
        print(f"{label:58s} {len([a for a in answers if a != 0]):>4d}/{args.parallel} "
              f"{proc_kib(pid, 'VmRSS') / 1024:7.0f} {proc_kib(pid, 'VmHWM') / 1024:8.0f}")
        problems += [f"round {round_}: parallel send {i} answered Success" for i, answer in enumerate(answers)
                     if answer == 0]
    return problems


def main(args) -> int:
    with tempfile.TemporaryDirectory(prefix="pneumo-hostile-") as folder:
        http_port, dicom_port = free_port(), free_port()
        server = start_node(args, Path(folder), http_port, dicom_port)
        try:
            if good_store(dicom_port) != 0:  # warm: the model and highdicom loaded, as in service
                return verdict(["the node did not accept a good instance before the bombs"])
            time.sleep(2)
            idle = proc_kib(server.pid, "VmRSS") / 1024
            print(f"node idle after one good instance: {idle:.0f} MB (deflate {'offered' if args.deflate else 'off'})")
            sampler = RssSampler(server.pid)
            sampler.start()
            problems = run_bombs(args, dicom_port, server.pid)
            after = good_store(dicom_port)
            sampler.stopped.set()
            peak = max(sampler.peak_mb, proc_kib(server.pid, "VmHWM") / 1024)
            print(f"good C-STORE after the bombs: 0x{after:04X}; node peak RSS {peak:.0f} MB (target < {TARGET_MB})")
            if after != 0:
                problems.append(f"the good C-STORE after the bombs answered 0x{after:04X}")
            if server.poll() is not None:
                problems.append("the node exited")
            if peak >= TARGET_MB:
                problems.append(f"peak RSS {peak:.0f} MB, over {TARGET_MB} MB")
            return verdict(problems)
        finally:
            server.terminate()
            server.wait(60)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="bundle the node serves")
    p.add_argument("--deflate", action=argparse.BooleanOptionalAction, default=True,
                   help="start the node with --dicom-accept-deflate (the bombs then reach the inflater)")
    p.add_argument("--bomb-inflated-mb", type=float, default=512, help="what the deflate bomb inflates to")
    p.add_argument("--oversize-mb", type=float, default=80, help="the oversize dataset (the default limit: 48 MiB)")
    p.add_argument("--frames", type=int, default=128)
    p.add_argument("--side", type=int, default=2000)
    p.add_argument("--parallel", type=int, default=8, help="bombs sent at once (default: max associations)")
    p.add_argument("--rounds", type=int, default=3, help="times the bombs are sent at once")
    return p


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
