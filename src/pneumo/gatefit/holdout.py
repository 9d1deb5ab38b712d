"""Which non-X-ray images the gate's non-X-ray score is fitted on and which it is measured on.

A share of every kind is held out (a CT file, a phantom slice, a figure, a photograph and all its crops), so
that each kind's figure is measured on images the score never saw, and no kind is absent from either side.
The draw is a hash of the seed and the image's origin: stable across runs and machines.
"""

from __future__ import annotations

import hashlib

from pneumo.gatefit.negatives import NegativeImage


def origin(image: NegativeImage) -> str:
    """What a negative image was made from: the crops and grey copies of one photograph share its file name,
    and the renders of one CT file share the file's, so a split by origin never puts a copy on one side and
    its source on the other."""
    if image.category in ("photo", "photo-gray"):
        return "photo:" + image.name.removesuffix("-gray").split("-crop")[0]
    if image.category == "ct-pydicom":
        return "ct-pydicom:" + image.name.split(".dcm")[0]
    return f"{image.category}:{image.name}"


def kind(image: NegativeImage) -> str:
    """The kind a share is held out of (``photo`` and ``photo-gray`` are one: they share origins)."""
    return origin(image).split(":", 1)[0]


def _draw(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}|{key}".encode()).digest()[:8], "big")


def held_out_origins(images: list[NegativeImage], held_out_fraction: float, seed: int) -> set[str]:
    """Per kind, ``held_out_fraction`` of its origins (at least one; at least one left to fit on when the kind
    has two or more), chosen by the seeded hash."""
    by_kind: dict[str, list[str]] = {}
    for image in images:
        names = by_kind.setdefault(kind(image), [])
        if origin(image) not in names:
            names.append(origin(image))
    held: set[str] = set()
    for names in by_kind.values():
        share = max(1, int(held_out_fraction * len(names)))
        if len(names) > 1:
            share = min(share, len(names) - 1)
        held.update(sorted(names, key=lambda name: _draw(seed, name))[:share])
    return held


def split_negatives(images: list[NegativeImage], held_out_fraction: float = 0.5, seed: int = 0
                    ) -> tuple[list[NegativeImage], list[NegativeImage]]:
    """``(fit, held_out)``: :func:`held_out_origins` of each kind on the held-out side, the rest to fit on."""
    if not 0.0 < held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    held = held_out_origins(images, held_out_fraction, seed)
    fit = [i for i in images if origin(i) not in held]
    return fit, [i for i in images if origin(i) in held]
