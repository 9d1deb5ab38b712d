"""``pneumo gate fit``: fit the chest-X-ray gate of a bundle and report how it does on X-rays and non-X-rays.

The gate has two boundaries: beyond the first, a chest X-ray unlike the training population gets its result
with an out-of-distribution warning; beyond the second, or when its non-X-ray score says so (more strictly
between the boundaries, where CT slices and figures land), the input is not taken for a chest X-ray (UNKNOWN).
The non-X-ray images (CT slices, figures, slides, viewer screenshots among them) are made on the way. Refit a
retrained bundle's gate with::

    pneumo gate fit --model src/pneumo/weights/default --data ../shared/data/kermany
"""

from __future__ import annotations

import argparse
import json
import sys

from pneumo.optional import require_extra


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("gate", help="the chest-X-ray gate: UNKNOWN for non-X-ray input, a warning for "
                              "X-rays unlike the training ones",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="gate_command", required=True)
    fit = sub.add_parser("fit", help="fit the gate on the bundle's training X-rays and store it in the bundle",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_fit_arguments(fit)
    fit.set_defaults(func=run_fit)
    show = sub.add_parser("show", help="print a bundle's gate summary (meta.gate)",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    show.add_argument("--model", required=True)
    show.set_defaults(func=run_show)


def _add_fit_arguments(fit: argparse.ArgumentParser) -> None:
    fit.add_argument("--model", required=True, help="bundle directory (modified: gate.safetensors + meta.gate)")
    fit.add_argument("--data", default="", metavar="ROOT", help="dataset root the bundle was trained on")
    fit.add_argument("--manifest", default="", metavar="CSV", help="CSV manifest instead of, or with, a root")
    fit.add_argument("--max-images", type=int, default=0, metavar="N", help="use at most N training images (0: all)")
    fit.add_argument("--percentile", type=float, default=99.5,
                     help="threshold at this percentile of held-out training X-rays' distances")
    fit.add_argument("--calibration-fraction", type=float, default=0.2,
                     help="share of training patients held out from the covariance to set the threshold")
    fit.add_argument("--feature-layers", nargs="+", default=(), metavar="MODULE",
                     help="modules whose pooled outputs are the gate's features (default: backbone blocks at "
                     "1/3, 2/3 and 9/10 of the depth)")
    fit.add_argument("--pooling", default="", choices=("", "mean", "mean+std"),
                     help="per-channel statistics with --feature-layers (default mean+std)")
    fit.add_argument("--variants", type=int, default=1, metavar="K",
                     help="also fit on K acquisition variants of each training X-ray (exposure, noise, blur, "
                     "rotation, collimation, black borders), so that such X-rays are not called UNKNOWN; 0: off")
    fit.add_argument("--site-variants", type=int, default=1, metavar="K",
                     help="fit the far boundary on K site variants of each training X-ray (field of view, scale, "
                     "aspect, collimation, exposure, burned-in markers, noise): chest X-rays from other sites then "
                     "get a result with an out-of-distribution warning instead of UNKNOWN; 0: a one-boundary gate")
    fit.add_argument("--far-percentile", type=float, default=99.8,
                     help="far (UNKNOWN) threshold at this percentile of held-out site variants' distances")
    fit.add_argument("--nonxray-margin", type=float, default=3.0,
                     help="added to the non-X-ray regression's logit: UNKNOWN from a probability of "
                     "1/(1+e^margin) of not being a chest X-ray (3: 4.7%%)")
    fit.add_argument("--warn-percentile", type=float, default=87.5,
                     help="between the boundaries, UNKNOWN above this percentile of the non-X-ray scores of held-out "
                     "site variants there (CT slices and figures land there); 100 reads every such site variant")
    fit.add_argument("--framed", type=int, default=600, metavar="N",
                     help="N acquisition variants of training X-rays in a plain black frame among the non-X-ray "
                     "score's X-rays (the negatives' viewer screenshots otherwise make a black frame look like one); "
                     "0: off")
    fit.add_argument("--inset-xrays", type=int, default=40, metavar="N",
                     help="training X-rays inset into the figures, slides and viewer screenshots among the negatives")
    fit.add_argument("--negative-draws", type=int, default=1, metavar="K",
                     help="render the non-X-ray images the score is fitted on K times (other photo crops, phantom "
                     "patients, figure layouts); the held-out ones are measured on the first render")
    fit.add_argument("--batch-size", type=int, default=32)
    fit.add_argument("--device", default="cpu")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--report", default="", metavar="JSON", help="also write every non-X-ray image's outcome here")


def run_fit(args: argparse.Namespace) -> int:
    require_extra("train", needed_for="pneumo gate fit")
    from pneumo.gatefit.fit import GateFitConfig, fit_bundle_gate
    from pneumo.gatefit.report import table_lines

    cfg = GateFitConfig(percentile=args.percentile, calibration_fraction=args.calibration_fraction,
                        max_images=args.max_images, batch_size=args.batch_size, seed=args.seed, variants=args.variants,
                        site_variants=args.site_variants, far_percentile=args.far_percentile,
                        nonxray_margin=args.nonxray_margin, warn_percentile=args.warn_percentile,
                        inset_xrays=args.inset_xrays, negative_draws=args.negative_draws, framed=args.framed,
                        feature_layers=tuple(args.feature_layers),
                        pooling=args.pooling, device=args.device)
    report = fit_bundle_gate(args.model, args.data, args.manifest, cfg)
    s = report.summary
    for line in report.skipped[:20]:
        print(f"skipped training image {line}", file=sys.stderr)
    print(f"gate fitted on {s['n_fit']} X-rays and variants ({s['pooling']} of {', '.join(s['feature_layers'])}: "
          f"{s['feature_dim']} features, shrinkage "
          f"{s['shrinkage']:.3f}); threshold {s['threshold']:.3f} at the {s['percentile']}th percentile of "
          f"{s['n_calibration']} held-out training X-rays and variants")
    if s.get("far_threshold") is not None:
        print(f"far threshold {s['far_threshold']:.3f} at the {s['far_percentile']}th percentile of "
              f"{s['n_site_calibration']} held-out site variants; non-X-ray score fitted on {s['n_nonxray_fit']} "
              "non-X-ray images")
        print(f"warning zone: UNKNOWN above a non-X-ray score of {s['warn_nonxray']:.3f}, the "
              f"{s['warn_percentile']}th percentile of {s['n_site_warning_zone']} held-out site variants there")
    else:
        print("no far boundary (--site-variants 0): every input beyond the threshold is UNKNOWN")
    print(f"X-rays answered UNKNOWN: {s['xray_flagged_pct']:.2f}% on {s['xray_flagged_split']}; "
          f"{s['calibration_flagged_pct']:.2f}% of the calibration part beyond the threshold")
    if "site_variant_flagged_pct" in s:
        print(f"X-rays warned out of distribution: {s['xray_ood_pct']:.2f}%; one site variant of each: "
              f"{s['site_variant_flagged_pct']:.2f}% UNKNOWN, {s['site_variant_ood_pct']:.2f}% warned")
        print(f"inverted X-rays (MONOCHROME1 read as MONOCHROME2) answered UNKNOWN: {s['inverted_flagged_pct']:.2f}%")
    print(f"non-X-ray images answered UNKNOWN: {s['nonxray_flagged_pct']:.2f}% of {s['n_nonxray']} held out from "
          f"the fit; {s['nonxray_all_flagged_pct']:.2f}% of all {s['n_nonxray_all']}. Held out, per kind:")
    print("\n".join(table_lines(s["nonxray_held_out_by_category"])))
    if args.report:
        with open(args.report, "w") as handle:
            json.dump({"summary": s, "negatives": report.negatives, "skipped": report.skipped}, handle, indent=2)
        print(f"wrote {args.report}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from pneumo.bundle import read_meta

    _, meta = read_meta(args.model)
    if not meta.gate:
        print("no gate fitted for this model; only the cheap checks run. Fit one with `pneumo gate fit`")
        return 1
    print(json.dumps(meta.gate, indent=2))
    return 0
