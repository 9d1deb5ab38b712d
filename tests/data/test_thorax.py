"""The classical thorax crop finds two lung fields inside a body and leaves other films whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pneumo.config import PreprocessConfig
from pneumo.data.decode import decode_image
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


# The crop is NumPy so that a bundle trained with it predicts without OpenCV; each step is OpenCV's own
# computation, checked here against OpenCV (a dev dependency) on the repo's real X-rays and on hard masks.
cv2 = pytest.importorskip("cv2")
ASSETS = sorted((Path(__file__).parents[1] / "assets").glob("*.jpeg"))


@pytest.mark.parametrize("path", ASSETS, ids=lambda p: p.name)
def test_each_step_is_opencvs_on_real_films(path):
    from pneumo.data import thorax

    film = decode_image(str(path))
    small = cv2.resize(film.astype(np.float32), (thorax.WORK_SIZE, thorax.WORK_SIZE), interpolation=cv2.INTER_AREA)
    reference = np.round(cv2.GaussianBlur(small, (5, 5), 0) * 255).astype(np.uint8)
    ours = thorax._work_copy(film)
    assert np.abs(ours.astype(int) - reference).max() <= 1 and (ours != reference).mean() < 0.01
    level, _ = cv2.threshold(reference.reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    assert thorax.otsu_threshold(reference) == level
    dark = (reference < level).astype(np.uint8)
    opened = cv2.morphologyEx(dark, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    assert np.array_equal(thorax._opened(dark.astype(bool)), opened.astype(bool))
    _assert_same_components(opened.astype(bool))


def _assert_same_components(mask):
    from pneumo.data.thorax import components

    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
    ours_labels, ours_stats, ours_count = components(mask)
    assert ours_count == count
    assert np.array_equal(ours_labels, labels)
    assert np.array_equal(ours_stats[1:], stats[1:])  # the background's row is never read


def test_components_join_only_through_edges_whatever_the_shape():
    rng = np.random.default_rng(3)
    for density in (0.3, 0.5, 0.6):
        _assert_same_components(rng.random((64, 80)) < density)
    spiral = np.zeros((41, 41), bool)  # one long winding component
    spiral[::4, :] = True
    spiral[:, 0] = spiral[:, -1] = True
    spiral[[r for r in range(2, 41, 4)], 1:-1] = False
    _assert_same_components(spiral)
    diagonal = np.eye(20, dtype=bool)  # corners only touch: 20 components under 4-connectivity
    _assert_same_components(diagonal)
    assert _count(np.zeros((5, 5), bool)) == 1 and _count(np.ones((5, 5), bool)) == 2


def _count(mask):
    from pneumo.data.thorax import components

    return components(mask)[2]


def test_otsu_matches_opencv_on_skewed_and_flat_histograms():
    from pneumo.data.thorax import otsu_threshold

    rng = np.random.default_rng(5)
    cases = [rng.integers(0, 256, 500), np.concatenate([rng.normal(40, 5, 900), rng.normal(200, 20, 100)]),
             np.full(50, 7), np.array([0, 255] * 10)]
    for values in cases:
        values = np.clip(values, 0, 255).astype(np.uint8)
        level, _ = cv2.threshold(values.reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        assert otsu_threshold(values) == level
