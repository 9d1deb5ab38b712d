"""``pneumo predict PATH...``: label images (files, folders, globs) as NORMAL, PNEUMONIA or UNKNOWN.

UNKNOWN: not taken for a chest X-ray (no probability). A chest X-ray unlike the training population (another
site, age group, equipment) gets its label and probability with ``out_of_distribution`` true and a warning
(``ood_reason``): JSON fields, CSV columns, and ``OOD:`` in the table's note.

Exit status 1 when any input could not be read (its row says why; the others are still predicted).
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from pneumo import DISCLAIMER

FORMATS = ("table", "json", "csv")
# Files a folder contributes; explicitly named files are read whatever their suffix (content is sniffed).
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".dcm", ".dicom", ".tif", ".tiff", ".bmp"}
_GLOB_CHARS = set("*?[")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="predict pneumonia on chest X-ray files, folders or globs",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files (JPEG, PNG, DICOM), folders (searched "
                   "recursively) or glob patterns (quote them; ** recurses)")
    p.add_argument("--model", default="default", help="bundle directory, run directory, shipped name, or an "
                   ".onnx export with --backend onnx")
    p.add_argument("--format", default="table", choices=FORMATS)
    p.add_argument("--cam", default="", metavar="DIR", help="write a Grad-CAM overlay PNG per image into DIR")
    p.add_argument("--tta", action="store_true", help="average over a few small shifts and zooms")
    p.add_argument("--backend", default="torch", choices=("torch", "onnx"))
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, mps)")
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=run)


def expand_paths(patterns: list[str]) -> list[str]:
    """Files from the command line, in order, without duplicates. Folders give their image files
    (recursively); globs their matches; anything else is kept, so a missing file gets an error row."""
    found: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found += [str(p) for p in sorted(path.rglob("*"))
                      if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
        elif not path.exists() and _GLOB_CHARS & set(pattern):
            matches = sorted(m for m in glob.glob(pattern, recursive=True) if Path(m).is_file())
            found += matches or [pattern]  # no match: report the pattern itself as unreadable
        else:
            found.append(pattern)
    return list(dict.fromkeys(found))


def cam_name(path: str) -> str:
    """A file name for the overlay of ``path``: its stem plus a hash of the absolute path, so two inputs with
    the same name in different folders never overwrite each other."""
    digest = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:10]
    return f"{Path(path).stem}-{digest}.png"


def write_cams(predictor: Any, rows: list[dict[str, Any]], folder: Path) -> None:
    """Grad-CAM overlay per scored image (none for UNKNOWN: a heatmap over a non-X-ray would mislead)."""
    folder.mkdir(parents=True, exist_ok=True)
    for row in rows:
        row["cam"] = None
        if row["error"] is not None or row["label"] == "UNKNOWN":
            continue
        try:
            explanation = predictor.explain(row["path"])
        except ValueError as exc:  # the file changed since it was predicted
            row["error"] = str(exc)
            continue
        target = folder / cam_name(row["path"])
        target.write_bytes(explanation.overlay_png)
        row["cam"] = str(target)


def _format_probability(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    width = min(60, max([len("path")] + [len(str(r["path"])) for r in rows]))
    print(f"{'path':<{width}}  {'label':<9}  {'P(pneu)':>7}  {'thresh':>6}  note")
    for r in rows:
        note = r["error"] or r["unknown_reason"] or ""
        if r.get("subtype_probabilities"):
            note = ", ".join(f"{k.lower()} {v:.2f}" for k, v in r["subtype_probabilities"].items())
        if r.get("out_of_distribution"):
            note = f"OOD: {r['ood_reason']}" + (f"; {note}" if note else "")
        path = str(r["path"])
        path = path if len(path) <= width else "..." + path[-(width - 3):]
        print(f"{path:<{width}}  {(r['label'] or 'ERROR'):<9}  {_format_probability(r['probability']):>7}  "
              f"{r['threshold']:>6.3f}  {note}")


def print_csv(rows: list[dict[str, Any]]) -> None:
    subtypes = sorted({k for r in rows for k in (r.get("subtype_probabilities") or {})})
    # out_of_distribution: true / false, empty when not scored (UNKNOWN, error) or the model has no feature gate.
    columns = ["path", "label", "probability", "threshold", "unknown_reason", "error", "model_version",
               "out_of_distribution", "ood_reason"]
    columns += [f"p_{s.lower()}" for s in subtypes] + (["cam"] if rows and "cam" in rows[0] else []) + ["total_ms"]
    writer = csv.writer(sys.stdout)
    writer.writerow(columns)
    for r in rows:
        values = {**r, "total_ms": r["timing_ms"].get("total")}
        if r.get("out_of_distribution") is not None:
            values["out_of_distribution"] = "true" if r["out_of_distribution"] else "false"
        for s in subtypes:
            values[f"p_{s.lower()}"] = (r.get("subtype_probabilities") or {}).get(s)
        writer.writerow(["" if values.get(c) is None else values[c] for c in columns])


def run(args: argparse.Namespace) -> int:
    from pneumo.inference.predictor import Predictor

    paths = expand_paths(args.paths)
    if not paths:
        print("pneumo predict: no image files found", file=sys.stderr)
        return 1
    predictor = Predictor.load(args.model, backend=args.backend, device=args.device, tta=args.tta)
    if args.format == "table" or not predictor.has_gate:
        print(predictor.gate_status, file=sys.stderr)
    rows = [p.to_dict() for p in predictor.predict_many(paths, batch_size=args.batch_size)]
    if args.cam:
        write_cams(predictor, rows, Path(args.cam))
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.format == "csv":
        print_csv(rows)
    else:
        print_table(rows)
        print(DISCLAIMER, file=sys.stderr)
    failed = sum(r["error"] is not None for r in rows)
    if failed:
        print(f"{failed} of {len(rows)} inputs could not be read", file=sys.stderr)
    return 1 if failed else 0
