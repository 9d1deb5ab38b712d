"""Training throughput with the real data pipeline against the bare model step: figures, not pass/fail.

For each architecture, in the same run and alternating rounds so that drift in machine load hits both:
- full: ``pneumo.training.loop.train_one_epoch`` (the trainer's step) fed by the training DataLoader
  (workers over the warm memory-mapped cache, augmentation, BatchPreprocess);
- bare: forward + loss + backward + clip + optimizer step on one pre-made, already normalised batch.
The ratio full/bare says what the pipeline costs. Target: within 10% (ratio >= 0.90) for
mobilenet_v3_small and resnet18 at 224 px on the 2-core reference machine.

    python bench/bench_training.py --data ../shared/data/kermany/train
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from pneumo.config import AugmentConfig, PreprocessConfig
from pneumo.data.augment import BatchPreprocess, geometric_transform
from pneumo.data.balance import class_weights
from pneumo.data.cache import ImageCache
from pneumo.data.dataset import XrayDataset
from pneumo.data.records import load_records
from pneumo.models import create_model
from pneumo.training.losses import ClassificationLoss
from pneumo.training.loop import train_one_epoch


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="Kermany split folder or root")
    p.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "pneumo-bench-cache"))
    p.add_argument("--archs", nargs="+", default=["mobilenet_v3_small", "resnet18"])
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=8, help="timed steps per round and mode")
    p.add_argument("--rounds", type=int, default=3, help="alternating bare/full rounds")
    p.add_argument("--workers", type=int, default=1, help="loader processes (configs/default.yaml uses 1)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the model")
    return p


def bare_steps(model, batch, targets, loss_fn, optimizer, steps: int) -> float:
    """Images/s of forward + backward + step on a batch already in memory and normalised."""
    model.train()
    started = time.perf_counter()
    for _ in range(steps):
        loss = loss_fn(model(batch), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return steps * batch.shape[0] / (time.perf_counter() - started)


def full_steps(model, loader, prep, loss_fn, optimizer, steps: int, batch_size: int) -> float:
    """Images/s of the trainer's own epoch function over the real loader, capped at ``steps`` batches."""
    started = time.perf_counter()
    train_one_epoch(model, loader, prep, loss_fn, optimizer, torch.device("cpu"), grad_clip=1.0, max_steps=steps)
    return steps * batch_size / (time.perf_counter() - started)


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other jobs depress absolute figures); "
          f"{args.threads} torch threads, {args.workers} loader workers, batch {args.batch_size}, {args.image_size} px")
    records = load_records(args.data)
    cfg = PreprocessConfig(image_size=args.image_size)
    cache = ImageCache([r.path for r in records], cfg, args.cache_dir)
    failures = cache.warm(workers=2, progress=True)
    if failures:
        raise SystemExit(f"{len(failures)} unreadable images in {args.data}; the benchmark wants a clean set")
    aug = AugmentConfig()
    dataset = XrayDataset(records, cache, geometric_transform(aug))
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                        persistent_workers=args.workers > 0, drop_last=True,
                        generator=torch.Generator().manual_seed(0))
    prep = BatchPreprocess(cfg, aug)
    weights = class_weights(dataset.targets, 2)
    sample = next(iter(DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                                  generator=torch.Generator().manual_seed(1))))
    batch = prep.train()(sample["image"])
    targets = sample["target"]
    for arch in args.archs:
        torch.manual_seed(0)
        model = create_model(arch, classes=2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        loss_fn = ClassificationLoss(2, weights)
        bare_steps(model, batch, targets, loss_fn, optimizer, 2)  # warm-up: allocator, kernels, workers
        full_steps(model, loader, prep, loss_fn, optimizer, 2, args.batch_size)
        bare, full = [], []
        for _ in range(args.rounds):
            bare.append(bare_steps(model, batch, targets, loss_fn, optimizer, args.steps))
            full.append(full_steps(model, loader, prep, loss_fn, optimizer, args.steps, args.batch_size))
        b, f = statistics.median(bare), statistics.median(full)
        print(f"{arch:<20} bare forward+backward {b:7.1f} images/s | full step with loader {f:7.1f} images/s | "
              f"ratio {f / b:.3f} (target >= 0.90)  [rounds bare {', '.join(f'{x:.1f}' for x in bare)}; "
              f"full {', '.join(f'{x:.1f}' for x in full)}]")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
