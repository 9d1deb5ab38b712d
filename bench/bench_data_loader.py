"""Data loader throughput: figures, not pass/fail.

1. The training loader as ``pneumo train`` builds it (DataLoader workers over the memory-mapped cache,
   geometric augmentation in the workers, brightness/contrast and normalisation by BatchPreprocess) in
   images/s at 224 px with a warm cache. Target: >= 1,500 images/s on the 2-core reference machine.
2. Full-resolution X-rays (made by upscaling real ones to 1,500-2,000 px): a warm-cache read against
   decoding + preprocessing the same files, one thread each, in the same run. Target: >= 10x.

    python bench/bench_data_loader.py --data ../shared/data/kermany/train

The cache goes to ``--cache-dir`` (default pneumo-bench-cache in the system's temporary folder), never to a training run's cache.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pneumo.config import AugmentConfig, PreprocessConfig
from pneumo.data.augment import BatchPreprocess, geometric_transform
from pneumo.data.cache import ImageCache
from pneumo.data.dataset import XrayDataset
from pneumo.data.decode import decode_image
from pneumo.data.preprocess import preprocess_array
from pneumo.data.records import load_records


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="a Kermany split folder (ROOT/NORMAL, ROOT/PNEUMONIA) or root")
    p.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "pneumo-bench-cache"))
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batches", type=int, default=60, help="batches timed for the loader figure")
    p.add_argument("--full-res", type=int, default=120, help="full-resolution files to make (0 skips part 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads in the main process")
    return p


def loader_throughput(args: argparse.Namespace) -> float:
    records = load_records(args.data)
    cfg = PreprocessConfig(image_size=args.image_size)
    cache = ImageCache([r.path for r in records], cfg, args.cache_dir)
    started = time.perf_counter()
    failures = cache.warm(workers=2, progress=True)
    print(f"{len(records)} images; cache warm in {time.perf_counter() - started:.1f} s "
          f"({len(failures)} unreadable) at {cache.pixels_path}")
    aug = AugmentConfig()
    dataset = XrayDataset(records, cache, geometric_transform(aug))
    prep = BatchPreprocess(cfg, aug).train()
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                        persistent_workers=args.workers > 0, drop_last=True,
                        generator=torch.Generator().manual_seed(0))
    iterator = iter(loader)
    for _ in range(2):  # worker start-up is not throughput
        prep(next(iterator)["image"])
    images, started = 0, time.perf_counter()
    for _ in range(args.batches):
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            batch = next(iterator)
        x = prep(batch["image"])
        images += x.shape[0]
    elapsed = time.perf_counter() - started
    rate = images / elapsed
    print(f"training loader, warm cache, augmentation on, {args.workers} workers, batch {args.batch_size}, "
          f"{args.image_size} px: {rate:,.0f} images/s wall clock ({images} images in {elapsed:.2f} s)")
    del iterator
    cpu_cost(dataset, prep, args)
    return rate


def cpu_cost(dataset: XrayDataset, prep: BatchPreprocess, args: argparse.Namespace) -> float:
    """CPU seconds per image of the same pipeline in one process (item, collate, batch prep). Unlike wall
    clock this hardly moves when other jobs share the machine, so it gives the loader's ceiling on idle cores."""
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=0, drop_last=True,
                        generator=torch.Generator().manual_seed(1))
    images, started = 0, time.process_time()
    for step, batch in enumerate(loader):
        images += prep(batch["image"]).shape[0]
        if step + 1 >= max(10, args.batches // 3):
            break
    per_image = (time.process_time() - started) / images
    cores = os.cpu_count() or 1
    print(f"  CPU cost {1000 * per_image:.3f} ms per image (single process, {images} images): "
          f"ceiling ~{cores / per_image:,.0f} images/s on {cores} idle cores")
    return per_image


def make_full_resolution(sources: list[str], count: int, folder: Path) -> list[str]:
    """Upscale real X-rays to 1,500-2,000 px on the long side, saved as the dataset saves them (JPEG q92)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        image = Image.open(sources[i % len(sources)]).convert("L")
        long_side = int(rng.integers(1500, 2001))
        scale = long_side / max(image.size)
        big = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
        path = folder / f"full_{i:04d}.jpeg"
        big.save(path, quality=92)
        paths.append(str(path))
    return paths


def full_resolution_ratio(args: argparse.Namespace) -> float:
    sources = [r.path for r in load_records(args.data)]
    folder = Path(tempfile.mkdtemp(prefix="pneumo-bench-fullres-"))
    try:
        paths = make_full_resolution(sources, args.full_res, folder)
        sides = [Image.open(p).size for p in paths]
        cfg = PreprocessConfig(image_size=args.image_size)
        started = time.perf_counter()
        decoded = [preprocess_array(decode_image(p), cfg) for p in paths]
        decode_s = time.perf_counter() - started
        cache = ImageCache(paths, cfg, folder / "cache")
        cache.warm(workers=2)
        cache = ImageCache(paths, cfg, folder / "cache")  # reopened, as the next epoch's process would
        started = time.perf_counter()
        cached = [cache.get(i).copy() for i in range(len(paths))]
        cached_s = time.perf_counter() - started
        assert all(np.array_equal(a, b) for a, b in zip(decoded, cached)), "cache served different pixels"
        ratio = decode_s / cached_s
        print(f"full resolution: {len(paths)} JPEGs, {min(min(s) for s in sides)}-{max(max(s) for s in sides)} px")
        print(f"  decode + preprocess: {len(paths) / decode_s:,.1f} images/s ({1000 * decode_s / len(paths):.1f} ms each)")
        print(f"  warm cache read:     {len(paths) / cached_s:,.0f} images/s ({1e6 * cached_s / len(paths):.1f} us each)")
        print(f"  ratio: warm cache is {ratio:,.0f}x faster than decoding (target >= 10x)")
        return ratio
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other jobs depress wall-clock figures)")
    loader_throughput(args)
    if args.full_res:
        full_resolution_ratio(args)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
