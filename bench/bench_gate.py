"""How the chest-X-ray gate does: figures, not pass/fail.

- held-out chest X-rays answered UNKNOWN, and answered with an out-of-distribution warning: the bundle's
  validation split (patients carved from train with the training seed; the gate was fitted on the train split
  only), plus the dataset's own val/test folders when present. Target <= 1% UNKNOWN.
- the same X-rays as another site might have sent them: ``--site-variants`` site variants of each
  (:func:`pneumo.data.acquisition.site_variant`, from seeds the fit never uses), the stand-in for adult X-rays
  from other hospitals, which we do not have. Target <= 5% UNKNOWN; the rest gets a result, warned or not.
- non-X-ray images answered UNKNOWN, warned or read, per kind: :func:`pneumo.gatefit.negatives.negative_images`
  drawn with a different seed than ``pneumo gate fit`` used (other photo crops, phantom CT slices, figures,
  slides, viewer screenshots, documents, patterns; insets from the measured X-rays), on the share of each kind
  the gate's non-X-ray score was not fitted on (:func:`pneumo.gatefit.holdout.split_negatives` with the
  gate's own seed from ``meta.gate``: no CT file, photograph or crop of one it saw) and on all. Targets on the
  held-out share: >= 97% UNKNOWN of every kind, none labelled PNEUMONIA without a warning.

    python bench/bench_gate.py --model default --data ../shared/data/kermany --json gate.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pneumo.data.decode import decode_image
from pneumo.evaluation.scoring import select_records
from pneumo.gatefit.copies import site_images
from pneumo.gatefit.holdout import split_negatives
from pneumo.gatefit.negatives import negative_images
from pneumo.gatefit.report import (held_out_rows, negatives_table, nonxray_pct, score_negatives, table_lines,
                                   warned_pct)
from pneumo.inference.predictor import Predictor


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="default", help="bundle directory, run directory or shipped name")
    p.add_argument("--data", required=True, help="dataset root the bundle was trained on")
    p.add_argument("--seed", type=int, default=1, help="negatives and site-variant seed (gate fit uses 0)")
    p.add_argument("--site-variants", type=int, default=1, metavar="K", help="site variants of each X-ray (0: none)")
    p.add_argument("--splits", nargs="+", default=["val", "official-val", "test"], help="X-ray splits to measure")
    p.add_argument("--split-seed", type=int, default=None,
                   help="seed of the negatives' held-out split (default: the gate's own, meta.gate's seed)")
    p.add_argument("--inset-xrays", type=int, default=40, metavar="N",
                   help="X-rays of the first split inset into figures, slides and viewer screenshots")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--backend", default="torch", choices=("torch", "onnx"))
    p.add_argument("--json", default="", metavar="FILE", help="also write the figures (and every flagged X-ray)")
    return p


def flagged(predictions) -> tuple[float, list[dict]]:
    scored = [p for p in predictions if p.error is None]
    unknown = [{"path": p.path, "reason": p.unknown_reason} for p in scored if p.label == "UNKNOWN"]
    return 100.0 * len(unknown) / max(1, len(scored)), unknown


def _split_seed(predictor: Predictor, args: argparse.Namespace) -> int:
    if args.split_seed is not None:
        return args.split_seed
    if "seed" not in predictor.meta.gate:
        raise ValueError(f"{args.model}: meta.gate records no seed (a gate fitted before the held-out split was "
                         "seeded); pass --split-seed")
    return int(predictor.meta.gate["seed"])


def _nonxrays(predictor: Predictor, args: argparse.Namespace, insets: list[str]) -> dict:
    """Non-X-ray images per kind: held out from the gate's non-X-ray score, and all of them."""
    if not insets:
        raise ValueError("no X-rays were measured, so none can be inset into figures; check --splits and --data")
    images = negative_images(args.seed, xrays=[decode_image(path) for path in insets])
    rows = score_negatives(predictor, images, args.batch_size)
    pct, n_all = nonxray_pct(rows)
    held = held_out_rows(rows, split_negatives(images, seed=_split_seed(predictor, args))[1])
    held_pct, n_held = nonxray_pct(held)
    table, held_table = negatives_table(rows), negatives_table(held)
    print(f"non-X-rays: {n_held} held out from the non-X-ray score, {held_pct:.2f}% UNKNOWN (target >= 97% of every "
          f"kind); all {n_all}: {pct:.2f}% UNKNOWN. Held out, per kind:")
    print("\n".join(table_lines(held_table)))
    print("All, per kind:\n" + "\n".join(table_lines(table)))
    missed = [f"{r['category']}/{r['name']}: {r['label']}{' (warned)' if r['out_of_distribution'] else ''}"
              for r in rows if r["error"] is None and r["label"] != "UNKNOWN"]
    if missed:
        print("  read: " + ", ".join(missed[:30]))
    return {"n": n_all, "flagged_pct": round(pct, 3), "n_held_out": n_held, "held_out_flagged_pct": round(held_pct, 3),
            "held_out_by_category": held_table, "by_category": table, "missed": missed,
            "held_out_pneumonia_unwarned": sum(int(row["pneumonia_unwarned"]) for row in held_table.values())}


def main(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(2)
    predictor = Predictor.load(args.model, backend=args.backend)
    print(predictor.gate_status)
    if not predictor.has_gate:
        print("WARNING: no feature gate: the figures below are for the cheap checks alone")
    summary: dict = {"model": predictor.meta.version, "gate": predictor.meta.gate.get("sha256", ""), "xrays": {}}
    insets: list[str] = []
    for split in args.splits:
        try:
            records = select_records(predictor.meta, split, args.data).records
        except ValueError:
            continue  # the dataset has no such split
        started = time.perf_counter()
        insets = insets or [r.path for r in records[::max(1, len(records) // args.inset_xrays)]][:args.inset_xrays]
        predictions = predictor.predict_many([r.path for r in records], batch_size=args.batch_size)
        pct, unknown = flagged(predictions)
        summary["xrays"][split] = {"n": len(records), "flagged_pct": round(pct, 3),
                                   "ood_pct": round(warned_pct(predictions), 3), "flagged": unknown}
        print(f"X-rays, split {split!r}: {len(records)} images, {pct:.2f}% UNKNOWN (target <= 1%), "
              f"{warned_pct(predictions):.2f}% warned out of distribution [{time.perf_counter() - started:.0f} s]")
        for row in unknown[:10]:
            print(f"    {row['path']}: {row['reason']}")
        for copy in range(args.site_variants):
            started = time.perf_counter()
            copies = predictor.predict_many(site_images([r.path for r in records], args.seed, copy),
                                            batch_size=args.batch_size)
            pct, _ = flagged(copies)
            summary["xrays"][f"{split} site variant {copy}"] = {"n": len(copies), "flagged_pct": round(pct, 3),
                                                                "ood_pct": round(warned_pct(copies), 3)}
            print(f"  site variant {copy} of {split!r}: {len(copies)} images, {pct:.2f}% UNKNOWN (target <= 5%), "
                  f"{warned_pct(copies):.2f}% warned out of distribution [{time.perf_counter() - started:.0f} s]")
    summary["nonxrays"] = _nonxrays(predictor, args, insets)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main(get_args_parser().parse_args())
