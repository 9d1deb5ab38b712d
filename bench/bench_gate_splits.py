"""How much the gate's figures on held-out non-X-rays owe to the one held-out split it was fitted with.

``pneumo gate fit`` keeps half of each kind's origins out of the non-X-ray score (:mod:`pneumo.gatefit.holdout`,
drawn with the gate's seed) and ``bench/bench_gate.py`` measures new renders of those held-out origins. Both
see one split. This bench computes every feature once (the bundle's training X-rays and their variants, the
validation X-rays and one site variant per draw, the non-X-ray images of draw 0 and of each measured draw),
then, for each ``--split-seeds`` seed, refits the far boundary, the non-X-ray score and the warning-zone limit
as the fit does, with that seed's held-out origins kept out, and measures on the held-out origins of each
``--draws`` draw: the non-X-ray images read without a warning, each kind's share answered UNKNOWN, and the
validation X-rays, their site variants and the same X-rays inside a 5% black border (``bench_robustness.py``'s
condition) answered UNKNOWN. The covariance and in-distribution threshold do not
depend on the split and are fitted once. The bundle's own gate is not touched.

    python bench/bench_gate_splits.py --model default --data ../shared/data/kermany --cache ../runs/gate-features

About 12-15 minutes on 2 cores for the features (cached with ``--cache``), seconds per split after that.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
from pathlib import Path

import numpy as np

from pneumo.bundle import WEIGHTS_FILE, read_document, read_meta
from pneumo.data.acquisition import site_variant
from pneumo.data.decode import decode_image
from pneumo.evaluation.scoring import select_records
from pneumo.gate.mahalanobis import fit_far_boundary, fit_gate, fit_warning_limit, mahalanobis, nonxray_score
from pneumo.gate.verdict import Reading
from pneumo.gatefit import copies, fit as gatefit
from pneumo.gatefit.holdout import kind, split_negatives
from pneumo.gatefit.negatives import NegativeImage, negative_images

from bench_robustness import CONDITIONS  # run as bench/bench_gate_splits.py: bench/ is on sys.path

BORDER = "black border (5% each side)"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="default", help="bundle directory, run directory or shipped name")
    p.add_argument("--data", required=True, help="dataset root the bundle was trained on")
    p.add_argument("--split-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    p.add_argument("--draws", type=int, nargs="+", default=[1, 2, 3, 4],
                   help="negatives and site-variant seeds measured on, as bench_gate.py --seed")
    p.add_argument("--cache", default="", metavar="DIR", help="keep the features here and reuse them")
    p.add_argument("--inset-xrays", type=int, default=40, metavar="N")
    p.add_argument("--framed", type=int, default=None, metavar="N",
                   help="refit with the first N of the fit's framed variants (default: all; 0: none, as before them)")
    p.add_argument("--warn-percentile", type=float, default=None, metavar="P",
                   help="refit the warning-zone limit at this percentile (default: pneumo gate fit's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", default="", metavar="FILE")
    return p


def _features(predictor, sources, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(features, usable): inputs the cheap checks refuse get NaN features and usable False (UNKNOWN)."""
    embedded = predictor.embed_many(sources, batch_size=32)
    usable = np.array([e.features is not None for e in embedded], dtype=bool)
    return np.stack([e.features if e.features is not None else np.full(dim, np.nan) for e in embedded]), usable


def _negative_arrays(predictor, images: list[NegativeImage], dim: int) -> dict[str, np.ndarray]:
    features, usable = _features(predictor, [i.source for i in images], dim)
    return {"features": features, "usable": usable, "category": np.array([i.category for i in images]),
            "name": np.array([i.name for i in images])}


def compute_features(model: str, data: str, draws: list[int], inset_xrays: int) -> dict[str, dict[str, np.ndarray]]:
    """Everything the refits and measurements need, as named arrays."""
    import torch

    torch.set_num_threads(2)
    directory, meta = read_meta(model)
    cfg = gatefit.GateFitConfig()
    predictor = gatefit._predictor(directory, meta, cfg, None)
    train = select_records(meta, "train", data)
    used, _, features, calibrate = gatefit._training_features(predictor, train.records, cfg)
    dim = features.shape[1]
    site, site_patients = gatefit._variant_features(predictor, used, cfg, cfg.site_variants, 1000, site_variant,
                                                    "site")
    in_calibration = calibrate[:len(used)]
    fitting = [r.path for (r, _), held in zip(used, in_calibration) if not held]
    inverted, _ = _features(predictor, copies.inverted_images(gatefit._subsample(fitting, cfg.inverted, cfg.seed)),
                            dim)
    framed = gatefit.framed_features(predictor, fitting, cfg, dim)
    out = {"train": {"features": features, "calibrate": calibrate, "site": np.stack(site),
                     "site_calibrate": gatefit._in_calibration_of(site_patients, cfg), "inverted": inverted,
                     "framed_variants": framed}}
    validation = [r.path for r in select_records(meta, "val", data).records]
    features, usable = _features(predictor, validation, dim)
    out["val"] = {"features": features, "usable": usable}
    features, usable = _features(predictor, (CONDITIONS[BORDER](decode_image(p), None) for p in validation), dim)
    out["val-border"] = {"features": features, "usable": usable}
    out["negatives-0"] = _negative_arrays(
        predictor, negative_images(0, xrays=gatefit._inset_xrays(used, in_calibration, cfg)), dim)
    insets = [decode_image(p) for p in validation[::max(1, len(validation) // inset_xrays)][:inset_xrays]]
    for draw in draws:  # as bench_gate.py renders and measures them
        features, usable = _features(predictor, copies.site_images(validation, draw), dim)
        out[f"site-{draw}"] = {"features": features, "usable": usable}
        out[f"negatives-{draw}"] = _negative_arrays(predictor, negative_images(draw, xrays=insets), dim)
    return out


def _network_digest(model: str) -> str:
    directory, _ = read_meta(model)  # checks the weights against the checksum the bundle records
    return read_document(directory)["files"][WEIGHTS_FILE]


def load_or_compute(args: argparse.Namespace) -> dict[str, dict[str, np.ndarray]]:
    names = ["train", "val", "val-border", "negatives-0"]
    names += [f"{what}-{d}" for d in args.draws for what in ("site", "negatives")]
    folder = Path(args.cache) if args.cache else None
    network = _network_digest(args.model)
    if folder is not None and all((folder / f"{name}.npz").is_file() for name in names):
        arrays = {name: dict(np.load(folder / f"{name}.npz")) for name in names}
        # A cache from before framed variants, or of another network (a retrained bundle of the same name), is
        # computed again: its features would be measured against the wrong gate.
        if "framed_variants" in arrays["train"] and str(arrays["train"].get("network", "")) == network:
            return arrays
        print(f"{folder}: cached features are not of {args.model}'s network as it is now; computing them again")
    arrays = compute_features(args.model, args.data, args.draws, args.inset_xrays)
    arrays["train"]["network"] = np.array(network)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, values in arrays.items():
            np.savez(folder / f"{name}.npz", **values)
    return arrays


def _images(rows: dict[str, np.ndarray]) -> list[NegativeImage]:
    return [NegativeImage(str(c), str(n), None) for c, n in zip(rows["category"], rows["name"])]


def _readings(params, features: np.ndarray, usable: np.ndarray) -> np.ndarray:
    rule = params.rule()
    finite = np.nan_to_num(features)
    distances, scores = mahalanobis(finite, params), nonxray_score(finite, params)
    return np.array([rule.judge(float(d), float(s)).reading.value if ok else Reading.UNKNOWN.value
                     for d, s, ok in zip(distances, scores, usable)])


def refit_and_measure(arrays: dict[str, dict[str, np.ndarray]], base, split_seed: int, draws: list[int],
                      cfg: gatefit.GateFitConfig, framed: int | None = None) -> dict:
    """The far boundary, non-X-ray score and warning limit refitted with ``split_seed``'s held-out origins kept
    out, as ``pneumo gate fit --seed`` would, and measured on those origins in each draw."""
    train, first = arrays["train"], arrays["negatives-0"]
    fit_images, held_images = split_negatives(_images(first), cfg.nonxray_held_out, split_seed)
    held = {(i.category, i.name) for i in held_images}
    on_fit_side = np.array([(str(c), str(n)) not in held for c, n in zip(first["category"], first["name"])])
    nonxray = np.concatenate([first["features"][on_fit_side & first["usable"]], train["inverted"]])
    params = copy.deepcopy(base)
    fitting = train["features"][~train["calibrate"]]
    site, site_cal = train["site"], train["site_calibrate"]
    xrays = np.concatenate([fitting, site[~site_cal], train["framed_variants"][:framed]])
    fit_far_boundary(params, xrays, nonxray, site[site_cal],
                     far_percentile=cfg.far_percentile, regularisation=cfg.nonxray_regularisation,
                     margin=cfg.nonxray_margin)
    fit_warning_limit(params, site[site_cal], percentile=cfg.warn_percentile)
    val = _readings(params, arrays["val"]["features"], arrays["val"]["usable"])
    border = _readings(params, arrays["val-border"]["features"], arrays["val-border"]["usable"])
    result = {"split_seed": split_seed, "val_unknown_pct": round(100 * float(np.mean(val == "unknown")), 2),
              "border_unknown_pct": round(100 * float(np.mean(border == "unknown")), 2),
              "site_unknown_pct": {}, "nonxray_unknown_pct": {}, "worst_kind_pct": {}, "read": []}
    for draw in draws:
        site_readings = _readings(params, arrays[f"site-{draw}"]["features"], arrays[f"site-{draw}"]["usable"])
        result["site_unknown_pct"][draw] = round(100 * float(np.mean(site_readings == "unknown")), 2)
        rows = arrays[f"negatives-{draw}"]
        mine = np.array([(str(c), str(n)) in held for c, n in zip(rows["category"], rows["name"])])
        readings = _readings(params, rows["features"][mine], rows["usable"][mine])
        kinds = np.array([kind(i) for i in _images({k: v[mine] for k, v in rows.items()})])
        result["nonxray_unknown_pct"][draw] = round(100 * float(np.mean(readings == "unknown")), 2)
        for k in np.unique(kinds):
            pct = round(100 * float(np.mean(readings[kinds == k] == "unknown")), 2)
            result["worst_kind_pct"][str(k)] = min(pct, result["worst_kind_pct"].get(str(k), 100.0))
        result["read"] += [f"draw {draw}: {c}/{n}" for c, n, r in
                           zip(rows["category"][mine], rows["name"][mine], readings) if r == "read"]
    return result


def main(args: argparse.Namespace) -> list[dict]:
    arrays = load_or_compute(args)
    cfg = gatefit.GateFitConfig()
    if args.warn_percentile is not None:
        cfg = dataclasses.replace(cfg, warn_percentile=args.warn_percentile)
    train = arrays["train"]
    fitting, calibration = train["features"][~train["calibrate"]], train["features"][train["calibrate"]]
    base, _ = fit_gate(fitting, calibration, feature_layers=[], percentile=cfg.percentile)
    results = []
    for seed in args.split_seeds:
        r = refit_and_measure(arrays, base, seed, args.draws, cfg, args.framed)
        below = {k: v for k, v in r["worst_kind_pct"].items() if v < 97.0}
        print(f"split seed {seed}: val {r['val_unknown_pct']:.2f}% UNKNOWN, with a 5% black border "
              f"{r['border_unknown_pct']:.2f}%; site variants "
              f"{', '.join(f'{v:.2f}' for v in r['site_unknown_pct'].values())}% UNKNOWN; held-out non-X-rays "
              f"{', '.join(f'{v:.2f}' for v in r['nonxray_unknown_pct'].values())}% UNKNOWN; kinds under 97% on "
              f"some draw: {below or 'none'}; read without a warning: {len(r['read'])} {r['read'][:8]}")
        results.append(r)
    print(f"read without a warning, all splits and draws: {sum(len(r['read']) for r in results)}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
