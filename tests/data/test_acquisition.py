"""Acquisition variants for the gate: realistic re-acquisitions of an X-ray, never an inverted one."""

import numpy as np

from pneumo.data.acquisition import (acquisition_variant, black_frame, burn_in_text, collimate, exposure, resize,
                                      site_variant, zoom_in, zoom_out)


def _dark_left_bright_right(h=96, w=80):
    image = np.full((h, w), 0.1, np.float32)
    image[:, w // 2:] = 0.9
    return image


def test_variants_are_valid_deterministic_images():
    image = _dark_left_bright_right()
    for seed in range(30):
        out = acquisition_variant(image, np.random.default_rng(seed))
        assert out.dtype == np.float32 and out.ndim == 2 and np.isfinite(out).all()
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert min(out.shape) >= 0.79 * min(image.shape)  # a crop keeps at least 80%
        assert np.array_equal(out, acquisition_variant(image, np.random.default_rng(seed)))


def test_variants_vary_and_never_invert():
    image = _dark_left_bright_right()
    outs = [acquisition_variant(image, np.random.default_rng(seed)) for seed in range(60)]
    for out in outs:  # exposure, noise, borders and small rotations keep the bright side bright
        half = out.shape[1] // 2
        assert out[:, half:].mean() > out[:, :half].mean() + 0.2
    bordered = [o for o in outs if o.shape != image.shape and (o[0] == 0).all() | (o[:, 0] == 0).all()]
    assert bordered, "some variants should carry black borders"
    assert len({round(float(o.mean()), 3) for o in outs}) > 30  # exposure differs between variants


def test_site_variants_are_valid_deterministic_and_never_inverted():
    image = _dark_left_bright_right()
    outs = [site_variant(image, np.random.default_rng(seed)) for seed in range(60)]
    for seed, out in enumerate(outs):
        assert out.dtype == np.float32 and out.ndim == 2 and np.isfinite(out).all()
        assert out.min() >= 0.0 and out.max() <= 1.0 and min(out.shape) >= 32
        np.testing.assert_array_equal(out, site_variant(image, np.random.default_rng(seed)))
        h, w = out.shape  # the centre rows: the bright half stays brighter (no inversion, no flip)
        band = out[h // 3:2 * h // 3]
        assert band[:, w // 2:].mean() > band[:, :w // 2].mean()
    aspects = {round(o.shape[1] / o.shape[0], 2) for o in outs}
    assert len(aspects) > 20  # field of view, aspect and collimation change the shape
    assert any(o.shape[1] / o.shape[0] > 1.1 * image.shape[1] / image.shape[0] for o in outs)  # wider (adult-like)


def test_site_variant_building_blocks():
    image = _dark_left_bright_right(120, 100)
    rng = np.random.default_rng(0)
    wide = zoom_out(image, 0.2, rng)
    assert wide.shape[0] > image.shape[0] and wide.shape[1] > image.shape[1]
    assert zoom_in(image, 0.5).shape == (60, 50)
    assert resize(image, 1.3, 1.0).shape == (120, 130)
    marked = burn_in_text(np.full((200, 200), 0.3, np.float32), np.random.default_rng(1))
    assert (marked != np.float32(round(0.3 * 255) / 255)).sum() > 20  # letters were drawn
    masks = [collimate(image, np.random.default_rng(s)) for s in range(20)]
    assert any(((m == 0) | (m == 1)).mean() > 0.05 for m in masks)  # black or white collimated areas
    assert {round(float(exposure(image, np.random.default_rng(s)).mean()), 2) for s in range(10)}.__len__() > 5


def test_a_black_frame_surrounds_the_whole_film_and_keeps_it_unchanged():
    image = _dark_left_bright_right(120, 100) * 0.5 + 0.3  # no black pixel of its own
    for seed in range(30):
        framed = black_frame(image, np.random.default_rng(seed))
        rows, cols = np.nonzero(framed > 0)
        top, left = rows.min(), cols.min()
        bottom, right = framed.shape[0] - 1 - rows.max(), framed.shape[1] - 1 - cols.max()
        sides = np.array([top / 120, bottom / 120, left / 100, right / 100])
        assert (sides >= 0.01).all() and (sides <= 0.2).all(), sides  # every side framed, none beyond 15% x 1.3
        assert sides.max() <= 1.3 / 0.7 * sides.min() + 0.02  # the four sides alike, as one export frames them
        np.testing.assert_array_equal(framed[top:top + 120, left:left + 100], image)
        np.testing.assert_array_equal(framed, black_frame(image, np.random.default_rng(seed)))
