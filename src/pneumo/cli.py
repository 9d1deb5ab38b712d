"""The ``pneumo`` command: parse, call the library, print. Logic lives in the package."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

from pneumo import DISCLAIMER, __version__
from pneumo.optional import MissingExtraError

# Subcommand modules under pneumo.commands, each with register(subparsers).
COMMANDS = ("data", "train", "ensemble", "adapt", "evaluate", "calibrate", "compare", "predict", "export", "gate",
            "serve", "users", "audit", "site")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand, or with ``only`` that one: each command module imports what its flags
    need (``train`` the model registry, hence torch), so ``pneumo predict`` registers ``predict`` alone and
    starts without importing torch or scikit-learn."""
    parser = argparse.ArgumentParser(prog="pneumo", description=f"Pneumonia detection on chest X-rays. {DISCLAIMER}")
    parser.add_argument("--version", action="version", version=f"pneumo {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS if only is None else (only,):
        importlib.import_module(f"pneumo.commands.{name}").register(sub)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the first argument that is one), if any."""
    return next((arg for arg in argv if arg in COMMANDS), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("PIL").setLevel(logging.INFO)  # its per-chunk debug lines drown ours under -v
    if not args.verbose:
        # pydicom logs a traceback, and warns without naming the file, for each malformed DICOM it meets;
        # pneumo reports each of those files in one line that names it, so the rest is noise (kept under -v).
        # Not propagating (rather than a level, which pydicom resets when it is imported) keeps it off stderr.
        logging.getLogger("pydicom").propagate = False
        warnings.filterwarnings("ignore", module="pydicom")
        # pydicom's data module imports requests, whose urllib3 warns that its optional SOCKS support is missing;
        # pneumo never uses a SOCKS proxy.
        warnings.filterwarnings("ignore", message="SOCKS support in urllib3 requires")
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, MissingExtraError) as exc:
        print(f"pneumo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
