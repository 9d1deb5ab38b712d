"""A memory-mapped uint8 cache of preprocessed images, so epochs after the first decode nothing.

The cache file is keyed by the preprocessing settings and by every file's path, size and modification
time: change a file or a setting and a new cache is built instead of serving stale pixels.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pneumo.atomic import replacing
from pneumo.config import PreprocessConfig
from pneumo.data.decode import decode_image
from pneumo.data.errors import ImageDecodeError
from pneumo.data.preprocess import preprocess_array


def default_cache_dir() -> Path:
    return Path(os.environ.get("PNEUMO_CACHE", Path.home() / ".cache" / "pneumo"))


def cache_key(paths: list[str], cfg: PreprocessConfig) -> str:
    digest = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode())
    digest.update(b"v1")
    for path in paths:
        try:
            stat = os.stat(path)
            digest.update(f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{os.path.abspath(path)}|missing\n".encode())
    return digest.hexdigest()[:24]


@dataclass
class CacheFailure:
    path: str
    reason: str


class ImageCache:
    """Preprocessed images for a fixed list of files, in ``<dir>/<key>.u8`` plus a fill bitmap."""

    def __init__(self, paths: list[str], cfg: PreprocessConfig, directory: str | Path | None = None) -> None:
        self.paths = list(paths)
        self.cfg = cfg
        self.directory = Path(directory) if directory else default_cache_dir()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.key = cache_key(self.paths, cfg)
        size = cfg.image_size
        shape = (max(1, len(self.paths)), size, size)
        self.pixels_path = self.directory / f"{self.key}.u8"
        self.filled_path = self.directory / f"{self.key}.filled"
        # A fresh (or damaged) pixel file must not be trusted through an old fill bitmap.
        fresh = _ensure_file(self.pixels_path, int(np.prod(shape)))
        _ensure_file(self.filled_path, shape[0], replace_existing=fresh)
        self.pixels = np.memmap(self.pixels_path, dtype=np.uint8, mode="r+", shape=shape)
        self.filled = np.memmap(self.filled_path, dtype=np.uint8, mode="r+", shape=(shape[0],))

    def __getstate__(self) -> dict:
        # DataLoader workers started by spawn (macOS, Windows) receive the dataset pickled: send the file
        # names, not a copy of every cached image, and map the same files again on the other side.
        state = dict(self.__dict__)
        del state["pixels"], state["filled"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        count = max(1, len(self.paths))
        size = self.cfg.image_size
        self.pixels = np.memmap(self.pixels_path, dtype=np.uint8, mode="r+", shape=(count, size, size))
        self.filled = np.memmap(self.filled_path, dtype=np.uint8, mode="r+", shape=(count,))

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, index: int) -> np.ndarray:
        """The cached uint8 image, decoding and storing it on first use. Raises ImageDecodeError."""
        if self.filled[index] == 1:
            return np.asarray(self.pixels[index])
        image = preprocess_array(decode_image(self.paths[index]), self.cfg)
        self.pixels[index] = image
        self.filled[index] = 1  # written after the pixels, so a crash never marks a half image as done
        return image

    def subset(self, indices: list[int]) -> "ImageCache":
        """A cache of only the files at ``indices``, filled by copying what this cache already holds
        (dropping a few unreadable files must not mean decoding the whole dataset again)."""
        other = ImageCache([self.paths[i] for i in indices], self.cfg, self.directory)
        source = np.asarray(indices, dtype=np.int64)
        if len(source):
            copy = (np.asarray(self.filled[source]) == 1) & (np.asarray(other.filled[: len(source)]) != 1)
            targets = np.flatnonzero(copy)
            if len(targets):
                other.pixels[targets] = self.pixels[source[targets]]
                other.filled[targets] = 1
                other.pixels.flush()
                other.filled.flush()
        return other

    def warm(self, workers: int, progress: bool = False) -> list[CacheFailure]:
        """Fill every entry now; returns the files that could not be decoded (they stay unfilled)."""
        missing = [i for i in range(len(self.paths)) if self.filled[i] != 1]
        failures: list[CacheFailure] = []

        def fill(index: int) -> CacheFailure | None:
            try:
                self.get(index)
            except ImageDecodeError as exc:
                return CacheFailure(self.paths[index], exc.reason)
            return None

        iterator = missing
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            results = pool.map(fill, iterator)
            if progress and missing:
                from tqdm import tqdm

                results = tqdm(results, total=len(missing), desc="caching images", unit="img")
            failures = [r for r in results if r is not None]
        self.pixels.flush()
        self.filled.flush()
        return failures


def _ensure_file(path: Path, size: int, replace_existing: bool = False) -> bool:
    """Make ``path`` a file of exactly ``size`` bytes without ever truncating one that another process
    (a DDP rank, a second run sharing the cache) may have mapped: a new file is built aside and linked
    or renamed into place. Returns True when a new, zero-filled file was put in place."""
    if not replace_existing and path.exists() and path.stat().st_size == size:
        return False
    try:
        # Owner-only, as the cache has always been: it holds the preprocessed images of the training data.
        with replacing(path, mode=0o600, overwrite=replace_existing or path.exists()) as tmp:
            os.truncate(tmp, size)  # sparse zeros: nothing is written until images are
    except FileExistsError:  # another process created it first: use theirs
        return False
    return True
