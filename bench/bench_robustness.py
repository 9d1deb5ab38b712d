"""How a model's figures move when the X-rays change the way X-rays from other sites do: figures, not pass/fail.

Validation carved from the training folder is far easier than X-rays from elsewhere. This benchmark does
not replace an external test set; it shows which shifts the model tolerates and which it does not. Each
condition transforms every decoded image of the split the same way, then runs the full Predictor (gate,
preprocessing, calibrated threshold), and reports AUC, sensitivity and specificity at the bundle's
threshold, and the share answered UNKNOWN:

- exposure and look-up tables (gamma 0.6 and 1.6, contrast halved), which the percentile stretch targets;
- softer or noisier detectors (Gaussian blur, Gaussian noise), heavy JPEG re-compression, low resolution;
- positioning and collimation (rotation, a tighter crop, a black border);
- an inverted image (MONOCHROME1 read as MONOCHROME2), which should not pass as a normal X-ray.

    python bench/bench_robustness.py --model default --data ../shared/data/kermany --split val
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from pneumo.data.decode import decode_image
from pneumo.evaluation.metrics import binary_metrics
from pneumo.evaluation.scoring import select_records
from pneumo.data.acquisition import from_pil, to_pil
from pneumo.inference.predictor import Predictor

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="JPEG", quality=quality)
    return from_pil(Image.open(io.BytesIO(buffer.getvalue())))


def _rescale(image: np.ndarray, factor: float) -> np.ndarray:
    pil = to_pil(image)
    small = pil.resize((max(1, round(pil.width * factor)), max(1, round(pil.height * factor))), Image.BILINEAR)
    return from_pil(small.resize(pil.size, Image.BILINEAR))


def _crop(image: np.ndarray, keep: float) -> np.ndarray:
    h, w = image.shape
    dh, dw = int(h * (1 - keep) / 2), int(w * (1 - keep) / 2)
    return image[dh:h - dh, dw:w - dw]


def _border(image: np.ndarray, share: float) -> np.ndarray:
    h, w = image.shape
    return np.pad(image, ((int(h * share),) * 2, (int(w * share),) * 2))


CONDITIONS: dict[str, Transform] = {
    "as is": lambda x, rng: x,
    "gamma 0.6 (brighter)": lambda x, rng: x ** 0.6,
    "gamma 1.6 (darker)": lambda x, rng: x ** 1.6,
    "contrast halved": lambda x, rng: 0.25 + 0.5 * x,
    "blur (sigma 2 px)": lambda x, rng: from_pil(to_pil(x).filter(ImageFilter.GaussianBlur(2))),
    "noise (sigma 0.04)": lambda x, rng: np.clip(x + rng.normal(0, 0.04, x.shape), 0, 1).astype(np.float32),
    "JPEG quality 20": lambda x, rng: _jpeg(x, 20),
    "low resolution (1/3 and back)": lambda x, rng: _rescale(x, 1 / 3),
    "rotated 10 degrees": lambda x, rng: from_pil(to_pil(x).rotate(10, resample=Image.BILINEAR)),
    "tighter crop (central 80%)": lambda x, rng: _crop(x, 0.8),
    "black border (5% each side)": lambda x, rng: _border(x, 0.05),
    "black border (15% each side)": lambda x, rng: _border(x, 0.15),
    "inverted (MONOCHROME1 misread)": lambda x, rng: 1.0 - x,
}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="default", help="bundle directory, run directory or shipped name")
    p.add_argument("--data", required=True, help="Kermany-style dataset root")
    p.add_argument("--split", default="val", help="val, official-val, test, ... (as pneumo evaluate)")
    p.add_argument("--backend", default="onnx", choices=("torch", "onnx"), help="same outputs within 1e-4")
    p.add_argument("--limit", type=int, default=0, help="score a seeded random sample of N images (0: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise condition")
    p.add_argument("--json", default="", metavar="FILE", help="also write the figures here")
    return p


def _fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.3f}"


def _score(predictor: Predictor, inputs: list[np.ndarray], y: np.ndarray) -> dict:
    predictions = predictor.predict_many(inputs, batch_size=32)
    known = [i for i, p in enumerate(predictions) if p.probability is not None]
    row = {"unknown_fraction": round(1.0 - len(known) / len(predictions), 4), "n_scored": len(known),
           "warned_fraction": round(sum(bool(p.out_of_distribution) for p in predictions) / len(predictions), 4)}
    if known:
        m = binary_metrics(y[known], np.array([predictions[i].probability for i in known]),
                           float(predictor.meta.threshold))
        row.update(auc=m["auc"], sensitivity=m["sensitivity"], specificity=m["specificity"])
    return row


def main(args: argparse.Namespace) -> dict:
    predictor = Predictor.load(args.model, backend=args.backend)
    selection = select_records(predictor.meta, args.split, root=args.data)
    records = selection.records
    if args.limit and args.limit < len(records):  # a seeded sample keeps both classes
        keep = np.random.default_rng(args.seed).choice(len(records), args.limit, replace=False)
        records = [records[i] for i in sorted(keep)]
    images = [decode_image(r.path) for r in records]
    y = np.array([r.label == "PNEUMONIA" for r in records], dtype=int)
    print(f"{predictor.meta.version} on split {args.split!r}: {len(records)} images ({int(y.sum())} pneumonia), "
          f"threshold {float(predictor.meta.threshold):.3f}, backend {args.backend}")
    ungated = Predictor.load(args.model, backend=args.backend)
    # The classifier alone (no feature gate, cheap checks kept): what the gate's refusals hide.
    ungated.gate = None
    print(f"{'':<32} {'with the UNKNOWN gate':^38}  {'classifier alone':^20}")
    print(f"{'condition':<32} {'AUC':>6} {'sens':>6} {'spec':>6} {'UNKNOWN':>8} {'warned':>8}  {'AUC':>6} {'sens':>6} "
          f"{'spec':>6}")
    rows = {}
    for name, transform in CONDITIONS.items():
        rng = np.random.default_rng(args.seed)
        inputs = [transform(img, rng) for img in images]
        gated, alone = _score(predictor, inputs, y), _score(ungated, inputs, y)
        rows[name] = {"gated": gated, "classifier_alone": alone}
        print(f"{name:<32} {_fmt(gated.get('auc')):>6} {_fmt(gated.get('sensitivity')):>6} "
              f"{_fmt(gated.get('specificity')):>6} {gated['unknown_fraction']:>7.1%} "
              f"{gated['warned_fraction']:>7.1%}  "
              f"{_fmt(alone.get('auc')):>6} "
              f"{_fmt(alone.get('sensitivity')):>6} {_fmt(alone.get('specificity')):>6}", flush=True)
    print("With the gate, AUC, sensitivity and specificity are over the images not answered UNKNOWN; the classifier "
          "alone scores every image that passes the cheap checks (colour, blank, size, aspect ratio).")
    summary = {"model": predictor.meta.version, "split": args.split, "n": len(records),
               "threshold": float(predictor.meta.threshold), "conditions": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main(get_args_parser().parse_args())
