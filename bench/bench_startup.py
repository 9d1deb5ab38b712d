"""Whole-process start-up of ``pneumo predict one.jpeg`` against a bare import of what it needs: figures, not
pass/fail.

Each round runs, as separate processes, in alternating order so that drift in machine load hits both:
- bare: ``python -c "import onnxruntime, numpy, PIL"`` (the floor: the ONNX path cannot start faster);
- predict: ``python -m pneumo.cli predict IMAGE --format json`` (default backend: ONNX Runtime on the bundle's
  model.onnx; decode, checks, preprocessing, model, gate, output).
Reports the median of each and their ratio. Target on the 2-core reference machine: ratio <= 4.

    python bench/bench_startup.py --image tests/assets/person1946_bacteria_4874.jpeg
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_RATIO = 4.0


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--image", required=True, help="one chest X-ray file")
    p.add_argument("--model", default="default", help="bundle directory, run directory or shipped name")
    p.add_argument("--backend", default="auto", choices=("auto", "onnx", "torch"))
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds")
    p.add_argument("--json", default="", metavar="FILE", help="also write the figures here")
    return p


def _seconds(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed


def main(args: argparse.Namespace) -> int:
    bare = [sys.executable, "-c", "import onnxruntime, numpy, PIL"]
    predict = [sys.executable, "-m", "pneumo.cli", "predict", args.image, "--model", args.model,
               "--backend", args.backend, "--format", "json"]
    _seconds(bare), _seconds(predict)  # warm the page cache: the figures are of a warm start
    times: dict[str, list[float]] = {"bare": [], "predict": []}
    for round_ in range(args.rounds):
        order = (("bare", bare), ("predict", predict)) if round_ % 2 == 0 else (("predict", predict), ("bare", bare))
        for name, command in order:
            times[name].append(_seconds(command))
    figures = {name: round(statistics.median(values), 3) for name, values in times.items()}
    figures["ratio"] = round(figures["predict"] / figures["bare"], 2)
    figures.update(rounds=args.rounds, backend=args.backend, model=args.model, image=str(Path(args.image)))
    print(f"bare import of onnxruntime, numpy, PIL: {figures['bare']:.3f} s (median of {args.rounds})")
    print(f"pneumo predict one image ({args.backend}): {figures['predict']:.3f} s (median of {args.rounds})")
    print(f"ratio {figures['ratio']:.2f} (target <= {TARGET_RATIO:g})")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
