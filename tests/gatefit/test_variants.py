"""Acquisition variants for the gate: realistic re-acquisitions of an X-ray, never an inverted one."""

import numpy as np

from pneumo.gatefit.variants import acquisition_variant


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
