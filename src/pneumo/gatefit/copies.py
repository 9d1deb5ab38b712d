"""Copies of X-rays that the gate fit and its benches make, one image at a time (memory): numbered
acquisition or site variants of training X-rays, framed and inverted ones, and the site variants that stand in for
other hospitals' X-rays. Each copy is drawn from a generator seeded by (seed, what, index), so a fit and a bench
that ask for the same copy get the same pixels."""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from pneumo.data.acquisition import acquisition_variant, black_frame, site_variant
from pneumo.data.decode import decode_image

Variant = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def numbered_variants(paths: list[str], variant: int, seed: int, make: Variant = acquisition_variant
                      ) -> Iterator[np.ndarray]:
    """Variant number ``variant`` (made by ``make``: acquisition or site) of each image."""
    for index, path in enumerate(paths):
        yield make(decode_image(path), np.random.default_rng([seed, variant, index]))


def inverted_images(paths: list[str]) -> Iterator[np.ndarray]:
    """Each image with its gray scale reversed: a MONOCHROME1 radiograph read as MONOCHROME2."""
    for path in paths:
        yield 1.0 - decode_image(path)


def framed_variants(paths: list[str], seed: int) -> Iterator[np.ndarray]:
    """An acquisition variant of each image in a plain black frame (the frame drawn from the same generator)."""
    for index, path in enumerate(paths):
        rng = np.random.default_rng([seed, 9_000, index])
        yield black_frame(acquisition_variant(decode_image(path), rng), rng)


def site_images(paths: list[str], seed: int, copy: int = 0) -> Iterator[np.ndarray]:
    """One site variant of each image (held-out X-rays' stand-in for other hospitals), drawn from seeds the fit
    never uses."""
    for index, path in enumerate(paths):
        yield site_variant(decode_image(path), np.random.default_rng([seed, 7_000 + copy, index]))
