"""``pneumo predict PATH...``: label images (files, folders, globs) as NORMAL, PNEUMONIA or UNKNOWN.

UNKNOWN: not taken for a chest X-ray (no probability). A chest X-ray unlike the training population (another
site, age group or equipment) gets its label and probability with ``out_of_distribution`` true and a warning
(``ood_reason``): JSON fields, CSV columns, and "OUT OF DISTRIBUTION" in the table's note.

Exit status 1 when any input could not be read (its row says why; the others are still predicted).
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pneumo import DISCLAIMER
from pneumo.inference.rows import csv_cell, table_columns, table_row, table_subtypes
from pneumo.optional import require_extra

FORMATS = ("table", "json", "csv")
ENGINES = ("local", "ray")
# Files a folder contributes; explicitly named files are read whatever their suffix (content is sniffed).
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".dcm", ".dicom", ".tif", ".tiff", ".bmp"}
_GLOB_CHARS = set("*?[")
DICOMWEB_PREFIX = "dicomweb+"  # dicomweb+http://HOST/dicom-web/studies/UID: see pneumo.dicom.dicomweb


def is_dicomweb(path: str) -> bool:
    return str(path).startswith(DICOMWEB_PREFIX)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="predict pneumonia on chest X-ray files, folders or globs",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files (JPEG, PNG, DICOM), folders (searched "
                   "recursively), glob patterns (quote them; ** recurses) or DICOMweb studies "
                   "(dicomweb+http://HOST/dicom-web/studies/UID[/series/UID])")
    p.add_argument("--model", default="default", help="bundle directory, run directory, shipped name, or an "
                   ".onnx export with --backend onnx")
    p.add_argument("--format", default="table", choices=FORMATS)
    p.add_argument("--cam", default="", metavar="DIR", help="write a Grad-CAM overlay PNG per image into DIR")
    p.add_argument("--tta", action="store_true", help="average over a few small shifts and zooms")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"),
                   help="auto: ONNX Runtime when the bundle holds a matching model.onnx, else torch (--cam always "
                        "runs Grad-CAM on torch)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, mps)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--engine", default="local", choices=ENGINES, help="local: this process; ray: Ray Data tasks "
                   "and model actors on a local Ray or a cluster (pip install 'pneumo[ray]'; writes --out, "
                   "with the columns of --format csv; see docs/scale.md)")
    p.add_argument("--ray-address", default=None, metavar="ADDR", help="with --engine ray: join this Ray cluster "
                   "(host:port printed by `ray start --head`, or auto); default: start a local Ray on all cores")
    p.add_argument("--ray-actor-cpus", type=int, default=1, metavar="N", help="with --engine ray: model threads per "
                   "actor (it reserves half a Ray CPU per thread, see docs/scale.md)")
    p.add_argument("--ray-max-actors", type=int, default=None, metavar="N", help="with --engine ray: at most N "
                   "model actors (default: one per --ray-actor-cpus CPUs that fits beside a decoding task)")
    p.add_argument("--out", default="", metavar="FILE", help="with --engine ray: results.parquet or results.csv")
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
            note = "OUT OF DISTRIBUTION: read with caution" + (f"; {note}" if note else "")
        path = str(r["path"])
        path = path if len(path) <= width else "..." + path[-(width - 3):]
        print(f"{path:<{width}}  {(r['label'] or 'ERROR'):<9}  {_format_probability(r['probability']):>7}  "
              f"{r['threshold']:>6.3f}  {note}")


def print_csv(rows: list[dict[str, Any]]) -> None:
    columns = table_columns(table_subtypes(rows), cam=bool(rows) and "cam" in rows[0])
    writer = csv.writer(sys.stdout)
    writer.writerow(columns)
    for r in rows:
        writer.writerow([csv_cell(v) for v in table_row(r, columns).values()])


def run(args: argparse.Namespace) -> int:
    from pneumo.inference.predictor import Predictor

    paths = expand_paths(args.paths)
    if not paths:
        print("pneumo predict: no image files found", file=sys.stderr)
        return 1
    if args.engine == "ray":
        return run_ray(args, paths)
    if args.out or args.ray_address:
        raise ValueError("--out and --ray-address apply to --engine ray; --engine local prints its rows")
    predictor = Predictor.load(args.model, backend=args.backend, device=args.device, tta=args.tta)
    if args.format == "table" or not predictor.has_gate:
        print(predictor.gate_status, file=sys.stderr)
    if args.format == "table":
        print(f"backend: {predictor.backend.name} ({predictor.backend_note or 'as requested'})", file=sys.stderr)
    sources, names = paths, paths
    if any(is_dicomweb(p) for p in paths):
        if args.cam:
            raise ValueError("--cam is not available for dicomweb+ sources; fetch the study to files first")
        require_extra("dicom", needed_for="a dicomweb+ source")
        from pneumo.dicom.dicomweb import resolve

        sources, names = resolve(paths)
    rows = [p.to_dict() for p in predictor.predict_many(sources, batch_size=args.batch_size)]
    for row, name in zip(rows, names):
        row["path"] = name
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


def run_ray(args: argparse.Namespace, paths: list[str]) -> int:
    """``--engine ray``: the same rows as ``--format csv``, written by :mod:`pneumo.batch.ray_engine`."""
    if not args.out:
        raise ValueError("--engine ray writes its rows to a file: give --out results.parquet or --out results.csv")
    if args.cam or args.format == "json":
        raise ValueError("--engine ray writes the columns of --format csv to --out; --cam and --format json need "
                         "--engine local")
    if args.ray_address:
        from pneumo.batch import LOOPBACK_SWITCH

        # Joining a cluster: Ray's default network behaviour, decided when Ray is imported (just below).
        os.environ.setdefault(LOOPBACK_SWITCH, "1")
    require_extra("ray", needed_for="--engine ray")
    from pneumo.batch import ray_engine
    if not getattr(args, "verbose", False):  # Ray Data's plan and statistics lines: in its log files, and under -v
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    spec = ray_engine.ModelSpec(model=args.model, backend=args.backend, device=args.device, tta=args.tta)
    cfg = ray_engine.RayConfig(address=args.ray_address, actor_cpus=args.ray_actor_cpus,
                               max_actors=args.ray_max_actors)
    summary = ray_engine.predict_to_file(paths, Path(args.out), spec, cfg)
    print(summary.gate_status, file=sys.stderr)
    print(summary.line(), file=sys.stderr)
    print(DISCLAIMER, file=sys.stderr)
    return 1 if summary.errors else 0
