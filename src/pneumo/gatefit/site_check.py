"""The non-X-ray images a gate widened to a site is checked against (``pneumo adapt``): the share of every kind
``pneumo gate fit`` held out of the non-X-ray score (its seed, scale and share, from ``meta.gate``), with the
site's own X-rays inset into the figures, slides and viewer screenshots."""

from __future__ import annotations

from typing import Any

from pneumo.data.decode import decode_image
from pneumo.gatefit.holdout import kind, split_negatives
from pneumo.gatefit.negatives import negative_images

# gate fit's defaults (GateFitConfig), for a meta.gate that does not record them.
HELD_OUT, INSET = 0.5, 40


def held_out_negatives(gate_summary: dict[str, Any], xray_paths: list[str]) -> tuple[list[Any], list[str]]:
    """(sources the Predictor accepts, the kind of each): gate fit's held-out non-X-ray images, the composites
    made with ``INSET`` of ``xray_paths`` (evenly spread) inset."""
    if not xray_paths:
        raise ValueError("held_out_negatives needs X-rays to inset into figures, slides and viewer screenshots")
    seed = int(gate_summary.get("seed", 0))
    chosen = xray_paths[:: max(1, len(xray_paths) // INSET)][:INSET]
    images = negative_images(seed, xrays=[decode_image(p) for p in chosen],
                             scale=float(gate_summary.get("negatives_scale", 1.0)))
    _, held_out = split_negatives(images, float(gate_summary.get("nonxray_held_out", HELD_OUT)), seed)
    return [i.source for i in held_out], [kind(i) for i in held_out]
