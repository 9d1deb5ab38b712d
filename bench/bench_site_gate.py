"""The site gate alone on bench_adapt.py's held-out outer folds (docs/site.md, step 8).

For each of bench_adapt's five patient-disjoint outer folds: the gate widened on the other four folds' X-rays, as
`pneumo adapt` ships it (pneumo.training.adaptation.site_gate.widen, at the parent fit's percentiles), against
the parent's gate on this fold's X-rays; the cross-fitted count adapt itself records on the four folds; and
the share of each kind of `pneumo gate fit`'s held-out non-X-ray images the widened gate answers UNKNOWN. The
features of every image are extracted once (torch), so this takes minutes where bench_adapt takes tens.

    python bench/bench_site_gate.py --model BUNDLE --manifest SITE/site/manifest.csv [--json out.json]

``--manifest``: the site bench_adapt.py writes (``--out SITE``). The non-X-ray composites have X-rays from all
five folds inset (adapt insets its own local X-rays).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from bench_adapt import patient_folds
from pneumo.bundle import read_meta
from pneumo.data.records import read_manifest
from pneumo.gate.mahalanobis import load_gate
from pneumo.gatefit.site_check import held_out_negatives
from pneumo.training.adaptation.site_gate import (FAR_PERCENTILE, WARN_PERCENTILE, Scores, embed_scores, gate_predictor,
                                                  cross_fitted, refusal_by_kind, unknown, widen)


def _part(scores: Scores, keep: np.ndarray) -> Scores:
    return Scores(scores.distance[keep], scores.nonxray[keep], scores.refused[keep])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    directory, meta = read_meta(args.model)
    params = load_gate(directory, meta.gate)
    percentiles = (float(meta.gate.get("far_percentile", FAR_PERCENTILE)),
                   float(meta.gate.get("warn_percentile", WARN_PERCENTILE)))
    records = read_manifest(args.manifest)
    paths = [str(args.manifest.parent / r.path) for r in records]
    predictor = gate_predictor(directory, meta, params, "cpu")
    xrays = embed_scores(predictor, paths, params)
    print(f"site X-rays: feature distance {xrays.distance.min():.1f}-{xrays.distance.max():.1f} (median "
          f"{np.median(xrays.distance):.1f}); parent's far boundary {params.far_threshold:.2f}; percentiles "
          f"{percentiles}", flush=True)
    sources, kinds = held_out_negatives(meta.gate, paths)
    nonxrays = embed_scores(predictor, sources, params)
    outer = patient_folds(records, args.folds, args.seed)
    rows = []
    for fold in range(args.folds):
        adapt_on, held = outer != fold, outer == fold
        inner = patient_folds([r for r, k in zip(records, adapt_on) if k], args.folds, args.seed)
        wide = widen(params, _part(xrays, adapt_on), percentiles)
        crossed, _ = cross_fitted(params, _part(xrays, adapt_on), inner, percentiles)
        refusal = refusal_by_kind(wide.rule(), nonxrays, kinds)
        rows.append({"fold": fold, "held": int(held.sum()), "far": wide.far_threshold, "warn": wide.warn_nonxray,
                     "unknown_parent": int(unknown(params.rule(), _part(xrays, held)).sum()),
                     "unknown_widened": int(unknown(wide.rule(), _part(xrays, held)).sum()),
                     "adapt_part_unknown_parent": int(unknown(params.rule(), _part(xrays, adapt_on)).sum()),
                     "adapt_part_unknown_cross_fitted": int(crossed.sum()),
                     "nonxray_min": min(v["unknown"] for v in refusal.values()), "nonxray": refusal})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "nonxray"}), flush=True)
    print(f"held-out X-rays answered UNKNOWN: parent's gate {sum(r['unknown_parent'] for r in rows)}, widened "
          f"{sum(r['unknown_widened'] for r in rows)} of {len(paths)}")
    print("held-out non-X-rays UNKNOWN by the parent's gate:",
          json.dumps(refusal_by_kind(params.rule(), nonxrays, kinds)))
    for row in rows:
        print(f"fold {row['fold']}, widened:", json.dumps(row["nonxray"]))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
