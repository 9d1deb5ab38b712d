"""A held-out share of every kind of negative, seeded; figures, slides and viewer screenshots with insets."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from conftest import synthetic_xray
from inference.bundles import png
from pneumo.data.decode import decode_image
from pneumo.gate.checks import cheap_reason
from pneumo.gatefit import composites, holdout
from pneumo.gatefit.negatives import NegativeImage

XRAYS = [synthetic_xray(seed, size=(120, 100)).astype(np.float32) / 255.0 for seed in range(3)]


def _images() -> list[NegativeImage]:
    out = [NegativeImage(kind, f"{kind}-{i}", b"") for kind, n in (("ct-axial", 10), ("figure", 7), ("blank", 1))
           for i in range(n)]
    for name in ("CT_small.dcm", "693_J2KI.dcm", "other.dcm"):  # renders of a file share its origin
        out += [NegativeImage("ct-pydicom", name, ""), NegativeImage("ct-pydicom", f"{name}-lung-copy0", b"")]
    out += [NegativeImage("photo", "cat.png", b""), NegativeImage("photo-gray", "cat.png-crop1-gray", b""),
            NegativeImage("photo", "dog.png", b"")]
    return out


def test_every_kind_has_a_held_out_share_and_keeps_origins_together():
    images = _images()
    fit, held = holdout.split_negatives(images, 0.5, seed=0)
    origins = {side: collections.Counter(holdout.kind(i) for i in {holdout.origin(i): i for i in part}.values())
               for side, part in (("fit", fit), ("held", held))}
    assert origins["held"] == {"ct-axial": 5, "figure": 3, "blank": 1, "ct-pydicom": 1, "photo": 1}
    assert origins["fit"] == {"ct-axial": 5, "figure": 4, "ct-pydicom": 2, "photo": 1}  # a lone image is held out
    assert not {holdout.origin(i) for i in fit} & {holdout.origin(i) for i in held}
    assert holdout.origin(images[-3]) == holdout.origin(images[-2])  # a photograph and its grey crop


def test_split_is_deterministic_by_seed():
    images = _images()
    assert holdout.split_negatives(images, seed=3) == holdout.split_negatives(images, seed=3)
    held = {seed: {i.name for i in holdout.split_negatives(images, seed=seed)[1]} for seed in range(4)}
    assert len({frozenset(names) for names in held.values()}) > 1  # the seed chooses which


@pytest.mark.parametrize("make", [composites.figure, composites.slide, composites.viewer])
def test_composites_are_deterministic_and_not_refused_by_the_cheap_checks(make):
    for index in (1, 2):  # indexes the makers render in grayscale
        first, again = (make(np.random.default_rng(index), index, XRAYS) for _ in range(2))
        np.testing.assert_array_equal(first, again)
        assert first.dtype == np.uint8 and first.ndim == 2 and min(first.shape) >= 200
        assert cheap_reason(decode_image(png(first)), 0.0) is None  # the feature gate has to refuse them


def test_composites_hold_the_inset_xray():
    """A figure made from a flat white 'X-ray' differs from one made from a flat black one: the inset is there."""
    bright, dark = [np.full((120, 100), 1.0, np.float32)], [np.full((120, 100), 0.0, np.float32)]
    with_bright = composites.figure(np.random.default_rng(2), 2, bright)
    with_dark = composites.figure(np.random.default_rng(2), 2, dark)
    assert with_bright.shape == with_dark.shape and (with_bright.astype(int) - with_dark).max() > 200
