"""Preprocessing is identical at training and inference time; augmentation is training-only, keeps
shape and dtype, and never mirrors the chest unless asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pneumo.config import AugmentConfig, PreprocessConfig
from pneumo.data.augment import BatchPreprocess, RandomAffine, apply_geometry, geometric_transform, normalize_batch
from pneumo.data.cache import ImageCache
from pneumo.data.dataset import XrayDataset
from pneumo.data.decode import decode_image
from pneumo.data.preprocess import normalize_uint8, preprocess_array, resize_square
from pneumo.data.records import ImageRecord, scan_kermany


@pytest.mark.parametrize("cfg", [
    PreprocessConfig(image_size=64),
    PreprocessConfig(image_size=48, resize_mode="letterbox", clahe=True, mean=0.45, std=0.3),
    PreprocessConfig(image_size=40, intensity="none"),
], ids=["stretch", "letterbox-clahe", "no-intensity"])
def test_training_eval_tensor_equals_inference_preprocessing(real_xrays: list[Path], tmp_path: Path,
                                                            cfg: PreprocessConfig) -> None:
    records = [ImageRecord(str(p), "NORMAL") for p in real_xrays]
    cache = ImageCache([r.path for r in records], cfg, tmp_path / "cache")
    dataset = XrayDataset(records, cache, geometric_transform(AugmentConfig(enabled=False)), classes=2)
    prep = BatchPreprocess(cfg, AugmentConfig()).eval()  # the training prep object, switched to eval
    loader = DataLoader(dataset, batch_size=3, shuffle=False, num_workers=0)
    seen = torch.cat([prep(batch["image"]) for batch in loader])
    assert seen.shape == (len(real_xrays), 1, cfg.image_size, cfg.image_size) and seen.dtype == torch.float32
    for i, path in enumerate(real_xrays):
        inference = normalize_uint8(preprocess_array(decode_image(path), cfg), cfg)
        np.testing.assert_array_equal(seen[i, 0].numpy(), inference)


def test_normalize_batch_is_the_twin_of_normalize_uint8() -> None:
    cfg = PreprocessConfig(mean=0.37, std=0.21)
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(normalize_batch(torch.from_numpy(pixels), cfg).numpy(), normalize_uint8(pixels, cfg))


def test_preprocess_output(real_xrays: list[Path]) -> None:
    image = decode_image(real_xrays[0])
    out = preprocess_array(image, PreprocessConfig(image_size=64))
    assert out.dtype == np.uint8 and out.shape == (64, 64)
    assert out.min() == 0 and out.max() == 255  # the percentile stretch uses the full range
    equalised = preprocess_array(image, PreprocessConfig(image_size=64, clahe=True))
    assert equalised.dtype == np.uint8 and equalised.shape == (64, 64)
    assert not np.array_equal(equalised, out)
    with pytest.raises(ValueError, match="2-D grayscale"):
        preprocess_array(np.zeros((4, 4, 3), np.float32), PreprocessConfig())


def test_letterbox_keeps_aspect_with_black_bars() -> None:
    wide = np.ones((20, 40), np.float32)
    out = resize_square(wide, 32, "letterbox")
    assert out.shape == (32, 32)
    assert out[:8].max() == 0 and out[24:].max() == 0 and out[8:24].min() > 0.99
    assert resize_square(wide, 32, "stretch").min() > 0.99
    with pytest.raises(ValueError, match="choose stretch or letterbox"):
        resize_square(wide, 32, "crop")


def test_horizontal_flip_is_off_by_default() -> None:
    assert AugmentConfig().horizontal_flip is False
    # Geometry off, flip left at default: the image passes unchanged, whatever the draws.
    still = RandomAffine(AugmentConfig(rotation_degrees=0, translate=0, zoom=0, shear_degrees=0))
    image = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    for _ in range(20):
        np.testing.assert_array_equal(still(image), image)
    # With the flip switched on some draws mirror it: the switch works, and only when asked.
    flipping = RandomAffine(AugmentConfig(rotation_degrees=0, translate=0, zoom=0, shear_degrees=0,
                                          horizontal_flip=True))
    outcomes = {"same" if np.array_equal(out, image) else "mirrored" if np.array_equal(out, image[:, ::-1])
                else "other" for out in (flipping(image) for _ in range(30))}
    assert outcomes == {"same", "mirrored"}


def test_augmentation_changes_pixels_but_not_shape_or_dtype(kermany_tree: Path, tmp_path: Path) -> None:
    cfg = PreprocessConfig(image_size=32)
    records = scan_kermany(kermany_tree)[:8]
    cache = ImageCache([r.path for r in records], cfg, tmp_path / "cache")
    plain = XrayDataset(records, cache, None)
    augmented = XrayDataset(records, cache, geometric_transform(AugmentConfig()))
    torch.manual_seed(0)
    changed = 0
    for i in range(len(records)):
        a, b = plain[i]["image"], augmented[i]["image"]
        assert a.shape == b.shape == (1, 32, 32) and a.dtype == b.dtype == torch.uint8
        changed += not torch.equal(a, b)
    assert changed == len(records)
    prep = BatchPreprocess(cfg, AugmentConfig(brightness=0.3, contrast=0.3))
    batch = torch.stack([plain[i]["image"] for i in range(4)])
    trained, evaluated = prep.train()(batch), prep.eval()(batch)
    assert trained.shape == evaluated.shape == (4, 1, 32, 32) and trained.dtype == torch.float32
    assert not torch.allclose(trained, evaluated)
    assert torch.isfinite(trained).all()
    assert geometric_transform(AugmentConfig(enabled=False)) is None
    off = BatchPreprocess(cfg, AugmentConfig(enabled=False)).train()
    assert torch.equal(off(batch), evaluated)


def test_augmentation_is_reproducible_from_the_torch_seed() -> None:
    image = np.random.default_rng(1).integers(0, 256, (32, 32), dtype=np.uint8)

    def draws(seed: int) -> list[np.ndarray]:
        torch.manual_seed(seed)
        transform = RandomAffine(AugmentConfig())
        return [apply_geometry(image, transform).numpy() for _ in range(3)]

    first, again, other = draws(7), draws(7), draws(8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_dataset_items_and_mismatch(kermany_tree: Path, tmp_path: Path) -> None:
    cfg = PreprocessConfig(image_size=32)
    records = scan_kermany(kermany_tree)
    cache = ImageCache([r.path for r in records], cfg, tmp_path / "cache")
    dataset = XrayDataset(records, cache, None, classes=3)
    item = dataset[len(records) - 1]
    assert set(item) == {"image", "target", "index"} and item["index"] == len(records) - 1
    assert dataset.targets == [r.target(3) for r in records] and set(dataset.targets) == {0, 1, 2}
    with pytest.raises(ValueError, match="same files in the same order"):
        XrayDataset(list(reversed(records)), cache)


def test_training_brightness_contrast_matches_its_definition() -> None:
    """The fused batch path equals clamp(((x - mean) * c + mean) * b, 0, 1) normalised, per sample."""
    cfg = PreprocessConfig(mean=0.45, std=0.3)
    prep = BatchPreprocess(cfg, AugmentConfig(brightness=0.4, contrast=0.4)).train()
    pixels = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (5, 1, 16, 16), dtype=np.uint8))
    torch.manual_seed(3)
    got = prep(pixels)
    torch.manual_seed(3)
    contrast = 1.0 + (2 * torch.rand(5, 1, 1, 1) - 1) * 0.4
    brightness = 1.0 + (2 * torch.rand(5, 1, 1, 1) - 1) * 0.4
    x = pixels.double() / 255.0
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    want = ((((x - mean) * contrast + mean) * brightness).clamp(0, 1) - cfg.mean) / cfg.std
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-5)
    assert got.dtype == torch.float32 and not torch.allclose(got, prep.eval()(pixels))


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (224, 224), (37, 91)])
def test_fast_percentiles_equal_numpys(shape: tuple[int, int]) -> None:
    from pneumo.data.preprocess import percentiles

    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    for image in (rng.random(shape, dtype=np.float32) ** 3, np.full(shape, 0.25, np.float32),
                  np.round(rng.random(shape, dtype=np.float32) * 4) / 4,  # many ties
                  (rng.random(shape) > 0.5).astype(np.float32)):
        expected = np.percentile(image, [0.5, 99.5])
        assert np.allclose(percentiles(image, 0.5, 99.5), expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_same_size_shortcut_equals_pillows_resize(mode: str) -> None:
    from PIL import Image

    from pneumo.data.preprocess import resize_square

    image = np.random.default_rng(3).random((48, 48), dtype=np.float32)
    via_pillow = np.asarray(Image.fromarray(image, mode="F").resize((48, 48), Image.BILINEAR), dtype=np.float32)
    out = resize_square(image, 48, mode)
    assert np.array_equal(out, via_pillow) and out is not image
    with pytest.raises(ValueError, match="resize mode"):
        resize_square(image, 48, "crop")


def test_preprocessing_constants_come_from_the_config() -> None:
    """Percentiles, CLAHE and interpolation travel in the bundle's ``preprocess``; old bundles lack them and
    read today's values."""
    from pneumo.config import from_dict

    rng = np.random.default_rng(0)
    image = rng.random((300, 260))
    default = preprocess_array(image, PreprocessConfig())
    assert np.array_equal(default, preprocess_array(image, from_dict(PreprocessConfig, {"image_size": 224})))
    for changed in ({"percentile_low": 5.0}, {"interpolation": "bicubic"}):
        assert not np.array_equal(default, preprocess_array(image, PreprocessConfig(**changed))), changed
    clahe = PreprocessConfig(clahe=True)
    assert not np.array_equal(preprocess_array(image, clahe), preprocess_array(image, PreprocessConfig(clahe=True, clahe_clip=4.0)))
    with pytest.raises(ValueError, match="percentiles"):
        PreprocessConfig(percentile_low=60, percentile_high=40)
    with pytest.raises(ValueError, match="interpolation"):
        PreprocessConfig(interpolation="nearest")
