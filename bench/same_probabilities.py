"""Check that two pneumo source trees give the same probabilities with the shipped bundles.

    python bench/same_probabilities.py dump --out new.json [--images DIR ...]   # with PYTHONPATH=<tree>/src
    python bench/same_probabilities.py compare old.json new.json

``dump`` runs the Predictor of whatever pneumo is importable (torch backend, with and without TTA; the ONNX
backend when it can be loaded) on the images and writes {model/backend/tta: {path: probability}}. ``compare``
prints the largest difference per key and exits 1 when any exceeds 1e-5 or a label differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TOLERANCE = 1e-5


def dump(args: argparse.Namespace) -> int:
    from pneumo.inference.predictor import Predictor

    images = sorted(str(p) for root in args.images for p in Path(root).rglob("*.jpeg"))
    out: dict[str, dict[str, list]] = {}
    for model in ("default", "default-3class"):
        for backend, tta in (("torch", False), ("torch", True), ("onnx", False), ("onnx", True)):
            try:
                predictor = Predictor.load(model, backend=backend, tta=tta)
            except ValueError as exc:
                print(f"{model}/{backend}: not loadable here ({exc})", file=sys.stderr)
                continue
            rows = predictor.predict_many(images)
            out[f"{model}/{backend}/tta={tta}"] = {r.path: [r.probability, r.label, r.subtype_probabilities]
                                                   for r in rows}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}: {len(out)} runs of {len(images)} images")
    return 0


def compare(args: argparse.Namespace) -> int:
    old, new = json.loads(Path(args.old).read_text()), json.loads(Path(args.new).read_text())
    worst = 0.0
    failed = False
    for key in sorted(set(old) & set(new)):
        diffs = []
        for path, (p_old, label_old, sub_old) in old[key].items():
            p_new, label_new, sub_new = new[key][path]
            if label_old != label_new or (p_old is None) != (p_new is None):
                print(f"{key}: {path}: {label_old} {p_old} -> {label_new} {p_new}")
                failed = True
                continue
            if p_old is not None:
                diffs.append(abs(p_old - p_new))
            for name in sub_old or {}:
                diffs.append(abs(sub_old[name] - sub_new[name]))
        top = max(diffs, default=0.0)
        worst = max(worst, top)
        print(f"{key:<36} {len(old[key])} images, max |difference| {top:.2e}")
    for key in sorted(set(old) ^ set(new)):
        print(f"{key}: only in {'old' if key in old else 'new'}")
    print(f"max difference over all runs: {worst:.2e} (tolerance {TOLERANCE:g})")
    return 1 if failed or worst > TOLERANCE else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(required=True)
    d = sub.add_parser("dump")
    d.add_argument("--out", required=True)
    d.add_argument("--images", nargs="+", required=True, help="folders searched for *.jpeg")
    d.set_defaults(func=dump)
    c = sub.add_parser("compare")
    c.add_argument("old")
    c.add_argument("new")
    c.set_defaults(func=compare)
    args = p.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
