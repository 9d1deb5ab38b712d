"""Hostile uploads against a real ``pneumo serve``: issue 28's decompression bombs and files near the upload
limit, with the server's memory sampled throughout.

    python -m bench.bench_hostile_upload [--model default] [--heatmap] [--max-rss-mb 700]

Starts the server on 127.0.0.1 (a fresh SQLite history in a temporary folder), then posts one at a time:
the 40 KB JPEG-LS DICOM of 128 blank 2000x2000 frames, the 0.5 MB deflated DICOM, a deflated DICOM near the
upload limit (20 GB inflated), an RLE segment that expands 64 times, a JPEG-LS frame larger than its header,
40-megapixel images at the pixel limit (8-bit and 16-bit PNG, RGB JPEG), a 16-bit DICOM near the upload
limit, a real X-ray enlarged to 6000x6000 and an upload over the limit. The
server's RSS (psutil if installed, else /proc/PID/status) is sampled every 10 ms. Prints, per upload, the
status, the peak RSS while it ran and the start of the answer; then the overall peak and whether
``/api/v1/health`` still answers. Exit status 1 when a bomb is not refused with a 4xx naming its limit, a
valid file is not answered 200, the peak passes --max-rss-mb, or the server is not healthy after.

The bombs are refused before any model runs. The valid files are sent without Grad-CAM unless --heatmap
(the heatmap comes from the bundle's ONNX graph: 619 MiB peak with it, measured).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout root: pneumo_testsupport/

from bench.verdict import verdict  # noqa: E402
from pneumo_testsupport import bombs  # noqa: E402
from pneumo_testsupport.corpus import dicom_bytes  # noqa: E402
from pneumo_testsupport.net import free_port, wait_healthy  # noqa: E402
from pneumo_testsupport.process import rss_bytes  # noqa: E402

MB = 1024 * 1024
UPLOAD_LIMIT = 20 * MB  # pneumo serve's default --max-upload-mb


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes
    expect: str  # "refused": a 4xx naming a limit; "read": 200


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="default", help="model to serve")
    p.add_argument("--heatmap", action=argparse.BooleanOptionalAction, default=False,
                   help="ask for Grad-CAM on the valid files too (loads PyTorch)")
    p.add_argument("--max-rss-mb", type=float, default=700.0, help="the peak RSS allowed, MiB")
    p.add_argument("--sample-s", type=float, default=0.01, help="seconds between RSS samples")
    return p


class Sampler:
    """Samples a process's RSS in a thread; ``peak_since(mark)`` is the highest since a mark."""

    def __init__(self, pid: int, every: float) -> None:
        self.pid, self.every = pid, every
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(rss_bytes(self.pid))
            except (OSError, RuntimeError):
                return  # the process is gone
            time.sleep(self.every)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def mark(self) -> int:
        return len(self.samples)

    def peak_since(self, mark: int) -> int:
        time.sleep(2 * self.every)  # one more sample after the answer
        return max(self.samples[mark:] or [rss_bytes(self.pid)])


def near_limit_dicom() -> bytes:
    """A real 16-bit DICOM of noise just under the upload limit (about 19.5 MB of pixels)."""
    side = int(np.sqrt((UPLOAD_LIMIT - 512 * 1024) / 2))
    pixels = np.random.default_rng(28).integers(0, 4096, size=(side, side), dtype=np.uint16)
    return dicom_bytes(pixels)


def large_xray_jpeg(side: int) -> bytes:
    """A real chest X-ray from tests/assets enlarged to ``side`` x ``side``: a large film the gate reads, so
    the whole path (and Grad-CAM with --heatmap) runs at a size near the pixel limit."""
    from PIL import Image

    source = sorted((Path(__file__).resolve().parents[1] / "tests" / "assets").glob("*.jpeg"))[0]
    buffer = io.BytesIO()
    Image.open(source).convert("L").resize((side, side), Image.BICUBIC).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def uploads() -> list[Upload]:
    return [
        Upload("JPEG-LS DICOM, 128 blank 2000x2000 frames", bombs.jpegls_multiframe_bomb(), "refused"),
        Upload("deflated DICOM, ~0.5 MB -> ~500 MB", bombs.deflated_bomb(), "refused"),
        Upload("deflated DICOM near the upload limit (~19 MB -> ~19 GB)",
               bombs.deflated_bomb(compressed_target=19 * MB), "refused"),
        Upload("RLE DICOM, a 16x16 frame whose segment expands to 1.2 GB",
               bombs.rle_segment_bomb(expanded=1200 * MB), "refused"),
        Upload("JPEG-LS DICOM, 16x16 header over a 4000x4000 codestream", bombs.jpegls_lying_frame(), "refused"),
        Upload("PNG of 6325x6325 blank pixels (just over the limit)", bombs.blank_image(6325, 6325), "refused"),
        Upload("PNG of 6324x6324 blank pixels (at the 40 MP limit)", bombs.blank_image(6324, 6324), "read"),
        Upload("16-bit PNG of 6324x6324 blank pixels", bombs.blank_image(6324, 6324, "I;16"), "read"),
        Upload("RGB JPEG of 6324x6324 blank pixels", bombs.blank_image(6324, 6324, "RGB", "JPEG"), "read"),
        Upload("16-bit DICOM of noise near the upload limit", near_limit_dicom(), "read"),
        Upload("real X-ray (tests/assets) enlarged to 6000x6000, JPEG", large_xray_jpeg(6000), "read"),
        Upload("upload over the 20 MB limit", bytes(UPLOAD_LIMIT + MB), "refused"),
    ]


def start_server(args: argparse.Namespace, data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "pneumo.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--model",
               args.model, "--data-dir", str(data_dir), "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if k != "PNEUMO_API_KEY"}
    with log.open("w") as handle:
        server = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    wait_healthy(f"http://127.0.0.1:{port}", lambda: server.poll() is None, timeout=180)
    return server


def judge(upload: Upload, status: int, message: str) -> str | None:
    if upload.expect == "read":
        return None if status == 200 else f"{upload.name}: expected 200, got {status} ({message[:200]})"
    if not 400 <= status < 500:
        return f"{upload.name}: expected a 4xx, got {status}"
    if "limit" not in message and "budget" not in message:
        return f"{upload.name}: the {status} does not name a limit ({message[:200]})"
    return None


def main(args: argparse.Namespace) -> int:
    items = uploads()
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pneumo-hostile-") as folder:
        port = free_port()
        server = start_server(args, Path(folder) / "data", port, Path(folder) / "serve.log")
        base = f"http://127.0.0.1:{port}"
        try:
            with Sampler(server.pid, args.sample_s) as sampler, httpx.Client(base_url=base, timeout=300) as http:
                time.sleep(1.0)
                baseline = rss_bytes(server.pid)
                print(f"server RSS at rest: {baseline / MB:.0f} MiB (model {args.model}, heatmap on valid files: "
                      f"{args.heatmap})")
                print(f"{'upload':<60} {'bytes':>10} {'status':>6} {'peak MiB':>9}  answer")
                for upload in items:
                    mark = sampler.mark()
                    heatmap = "true" if upload.expect == "refused" or args.heatmap else "false"
                    try:
                        response = http.post("/api/v1/predict", params={"heatmap": heatmap},
                                             files={"file": ("upload.dcm", upload.data, "application/octet-stream")})
                        status = response.status_code
                        body = response.json()
                        message = body["error"]["message"] if "error" in body else f"label {body.get('label')}"
                    except httpx.HTTPError as exc:
                        status, message = 0, f"connection failed ({type(exc).__name__})"
                    peak = sampler.peak_since(mark)
                    print(f"{upload.name:<60} {len(upload.data):>10} {status:>6} {peak / MB:>9.0f}  {message[:110]}")
                    if problem := judge(upload, status, message):
                        problems.append(problem)
                health = http.get("/api/v1/health")
                overall = max(sampler.samples)
            print(f"peak RSS over the run: {overall / MB:.0f} MiB (limit {args.max_rss_mb:.0f} MiB); "
                  f"/api/v1/health after: {health.status_code} {health.text}")
            if overall > args.max_rss_mb * MB:
                problems.append(f"peak RSS {overall / MB:.0f} MiB is over {args.max_rss_mb:.0f} MiB")
            if health.status_code != 200 or server.poll() is not None:
                problems.append("the server is not healthy after the uploads")
        finally:
            server.terminate()
            server.wait(30)
    return verdict(problems)


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
