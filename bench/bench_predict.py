"""Prediction speed, PyTorch eager against ONNX Runtime side by side: figures, not pass/fail.

Per backend, in alternating rounds so that drift in machine load hits both:
- latency: ``Predictor.predict(path)`` on one image at a time (decode + checks + preprocess + model), p50/p95;
- folder: ``Predictor.predict_many(paths)`` over a folder (decoding in threads overlapped with the model), img/s;
- bare: the backend alone on one pre-made, already normalised batch, img/s.
Targets on the 2-core reference machine: ONNX Runtime bare >= 1.5x PyTorch bare; folder >= 70% of bare.

    python bench/bench_predict.py --model runs/mnv3s-224/best --data ../shared/data/kermany/val
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from pneumo.commands.predict import expand_paths
from pneumo.data.preprocess import normalize_uint8, preprocess_array
from pneumo.inference.inputs import load_input
from pneumo.inference.predictor import Predictor


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="default", help="bundle directory, run directory or shipped name")
    p.add_argument("--data", required=True, help="folder of X-rays (searched recursively)")
    p.add_argument("--images", type=int, default=256, help="images in the folder-throughput run")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--latency-runs", type=int, default=40, help="single-image predictions per round")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per backend")
    p.add_argument("--threads", type=int, default=2, help="model threads (torch.set_num_threads / ORT intra-op)")
    p.add_argument("--workers", type=int, default=2, help="decoding threads in predict_many")
    p.add_argument("--backends", nargs="+", default=["torch", "onnx"], choices=("torch", "onnx"))
    p.add_argument("--json", default="", metavar="FILE", help="also write the figures here")
    return p


def latency_ms(predictor: Predictor, paths: list[str], runs: int) -> list[float]:
    out = []
    for i in range(runs):
        started = time.perf_counter()
        prediction = predictor.predict(paths[i % len(paths)])
        out.append((time.perf_counter() - started) * 1000.0)
        if prediction.error:
            raise SystemExit(f"benchmark input failed: {prediction.error}")
    return out


def folder_rate(predictor: Predictor, paths: list[str], batch_size: int) -> float:
    started = time.perf_counter()
    predictor.predict_many(paths, batch_size=batch_size)
    return len(paths) / (time.perf_counter() - started)


def bare_rate(predictor: Predictor, batch: np.ndarray, repeats: int = 3) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        predictor.backend.run(batch)
    return repeats * len(batch) / (time.perf_counter() - started)


def main(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    paths = expand_paths([args.data])[: max(args.images, args.batch_size)]
    if not paths:
        raise SystemExit(f"no images under {args.data}")
    predictors = {b: Predictor.load(args.model, backend=b, threads=args.threads, workers=args.workers)
                  for b in args.backends}
    meta = next(iter(predictors.values())).meta
    batch = normalize_uint8(np.stack([preprocess_array(load_input(p).pixels, meta.preprocess)
                                      for p in paths[: args.batch_size]]), meta.preprocess)[:, None]
    figures: dict[str, dict[str, list[float]]] = {b: {"latency": [], "folder": [], "bare": []} for b in predictors}
    for predictor in predictors.values():  # warm-up: first-call allocations, lazy imports
        latency_ms(predictor, paths, 3)
        bare_rate(predictor, batch, 1)
    for round_ in range(args.rounds):
        for name, predictor in predictors.items():
            figures[name]["latency"] += latency_ms(predictor, paths, args.latency_runs)
            figures[name]["bare"].append(bare_rate(predictor, batch))
            figures[name]["folder"].append(folder_rate(predictor, paths, args.batch_size))
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    summary = {"model": meta.version, "threads": args.threads, "workers": args.workers,
               "batch_size": args.batch_size, "images": len(paths)}
    print(f"\n{meta.version}, {len(paths)} images from {args.data}, batch {args.batch_size}, {args.threads} model "
          f"threads, {args.workers} decode workers")
    print(f"{'backend':<8} {'p50 ms':>8} {'p95 ms':>8} {'folder img/s':>13} {'bare img/s':>11} {'folder/bare':>12}")
    for name, f in figures.items():
        p50, p95 = np.percentile(f["latency"], [50, 95])
        folder, bare = statistics.median(f["folder"]), statistics.median(f["bare"])
        summary[name] = {"latency_p50_ms": round(float(p50), 2), "latency_p95_ms": round(float(p95), 2),
                         "folder_img_s": round(folder, 1), "bare_img_s": round(bare, 1),
                         "folder_over_bare": round(folder / bare, 3)}
        print(f"{name:<8} {p50:>8.1f} {p95:>8.1f} {folder:>13.1f} {bare:>11.1f} {folder / bare:>12.2f}")
    if {"torch", "onnx"} <= set(figures):
        ratio = summary["onnx"]["bare_img_s"] / summary["torch"]["bare_img_s"]
        summary["onnx_over_torch_bare"] = round(ratio, 2)
        print(f"ONNX Runtime / PyTorch bare batch throughput: {ratio:.2f}x (target >= 1.5x)")
        print(f"folder / bare (target >= 0.70): torch {summary['torch']['folder_over_bare']:.2f}, "
              f"onnx {summary['onnx']['folder_over_bare']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main(get_args_parser().parse_args())
