"""The memory-mapped cache serves warm images without decoding and rebuilds itself when files or
settings change."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_xray
from pneumo.config import PreprocessConfig
from pneumo.data import cache as cache_module
from pneumo.data.cache import ImageCache, cache_key
from pneumo.data.decode import decode_image
from pneumo.data.errors import ImageDecodeError
from pneumo.data.preprocess import preprocess_array

CFG = PreprocessConfig(image_size=32)


@pytest.fixture
def images(tmp_path: Path) -> list[str]:
    paths = []
    for i in range(5):
        path = tmp_path / "imgs" / f"IM-{i:04d}-0001.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(synthetic_xray(i, size=(50, 44))).save(path)
        paths.append(str(path))
    return paths


def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the cache decoded an image it should have served from memory")

    monkeypatch.setattr(cache_module, "decode_image", refuse)


def test_warm_cache_serves_without_decoding(images: list[str], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ImageCache(images, CFG, tmp_path / "c")
    assert cache.warm(workers=2) == []
    expected = [preprocess_array(decode_image(p), CFG) for p in images]
    _no_decoding(monkeypatch)
    for i, want in enumerate(expected):
        got = cache.get(i)
        assert got.dtype == np.uint8 and got.shape == (32, 32)
        np.testing.assert_array_equal(got, want)
    # A new process (a new object on the same files) finds the filled cache on disk.
    reopened = ImageCache(images, CFG, tmp_path / "c")
    assert reopened.key == cache.key and reopened.warm(workers=1) == []
    np.testing.assert_array_equal(reopened.get(4), expected[4])


def test_get_fills_lazily(images: list[str], tmp_path: Path) -> None:
    cache = ImageCache(images, CFG, tmp_path / "c")
    assert not np.asarray(cache.filled).any()
    cache.get(2)
    assert list(np.asarray(cache.filled)) == [0, 0, 1, 0, 0]


def test_changed_file_invalidates(images: list[str], tmp_path: Path) -> None:
    cache = ImageCache(images, CFG, tmp_path / "c")
    cache.warm(workers=1)
    before = cache.get(1).copy()
    stat = os.stat(images[1])
    flipped = np.asarray(Image.open(images[1]))[::-1].copy()  # same size class, different pixels
    Image.fromarray(flipped).save(images[1])
    os.utime(images[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    fresh = ImageCache(images, CFG, tmp_path / "c")
    assert fresh.key != cache.key
    after = fresh.get(1)
    np.testing.assert_array_equal(after, preprocess_array(decode_image(images[1]), CFG))
    assert not np.array_equal(after, before)


def test_settings_and_file_list_change_the_key(images: list[str]) -> None:
    base = cache_key(images, CFG)
    assert cache_key(images, PreprocessConfig(image_size=48)) != base
    assert cache_key(images, PreprocessConfig(image_size=32, resize_mode="letterbox")) != base
    assert cache_key(images, PreprocessConfig(image_size=32, clahe=True)) != base
    assert cache_key(images, PreprocessConfig(image_size=32, mean=0.4)) != base
    assert cache_key(images[:-1], CFG) != base
    assert cache_key(list(reversed(images)), CFG) != base
    assert cache_key(images, CFG) == base


def test_settings_change_serves_new_pixels(images: list[str], tmp_path: Path) -> None:
    small = ImageCache(images, CFG, tmp_path / "c")
    small.warm(workers=1)
    letterbox = ImageCache(images, PreprocessConfig(image_size=32, resize_mode="letterbox"), tmp_path / "c")
    assert letterbox.get(0).shape == (32, 32)
    assert not np.array_equal(letterbox.get(0), small.get(0))


def test_corrupt_file_is_reported_and_skipped(images: list[str], tmp_path: Path) -> None:
    Path(images[3]).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    cache = ImageCache(images, CFG, tmp_path / "c")
    failures = cache.warm(workers=2)
    assert [f.path for f in failures] == [images[3]]
    assert "corrupt" in failures[0].reason or "not a readable" in failures[0].reason
    assert list(np.asarray(cache.filled)) == [1, 1, 1, 0, 1]
    with pytest.raises(ImageDecodeError, match=Path(images[3]).name):
        cache.get(3)


def test_subset_copies_instead_of_decoding(images: list[str], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ImageCache(images, CFG, tmp_path / "c")
    cache.warm(workers=1)
    _no_decoding(monkeypatch)
    subset = cache.subset([0, 2, 4])
    assert subset.paths == [images[0], images[2], images[4]] and subset.key != cache.key
    assert subset.warm(workers=1) == []
    for new, old in enumerate([0, 2, 4]):
        np.testing.assert_array_equal(subset.get(new), cache.get(old))


def test_damaged_cache_file_is_rebuilt(images: list[str], tmp_path: Path) -> None:
    cache = ImageCache(images, CFG, tmp_path / "c")
    cache.warm(workers=1)
    expected = cache.get(0).copy()
    pixels_path, filled_path = cache.pixels_path, cache.filled_path
    del cache
    with open(pixels_path, "r+b") as handle:  # a crash or full disk left a short file
        handle.truncate(100)
    rebuilt = ImageCache(images, CFG, tmp_path / "c")
    assert pixels_path.stat().st_size == 5 * 32 * 32
    assert not np.asarray(rebuilt.filled).any()  # the old fill bitmap is not trusted
    np.testing.assert_array_equal(rebuilt.get(0), expected)
    assert filled_path.exists()


def test_empty_list_and_default_directory(tmp_path: Path) -> None:
    cache = ImageCache([], CFG)  # PNEUMO_CACHE points into tmp_path (conftest)
    assert len(cache) == 0 and cache.warm(workers=1) == []
    assert Path(os.environ["PNEUMO_CACHE"]) == cache.directory


def test_pickles_as_file_names_for_spawned_workers(images: list[str], tmp_path: Path) -> None:
    import pickle

    cache = ImageCache(images, CFG, tmp_path / "c")
    cache.warm(workers=1)
    data = pickle.dumps(cache)
    assert len(data) < 5 * 32 * 32  # not the pixels
    clone = pickle.loads(data)
    np.testing.assert_array_equal(clone.get(3), cache.get(3))
    fresh = ImageCache(images, PreprocessConfig(image_size=24), tmp_path / "c")
    twin = pickle.loads(pickle.dumps(fresh))
    twin.get(1)  # filled through the clone's mapping of the same file
    assert fresh.filled[1] == 1
