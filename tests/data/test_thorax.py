"""The classical thorax crop finds two lung fields inside a body and leaves other films whole."""

from __future__ import annotations

import numpy as np

from pneumo.config import PreprocessConfig
from pneumo.data.preprocess import preprocess_array
from pneumo.data.thorax import crop_to_thorax, find_thorax


def _film(size: int = 200) -> np.ndarray:
    """A body (bright) with two darker lung fields between rows 60-140 and columns 50-150, on black air."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.zeros((size, size), np.float32)
    image[(np.abs(xx - 0.5) < 0.35) & (yy > 0.15)] = 0.8  # the body, open to the bottom
    for cx in (0.36, 0.64):
        image[((xx - cx) / 0.11) ** 2 + ((yy - 0.5) / 0.2) ** 2 < 1] = 0.45
    noise = np.random.default_rng(0).normal(0, 0.02, image.shape).astype(np.float32)
    return np.clip(image + noise, 0, 1)


def test_the_box_holds_both_lung_fields_and_drops_the_air_around_the_body():
    box = find_thorax(_film())
    assert box is not None
    assert box.top < 0.3 and box.bottom > 0.7 and box.left < 0.25 and box.right > 0.75
    assert box.left > 0.05 and box.right < 0.95  # the black air on both sides is cut away
    cropped = crop_to_thorax(_film())
    assert cropped.shape[0] < 200 and cropped.shape[1] < 200


def test_a_film_without_lung_fields_is_kept_whole():
    flat = np.full((120, 100), 0.5, np.float32)
    assert find_thorax(flat) is None
    assert crop_to_thorax(flat) is flat
    gradient = np.tile(np.linspace(0, 1, 100, dtype=np.float32), (120, 1))
    assert crop_to_thorax(gradient).shape == gradient.shape


def test_preprocessing_crops_only_when_asked():
    film = _film()
    plain = preprocess_array(film, PreprocessConfig(image_size=64, intensity="none"))
    cropped = preprocess_array(film, PreprocessConfig(image_size=64, intensity="none", thorax_crop=True))
    assert plain.shape == cropped.shape == (64, 64)
    # Cropped, the lungs fill more of the square: fewer black-air pixels remain.
    assert (cropped < 20).mean() < (plain < 20).mean()
