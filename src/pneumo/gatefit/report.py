"""Counting what the gate did: shares of inputs answered UNKNOWN, warned or read, per kind of non-X-ray.

Shared by ``pneumo gate fit`` (the figures stored in ``meta.gate``) and ``bench/bench_gate.py``."""

from __future__ import annotations

from typing import Any

from pneumo.gatefit.negatives import NegativeImage


def flagged_pct(predictions: list[Any]) -> float:
    """% of readable inputs answered UNKNOWN."""
    scored = [p for p in predictions if p.error is None]
    return 100.0 * sum(p.label == "UNKNOWN" for p in scored) / max(1, len(scored))


def warned_pct(predictions: list[Any]) -> float:
    """% of readable inputs answered with a result and an out-of-distribution warning."""
    scored = [p for p in predictions if p.error is None]
    return 100.0 * sum(bool(p.out_of_distribution) for p in scored) / max(1, len(scored))


def score_negatives(predictor: Any, images: list[NegativeImage], batch_size: int) -> list[dict[str, Any]]:
    """One row per non-X-ray image: category, name, label, reason (None when it got a probability), warning."""
    predictions = predictor.predict_many([i.source for i in images], batch_size=batch_size)
    return [{"category": i.category, "name": i.name, "label": p.label, "unknown_reason": p.unknown_reason,
             "error": p.error, "out_of_distribution": p.out_of_distribution} for i, p in zip(images, predictions)]


def _by_feature_gate(reason: str) -> bool:
    return "feature distance" in reason or "non-X-ray score" in reason


def negatives_table(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per category of :func:`score_negatives` rows: images, % UNKNOWN (``flagged_pct``), % of them by the
    feature gate (distance or non-X-ray score, not a cheap check), % read with a warning, % read without one,
    and how many were labelled PNEUMONIA without a warning (the outcome that must never happen)."""
    table: dict[str, dict[str, float]] = {}
    for category in dict.fromkeys(r["category"] for r in rows):
        mine = [r for r in rows if r["category"] == category and r["error"] is None]
        flagged = [r for r in mine if r["label"] == "UNKNOWN"]
        warned = [r for r in mine if r["label"] != "UNKNOWN" and r["out_of_distribution"]]
        by_distance = [r for r in flagged if _by_feature_gate(r["unknown_reason"] or "")]
        n = max(1, len(mine))
        table[category] = {"n": len(mine), "flagged_pct": round(100.0 * len(flagged) / n, 2),
                           "by_distance_pct": round(100.0 * len(by_distance) / n, 2),
                           "warned_pct": round(100.0 * len(warned) / n, 2),
                           "read_pct": round(100.0 * (len(mine) - len(flagged) - len(warned)) / n, 2),
                           "pneumonia_unwarned": sum(r["label"] == "PNEUMONIA" and not r["out_of_distribution"]
                                                     for r in mine)}
    return table


def nonxray_pct(rows: list[dict[str, Any]]) -> tuple[float, int]:
    """(% answered UNKNOWN, readable images) of :func:`score_negatives` rows."""
    scored = [r for r in rows if r["error"] is None]
    return 100.0 * sum(r["label"] == "UNKNOWN" for r in scored) / max(1, len(scored)), len(scored)


def held_out_rows(rows: list[dict[str, Any]], held_out: list[NegativeImage]) -> list[dict[str, Any]]:
    """The rows of the images in ``held_out`` (those the non-X-ray score was not fitted on)."""
    names = {(i.category, i.name) for i in held_out}
    return [r for r in rows if (r["category"], r["name"]) in names]


def table_lines(table: dict[str, dict[str, float]]) -> list[str]:
    """:func:`negatives_table` as aligned lines for a terminal."""
    return [f"  {category:<12} {int(row['n']):>4} images  {row['flagged_pct']:6.1f}% UNKNOWN "
            f"({row['by_distance_pct']:.1f}% by the feature gate), {row.get('warned_pct', 0.0):5.1f}% warned, "
            f"{row.get('read_pct', 0.0):5.1f}% read; PNEUMONIA without a warning: {row.get('pneumonia_unwarned', 0)}"
            for category, row in table.items()]
