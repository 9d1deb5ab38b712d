"""The acquisition-shifted validation block and site-variant augmentation of cached squares."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pneumo.config import AugmentConfig, PreprocessConfig
from pneumo.data.acquisition import confound_swap, shorter_field, taller_field
from pneumo.data.augment import RandomAffine
from pneumo.data.cache import ImageCache
from pneumo.data.dataset import XrayDataset
from pneumo.data.records import ImageRecord, scan_kermany
from pneumo.data.shifted import render_shifted_block, shifted_image
from pneumo.data.site_augment import SiteAugment


def _rows_of_band(image: np.ndarray) -> tuple[int, int]:
    rows = np.flatnonzero(image[:, image.shape[1] // 2] > 0.5)
    return int(rows.min()), int(rows.max())


def test_a_taller_field_lengthens_the_chest_and_a_shorter_one_shortens_it():
    image = np.zeros((100, 80), np.float32)
    image[30:70] = 1.0  # a "chest" 40 rows tall
    top, bottom = _rows_of_band(taller_field(image, 0.8))
    assert bottom - top > 45
    top, bottom = _rows_of_band(shorter_field(image, 0.15, np.random.default_rng(0)))
    assert bottom - top < 36
    assert taller_field(image, 0.8).shape == shorter_field(image, 0.15, np.random.default_rng(0)).shape == image.shape


def test_the_swap_gives_normals_a_flatter_window_and_pneumonias_a_harder_one():
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(0.5, 0.2, (120, 100)), 0, 1).astype(np.float32)
    image[:, :10] = 0.0  # black background at the edge
    as_pneumonia = confound_swap(image, pneumonia=False, rng=np.random.default_rng(1))
    as_normal = confound_swap(image, pneumonia=True, rng=np.random.default_rng(1))
    assert np.percentile(as_pneumonia, 5) > np.percentile(image, 5)
    assert as_normal.std() > as_pneumonia.std()
    assert 0.0 <= as_normal.min() and as_normal.max() <= 1.0


def test_the_shifted_block_is_the_same_every_time_and_skips_unreadable_files(kermany_tree: Path, tmp_path: Path):
    records = [r for r in scan_kermany(kermany_tree) if r.split == "train"][:6]
    broken = tmp_path / "broken.jpeg"
    broken.write_bytes(b"not an image")
    cfg = PreprocessConfig(image_size=32)
    block = render_shifted_block(records + [ImageRecord(str(broken), "NORMAL")], cfg)
    again = render_shifted_block(records, cfg)
    assert block.pixels.shape == (6, 32, 32) and block.pixels.dtype == np.uint8
    assert np.array_equal(block.pixels, again.pixels)
    assert [path for path, _ in block.skipped] == [str(broken)]
    decoded = np.asarray(Image.open(records[0].path), np.float32) / 255
    assert not np.allclose(shifted_image(decoded, records[0]), decoded)


def test_site_augment_keeps_the_square_and_a_zero_share_changes_nothing():
    torch.manual_seed(0)
    pixels = (np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)
    varied = SiteAugment(1.0).render(pixels)
    assert varied.shape == pixels.shape and varied.dtype == np.uint8 and not np.array_equal(varied, pixels)
    assert SiteAugment(0.0).maybe(pixels) is pixels
    with pytest.raises(ValueError, match="share"):
        SiteAugment(1.5)


def test_aspect_jitter_scales_height_and_width_apart():
    torch.manual_seed(0)
    still = AugmentConfig(rotation_degrees=0, translate=0, zoom=0, shear_degrees=0, aspect=0.0)
    assert np.allclose(np.diag(RandomAffine(still).matrix(32)[:, :2]), 1.0)
    jitter = RandomAffine(AugmentConfig(rotation_degrees=0, translate=0, zoom=0, shear_degrees=0, aspect=0.3))
    ratios = {round(m[1, 1] / m[0, 0], 4) for m in (jitter.matrix(32) for _ in range(20))}
    assert len(ratios) > 10 and all(math.exp(-0.3) - 1e-6 <= r <= math.exp(0.3) + 1e-6 for r in ratios)


def test_a_paired_dataset_gives_each_image_a_site_variant(kermany_tree: Path, tmp_path: Path):
    records = [r for r in scan_kermany(kermany_tree) if r.split == "train"][:4]
    cache = ImageCache([r.path for r in records], PreprocessConfig(image_size=32), tmp_path / "c")
    item = XrayDataset(records, cache, None, 2, SiteAugment(0.0), paired=True)[0]
    assert item["image"].shape == item["variant"].shape == (1, 32, 32)
    assert torch.equal(item["image"][0], torch.from_numpy(cache.get(0)))
    assert not torch.equal(item["image"], item["variant"])
    with pytest.raises(ValueError, match="paired"):
        XrayDataset(records, cache, None, 2, None, paired=True)


def test_evaluation_reads_the_shifted_block_as_png_files_of_the_validation_x_rays(kermany_tree: Path,
                                                                                 tmp_path: Path):
    from pneumo.bundle import read_meta
    from pneumo.evaluation.scoring import select_records
    from pneumo.training import fit

    from training.test_fit import tiny_config

    best = fit(tiny_config(kermany_tree, tmp_path / "cache", epochs=1), tmp_path / "run")
    meta = read_meta(best)[1]
    val = select_records(meta, "val", str(kermany_tree))
    shifted = select_records(meta, "shifted-val", str(kermany_tree))
    assert [(r.label, r.patient_id) for r in shifted.records] == [(r.label, r.patient_id) for r in val.records]
    assert all(r.path.endswith(".png") and Path(r.path).is_file() for r in shifted.records)
    assert (Path(shifted.records[0].path).parent.parent / "manifest.csv").is_file()
    again = select_records(meta, "shifted-val", str(kermany_tree))
    assert [r.path for r in again.records] == [r.path for r in shifted.records]
