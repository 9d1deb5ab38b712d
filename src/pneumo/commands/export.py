"""``pneumo export``: write a bundle as ONNX (logits, gate features and distance, metadata embedded), as a
separate file (``--out``) or into the bundle itself (``--into-bundle``: ``model.onnx``, checksummed)."""

from __future__ import annotations

import argparse
import sys

from pneumo.optional import require_extra

FORMATS = ("onnx",)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a model for the light ONNX Runtime deployment",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="bundle directory, run directory (its best/), or a shipped name")
    p.add_argument("--format", default="onnx", choices=FORMATS)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", metavar="FILE", help="where to write the .onnx file")
    where.add_argument("--into-bundle", action="store_true",
                       help="add model.onnx to the bundle (checked against PyTorch, checksum in bundle.json, "
                            "swapped atomically); pneumo predict then runs on ONNX Runtime by default")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (at least 17)")
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                   help="run the export on ONNX Runtime and compare it with PyTorch (always on with --into-bundle)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_extra("train", needed_for="pneumo export")
    from pneumo.export.onnx import add_onnx_to_bundle, check_export, export_onnx

    failures: list[str] = []  # add_onnx_to_bundle refuses (ValueError) rather than write an export beyond tolerance
    if args.into_bundle:
        directory, diffs = add_onnx_to_bundle(args.model, opset=args.opset)
        print(f"added model.onnx to {directory}")
    else:
        path = export_onnx(args.model, args.out, opset=args.opset)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
        if not args.check:
            return 0
        diffs, failures = check_export(args.model, path)
    print("ONNX Runtime vs PyTorch, max difference: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    if failures:
        print(f"ERROR: ONNX Runtime and PyTorch differ beyond tolerance in {failures}", file=sys.stderr)
        return 1
    return 0
