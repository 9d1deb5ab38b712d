"""The hostile corpus through the data loader: ``ImageCache.warm`` and ``pneumo data summary``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pneumo.cli import main as pneumo_main
from pneumo.config import PreprocessConfig
from pneumo.data.cache import ImageCache
from pneumo.data.decode import decode_image
from pneumo.data.errors import ImageDecodeError
from pneumo.data.preprocess import preprocess_array
from pneumo.data.records import IMAGE_SUFFIXES

from pneumo_testsupport.corpus import Case
from .outcomes import call_with_timeout, release_fifos


def decodable(path: Path) -> bool:
    try:
        decode_image(path)
    except ImageDecodeError:
        return False
    return True


def test_cache_warm_reports_exactly_the_unreadable_files(corpus: list[Case], tmp_path: Path) -> None:
    cfg = PreprocessConfig(image_size=32)
    paths = [str(c.path) for c in corpus]  # the FIFO and the folder included: the loader must not hang
    cache = ImageCache(paths, cfg, tmp_path / "cache")
    finished, failures = call_with_timeout(lambda: cache.warm(workers=2), 60.0, lambda: release_fifos(corpus))
    assert finished, "ImageCache.warm hung"
    assert isinstance(failures, list), failures
    failed = {f.path: f.reason for f in failures}
    expected_bad = {str(c.path) for c in corpus if c.special or not decodable(c.path)}
    assert set(failed) == expected_bad
    assert all(reason for reason in failed.values())
    for index, case in enumerate(corpus):
        if str(case.path) in failed:
            assert cache.filled[index] == 0, case.name  # a failed image is never marked as cached
        else:
            assert cache.filled[index] == 1
            assert np.array_equal(cache.get(index), preprocess_array(decode_image(case.path), cfg)), case.name


def test_cache_failures_are_stable_across_a_reopen(corpus: list[Case], tmp_path: Path) -> None:
    """A second process (or epoch) opening the same cache sees the same holes and no half images."""
    cfg = PreprocessConfig(image_size=16)
    paths = [str(c.path) for c in corpus if not c.special][:80]
    first = {f.path for f in ImageCache(paths, cfg, tmp_path).warm(workers=2)}
    reopened = ImageCache(paths, cfg, tmp_path)
    assert int(np.asarray(reopened.filled).sum()) == len(paths) - len(first)
    assert {f.path for f in reopened.warm(workers=1)} == first


@pytest.fixture
def hostile_tree(kermany_tree: Path, corpus: list[Case]) -> tuple[Path, set[str]]:
    """The Kermany fixture with every regular corpus file copied into train/NORMAL and test/PNEUMONIA."""
    bad: set[str] = set()
    for i, case in enumerate(c for c in corpus if not c.special):
        folder = kermany_tree / ("train/NORMAL" if i % 2 else "test/PNEUMONIA")
        target = folder / case.name
        shutil.copyfile(case.path, target)
        if target.suffix.lower() in IMAGE_SUFFIXES and not decodable(target):
            bad.add(str(target))
    return kermany_tree, bad


def test_data_summary_lists_every_unreadable_file(hostile_tree: tuple[Path, set[str]],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    root, bad = hostile_tree
    code = pneumo_main(["data", "summary", str(root), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert {item["path"] for item in report["corrupt"]} == bad
    assert all(item["reason"] for item in report["corrupt"])
    assert sum(g["corrupt"] for g in report["groups"]) == len(bad)
    assert "Traceback" not in out + err


def test_data_summary_table_survives_hostile_files(hostile_tree: tuple[Path, set[str]],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root, bad = hostile_tree
    assert pneumo_main(["data", "summary", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"corrupt or unreadable files: {len(bad)}" in out
