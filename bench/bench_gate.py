"""How the chest-X-ray gate does: figures, not pass/fail.

- held-out chest X-rays flagged UNKNOWN: the bundle's validation split (patients carved from train with the
  training seed; the gate was fitted on the train split only), plus the dataset's own val/test folders when
  present. Target <= 1%.
- non-X-ray images flagged UNKNOWN: :func:`pneumo.gate.negatives.negative_images` drawn with a different seed
  than ``pneumo gate fit`` used (other photo crops, other synthetic documents, screenshots and patterns; the
  shipped photos and DICOMs themselves are the same files). Target >= 95%.

    python bench/bench_gate.py --model runs/mnv3s-224/best --data ../shared/data/kermany
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pneumo.evaluation.scoring import select_records
from pneumo.gatefit.fit import negatives_table, score_negatives
from pneumo.gatefit.negatives import negative_images
from pneumo.inference.predictor import Predictor


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="default", help="bundle directory, run directory or shipped name")
    p.add_argument("--data", required=True, help="dataset root the bundle was trained on")
    p.add_argument("--seed", type=int, default=1, help="negatives seed (gate fit uses 0)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--backend", default="torch", choices=("torch", "onnx"))
    p.add_argument("--json", default="", metavar="FILE", help="also write the figures (and every flagged X-ray)")
    return p


def flagged(predictions) -> tuple[float, list[dict]]:
    scored = [p for p in predictions if p.error is None]
    unknown = [{"path": p.path, "reason": p.unknown_reason} for p in scored if p.label == "UNKNOWN"]
    return 100.0 * len(unknown) / max(1, len(scored)), unknown


def main(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(2)
    predictor = Predictor.load(args.model, backend=args.backend)
    print(predictor.gate_status)
    if not predictor.has_gate:
        print("WARNING: no feature gate: the figures below are for the cheap checks alone")
    summary: dict = {"model": predictor.meta.version, "gate": predictor.meta.gate.get("sha256", ""), "xrays": {}}
    for split in ("val", "official-val", "test"):
        try:
            records = select_records(predictor.meta, split, args.data).records
        except ValueError:
            continue  # the dataset has no such split
        started = time.perf_counter()
        pct, unknown = flagged(predictor.predict_many([r.path for r in records], batch_size=args.batch_size))
        summary["xrays"][split] = {"n": len(records), "flagged_pct": round(pct, 3), "flagged": unknown}
        print(f"X-rays, split {split!r}: {len(records)} images, {pct:.2f}% flagged UNKNOWN (target <= 1%) "
              f"[{time.perf_counter() - started:.0f} s]")
        for row in unknown[:10]:
            print(f"    {row['path']}: {row['reason']}")
    images = negative_images(args.seed)
    rows = score_negatives(predictor, images, args.batch_size)
    scored = [r for r in rows if r["error"] is None]
    pct = 100.0 * sum(r["label"] == "UNKNOWN" for r in scored) / max(1, len(scored))
    table = negatives_table(rows)
    summary["nonxrays"] = {"n": len(scored), "flagged_pct": round(pct, 3), "by_category": table,
                           "missed": [f"{r['category']}/{r['name']}" for r in scored if r["label"] != "UNKNOWN"]}
    print(f"non-X-rays: {len(scored)} images, {pct:.2f}% flagged UNKNOWN (target >= 95%)")
    for category, row in table.items():
        print(f"  {category:<12} {int(row['n']):>4} images  {row['flagged_pct']:6.1f}% flagged "
              f"({row['by_distance_pct']:.1f}% by feature distance)")
    if summary["nonxrays"]["missed"]:
        print("  missed: " + ", ".join(summary["nonxrays"]["missed"][:20]))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main(get_args_parser().parse_args())
