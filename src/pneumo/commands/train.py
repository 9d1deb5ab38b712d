"""``pneumo train``: flags map onto RunConfig; ``--config FILE`` gives the base, flags override it."""

from __future__ import annotations

import argparse
from pathlib import Path

from pneumo.config import RunConfig, apply_settings, load_config_file
from pneumo.optional import require_extra


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a model into a run directory",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=None, help="dataset root (Kermany layout: ROOT/train/NORMAL, ...)")
    p.add_argument("--manifest", default=None, help="CSV manifest (path,label[,split][,patient_id][,subtype])")
    p.add_argument("--out", default=None, help="run directory to create (required unless --resume)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument("--config", default=None, help="YAML/JSON run configuration; flags override it")
    # No argparse choices: the registry imports torch, which `pneumo --help` must not need (an unknown name is an
    # error listing the registry's names).
    p.add_argument("--arch", default=None, help="architecture from the model registry, e.g. mobilenet_v3_small (the "
                   "default), resnet18, efficientnet_b0, densenet121")
    p.add_argument("--image-size", type=int, default=None, help="input size in pixels (default 224)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 20)")
    p.add_argument("--classes", type=int, choices=(2, 3), default=None, help="2: normal/pneumonia, "
                   "3: normal/bacterial/viral")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="start from torchvision ImageNet weights (needs internet)")
    p.add_argument("--pretrained-weights", default=None, help="local torchvision state dict to start from")
    p.add_argument("--init-from", default=None, metavar="BUNDLE",
                   help="start from another pneumo bundle of the same architecture (its head is replaced)")
    p.add_argument("--distill-from", default=None, metavar="BUNDLE",
                   help="also learn to match this bundle's outputs (an ensemble, say) on every augmented batch; it "
                        "must share the run's preprocessing and classes")
    p.add_argument("--freeze-backbone", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--finetune-last", type=int, default=None, metavar="N", help="train only the top N blocks")
    p.add_argument("--split-by", choices=("patient", "temporal"), default=None,
                   help="validation: a random patient split, or the earliest patients of each numbering sequence "
                        "(default patient; the shipped recipes use temporal)")
    p.add_argument("--val-fraction", type=float, default=None, help="share of patients used for validation")
    p.add_argument("--balance", choices=("none", "class_weights", "sampler"), default=None)
    p.add_argument("--workers", type=int, default=None, help="data loader processes")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--cache-dir", default=None, help="where decoded images are cached (default ~/.cache/pneumo)")
    p.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap batches per epoch (smoke runs)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bars")
    p.add_argument("--set", action="append", default=None, metavar="SECTION.NAME=VALUE",
                   help="set one config value over --config (repeatable), e.g. --set preprocess.clahe=true; "
                   "flags above win over both")
    p.set_defaults(func=run)


_FLAG_TO_FIELD = {
    "data": ("data", "root"), "manifest": ("data", "manifest"), "classes": ("data", "classes"),
    "batch_size": ("data", "batch_size"), "balance": ("data", "balance"),
    "split_by": ("data", "split_by"), "val_fraction": ("data", "val_fraction"), "workers": ("data", "num_workers"),
    "cache_dir": ("data", "cache_dir"), "arch": ("model", "arch"), "pretrained": ("model", "pretrained"),
    "pretrained_weights": ("model", "pretrained_weights"), "freeze_backbone": ("model", "freeze_backbone"),
    "init_from": ("model", "init_from"),
    "finetune_last": ("model", "finetune_last"), "image_size": ("preprocess", "image_size"),
    "epochs": ("train", "epochs"), "lr": ("train", "lr"), "device": ("train", "device"), "seed": ("train", "seed"),
    "max_steps_per_epoch": ("train", "max_steps_per_epoch"), "progress": ("train", "progress"),
    "distill_from": ("train", "distill_from"),
}


def build_config(args: argparse.Namespace) -> RunConfig:
    raw = apply_settings(load_config_file(args.config) if args.config else {}, args.set or [])
    for flag, (section, name) in _FLAG_TO_FIELD.items():
        value = getattr(args, flag, None)
        if value is not None:
            raw.setdefault(section, {})[name] = value
    return RunConfig.from_dict(raw)


def run(args: argparse.Namespace) -> int:
    require_extra("train", needed_for="pneumo train")
    from pneumo.models import ARCHITECTURES
    from pneumo.training import fit
    from pneumo.training.trainer import load_run_config

    if args.arch is not None and args.arch not in ARCHITECTURES:
        raise ValueError(f"unknown --arch {args.arch!r}; choose one of {sorted(ARCHITECTURES)}")

    if args.resume:
        run_dir = Path(args.resume)
        ignored = sorted(f"--{flag.replace('_', '-')}" for flag in _FLAG_TO_FIELD
                         if flag not in ("epochs", "progress") and getattr(args, flag, None) is not None)
        if ignored or args.out or args.config or args.set:
            extra = ignored + (["--out"] if args.out else []) + (["--config"] if args.config else []) + (
                ["--set"] if args.set else [])
            raise SystemExit(f"pneumo train: --resume continues {run_dir} with its saved config.json; "
                             f"only --epochs and --progress may change, not {' '.join(extra)}")
        cfg = load_run_config(run_dir)
        if args.epochs is not None and args.epochs != cfg.train.epochs and cfg.train.scheduler == "onecycle":
            raise SystemExit(f"pneumo train: {run_dir} uses the onecycle schedule, fixed to "
                             f"{cfg.train.epochs} epochs at the start; it cannot be resumed with --epochs {args.epochs}")
        if args.epochs is not None:
            cfg.train.epochs = args.epochs
        if args.progress is not None:
            cfg.train.progress = args.progress
        best = fit(cfg, run_dir, resume=True)
    else:
        if not args.out:
            raise SystemExit("pneumo train: --out RUN_DIR is required (or --resume RUN_DIR)")
        cfg = build_config(args)
        if not cfg.data.root and not cfg.data.manifest:
            raise SystemExit("pneumo train: give --data ROOT or --manifest CSV")
        run_dir = Path(args.out)
        if (run_dir / "config.json").exists():
            raise SystemExit(f"pneumo train: {run_dir} already holds a run; use --resume {run_dir} or a new --out")
        best = fit(cfg, run_dir)
    print(f"best model bundle: {best}")
    return 0
