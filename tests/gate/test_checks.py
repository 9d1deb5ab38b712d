"""Cheap checks: each reason fires on its own kind of input and real X-rays pass."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import synthetic_xray
from pneumo.data.decode import decode_image
from pneumo.gate.checks import CheckConfig, cheap_reason, intensity_spread


def _xray(size=(64, 56)) -> np.ndarray:
    return synthetic_xray(0, size=size).astype(np.float32) / 255.0


def test_xrays_pass(real_xrays):
    assert cheap_reason(_xray(), 0.0) is None
    for path in real_xrays:
        assert cheap_reason(decode_image(path), 0.0) is None
    # Kermany holds tightly cropped chests up to about 3.2:1.
    assert cheap_reason(_xray(size=(140, 445)), 0.0) is None


@pytest.mark.parametrize("pixels, colour, words", [
    (_xray(size=(20, 64)), 0.0, "too small"),
    (_xray(size=(40, 200)), 0.0, "aspect ratio"),
    (_xray(), 0.3, "colour image"),
    (np.full((64, 64), 0.7, np.float32), 0.0, "blank"),
])
def test_each_reason(pixels, colour, words):
    reason = cheap_reason(pixels, colour)
    assert reason is not None and words in reason


def test_nearly_constant_with_a_few_outliers_is_blank():
    pixels = np.full((100, 100), 0.5, np.float32)
    pixels[:3, :3] = 1.0  # a tiny label burnt into an empty plate
    assert intensity_spread(pixels) < 0.01 and "blank" in cheap_reason(pixels, 0.0)


def test_limits_are_configurable_and_validated():
    assert cheap_reason(_xray(), 0.3, CheckConfig(max_colour_fraction=0.5)) is None
    assert "too small" in cheap_reason(_xray(), 0.0, CheckConfig(min_side=100))
    with pytest.raises(ValueError, match="max_aspect"):
        CheckConfig(max_aspect=0.5)
